//! The hosted pages: the authorization endpoint and the sign-in, second-factor and consent
//! forms a browser fills in on the way back to an application ([`authorize`]), and the
//! sign-out an application sends it to ([`end_session`]); the pages mailed links open
//! ([`email`]). This module holds what every page
//! shares: cookies, the CSRF check, rendering, the error page and the static assets.
//!
//! Server-rendered HTML (askama templates under `templates/`, escaped by default), one
//! stylesheet; one script, only where a passkey is offered ([`passkeys`]: WebAuthn has no
//! form of its own). Each handler parses the form, calls one function of
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

mod authorize;
mod email;
mod end_session;
mod passkeys;

pub use authorize::*;
pub use email::*;
pub use end_session::*;
pub use passkeys::*;

use super::error::ApiError;
use crate::app::oauth::authorize::Redirect;
use crate::app::{AppError, SharedApp};
use crate::db::BrowserSession;
use askama::Template;
use bytes::Bytes;
use edge_idp_actors::crypto::{b64url, random_bytes};
use edge_idp_actors::SecretString;
use std::collections::HashMap;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

/// The Content-Security-Policy of every page: the stylesheet, the icon and the passkey script
/// of this origin, which may fetch a ceremony's options from this origin; nothing inline.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The stylesheet, served at `/assets/edge-idp.css`.
const STYLESHEET: &str = include_str!("../../../assets/edge-idp.css");

/// The icon, served at `/assets/favicon.svg` (without it browsers ask for `/favicon.ico`).
const FAVICON: &str = include_str!("../../../assets/favicon.svg");

/// What every page shows: the product name and the form's CSRF token.
struct Page<'a> {
    product: &'a str,
    csrf: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    page: Page<'a>,
    title: &'a str,
    message: &'a str,
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
