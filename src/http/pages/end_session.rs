//! The end-session endpoint (RP-Initiated Logout 1.0): the confirmation page, the sign-out,
//! and the signed-out page or the way back to the application.

use super::{form_of, session_of, Cookies, Page, Reply};
use crate::app::oauth::authorize::Redirect;
use crate::app::oauth::logout::{EndSession, EndSessionError, EndSessionParams};
use crate::app::{Client, SharedApp};
use crate::http::error::ApiError;
use askama::Template;
use bytes::Bytes;
use warp::http::StatusCode;
use warp::reply::Response;

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
