//! The OpenID Connect provider: the authorization code flow with PKCE (RFC 6749, RFC 7636,
//! OpenID Connect Core 1.0), for applications that sign their users in through edge-idp's
//! hosted pages and never see a password.
//!
//! - [`authorize`]: the authorization request, validated (exact redirect URI, scopes, PKCE,
//!   `prompt`, `max_age`), and what it needs next: a sign-in, consent, or the redirect back
//!   with a code (or an error, RFC 6749 §4.1.2.1, with `iss` per RFC 9207).
//! - [`browser`]: the browser session behind the hosted pages (single sign-on): password,
//!   then the second factor when it is on, through the same checks, limits and audit events
//!   as the JSON login.
//! - [`grants`]: the consents a user has given clients, listed and withdrawn.
//! - [`introspect`]: introspection for resource servers (RFC 7662) and revocation of a
//!   client's own tokens (RFC 7009).
//! - [`logout`]: RP-initiated logout: the browser session and what it started end, the
//!   browser goes back to a registered address or sees the signed-out page.
//! - [`token`]: the token endpoint (`authorization_code`, `refresh_token`,
//!   `client_credentials`), client authentication, ID tokens, and userinfo.
//!
//! Every one-use step (a code, a refresh token) is a conditional write at the primary, so the
//! flow holds across instances sharing the database.

pub mod authorize;
pub mod browser;
pub mod grants;
pub mod introspect;
pub mod logout;
pub mod token;

/// Seconds an authorization code can be redeemed.
pub const CODE_TTL: i64 = 60;

/// Scopes this provider knows. A request's other scopes are ignored (RFC 6749 §3.3), and so
/// are those its client is not registered for.
pub const SCOPES_SUPPORTED: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Claims an ID token or userinfo may carry.
pub const CLAIMS_SUPPORTED: [&str; 14] = [
    "iss",
    "sub",
    "aud",
    "azp",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "amr",
    "sid",
    "at_hash",
    "email",
    "email_verified",
    "name",
];

/// An OAuth 2.0 error answer: a registered `error` code (RFC 6749 §5.2, RFC 6750 §3.1) and a
/// description for the client's developer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// Malformed or incomplete request.
    InvalidRequest(String),
    /// Client authentication failed; `basic` when it was tried with HTTP Basic (the answer
    /// then carries `WWW-Authenticate: Basic`).
    InvalidClient {
        /// Whether the client used the `Authorization` header.
        basic: bool,
    },
    /// The code or refresh token is invalid, expired, used, or not this client's.
    InvalidGrant(String),
    /// The client may not use this grant type.
    UnauthorizedClient(String),
    /// A grant type this provider does not have.
    UnsupportedGrantType,
    /// A scope the client may not have.
    InvalidScope(String),
    /// A Bearer token that does not verify (userinfo).
    InvalidToken,
    /// A Bearer token without the scope the resource needs (userinfo).
    InsufficientScope(&'static str),
}

impl OAuthError {
    /// The registered error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
        }
    }

    /// What went wrong, for the client's developer (never a secret).
    pub fn description(&self) -> String {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::InvalidScope(d) => d.clone(),
            Self::InvalidClient { .. } => "client authentication failed".into(),
            Self::UnsupportedGrantType => {
                "grant_type must be authorization_code, refresh_token or client_credentials".into()
            }
            Self::InvalidToken => "the access token is invalid, expired or revoked".into(),
            Self::InsufficientScope(s) => format!("the access token lacks the {s} scope"),
        }
    }
}

impl From<OAuthError> for super::AppError {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

/// `scope` as a list, each scope once, in the order given.
pub fn scope_list(scope: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    out
}

/// Whether a space-separated `scope` holds `wanted`.
pub fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}
