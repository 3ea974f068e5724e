//! RP-Initiated Logout 1.0: an application sends the browser to the end-session endpoint, the
//! browser session ends with every session (refresh-token family) it started, and the browser
//! goes back to the application or sees the signed-out page.
//!
//! Who may end what, and when the user is asked first:
//! - An `id_token_hint` must be an ID token this provider signed (expired is fine, §2); a
//!   forged or foreign one is an error page. Valid, it names the user's browser session (`sid`),
//!   which ends without a question when this browser holds it or holds none (the application
//!   asked for its own user's session).
//! - Without a hint, or when this browser is signed in to another session, the user confirms
//!   on a page with a CSRF-protected form: a link elsewhere cannot sign anyone out.
//! - `post_logout_redirect_uri` must equal one registered for the client (from the hint's
//!   `aud` or `client_id`, which must agree); otherwise an error page, never a redirect, so the
//!   endpoint is no open redirector. `state` is echoed.

use crate::app::{App, AppError, Client};
use crate::db::{BrowserSession, ClientRecord};
use crate::ops::audit::AuditEvent;
use uuid::Uuid;

/// The parameters of an end-session request this provider reads (§2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndSessionParams {
    /// An ID token this provider issued to the client.
    pub id_token_hint: Option<String>,
    /// The client, when no hint names it.
    pub client_id: Option<String>,
    /// Where to send the browser afterwards: one of the client's registered URIs.
    pub post_logout_redirect_uri: Option<String>,
    /// Echoed to that URI.
    pub state: Option<String>,
}

impl EndSessionParams {
    /// Reads `application/x-www-form-urlencoded` pairs (a query or a form); empty values count
    /// as absent, the first of a repeated name wins.
    pub fn parse(encoded: &str) -> Self {
        let mut p = Self::default();
        for (k, v) in url::form_urlencoded::parse(encoded.as_bytes()) {
            let slot = match k.as_ref() {
                "id_token_hint" => &mut p.id_token_hint,
                "client_id" => &mut p.client_id,
                "post_logout_redirect_uri" => &mut p.post_logout_redirect_uri,
                "state" => &mut p.state,
                _ => continue,
            };
            if slot.is_none() && !v.is_empty() {
                *slot = Some(v.into_owned());
            }
        }
        p
    }

    /// The parameters again, for the confirmation form's hidden fields.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("id_token_hint", &self.id_token_hint),
            ("client_id", &self.client_id),
            ("post_logout_redirect_uri", &self.post_logout_redirect_uri),
            ("state", &self.state),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// A validated end-session request.
#[derive(Debug, Clone)]
pub struct EndSessionRequest {
    /// The request as sent.
    pub params: EndSessionParams,
    /// The client it came from, if it named one.
    pub client: Option<ClientRecord>,
    /// The user and browser session the hint names.
    hinted: Option<(String, Option<Uuid>)>,
    /// Where the browser goes afterwards (registered, `state` added), if anywhere.
    pub return_to: Option<String>,
}

/// Why an end-session request is refused: shown on an error page.
#[derive(Debug)]
pub enum EndSessionError {
    /// The request cannot be trusted (a bad hint, an unregistered URI); the reason.
    Invalid(&'static str),
    /// A failure of the provider itself.
    Failed(AppError),
}

impl From<AppError> for EndSessionError {
    fn from(e: AppError) -> Self {
        Self::Failed(e)
    }
}

/// What an end-session request comes to.
#[derive(Debug)]
pub enum EndSession {
    /// Ask the user first (a page with a sign-out button).
    Confirm(Box<EndSessionRequest>),
    /// Done: the browser session ended (when one was live) and the browser goes to
    /// `return_to`, or to the signed-out page.
    Done {
        /// Whether this browser's session cookie should be cleared.
        clear_cookie: bool,
        /// The post-logout redirect, `state` included.
        return_to: Option<String>,
        /// The client's name, for the signed-out page.
        client_name: Option<String>,
    },
}

impl App {
    /// Validates an end-session request: the hint, the client, the post-logout URI.
    pub async fn rp_logout_request(
        &self,
        params: EndSessionParams,
    ) -> Result<EndSessionRequest, EndSessionError> {
        let hint = match &params.id_token_hint {
            Some(t) => Some(self.tokens.verify_id_token_hint(t).ok_or(
                EndSessionError::Invalid(
                    "The sign-out request carries an ID token this service did not issue.",
                ),
            )?),
            None => None,
        };
        let client_id = match (&hint, &params.client_id) {
            (Some(h), Some(c)) if h.aud != *c => {
                return Err(EndSessionError::Invalid(
                    "The sign-out request names two different applications.",
                ))
            }
            (Some(h), _) => Some(h.aud.clone()),
            (None, c) => c.clone(),
        };
        let client = match client_id.filter(|c| c.len() <= 64) {
            Some(c) => self.db.client(c).await.map_err(AppError::from)?,
            None => None,
        };
        let return_to = match (&params.post_logout_redirect_uri, &client) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(EndSessionError::Invalid(
                    "The sign-out request asks to return to an address without naming its application.",
                ))
            }
            // Exact string comparison with a registered URI, as for redirect URIs.
            (Some(uri), Some(c)) if c.post_logout_redirect_uris.iter().any(|u| u == uri) => {
                Some(with_state(uri, params.state.as_deref()))
            }
            (Some(_), Some(_)) => {
                return Err(EndSessionError::Invalid(
                    "The address to return to after signing out is not registered for this application.",
                ))
            }
        };
        let hinted = hint.map(|h| (h.sub, h.sid.and_then(|s| Uuid::parse_str(&s).ok())));
        Ok(EndSessionRequest {
            params,
            client,
            hinted,
            return_to,
        })
    }

    /// Ends the session `req` asks to end, for a browser holding `session` (if any);
    /// `confirmed` when the user pressed the confirmation page's button.
    pub async fn rp_logout(
        &self,
        client: &Client,
        req: EndSessionRequest,
        session: Option<BrowserSession>,
        confirmed: bool,
    ) -> Result<EndSession, AppError> {
        // The session to end, and whether the request may end it without asking.
        let (target, clear_cookie) = match (&session, &req.hinted) {
            (Some(s), _) if confirmed => (Some((s.id, s.user_id)), true),
            // The hint names this browser's session.
            (Some(s), Some((sub, sid))) if *sub == s.user_id.to_string() && *sid == Some(s.id) => {
                (Some((s.id, s.user_id)), true)
            }
            (Some(_), _) => return Ok(EndSession::Confirm(Box::new(req))),
            // No session here: the one the hint names, wherever it is.
            (None, Some((sub, Some(sid)))) => (Uuid::parse_str(sub).ok().map(|u| (*sid, u)), false),
            (None, _) => (None, false),
        };
        if let Some((id, user_id)) = target {
            let ended = self
                .db
                .end_browser_session_of(id, user_id, self.clock.now())
                .await?;
            self.audit.record(AuditEvent {
                user_id: Some(user_id),
                detail: Some(format!(
                    "end_session{}: {} sessions",
                    req.client
                        .as_ref()
                        .map(|c| format!(" client {}", c.client_id))
                        .unwrap_or_default(),
                    ended.len()
                )),
                ..client.event("logout")
            });
            self.revocations.revoke(ended);
        }
        Ok(EndSession::Done {
            clear_cookie,
            return_to: req.return_to,
            client_name: req.client.map(|c| c.name),
        })
    }
}

/// `uri` with `state` added to its query (RP-Initiated Logout §3).
fn with_state(uri: &str, state: Option<&str>) -> String {
    let Some(state) = state else {
        return uri.to_owned();
    };
    match url::Url::parse(uri) {
        Ok(mut u) => {
            u.query_pairs_mut().append_pair("state", state);
            u.into()
        }
        // Registered URIs were parsed at registration.
        Err(_) => uri.to_owned(),
    }
}
