//! The pages mailed links open, and the forgotten-password form: `/email/verify`,
//! `/password/forgot`, `/password/reset`. They call the flows of `app::email`, as the JSON
//! endpoints do.
//!
//! Opening a link never uses it: the page shows a button (verification) or a form (reset) that
//! posts the token with the CSRF token. Mail scanners and link previews fetch links, and a
//! link used by its first fetch would be spent before its person clicks it.

// See the parent module: an early `Response` is returned once per request.
#![allow(clippy::result_large_err)]

use super::{form_of, Cookies, Page, Reply};
use crate::app::{AppError, Client, SharedApp};
use crate::http::error::ApiError;
use crate::http::extract;
use askama::Template;
use bytes::Bytes;
use edge_idp_actors::SecretString;
use warp::http::StatusCode;
use warp::reply::Response;

#[derive(Template)]
#[template(path = "email_verify.html")]
struct VerifyPage<'a> {
    page: Page<'a>,
    token: &'a str,
    /// The address, once verified.
    done: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "password_forgot.html")]
struct ForgotPage<'a> {
    page: Page<'a>,
    email: &'a str,
    error: Option<&'a str>,
    sent: bool,
}

#[derive(Template)]
#[template(path = "password_reset.html")]
struct ResetPage<'a> {
    page: Page<'a>,
    token: &'a str,
    error: Option<&'a str>,
    done: bool,
}

/// The form of `POST /email/verify`.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct VerifyEmailForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// The link's token.
    token: String,
}

/// The form of `POST /password/forgot`.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ForgotPasswordForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// The account's address.
    email: String,
}

/// The form of `POST /password/reset`.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ResetPasswordForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// The link's token.
    token: String,
    /// The new password.
    new_password: String,
    /// The same again.
    confirm_password: String,
}

/// The `token` of a query string (or empty).
fn token_of(query: &str) -> String {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl Reply {
    fn invalid_link(self, what: &str) -> Response {
        self.error(
            StatusCode::BAD_REQUEST,
            "This link does not work",
            &format!("{what} links work once and expire. Ask for a new one."),
        )
    }

    fn verify_page(self, token: &str, done: Option<&str>) -> Response {
        let body = VerifyPage {
            page: self.page(),
            token,
            done,
        }
        .render();
        self.html(StatusCode::OK, body)
    }

    fn forgot_page(
        self,
        status: StatusCode,
        email: &str,
        error: Option<&str>,
        sent: bool,
    ) -> Response {
        let body = ForgotPage {
            page: self.page(),
            email,
            error,
            sent,
        }
        .render();
        self.html(status, body)
    }

    fn reset_page(
        self,
        status: StatusCode,
        token: &str,
        error: Option<&str>,
        done: bool,
    ) -> Response {
        let body = ResetPage {
            page: self.page(),
            token,
            error,
            done,
        }
        .render();
        self.html(status, body)
    }
}

/// A posted form whose CSRF token matches its cookie, and the page's reply.
fn checked_form(
    app: &SharedApp,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Result<(Reply, super::Form), Response> {
    let cookies = Cookies::parse(cookie.as_deref());
    let form = form_of(app, &cookies, body)?;
    let reply = Reply::new(app, &cookies, true).map_err(ApiError::into_response)?;
    if !reply.csrf_matches(&form) {
        return Err(reply.form_expired());
    }
    Ok((reply, form))
}

/// `GET /email/verify?token=…`: the page of the verification link.
#[utoipa::path(get, path = "/email/verify", tag = "oauth",
    params(("token" = String, Query, description = "The link's token")),
    responses(
        (status = 200, description = "A page with one button that verifies the address (opening the link does not use it)", content_type = "text/html", body = String),
        (status = 400, description = "An error page: the link has no token", content_type = "text/html", body = String),
    ))]
pub async fn verify_get(app: SharedApp, cookie: Option<String>, query: String) -> Response {
    let cookies = Cookies::parse(cookie.as_deref());
    let reply = match Reply::new(&app, &cookies, false) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let token = token_of(&query);
    if token.is_empty() {
        return reply.invalid_link("Verification");
    }
    reply.verify_page(&token, None)
}

/// `POST /email/verify`: verifies the address.
#[utoipa::path(post, path = "/email/verify", tag = "oauth",
    request_body(content = VerifyEmailForm, content_type = "application/x-www-form-urlencoded",
        description = "The CSRF token and the link's token"),
    responses(
        (status = 200, description = "The address is verified", content_type = "text/html", body = String),
        (status = 400, description = "An error page: the link is unknown, expired, used, or for an address the account no longer has", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 409, description = "An error page: an email-change link whose address another account took meanwhile", content_type = "text/html", body = String),
        (status = 429, description = "An error page: too many attempts from here (`RATE_LIMIT_LOGIN` per IP)", content_type = "text/html", body = String),
    ))]
pub async fn verify_post(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let (reply, form) = match checked_form(&app, cookie, body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let token = SecretString::new(form.get("token").to_owned());
    match app.verify_email(&client, &token).await {
        Ok(v) => reply.verify_page("", Some(&v.email)),
        Err(AppError::InvalidEmailToken) => reply.invalid_link("Verification"),
        Err(AppError::EmailTaken) => reply.error(
            StatusCode::CONFLICT,
            "This address is taken",
            "Another account uses this address now, so yours was not changed. Choose another address.",
        ),
        Err(e) => reply.failed(e),
    }
}

/// `GET /password/forgot`: the form that asks for a reset link.
#[utoipa::path(get, path = "/password/forgot", tag = "oauth",
    responses((status = 200, description = "The form", content_type = "text/html", body = String)))]
pub async fn forgot_get(app: SharedApp, cookie: Option<String>) -> Response {
    let cookies = Cookies::parse(cookie.as_deref());
    match Reply::new(&app, &cookies, false) {
        Ok(r) => r.forgot_page(StatusCode::OK, "", None, false),
        Err(e) => e.into_response(),
    }
}

/// `POST /password/forgot`: mails a reset link if an account has the address; the page says
/// the same either way.
#[utoipa::path(post, path = "/password/forgot", tag = "oauth",
    request_body(content = ForgotPasswordForm, content_type = "application/x-www-form-urlencoded",
        description = "The CSRF token and the address"),
    responses(
        (status = 200, description = "\"Check your mail\", the same for every address; or the form again with what was wrong", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 429, description = "An error page: too many requests from here or for this address", content_type = "text/html", body = String),
    ))]
pub async fn forgot_post(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let (reply, form) = match checked_form(&app, cookie, body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let raw = form.get("email");
    let Ok(email) = extract::email("email", raw) else {
        return reply.forgot_page(
            StatusCode::OK,
            raw,
            Some("Enter the email address of your account."),
            false,
        );
    };
    match app.forgot_password(&client, email).await {
        Ok(_) => reply.forgot_page(StatusCode::OK, "", None, true),
        Err(e) => reply.failed(e),
    }
}

/// `GET /password/reset?token=…`: the page of the reset link.
#[utoipa::path(get, path = "/password/reset", tag = "oauth",
    params(("token" = String, Query, description = "The link's token")),
    responses(
        (status = 200, description = "The new-password form (opening the link does not use it)", content_type = "text/html", body = String),
        (status = 400, description = "An error page: the link is unknown, expired or used", content_type = "text/html", body = String),
        (status = 429, description = "An error page: too many attempts from here (`RATE_LIMIT_LOGIN` per IP)", content_type = "text/html", body = String),
    ))]
pub async fn reset_get(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    query: String,
) -> Response {
    let cookies = Cookies::parse(cookie.as_deref());
    let reply = match Reply::new(&app, &cookies, false) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let token = token_of(&query);
    match app
        .reset_link_live(&client, &SecretString::new(token.clone()))
        .await
    {
        Ok(true) => reply.reset_page(StatusCode::OK, &token, None, false),
        Ok(false) => reply.invalid_link("Password reset"),
        Err(e) => reply.failed(e),
    }
}

/// `POST /password/reset`: sets the new password.
#[utoipa::path(post, path = "/password/reset", tag = "oauth",
    request_body(content = ResetPasswordForm, content_type = "application/x-www-form-urlencoded",
        description = "The CSRF token, the link's token and the new password twice"),
    responses(
        (status = 200, description = "Changed (every session ended); or the form again with what was wrong (the link still works)", content_type = "text/html", body = String),
        (status = 400, description = "An error page: the link is unknown, expired or used", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 429, description = "An error page: too many attempts from here (`RATE_LIMIT_LOGIN` per IP)", content_type = "text/html", body = String),
    ))]
pub async fn reset_post(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let (reply, form) = match checked_form(&app, cookie, body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let token = form.get("token").to_owned();
    let password = form.get("new_password");
    if password != form.get("confirm_password") {
        return reply.reset_page(
            StatusCode::OK,
            &token,
            Some("The two passwords differ. Type the same password twice."),
            false,
        );
    }
    if password.contains('\0') {
        return reply.reset_page(
            StatusCode::OK,
            &token,
            Some("That password cannot be used."),
            false,
        );
    }
    let new_password = SecretString::new(password.to_owned());
    match app
        .reset_password(&client, &SecretString::new(token.clone()), new_password)
        .await
    {
        Ok(()) => reply.reset_page(StatusCode::OK, "", None, true),
        Err(AppError::InvalidEmailToken) => reply.invalid_link("Password reset"),
        Err(AppError::WeakPassword(why)) => {
            let message = format!("Choose another password: {why}.");
            reply.reset_page(StatusCode::OK, &token, Some(&message), false)
        }
        Err(e) => reply.failed(e),
    }
}
