//! The authorization endpoint's decisions (RFC 6749 §4.1, OpenID Connect Core §3.1.2).
//!
//! A request is validated in the order the standards require: the client and its exact
//! redirect URI first, because until both are known good nothing may be sent there (an error
//! page instead, RFC 6749 §4.1.2.1); then everything else, whose errors go back to the client
//! at that redirect URI with `state` and `iss` (RFC 9207). A valid request then needs a
//! sign-in (none, or too old for `max_age`, or `prompt=login`, or of another user than
//! `id_token_hint` names), consent (scopes the user has
//! not granted this client, unless it is first-party), or nothing more: a code.
//!
//! The hosted pages carry the request from page to page as its own parameters (a hidden form
//! field), and every step validates it again, so no server-side state is kept before the code.

use super::{has_scope, scope_list, CODE_TTL, SCOPES_SUPPORTED};
use crate::app::{App, AppError, Client};
use crate::db::{BrowserSession, ClientRecord, CodeGrant};
use crate::ops::audit::AuditEvent;
use edge_idp_actors::crypto::{b64url, random_bytes, sha256};
use std::collections::BTreeMap;

/// Parameters of an authorization request this provider reads; any other is ignored
/// (OpenID Connect Core §3.1.2.1).
pub const PARAMS: [&str; 15] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "id_token_hint",
    "response_mode",
    "request",
    "request_uri",
];

/// The longest value of any parameter, in bytes (a `state` or `nonce` longer than this is
/// refused, not stored).
const MAX_PARAM: usize = 2048;

/// The raw parameters of an authorization request, as sent (query or form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizeParams {
    values: BTreeMap<String, String>,
    repeated: Vec<String>,
}

impl AuthorizeParams {
    /// Reads `application/x-www-form-urlencoded` pairs (a query string or a form body),
    /// keeping the parameters of [`PARAMS`] and noting any sent twice (RFC 6749 §3.1).
    pub fn parse(encoded: &str) -> Self {
        let mut p = Self::default();
        for (k, v) in url::form_urlencoded::parse(encoded.as_bytes()) {
            if !PARAMS.contains(&k.as_ref()) {
                continue;
            }
            if p.values.contains_key(k.as_ref()) {
                p.repeated.push(k.into_owned());
            } else {
                p.values.insert(k.into_owned(), v.into_owned());
            }
        }
        p
    }

    /// The request again as a query string: what the hosted pages carry between steps.
    pub fn encode(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.values {
            out.append_pair(k, v);
        }
        out.finish()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// `prompt` (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    /// No page may be shown: answer at once, or with an error.
    pub none: bool,
    /// Ask for the password even with a session.
    pub login: bool,
    /// Ask for consent even where it was granted.
    pub consent: bool,
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The client.
    pub client: ClientRecord,
    /// Its redirect URI, exactly as registered.
    pub redirect_uri: String,
    /// Scopes to grant: those asked for that the provider supports and the client may have.
    pub scopes: Vec<String>,
    /// Echoed untouched.
    pub state: Option<String>,
    /// For the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// `prompt`.
    pub prompt: Prompt,
    /// `max_age`, seconds.
    pub max_age: Option<i64>,
    /// Prefills the sign-in form.
    pub login_hint: Option<String>,
    /// The user an `id_token_hint` names (`sub`): a session of anyone else does not count.
    pub hint_sub: Option<String>,
    /// The request as sent, for the next page.
    pub params: AuthorizeParams,
}

/// Where the browser goes back to the client: the redirect URI with a code or an error, and
/// `state` and `iss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect(pub String);

/// Why an authorization request stops.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or the redirect URI cannot be trusted: an error page, never a redirect.
    Page(String),
    /// An error for the client at its redirect URI.
    Redirect(Redirect),
    /// A failure of the provider itself (its page says so; nothing is sent to the client).
    Failed(AppError),
}

impl From<AppError> for AuthorizeError {
    fn from(e: AppError) -> Self {
        Self::Failed(e)
    }
}

/// What a valid request needs next.
#[derive(Debug)]
pub enum Step {
    /// The sign-in page.
    SignIn(AuthRequest),
    /// The consent page, for the scopes not yet granted.
    Consent {
        /// The request.
        req: AuthRequest,
        /// Who is signed in.
        session: BrowserSession,
    },
    /// Back to the client.
    Done(Redirect),
}

/// An RFC 7636 S256 challenge: 43 base64url characters (32 bytes' SHA-256).
fn pkce_challenge_shaped(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Redirect {
    /// `redirect_uri` with `pairs`, `state` and `iss` added to its query.
    pub fn to(redirect_uri: &str, pairs: &[(&str, &str)], state: Option<&str>, iss: &str) -> Self {
        let mut url = match url::Url::parse(redirect_uri) {
            Ok(u) => u,
            // Registered URIs were parsed at registration; this cannot fail for one.
            Err(_) => return Self(redirect_uri.to_owned()),
        };
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", iss);
        }
        Self(url.into())
    }
}

impl AuthRequest {
    /// The error `code` with `description`, back at the client's redirect URI.
    pub fn error(&self, code: &str, description: &str, iss: &str) -> AuthorizeError {
        AuthorizeError::Redirect(Redirect::to(
            &self.redirect_uri,
            &[("error", code), ("error_description", description)],
            self.state.as_deref(),
            iss,
        ))
    }

    /// The scopes as one space-separated string.
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }
}

impl App {
    /// Validates an authorization request (see the module doc for the order).
    pub async fn authorization_request(
        &self,
        params: AuthorizeParams,
    ) -> Result<AuthRequest, AuthorizeError> {
        let page = |why: &str| Err(AuthorizeError::Page(why.to_owned()));
        if params
            .repeated
            .iter()
            .any(|p| p == "client_id" || p == "redirect_uri")
        {
            return page("The request names its client or redirect URI twice.");
        }
        let Some(client_id) = params.get("client_id") else {
            return page("The request names no client (client_id is missing).");
        };
        if client_id.len() > 64 {
            return page("This application is not registered here.");
        }
        let Some(client) = self
            .db
            .client(client_id.to_owned())
            .await
            .map_err(AppError::from)?
        else {
            return page("This application is not registered here.");
        };
        let Some(redirect_uri) = params.get("redirect_uri") else {
            return page("The request names no redirect URI (redirect_uri is missing).");
        };
        // Exact string comparison with a registered URI: no prefix, no normalisation.
        if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
            return page("The redirect URI is not registered for this application.");
        }
        let mut req = AuthRequest {
            redirect_uri: redirect_uri.to_owned(),
            state: params.get("state").map(str::to_owned),
            nonce: None,
            code_challenge: None,
            scopes: Vec::new(),
            prompt: Prompt::default(),
            max_age: None,
            login_hint: None,
            hint_sub: None,
            client,
            params: params.clone(),
        };
        let iss = self.settings.issuer.as_str();
        if req.state.as_ref().is_some_and(|s| s.len() > MAX_PARAM) {
            // Not echoed: too long to be a client's own.
            req.state = None;
            return Err(req.error("invalid_request", "state is too long", iss));
        }
        if let Some(p) = params.repeated.first() {
            return Err(req.error("invalid_request", &format!("{p} is sent twice"), iss));
        }
        match params.get("response_type") {
            None => return Err(req.error("invalid_request", "response_type is missing", iss)),
            Some("code") => {}
            Some(_) => {
                return Err(req.error(
                    "unsupported_response_type",
                    "only the code flow (response_type=code) is supported",
                    iss,
                ))
            }
        }
        if !req
            .client
            .grant_types
            .iter()
            .any(|g| g == "authorization_code")
        {
            return Err(req.error(
                "unauthorized_client",
                "this client is not registered for the authorization_code grant",
                iss,
            ));
        }
        if params.get("response_mode").is_some_and(|m| m != "query") {
            return Err(req.error(
                "invalid_request",
                "only response_mode=query is supported",
                iss,
            ));
        }
        if params.get("request").is_some() {
            return Err(req.error(
                "request_not_supported",
                "request objects are not supported",
                iss,
            ));
        }
        if params.get("request_uri").is_some() {
            return Err(req.error(
                "request_uri_not_supported",
                "request_uri is not supported",
                iss,
            ));
        }
        let Some(scope) = params.get("scope") else {
            return Err(req.error("invalid_scope", "scope is missing", iss));
        };
        let asked = scope_list(scope);
        req.scopes = asked
            .iter()
            .filter(|s| {
                SCOPES_SUPPORTED.contains(&s.as_str()) && req.client.scopes.iter().any(|c| c == *s)
            })
            .cloned()
            .collect();
        if req.scopes.is_empty() {
            return Err(req.error(
                "invalid_scope",
                "none of the requested scopes is available to this client",
                iss,
            ));
        }
        if let Some(nonce) = params.get("nonce") {
            if nonce.len() > 512 {
                return Err(req.error("invalid_request", "nonce is too long", iss));
            }
            req.nonce = Some(nonce.to_owned());
        }
        match (
            params.get("code_challenge"),
            params.get("code_challenge_method"),
        ) {
            (None, None) => {
                if req.client.require_pkce || self.settings.require_pkce {
                    return Err(req.error(
                        "invalid_request",
                        "PKCE is required: send code_challenge with code_challenge_method=S256",
                        iss,
                    ));
                }
            }
            (Some(c), Some("S256")) if pkce_challenge_shaped(c) => {
                req.code_challenge = Some(c.to_owned());
            }
            (Some(_), Some("S256")) => {
                return Err(req.error(
                    "invalid_request",
                    "code_challenge must be the 43-character base64url SHA-256 of the verifier",
                    iss,
                ))
            }
            _ => {
                return Err(req.error(
                    "invalid_request",
                    "code_challenge_method must be S256 (plain is not supported)",
                    iss,
                ))
            }
        }
        if let Some(prompt) = params.get("prompt") {
            for p in prompt.split(' ').filter(|p| !p.is_empty()) {
                match p {
                    "none" => req.prompt.none = true,
                    "login" => req.prompt.login = true,
                    "consent" => req.prompt.consent = true,
                    // select_account and unknown values: nothing to select; ignored.
                    _ => {}
                }
            }
            if req.prompt.none && (req.prompt.login || req.prompt.consent) {
                return Err(req.error(
                    "invalid_request",
                    "prompt=none cannot be combined with another value",
                    iss,
                ));
            }
        }
        if let Some(max_age) = params.get("max_age") {
            match max_age.parse::<u32>() {
                Ok(n) => req.max_age = Some(i64::from(n)),
                Err(_) => {
                    return Err(req.error(
                        "invalid_request",
                        "max_age must be a non-negative number of seconds",
                        iss,
                    ))
                }
            }
        }
        req.login_hint = params
            .get("login_hint")
            .filter(|h| h.len() <= 254)
            .map(str::to_owned);
        if let Some(hint) = params.get("id_token_hint") {
            // Expired hints are fine (Core §3.1.2.1): it names a user, it grants nothing.
            let Some(claims) = self.tokens.verify_id_token_hint(hint) else {
                return Err(req.error(
                    "invalid_request",
                    "id_token_hint is not an ID token this provider issued",
                    iss,
                ));
            };
            req.hint_sub = Some(claims.sub);
        }
        Ok(req)
    }

    /// What `req` needs next, for a browser with `session` (if any). `fresh` is true right
    /// after the user signed in on the hosted page, which satisfies `prompt=login` and
    /// `max_age`.
    pub async fn authorize(
        &self,
        client: &Client,
        req: AuthRequest,
        session: Option<BrowserSession>,
        fresh: bool,
    ) -> Result<Step, AuthorizeError> {
        let iss = self.settings.issuer.clone();
        let now = self.clock.now();
        let usable = session.filter(|s| {
            fresh
                || (!req.prompt.login
                    && req.max_age.is_none_or(|max| now - s.auth_time <= max)
                    && req
                        .hint_sub
                        .as_ref()
                        .is_none_or(|sub| *sub == s.user_id.to_string()))
        });
        let Some(session) = usable else {
            if req.prompt.none {
                return Err(req.error("login_required", "the user is not signed in", &iss));
            }
            return Ok(Step::SignIn(req));
        };
        if self.needs_consent(&req, &session).await? {
            if req.prompt.none {
                return Err(req.error(
                    "consent_required",
                    "the user has not granted these scopes to this client",
                    &iss,
                ));
            }
            return Ok(Step::Consent { req, session });
        }
        Ok(Step::Done(self.issue_code(client, &req, &session).await?))
    }

    /// The user's answer on the consent page.
    pub async fn consent(
        &self,
        client: &Client,
        req: AuthRequest,
        session: BrowserSession,
        allow: bool,
    ) -> Result<Redirect, AuthorizeError> {
        let iss = self.settings.issuer.clone();
        if !allow {
            self.audit.record(AuditEvent {
                user_id: Some(session.user_id),
                detail: Some(format!("client {}", req.client.client_id)),
                ..client.event("consent_denied")
            });
            return Err(req.error("access_denied", "the user denied the request", &iss));
        }
        let mut granted = match self
            .db
            .consent(session.user_id, req.client.client_id.clone())
            .await
            .map_err(AppError::from)?
        {
            Some(s) => scope_list(&s),
            None => Vec::new(),
        };
        for s in &req.scopes {
            if !granted.contains(s) {
                granted.push(s.clone());
            }
        }
        self.db
            .set_consent(
                session.user_id,
                req.client.client_id.clone(),
                granted.join(" "),
                self.clock.now(),
            )
            .await
            .map_err(AppError::from)?;
        self.audit.record(AuditEvent {
            user_id: Some(session.user_id),
            detail: Some(format!(
                "client {} scope {}",
                req.client.client_id,
                req.scope()
            )),
            ..client.event("consent_granted")
        });
        self.issue_code(client, &req, &session).await
    }

    async fn needs_consent(
        &self,
        req: &AuthRequest,
        session: &BrowserSession,
    ) -> Result<bool, AppError> {
        if req.client.first_party {
            return Ok(false);
        }
        if req.prompt.consent {
            return Ok(true);
        }
        let granted = self
            .db
            .consent(session.user_id, req.client.client_id.clone())
            .await?
            .unwrap_or_default();
        Ok(!req.scopes.iter().all(|s| has_scope(&granted, s)))
    }

    /// Stores a code for `req` and `session`; the redirect that carries it.
    async fn issue_code(
        &self,
        client: &Client,
        req: &AuthRequest,
        session: &BrowserSession,
    ) -> Result<Redirect, AuthorizeError> {
        let raw = random_bytes::<32>().map_err(|e| AppError::internal(e.to_string()))?;
        let code = b64url(&raw);
        let now = self.clock.now();
        let grant = CodeGrant {
            client_id: req.client.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            user_id: session.user_id,
            browser_session_id: session.id,
            scope: req.scope(),
            nonce: req.nonce.clone(),
            code_challenge: req.code_challenge.clone(),
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            expires_at: now + CODE_TTL,
        };
        self.db
            .insert_code(sha256(code.as_bytes()), grant, now)
            .await
            .map_err(AppError::from)?;
        self.audit.record(AuditEvent {
            user_id: Some(session.user_id),
            detail: Some(format!(
                "client {} scope {}",
                req.client.client_id,
                req.scope()
            )),
            ..client.event("authorization_code_issued")
        });
        Ok(Redirect::to(
            &req.redirect_uri,
            &[("code", &code)],
            req.state.as_deref(),
            &self.settings.issuer,
        ))
    }
}
