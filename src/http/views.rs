//! The JSON shapes of the API's answers, and how domain results become them. Shared by the
//! handlers; documented in `/openapi.json` through their `ToSchema`.

use super::reply::rfc3339;
use crate::app::{Profile, Tokens};
use edge_idp_actors::store::{Membership, Role};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A user as API responses show it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    id: Uuid,
    email: String,
    name: Option<String>,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    created_at: String,
    mfa_enabled: bool,
    /// Whether the address was proven by the link mailed to it.
    email_verified: bool,
}

impl UserView {
    /// A user from its parts.
    pub fn new(
        id: Uuid,
        email: String,
        name: Option<String>,
        created_at: i64,
        mfa_enabled: bool,
        email_verified: bool,
    ) -> Self {
        Self {
            id,
            email,
            name,
            created_at: rfc3339(created_at),
            mfa_enabled,
            email_verified,
        }
    }
}

impl From<&Profile> for UserView {
    fn from(u: &Profile) -> Self {
        Self::new(
            u.id,
            u.email.clone(),
            u.name.clone(),
            u.created_at,
            u.mfa_enabled,
            u.email_verified,
        )
    }
}

/// An organization with the caller's role.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Organization)]
pub struct OrgView {
    id: Uuid,
    name: String,
    role: Role,
}

impl From<Membership> for OrgView {
    fn from(m: Membership) -> Self {
        Self {
            id: m.org_id,
            name: m.org_name,
            role: m.role,
        }
    }
}

/// The token response of login, MFA verify and refresh; switch-org leaves out the two refresh
/// fields.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse<'a> {
    /// RS256 JWT (`typ: at+jwt`), verifiable with the JWKS alone.
    access_token: &'a str,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
    /// Opaque rotating refresh token.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    /// Seconds until the refresh token expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_expires_in: Option<i64>,
}

impl<'a> From<&'a Tokens> for TokenResponse<'a> {
    fn from(t: &'a Tokens) -> Self {
        Self {
            access_token: &t.access_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
            refresh_token: t.refresh.as_ref().map(|(r, _)| r.expose()),
            refresh_expires_in: t.refresh.as_ref().map(|(_, secs)| *secs),
        }
    }
}

/// `201` of signup.
#[derive(Serialize, ToSchema)]
pub struct SignupResponse {
    /// The new account.
    pub user: UserView,
    /// The personal organization, owned by the new user.
    pub organization: OrgView,
}

/// `200` of a login whose account has MFA on: no tokens until `/auth/mfa/verify`.
#[derive(Serialize, ToSchema)]
pub struct MfaChallenge<'a> {
    /// Always `true`.
    pub mfa_required: bool,
    /// Single-use challenge for `/auth/mfa/verify`.
    pub mfa_token: &'a str,
    /// Seconds until the challenge expires.
    pub expires_in: i64,
    /// The second factors the account can answer with: `totp` (a code, or a recovery code, at
    /// `/auth/mfa/verify`) and, when it has a passkey, `passkey` (at
    /// `/auth/passkeys/login/begin` with this `mfa_token`).
    pub mfa_methods: Vec<&'static str>,
}

/// `200` of login: tokens, or an MFA challenge.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse<'a> {
    /// MFA is off: the token response.
    Tokens(TokenResponse<'a>),
    /// MFA is on: a challenge.
    Challenge(MfaChallenge<'a>),
}
