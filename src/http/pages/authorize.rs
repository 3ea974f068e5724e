//! The authorization endpoint and the pages of a sign-in: password, second factor, consent.
//! Each handler validates the carried request again, calls one function of `app::oauth`, and
//! renders the step it answers.

// See the parent module: an early `Response` is returned once per request.
#![allow(clippy::result_large_err)]

use super::{form_of, session_of, Cookies, Form, Page, Reply};
use crate::app::login::Login;
use crate::app::oauth::authorize::{AuthRequest, AuthorizeError, AuthorizeParams, Step};
use crate::app::oauth::browser::{SignIn, SignedUp};
use crate::app::{AppError, Client, SharedApp};
use crate::http::error::ApiError;
use askama::Template;
use bytes::Bytes;
use edge_idp_actors::SecretString;
use warp::http::StatusCode;
use warp::reply::Response;

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage<'a> {
    page: Page<'a>,
    client_name: &'a str,
    authz: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    /// Passkeys are on: the page offers one (it then loads the passkey script).
    passkeys: bool,
}

#[derive(Template)]
#[template(path = "sign_up.html")]
struct SignUpPage<'a> {
    page: Page<'a>,
    client_name: &'a str,
    authz: &'a str,
    email: &'a str,
    name: &'a str,
    error: Option<&'a str>,
    /// Signed up; the address must be verified before signing in.
    verify_first: Option<&'a str>,
}

/// The sign-up page's form.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct SignUpForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// The authorization request.
    authz: String,
    /// `form` (show the page, from the sign-in page's link) or `create`.
    step: String,
    /// With `create`.
    email: Option<String>,
    /// With `create`.
    password: Option<String>,
    /// With `create`, optional.
    name: Option<String>,
}

#[derive(Template)]
#[template(path = "mfa.html")]
struct MfaPage<'a> {
    page: Page<'a>,
    authz: &'a str,
    mfa_token: &'a str,
    error: Option<&'a str>,
    /// The account has a passkey: the page offers it beside the code.
    passkey: bool,
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

impl Reply {
    pub(super) fn sign_in(self, req: &AuthRequest, email: &str, error: Option<&str>) -> Response {
        let authz = req.params.encode();
        let body = SignInPage {
            page: self.page(),
            client_name: &req.client.name,
            authz: &authz,
            email,
            error,
            passkeys: self.app.passkeys_enabled(),
        }
        .render();
        self.html(StatusCode::OK, body)
    }

    fn sign_up(
        self,
        req: &AuthRequest,
        email: &str,
        name: &str,
        error: Option<&str>,
        verify_first: Option<&str>,
    ) -> Response {
        let authz = req.params.encode();
        let body = SignUpPage {
            page: self.page(),
            client_name: &req.client.name,
            authz: &authz,
            email,
            name,
            error,
            verify_first,
        }
        .render();
        self.html(StatusCode::OK, body)
    }

    fn mfa(
        self,
        req: &AuthRequest,
        mfa_token: &str,
        passkey: bool,
        error: Option<&str>,
    ) -> Response {
        let authz = req.params.encode();
        let body = MfaPage {
            page: self.page(),
            authz: &authz,
            mfa_token,
            error,
            passkey,
        }
        .render();
        self.html(StatusCode::OK, body)
    }

    /// Renders what an authorization step answered.
    pub(super) fn step(self, step: Result<Step, AuthorizeError>) -> Response {
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
pub(super) struct Posted {
    pub(super) cookies: Cookies,
    pub(super) form: Form,
    pub(super) reply: Reply,
    pub(super) req: AuthRequest,
}

impl Posted {
    pub(super) async fn read(
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

/// `POST /oauth2/sign-in`: email and password.
#[utoipa::path(post, path = "/oauth2/sign-in", tag = "oauth",
    request_body(content = SignInForm, content_type = "application/x-www-form-urlencoded",
        description = "The sign-in page's form"),
    responses(
        (status = 200, description = "The next page (second factor, consent) or this one again with what was wrong", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client's redirect URI with `code` or `error`, `state` and `iss`"),
        (status = 400, description = "An error page: the carried request is no longer valid", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
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
    let Ok(email) = crate::http::extract::email("email", typed) else {
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
        Ok(SignIn::SecondFactor { mfa_token, passkey }) => {
            reply.mfa(&req, mfa_token.expose(), passkey, None)
        }
        Err(AppError::InvalidCredentials) => {
            reply.sign_in(&req, &email, Some("The email or password is incorrect."))
        }
        Err(AppError::EmailNotVerified) => reply.sign_in(
            &req,
            &email,
            Some(
                "Verify your email address first: open the link we sent to it, then sign in again.",
            ),
        ),
        Err(e) => reply.failed(e),
    }
}

/// `POST /oauth2/sign-up`: the sign-up page (`step=form`, from the sign-in page) and the new
/// account (`step=create`): as `/auth/signup` makes it, verification mail included; then
/// signed in and on to the application, or, with `REQUIRE_VERIFIED_EMAIL`, a page that asks
/// to open the mailed link first.
#[utoipa::path(post, path = "/oauth2/sign-up", tag = "oauth",
    request_body(content = SignUpForm, content_type = "application/x-www-form-urlencoded",
        description = "The sign-up page's form"),
    responses(
        (status = 200, description = "The sign-up page (again, with what was wrong), the next page (consent), or \"check your email\"", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client's redirect URI with `code`, `state` and `iss`"),
        (status = 400, description = "An error page: the carried request is no longer valid", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 429, description = "Too many sign-ups from here (an error page)", content_type = "text/html", body = String),
    ))]
pub async fn sign_up(
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
    if form.get("step") != "create" {
        return reply.sign_up(&req, "", "", None, None);
    }
    let (typed, name) = (form.get("email").trim(), form.get("name").trim());
    let Ok(email) = crate::http::extract::email("email", typed) else {
        return reply.sign_up(
            &req,
            typed,
            name,
            Some("Enter a valid email address."),
            None,
        );
    };
    let Ok(name) = crate::http::extract::text("name", (!name.is_empty()).then_some(name), 100)
    else {
        return reply.sign_up(
            &req,
            typed,
            name,
            Some("A name has at most 100 characters."),
            None,
        );
    };
    let password = form.get("password");
    if password.contains('\0') {
        return reply.sign_up(&req, typed, "", Some("That password cannot be used."), None);
    }
    let shown_name = name.clone().unwrap_or_default();
    let signup = crate::app::signup::Signup {
        email: email.clone(),
        password: SecretString::new(password.to_owned()),
        name,
        org_name: None,
    };
    let metered = match app.sign_up(&client, signup).await {
        Ok(m) => m,
        Err(AppError::WeakPassword(why)) => {
            let message = format!("Choose another password: {why}.");
            return reply.sign_up(&req, &email, &shown_name, Some(&message), None);
        }
        Err(e) => return reply.failed(e),
    };
    match metered.outcome {
        Ok(SignedUp::Session { cookie, session }) => {
            reply.start_session(&cookie);
            reply.step(app.authorize(&client, req, Some(session), true).await)
        }
        Ok(SignedUp::VerifyFirst { email }) => {
            reply.sign_up(&req, &email, "", None, Some(&email))
        }
        Err(AppError::EmailTaken) => reply.sign_up(
            &req,
            &email,
            &shown_name,
            Some("An account with this address exists already: sign in instead, or reset its password."),
            None,
        ),
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
            form.get("passkey") == "1",
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
