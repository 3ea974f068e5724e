//! Passkeys on the hosted pages: signing in with one (usernameless on the sign-in page, or as
//! the second factor on its page), and the account page that lists, adds, renames and deletes
//! them for the browser session's user.
//!
//! The WebAuthn calls need the browser's JavaScript API, so these are the only pages with a
//! script (`/assets/passkeys.js`, same origin, no inline code): it fetches a ceremony's options
//! (`/auth/passkeys/login/begin`, or `/account/passkeys/begin` for a new passkey), runs the
//! ceremony, and posts the credential in an ordinary form, which these handlers answer with a
//! page or a redirect as every other form. Without the script the passkey forms stay hidden
//! and the password and code forms work as before.

// See the parent module: an early `Response` is returned once per request.
#![allow(clippy::result_large_err)]

use super::authorize::Posted;
use super::{asset, form_of, session_of, Cookies, Form, Page, Reply};
use crate::app::passkeys::{Owner, MAX_NAME_CHARS};
use crate::app::{AppError, Client, PasskeyRow, SharedApp};
use crate::db::BrowserSession;
use crate::http::error::ApiError;
use crate::http::passkeys::CeremonyOptions;
use crate::http::reply::{metered, private_json, rfc3339};
use askama::Template;
use bytes::Bytes;
use edge_idp_actors::SecretString;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

/// The pages' passkey script, served at `/assets/passkeys.js`.
const SCRIPT: &str = include_str!("../../../assets/passkeys.js");

/// A passkey as the account page lists it.
struct Listed {
    id: String,
    name: String,
    created: String,
    last_used: Option<String>,
    synced: bool,
}

impl From<PasskeyRow> for Listed {
    fn from(p: PasskeyRow) -> Self {
        let day = |t: i64| rfc3339(t).get(..10).unwrap_or_default().to_owned();
        Self {
            id: p.id.to_string(),
            name: p.name,
            created: day(p.created_at),
            last_used: p.last_used_at.map(day),
            synced: p.backup_eligible,
        }
    }
}

#[derive(Template)]
#[template(path = "passkeys.html")]
struct AccountPage<'a> {
    page: Page<'a>,
    email: &'a str,
    passkeys: Vec<Listed>,
    error: Option<&'a str>,
}

/// The passkey sign-in form, as documented (filled by the page's script).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct PasskeySignInForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// The authorization request.
    authz: String,
    /// From `/auth/passkeys/login/begin`.
    ceremony_id: String,
    /// `PublicKeyCredential.toJSON()` of the assertion, as JSON text.
    credential: String,
}

/// The form that adds a passkey on the account page.
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct AddPasskeyForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// From `/account/passkeys/begin`.
    ceremony_id: String,
    /// `PublicKeyCredential.toJSON()` of the new credential, as JSON text.
    credential: String,
    /// A name for it.
    name: Option<String>,
}

/// A form that carries only its CSRF token (begin, delete) or a name (rename).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct AccountForm {
    /// Equal to the `csrf` cookie.
    csrf: String,
    /// Rename only: the new name.
    name: Option<String>,
}

/// `POST /oauth2/sign-in/passkey`: a passkey on the sign-in or second-factor page.
#[utoipa::path(post, path = "/oauth2/sign-in/passkey", tag = "oauth",
    request_body(content = PasskeySignInForm, content_type = "application/x-www-form-urlencoded",
        description = "The passkey form of the sign-in or second-factor page"),
    responses(
        (status = 200, description = "The next page (consent) or the sign-in page again with what was wrong", content_type = "text/html", body = String),
        (status = 303, description = "Back to the client's redirect URI with `code` or `error`, `state` and `iss`"),
        (status = 400, description = "An error page: the carried request is no longer valid", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (an error page)", content_type = "text/html", body = String),
    ))]
pub async fn sign_in_passkey(
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
    let Ok(credential) = serde_json::from_str(form.get("credential")) else {
        return reply.sign_in(
            &req,
            "",
            Some("The passkey's answer could not be read. Try again."),
        );
    };
    let ceremony_id = SecretString::new(form.get("ceremony_id").to_owned());
    let metered = match app.sign_in_passkey(&client, ceremony_id, credential).await {
        Ok(m) => m,
        Err(e) => return reply.failed(e),
    };
    match metered.outcome {
        Ok((cookie, session)) => {
            reply.start_session(&cookie);
            reply.step(app.authorize(&client, req, Some(session), true).await)
        }
        Err(AppError::InvalidPasskey) => reply.sign_in(
            &req,
            "",
            Some("That passkey was not accepted. Try again, or sign in with your password."),
        ),
        Err(AppError::NotFound) => {
            reply.sign_in(&req, "", Some("The passkey request expired. Try again."))
        }
        Err(AppError::InvalidMfaToken) => reply.sign_in(
            &req,
            "",
            Some("The verification step expired. Sign in again."),
        ),
        Err(AppError::EmailNotVerified) => reply.sign_in(
            &req,
            "",
            Some(
                "Verify your email address first: open the link we sent to it, then sign in again.",
            ),
        ),
        Err(e) => reply.failed(e),
    }
}

/// The browser session of an account page's request, or the page that says to sign in.
async fn signed_in(
    app: &SharedApp,
    cookies: &Cookies,
    post: bool,
) -> Result<(Reply, BrowserSession), Response> {
    let reply = Reply::new(app, cookies, post).map_err(ApiError::into_response)?;
    match session_of(app, cookies).await {
        Ok(Some(s)) => Ok((reply, s)),
        Ok(None) => Err(reply.error(
            StatusCode::UNAUTHORIZED,
            "Sign in first",
            "This page manages the passkeys of the account signed in here. Sign in to an application through this provider, then come back.",
        )),
        Err(e) => Err(reply.failed(e)),
    }
}

/// A posted account form: the session, its CSRF token checked.
async fn account_form(
    app: &SharedApp,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Result<(Reply, BrowserSession, Form), Response> {
    let cookies = Cookies::parse(cookie.as_deref());
    let form = form_of(app, &cookies, body)?;
    let (reply, session) = signed_in(app, &cookies, true).await?;
    if !reply.csrf_matches(&form) {
        return Err(reply.form_expired());
    }
    Ok((reply, session, form))
}

fn owner<'a>(s: &'a BrowserSession, client: &'a Client) -> Owner<'a> {
    Owner {
        user_id: s.user_id,
        email: &s.email,
        auth_time: s.auth_time,
        client,
    }
}

impl Reply {
    async fn account(
        self,
        session: &BrowserSession,
        client: &Client,
        error: Option<&str>,
    ) -> Response {
        let passkeys = match self.app.passkeys(&owner(session, client)).await {
            Ok(p) => p,
            Err(e) => return self.failed(e),
        };
        let body = AccountPage {
            page: self.page(),
            email: &session.email,
            passkeys: passkeys.into_iter().map(Listed::from).collect(),
            error,
        }
        .render();
        // As the other forms: the page again, saying what was wrong.
        self.html(StatusCode::OK, body)
    }

    /// Back to the account page after a change (303, so a reload does not post again).
    fn back_to_account(self) -> Response {
        let mut resp = warp::http::Response::new(Default::default());
        *resp.status_mut() = StatusCode::SEE_OTHER;
        resp.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_static("/account/passkeys"),
        );
        self.finish(resp)
    }

    /// The account page with what went wrong, or the failure page.
    async fn account_failed(
        self,
        session: &BrowserSession,
        client: &Client,
        e: AppError,
    ) -> Response {
        let message = match e {
            AppError::StepUpRequired(_) => {
                "For your security, sign in again (through your application) before changing your passkeys."
            }
            AppError::InvalidPasskey => "The new passkey was not accepted. Try again.",
            AppError::PasskeyExists => "That passkey is registered already.",
            AppError::NotFound => "That passkey or request no longer exists. Try again.",
            e => return self.failed(e),
        };
        self.account(session, client, Some(message)).await
    }
}

/// `GET /account/passkeys`: the signed-in user's passkeys.
#[utoipa::path(get, path = "/account/passkeys", tag = "oauth",
    responses(
        (status = 200, description = "The account's passkeys, with forms to add, rename and delete them", content_type = "text/html", body = String),
        (status = 401, description = "An error page: no browser session (sign in through an application first)", content_type = "text/html", body = String),
    ))]
pub async fn account_get(app: SharedApp, client: Client, cookie: Option<String>) -> Response {
    let cookies = Cookies::parse(cookie.as_deref());
    match signed_in(&app, &cookies, false).await {
        Ok((reply, session)) => reply.account(&session, &client, None).await,
        Err(r) => r,
    }
}

/// `POST /account/passkeys/begin`: creation options for a new passkey (JSON, for the page's
/// script).
#[utoipa::path(post, path = "/account/passkeys/begin", tag = "passkeys",
    request_body(content = AccountForm, content_type = "application/x-www-form-urlencoded",
        description = "The CSRF token"),
    responses(
        (status = 200, description = "`{ceremony_id, publicKey}`, as `/auth/passkeys/register/begin` answers", body = CeremonyOptions),
        (status = 401, description = "`invalid_token`: no browser session; `insufficient_user_authentication`: the sign-in is older than `STEP_UP_MAX_AGE_SECS`", body = crate::http::error::Problem),
        (status = 403, description = "`forbidden`: the CSRF token is missing or does not match its cookie", body = crate::http::error::Problem),
        (status = 404, description = "`not_found`: passkeys are off", body = crate::http::error::Problem),
        (status = 415, description = "`unsupported_media_type`: not a form", body = crate::http::error::Problem),
        (status = 429, description = "`rate_limited`", body = crate::http::error::Problem),
    ))]
pub async fn account_begin(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let cookies = Cookies::parse(cookie.as_deref());
    let form = match body {
        Ok(b) => Form::parse(&b),
        Err(e) => return e.into_response(),
    };
    let reply = match Reply::new(&app, &cookies, true) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if !reply.csrf_matches(&form) {
        return ApiError::Forbidden.into_response();
    }
    let session = match session_of(&app, &cookies).await {
        Ok(Some(s)) => s,
        Ok(None) => return ApiError::InvalidToken.into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    match app.passkey_register_begin(&owner(&session, &client)).await {
        Ok(m) => metered(m, |b| private_json(&CeremonyOptions::from(&b))),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /account/passkeys`: stores the passkey the page's script created.
#[utoipa::path(post, path = "/account/passkeys", tag = "oauth",
    request_body(content = AddPasskeyForm, content_type = "application/x-www-form-urlencoded",
        description = "The add-a-passkey form, filled by the page's script"),
    responses(
        (status = 303, description = "Added: back to `/account/passkeys`"),
        (status = 200, description = "The account page again with what was wrong", content_type = "text/html", body = String),
        (status = 401, description = "An error page: no browser session", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
        (status = 429, description = "Too many attempts (an error page)", content_type = "text/html", body = String),
    ))]
pub async fn account_add(
    app: SharedApp,
    client: Client,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let (reply, session, form) = match account_form(&app, cookie, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(credential) = serde_json::from_str(form.get("credential")) else {
        return reply
            .account(
                &session,
                &client,
                Some("The new passkey could not be read. Try again."),
            )
            .await;
    };
    let name = match form.get("name").trim() {
        "" => None,
        n if n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) => {
            return reply
                .account(&session, &client, Some("A name has at most 64 characters."))
                .await
        }
        n => Some(n.to_owned()),
    };
    let ceremony_id = SecretString::new(form.get("ceremony_id").to_owned());
    let added = app
        .passkey_register_finish(&owner(&session, &client), ceremony_id, credential, name)
        .await;
    match added.map(|m| m.outcome) {
        Ok(Ok(_)) => reply.back_to_account(),
        Ok(Err(e)) | Err(e) => reply.account_failed(&session, &client, e).await,
    }
}

/// `POST /account/passkeys/{id}/rename`.
#[utoipa::path(post, path = "/account/passkeys/{id}/rename", tag = "oauth",
    params(("id" = String, Path, description = "The passkey")),
    request_body(content = AccountForm, content_type = "application/x-www-form-urlencoded",
        description = "The CSRF token and the new name"),
    responses(
        (status = 303, description = "Renamed: back to `/account/passkeys`"),
        (status = 200, description = "The account page again with what was wrong", content_type = "text/html", body = String),
        (status = 401, description = "An error page: no browser session", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
    ))]
pub async fn account_rename(
    app: SharedApp,
    client: Client,
    id: String,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let (reply, session, form) = match account_form(&app, cookie, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = match crate::http::extract::text("name", Some(form.get("name")), MAX_NAME_CHARS) {
        Ok(Some(n)) => n,
        _ => {
            return reply
                .account(&session, &client, Some("A name has 1 to 64 characters."))
                .await
        }
    };
    match app
        .rename_passkey(&owner(&session, &client), &id, name)
        .await
    {
        Ok(_) => reply.back_to_account(),
        Err(e) => reply.account_failed(&session, &client, e).await,
    }
}

/// `POST /account/passkeys/{id}/delete`.
#[utoipa::path(post, path = "/account/passkeys/{id}/delete", tag = "oauth",
    params(("id" = String, Path, description = "The passkey")),
    request_body(content = AccountForm, content_type = "application/x-www-form-urlencoded",
        description = "The CSRF token"),
    responses(
        (status = 303, description = "Deleted: back to `/account/passkeys`"),
        (status = 200, description = "The account page again with what was wrong (a sign-in older than `STEP_UP_MAX_AGE_SECS`, an unknown passkey)", content_type = "text/html", body = String),
        (status = 401, description = "An error page: no browser session", content_type = "text/html", body = String),
        (status = 403, description = "An error page: the CSRF token is missing or does not match its cookie", content_type = "text/html", body = String),
    ))]
pub async fn account_delete(
    app: SharedApp,
    client: Client,
    id: String,
    cookie: Option<String>,
    body: Result<Bytes, ApiError>,
) -> Response {
    let (reply, session, _) = match account_form(&app, cookie, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match app.delete_passkey(&owner(&session, &client), &id).await {
        Ok(()) => reply.back_to_account(),
        Err(e) => reply.account_failed(&session, &client, e).await,
    }
}

/// `GET /assets/passkeys.js`.
#[utoipa::path(get, path = "/assets/passkeys.js", tag = "oauth",
    responses((status = 200, description = "The hosted pages' passkey script", content_type = "text/javascript", body = String)))]
pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}
