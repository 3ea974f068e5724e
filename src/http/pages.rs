//! The hosted pages: the authorization endpoint and the sign-in, second-factor and consent
//! forms a browser fills in on the way back to an application.
//!
//! Server-rendered HTML (askama templates under `templates/`, escaped by default), one
//! stylesheet, no scripts. Each handler parses the form, calls one function of
//! `app::oauth`, and renders the step it answers: a page, or a redirect to the client.
//!
//! - **CSRF**: a double-submit token. Every page sets a random `csrf` cookie (HttpOnly,
//!   SameSite=Lax, `__Host-` under https) when the browser has none and puts the same value in
//!   its forms; a POST whose field does not equal the cookie (constant-time) is refused with
//!   403. SameSite=Lax alone already keeps cross-site POSTs from carrying the cookie.
//! - **Framing and content**: `Content-Security-Policy: default-src 'none'; style-src 'self';
//!   frame-ancestors 'none'; base-uri 'none'` and no caching. No `form-action` source list:
//!   browsers apply it to the redirect after a form (to the client's redirect URI) too.
//! - **The browser session** is the `session` cookie (HttpOnly, SameSite=Lax, `__Host-` and
//!   Secure under https), whose value the database holds only as a hash.
//! - A client or redirect URI that cannot be trusted gets an error page, never a redirect; every
//!   other error goes back to the client (RFC 6749 §4.1.2.1).

// Handlers answer early with a finished `Response` (an error page, an OAuth error): a
// `Result<_, Response>` once per request, never stored, so its size costs nothing worth a box.
#![allow(clippy::result_large_err)]

use super::error::ApiError;
use crate::app::login::Login;
use crate::app::oauth::authorize::{AuthRequest, AuthorizeError, AuthorizeParams, Redirect, Step};
use crate::app::oauth::browser::SignIn;
use crate::app::oauth::logout::{EndSession, EndSessionError, EndSessionParams};
use crate::app::{AppError, Client, SharedApp};
use crate::db::BrowserSession;
use askama::Template;
use bytes::Bytes;
use edge_idp_actors::crypto::{b64url, random_bytes};
use edge_idp_actors::SecretString;
use std::collections::HashMap;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

/// The Content-Security-Policy of every page.
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The stylesheet, served at `/assets/edge-idp.css`.
const STYLESHEET: &str = include_str!("../../assets/edge-idp.css");

/// The icon, served at `/assets/favicon.svg` (without it browsers ask for `/favicon.ico`).
const FAVICON: &str = include_str!("../../assets/favicon.svg");

/// What every page shows: the product name and the form's CSRF token.
struct Page<'a> {
    product: &'a str,
    csrf: &'a str,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    page: Page<'a>,
    client_name: &'a str,
    authz: &'a str,
    email: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "mfa.html")]
struct MfaPage<'a> {
    page: Page<'a>,
    authz: &'a str,
    mfa_token: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    page: Page<'a>,
    client_name: &'a str,
    email: &'a str,
    authz: &'a str,
    scopes: Vec<&'static str>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    page: Page<'a>,
    title: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "sign_out.html")]
struct SignOutPage<'a> {
    page: Page<'a>,
    client_name: Option<&'a str>,
    fields: Vec<(&'static str, &'a str)>,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage<'a> {
    page: Page<'a>,
    client_name: Option<&'a str>,
}

/// The sign-in form, as documented (the handler reads it field by field).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct SignInForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// The authorization request, as the page carries it.
    authz: String,
    /// The account's email.
    email: String,
    /// Its password.
    password: String,
}

/// The second-factor form.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct MfaForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// The authorization request.
    authz: String,
    /// The challenge the sign-in form answered.
    mfa_token: String,
    /// A TOTP or recovery code.
    code: String,
}

/// The consent form.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ConsentForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// The authorization request.
    authz: String,
    /// `allow` or `deny`.
    #[schema(example = "allow")]
    decision: String,
}

/// The authorization request as a form (`POST /oauth2/authorize`).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct AuthorizeForm {
    /// A registered client.
    client_id: Option<String>,
    /// One of its registered redirect URIs, exactly.
    redirect_uri: Option<String>,
    /// `code`.
    response_type: Option<String>,
    /// Space-separated scopes.
    scope: Option<String>,
    /// Echoed untouched.
    state: Option<String>,
    /// Echoed in the ID token.
    nonce: Option<String>,
    /// PKCE S256 challenge.
    code_challenge: Option<String>,
    /// `S256`.
    code_challenge_method: Option<String>,
    /// `none`, `login`, `consent`.
    prompt: Option<String>,
    /// Seconds.
    max_age: Option<String>,
    /// Prefills the email.
    login_hint: Option<String>,
}

/// An end-session request (RP-Initiated Logout 1.0 §2), as a query or a form.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct EndSessionForm {
    /// An ID token this provider issued to the client (expired is fine).
    id_token_hint: Option<String>,
    /// The client, when no hint names it.
    client_id: Option<String>,
    /// One of the client's registered post-logout redirect URIs, exactly.
    post_logout_redirect_uri: Option<String>,
    /// Echoed to that URI.
    state: Option<String>,
    /// `yes` from the confirmation page's button (then `csrf` must equal its cookie).
    confirm: Option<String>,
    /// With `confirm`.
    csrf: Option<String>,
}

/// What a scope lets the application do, in the user's words.
fn describe(scope: &str) -> &'static str {
    match scope {
        "openid" => "Know who you are (your account identifier)",
        "profile" => "See your name",
        "email" => "See your email address",
        "offline_access" => "Stay signed in: act for you while you are away",
        _ => "Use another permission",
    }
}

/// The cookies of a request, by name.
pub struct Cookies(HashMap<String, String>);

impl Cookies {
    /// Parses a `Cookie` header (RFC 6265 §5.4); the first value of a repeated name wins.
    pub fn parse(header: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in header.unwrap_or("").split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                map.entry(k.trim().to_owned())
                    .or_insert_with(|| v.trim().to_owned());
            }
        }
        Self(map)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// Cookie names and attributes for this issuer.
struct CookieJar {
    secure: bool,
    session_max_age: i64,
}

impl CookieJar {
    fn new(app: &SharedApp) -> Self {
        Self {
            secure: app.settings.issuer.starts_with("https://"),
            session_max_age: app.settings.session_max_ttl,
        }
    }

    fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-edge_idp_{base}")
        } else {
            format!("edge_idp_{base}")
        }
    }

    fn set(&self, base: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.name(base)
        )
    }
}

/// A page's answer under construction: the CSRF token its forms carry, and the cookies to set.
struct Reply {
    app: SharedApp,
    jar: CookieJar,
    csrf: String,
    set_cookies: Vec<String>,
    /// After a POST the browser is sent on with 303 (See Other), after a GET with 302.
    post: bool,
}

impl Reply {
    /// Reads the browser's CSRF token, or makes one (and sets its cookie).
    fn new(app: &SharedApp, cookies: &Cookies, post: bool) -> Result<Self, ApiError> {
        let jar = CookieJar::new(app);
        let mut set_cookies = Vec::new();
        let csrf = match cookies.get(&jar.name("csrf")).filter(|v| token_shaped(v)) {
            Some(v) => v.to_owned(),
            None => {
                let raw = random_bytes::<32>().map_err(|e| ApiError::internal(e.to_string()))?;
                let v = b64url(&raw);
                set_cookies.push(jar.set("csrf", &v, 86_400));
                v
            }
        };
        Ok(Self {
            app: app.clone(),
            jar,
            csrf,
            set_cookies,
            post,
        })
    }

    fn page(&self) -> Page<'_> {
        Page {
            product: &self.app.settings.product_name,
            csrf: &self.csrf,
        }
    }

    fn html(self, status: StatusCode, body: Result<String, askama::Error>) -> Response {
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                return ApiError::internal(format!("template: {e}")).into_response();
            }
        };
        let mut resp = warp::http::Response::new(body.into());
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        self.finish(resp)
    }

    fn finish(self, mut resp: Response) -> Response {
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
        for c in self.set_cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                h.append(header::SET_COOKIE, v);
            }
        }
        resp
    }

    fn redirect(self, to: Redirect) -> Response {
        let status = if self.post {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::FOUND
        };
        let mut resp = warp::http::Response::new(Default::default());
        *resp.status_mut() = status;
        match HeaderValue::from_str(&to.0) {
            Ok(v) => {
                resp.headers_mut().insert(header::LOCATION, v);
                self.finish(resp)
            }
            Err(_) => self.error(
                StatusCode::BAD_REQUEST,
                "Cannot return to the application",
                "Its redirect address cannot be used.",
            ),
        }
    }

    fn error(self, status: StatusCode, title: &str, message: &str) -> Response {
        let body = ErrorPage {
            page: self.page(),
            title,
            message,
        }
        .render();
        self.html(status, body)
    }

    /// The page of a failure of the provider itself (or a rate limit).
    fn failed(self, e: AppError) -> Response {
        let api = ApiError::from(e);
        let (status, _, _) = api.parts();
        let (title, message) = match &api {
            ApiError::RateLimited(_) => (
                "Too many attempts",
                "Too many attempts from here. Wait a minute, then try again.",
            ),
            ApiError::Unavailable(_) => (
                "Temporarily unavailable",
                "The service is busy. Please try again in a moment.",
            ),
            _ => ("Something went wrong", "An unexpected error occurred."),
        };
        // Logs the cause once, as the JSON API would.
        if matches!(api, ApiError::Internal(_) | ApiError::Unavailable(_)) {
            drop(api.into_response());
        }
        self.error(status, title, message)
    }

    fn sign_in(self, req: &AuthRequest, email: &str, error: Option<&str>) -> Response {
        let authz = req.params.encode();
        let body = SignInPage {
            page: self.page(),
            client_name: &req.client.name,
            authz: &authz,
            email,
            error,
        }
        .render();
        self.html(StatusCode::OK, body)
    }

    fn mfa(self, req: &AuthRequest, mfa_token: &str, error: Option<&str>) -> Response {
        let authz = req.params.encode();
        let body = MfaPage {
            page: self.page(),
            authz: &authz,
            mfa_token,
            error,
        }
        .render();
        self.html(StatusCode::OK, body)
    }

    /// Renders what an authorization step answered.
    fn step(self, step: Result<Step, AuthorizeError>) -> Response {
        match step {
            Ok(Step::SignIn(req)) => {
                let hint = req.login_hint.clone().unwrap_or_default();
                self.sign_in(&req, &hint, None)
            }
            Ok(Step::Consent { req, session }) => {
                let authz = req.params.encode();
                let body = ConsentPage {
                    page: self.page(),
                    client_name: &req.client.name,
                    email: &session.email,
                    authz: &authz,
                    scopes: req.scopes.iter().map(|s| describe(s)).collect(),
                }
                .render();
                self.html(StatusCode::OK, body)
            }
            Ok(Step::Done(to)) => self.redirect(to),
            Err(e) => self.stopped(e),
        }
    }

    fn stopped(self, e: AuthorizeError) -> Response {
        match e {
            AuthorizeError::Page(why) => self.error(
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                &why,
            ),
            AuthorizeError::Redirect(to) => self.redirect(to),
            AuthorizeError::Failed(e) => self.failed(e),
        }
    }

    /// Whether the form's `csrf` field equals this browser's cookie (constant time).
    fn csrf_matches(&self, form: &Form) -> bool {
        let given = form.get("csrf");
        let same: bool =
            subtle::ConstantTimeEq::ct_eq(given.as_bytes(), self.csrf.as_bytes()).into();
        !given.is_empty() && same && self.set_cookies.is_empty()
    }

    fn form_expired(self) -> Response {
        self.error(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "The page was open too long or came from elsewhere. Go back to the application and start again.",
        )
    }

    fn start_session(&mut self, cookie: &SecretString) {
        let c = self
            .jar
            .set("session", cookie.expose(), self.jar.session_max_age);
        self.set_cookies.push(c);
    }
}

fn token_shaped(v: &str) -> bool {
    crate::app::sessions::token_shaped(v)
}

/// The fields of a posted form; the first value of a repeated name wins.
struct Form(HashMap<String, String>);

impl Form {
    fn parse(body: &Bytes) -> Self {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Self(map)
    }

    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }

    /// The fields again as `application/x-www-form-urlencoded`.
    fn encode(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            out.append_pair(k, v);
        }
        out.finish()
    }
}

async fn session_of(
    app: &SharedApp,
    cookies: &Cookies,
) -> Result<Option<BrowserSession>, AppError> {
    let jar = CookieJar::new(app);
    match cookies.get(&jar.name("session")) {
        Some(v) => app.browser_session(&SecretString::new(v.to_owned())).await,
        None => Ok(None),
    }
}

/// `GET /oauth2/authorize` (query) and `POST /oauth2/authorize` (form), OpenID Connect Core
/// §3.1.2.1.
#[utoipa::path(get, path = "/oauth2/authorize", tag = "oauth",
    params(
        ("client_id" = Option<String>, Query, description = "A registered client"),
        ("redirect_uri" = Option<String>, Query, description = "Exactly one of the client's registered redirect URIs"),
        ("response_type" = Option<String>, Query, description = "`code`"),
        ("scope" = Option<String>, Query, description = "`openid profile email offline_access`, space-separated"),
        ("state" = Option<String>, Query, description = "Echoed untouched"),
        ("nonce" = Option<String>, Query, description = "Echoed in the ID token"),
        ("code_challenge" = Option<String>, Query, description = "PKCE S256 challenge"),
        ("code_challenge_method" = Option<String>, Query, description = "`S256`"),
        ("prompt" = Option<String>, Query, description = "`none`, `login`, `consent`"),
        ("max_age" = Option<String>, Query, description = "Seconds since the last sign-in allowed"),
        ("login_hint" = Option<String>, Query, description = "Prefills the email"),
    ),
    responses(
        (status = 200, description = "The sign-in or consent page", content_type = "text/html", body = String),
        (status = 302, description = "Back to the client's redirect URI with `code` or `error`, `state` and `iss`"),
        (status = 400, description = "An error page: unknown client, or a redirect URI that is not registered (never a redirect)", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (an error page)", content_type = "text/html", body = String),
    ))]
pub async fn authorize_get(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    query: String,
) -> Response {
    authorize(app, client, cookie, query, false).await
}

/// `POST /oauth2/authorize`: the same request as a form.
#[utoipa::path(post, path = "/oauth2/authorize", tag = "oauth",
    request_body(content = AuthorizeForm, content_type = "application/x-www-form-urlencoded",
        description = "The parameters of `GET /oauth2/authorize`"),
    responses(
        (status = 200, description = "The sign-in or consent page", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client's redirect URI"),
        (status = 400, description = "An error page", content_type = "text/html", body = String),
        (status = 413, description = "An error page: the form is too large", content_type = "text/html", body = String),
        (status = 415, description = "An error page: not a form", content_type = "text/html", body = String),
    ))]
pub async fn authorize_post(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let cookies = Cookies::parse(cookie.as_deref());
    match form_of(&app, &cookies, body) {
        Ok(form) => authorize(app, client, cookie, form.encode(), true).await,
        Err(r) => r,
    }
}

async fn authorize(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    encoded: String,
    post: bool,
) -> Response {
    let cookies = Cookies::parse(cookie.as_deref());
    let reply = match Reply::new(&app, &cookies, post) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let req = match app
        .authorization_request(AuthorizeParams::parse(&encoded))
        .await
    {
        Ok(r) => r,
        Err(e) => return reply.stopped(e),
    };
    let session = match session_of(&app, &cookies).await {
        Ok(s) => s,
        Err(e) => return reply.failed(e),
    };
    reply.step(app.authorize(&client, req, session, false).await)
}

/// Checks the posted CSRF token against the cookie's, then validates the carried request.
async fn posted(
    app: &SharedApp,
    cookies: &Cookies,
    form: &Form,
) -> Result<(Reply, AuthRequest), Response> {
    let reply = Reply::new(app, cookies, true).map_err(ApiError::into_response)?;
    if !reply.csrf_matches(form) {
        return Err(reply.form_expired());
    }
    match app
        .authorization_request(AuthorizeParams::parse(form.get("authz")))
        .await
    {
        Ok(req) => Ok((reply, req)),
        Err(e) => Err(reply.stopped(e)),
    }
}

/// A posted form of a hosted page, read and checked: the form, its CSRF token matched with
/// the cookie's, and the authorization request it carries validated again.
struct Posted {
    cookies: Cookies,
    form: Form,
    reply: Reply,
    req: AuthRequest,
}

impl Posted {
    async fn read(
        app: &SharedApp,
        cookie: Option<String>,
        body: Result<Bytes, ApiError>,
    ) -> Result<Self, Response> {
        let cookies = Cookies::parse(cookie.as_deref());
        let form = form_of(app, &cookies, body)?;
        let (reply, req) = posted(app, &cookies, &form).await?;
        Ok(Self {
            cookies,
            form,
            reply,
            req,
        })
    }
}

/// Refuses a form body that is not `application/x-www-form-urlencoded`.
fn form_of(
    app: &SharedApp,
    cookies: &Cookies,
    body: Result<Bytes, ApiError>,
) -> Result<Form, Response> {
    match body {
        Ok(b) => Ok(Form::parse(&b)),
        Err(e) => {
            let (status, _, _) = e.parts();
            let reply = Reply::new(app, cookies, true).map_err(ApiError::into_response)?;
            Err(reply.error(
                status,
                "This form could not be read",
                "Send the form as the page does.",
            ))
        }
    }
}

/// `POST /oauth2/sign-in`: email and password.
#[utoipa::path(post, path = "/oauth2/sign-in", tag = "oauth",
    request_body(content = SignInForm, content_type = "application/x-www-form-urlencoded",
        description = "The sign-in page's form"),
    responses(
        (status = 200, description = "The next page (second factor, consent) or this one again with what was wrong", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client's redirect URI with `code` or `error`, `state` and `iss`"),
        (status = 400, description = "An error page: the carried request is no longer valid", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 413, description = "An error page: the form is too large", content_type = "text/html", body = String),
        (status = 415, description = "An error page: not a form", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (an error page)", content_type = "text/html", body = String),
    ))]
pub async fn sign_in(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let Posted {
        cookies: _,
        form,
        mut reply,
        req,
    } = match Posted::read(&app, cookie, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let typed = form.get("email").trim();
    let password = SecretString::new(form.get("password").to_owned());
    let Ok(email) = super::extract::email("email", typed) else {
        return reply.sign_in(&req, typed, Some("Enter a valid email address."));
    };
    if password.expose().is_empty() {
        return reply.sign_in(&req, &email, Some("Enter your password."));
    }
    let login = Login {
        email: email.clone(),
        password,
        org_id: None,
    };
    let metered = match app.sign_in(&client, login).await {
        Ok(m) => m,
        Err(e) => return reply.failed(e),
    };
    match metered.outcome {
        Ok(SignIn::Session { cookie, session }) => {
            reply.start_session(&cookie);
            reply.step(app.authorize(&client, req, Some(session), true).await)
        }
        Ok(SignIn::SecondFactor { mfa_token }) => reply.mfa(&req, mfa_token.expose(), None),
        Err(AppError::InvalidCredentials) => {
            reply.sign_in(&req, &email, Some("The email or password is incorrect."))
        }
        Err(e) => reply.failed(e),
    }
}

/// `POST /oauth2/sign-in/mfa`: the second factor.
#[utoipa::path(post, path = "/oauth2/sign-in/mfa", tag = "oauth",
    request_body(content = MfaForm, content_type = "application/x-www-form-urlencoded",
        description = "The second-factor page's form"),
    responses(
        (status = 200, description = "The next page (second factor, consent) or this one again with what was wrong", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client's redirect URI with `code` or `error`, `state` and `iss`"),
        (status = 400, description = "An error page: the carried request is no longer valid", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 413, description = "An error page: the form is too large", content_type = "text/html", body = String),
        (status = 415, description = "An error page: not a form", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (an error page)", content_type = "text/html", body = String),
    ))]
pub async fn sign_in_mfa(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let Posted {
        cookies: _,
        form,
        mut reply,
        req,
    } = match Posted::read(&app, cookie, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let token = form.get("mfa_token").to_owned();
    let code: String = form
        .get("code")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let metered = match app
        .sign_in_second_factor(
            &client,
            SecretString::new(token.clone()),
            SecretString::new(code),
        )
        .await
    {
        Ok(m) => m,
        Err(e) => return reply.failed(e),
    };
    match metered.outcome {
        Ok((cookie, session)) => {
            reply.start_session(&cookie);
            reply.step(app.authorize(&client, req, Some(session), true).await)
        }
        Err(AppError::InvalidMfaCode) => reply.mfa(
            &req,
            &token,
            Some("That code is not right. Try the current one."),
        ),
        Err(AppError::InvalidMfaToken) => reply.sign_in(
            &req,
            "",
            Some("The verification step expired. Sign in again."),
        ),
        Err(e) => reply.failed(e),
    }
}

/// `POST /oauth2/consent`: allow or deny.
#[utoipa::path(post, path = "/oauth2/consent", tag = "oauth",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded",
        description = "The consent page's form; needs the browser session cookie"),
    responses(
        (status = 200, description = "The next page (second factor, consent) or this one again with what was wrong", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client's redirect URI with `code` or `error`, `state` and `iss`"),
        (status = 400, description = "An error page: the carried request is no longer valid", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 413, description = "An error page: the form is too large", content_type = "text/html", body = String),
        (status = 415, description = "An error page: not a form", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (an error page)", content_type = "text/html", body = String),
    ))]
pub async fn consent(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let Posted {
        cookies,
        form,
        reply,
        req,
    } = match Posted::read(&app, cookie, body).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let session = match session_of(&app, &cookies).await {
        Ok(Some(s)) => s,
        Ok(None) => return reply.sign_in(&req, "", Some("Your session ended. Sign in again.")),
        Err(e) => return reply.failed(e),
    };
    let allow = match form.get("decision") {
        "allow" => true,
        "deny" => false,
        _ => {
            return reply.error(
                StatusCode::BAD_REQUEST,
                "This form could not be read",
                "Choose Allow or Deny.",
            )
        }
    };
    match app.consent(&client, req, session, allow).await {
        Ok(to) => reply.redirect(to),
        Err(e) => reply.stopped(e),
    }
}

/// `GET /oauth2/end-session` (RP-Initiated Logout 1.0).
#[utoipa::path(get, path = "/oauth2/end-session", tag = "oauth",
    params(
        ("id_token_hint" = Option<String>, Query, description = "An ID token this provider issued to the client (expired is fine)"),
        ("client_id" = Option<String>, Query, description = "The client, when no hint names it"),
        ("post_logout_redirect_uri" = Option<String>, Query, description = "One of the client's registered post-logout redirect URIs, exactly"),
        ("state" = Option<String>, Query, description = "Echoed to that URI"),
    ),
    responses(
        (status = 200, description = "The confirmation page (no hint, or another session in this browser) or the signed-out page", content_type = "text/html", body = String),
        (status = 302, description = "Signed out: to the post-logout redirect URI, with `state`"),
        (status = 400, description = "An error page: a hint this provider did not issue, or a post-logout URI not registered for the client (never a redirect)", content_type = "text/html", body = String),
    ))]
pub async fn end_session_get(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    query: String,
) -> Response {
    let cookies = Cookies::parse(cookie.as_deref());
    match Reply::new(&app, &cookies, false) {
        Ok(reply) => end_session(app, client, cookies, reply, &query, false).await,
        Err(e) => e.into_response(),
    }
}

/// `POST /oauth2/end-session`: the same request as a form, or the confirmation page's.
#[utoipa::path(post, path = "/oauth2/end-session", tag = "oauth",
    request_body(content = EndSessionForm, content_type = "application/x-www-form-urlencoded",
        description = "The parameters of `GET /oauth2/end-session`, or the confirmation page's form"),
    responses(
        (status = 200, description = "The confirmation page or the signed-out page", content_type = "text/html", body = String),
        (status = 303, description = "Signed out: to the post-logout redirect URI, with `state`"),
        (status = 400, description = "An error page: a bad hint or an unregistered post-logout URI", content_type = "text/html", body = String),
        (status = 403, description = "An error page: `confirm` without the CSRF token of its cookie", content_type = "text/html", body = String),
        (status = 413, description = "An error page: the form is too large", content_type = "text/html", body = String),
        (status = 415, description = "An error page: not a form", content_type = "text/html", body = String),
    ))]
pub async fn end_session_post(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let cookies = Cookies::parse(cookie.as_deref());
    let form = match form_of(&app, &cookies, body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let reply = match Reply::new(&app, &cookies, true) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    // The confirmation page's button; an application's own POST is a request like a GET.
    let confirmed = !form.get("confirm").is_empty();
    if confirmed && !reply.csrf_matches(&form) {
        return reply.form_expired();
    }
    end_session(app, client, cookies, reply, &form.encode(), confirmed).await
}

/// Runs an end-session request and renders its outcome.
async fn end_session(
    app: SharedApp,
    client: Client,
    cookies: Cookies,
    reply: Reply,
    encoded: &str,
    confirmed: bool,
) -> Response {
    let req = match app
        .rp_logout_request(EndSessionParams::parse(encoded))
        .await
    {
        Ok(r) => r,
        Err(EndSessionError::Invalid(why)) => {
            return reply.error(
                StatusCode::BAD_REQUEST,
                "This sign-out link is not valid",
                why,
            )
        }
        Err(EndSessionError::Failed(e)) => return reply.failed(e),
    };
    let session = match session_of(&app, &cookies).await {
        Ok(s) => s,
        Err(e) => return reply.failed(e),
    };
    match app.rp_logout(&client, req, session, confirmed).await {
        Ok(EndSession::Confirm(req)) => {
            let body = SignOutPage {
                page: reply.page(),
                client_name: req.client.as_ref().map(|c| c.name.as_str()),
                fields: req.params.pairs(),
            }
            .render();
            reply.html(StatusCode::OK, body)
        }
        Ok(EndSession::Done {
            clear_cookie,
            return_to,
            client_name,
        }) => {
            let mut reply = reply;
            if clear_cookie {
                let c = reply.jar.set("session", "", 0);
                reply.set_cookies.push(c);
            }
            match return_to {
                Some(to) => reply.redirect(Redirect(to)),
                None => {
                    let body = SignedOutPage {
                        page: reply.page(),
                        client_name: client_name.as_deref(),
                    }
                    .render();
                    reply.html(StatusCode::OK, body)
                }
            }
        }
        Err(e) => reply.failed(e),
    }
}

/// `GET /assets/edge-idp.css`.
#[utoipa::path(get, path = "/assets/edge-idp.css", tag = "oauth",
    responses((status = 200, description = "The hosted pages' stylesheet", content_type = "text/css", body = String)))]
pub async fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

/// `GET /assets/favicon.svg`.
#[utoipa::path(get, path = "/assets/favicon.svg", tag = "oauth",
    responses((status = 200, description = "The hosted pages' icon", content_type = "image/svg+xml", body = String)))]
pub async fn favicon() -> Response {
    asset(FAVICON, "image/svg+xml")
}

/// A static file of the pages, cacheable for an hour.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = warp::http::Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}
