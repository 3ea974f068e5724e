//! [`AppError`]: what a flow can answer besides success, for any front end.
//!
//! Each variant is a case a caller must tell apart; the JSON API maps each to a status and a
//! problem `code` in one place (`http::error`), the hosted pages to an error page. The two
//! failures that are not the caller's, [`AppError::Unavailable`] and [`AppError::Internal`],
//! keep their cause for the log and are answered opaquely.

use crate::security::ratelimit::Decision;
use edge_idp_actors::{DomainError, StoreError};
use thiserror::Error;

/// Why a flow did not succeed.
#[derive(Debug, Error)]
pub enum AppError {
    /// Signup with an email that already has an account.
    #[error("email already registered")]
    EmailTaken,
    /// A password the policy refuses; the text says why.
    #[error("weak password: {0}")]
    WeakPassword(String),
    /// Wrong password, or no such account: deliberately the same variant.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Not a member of the requested organization (or it does not exist).
    #[error("not a member of that organization")]
    NotAMember,
    /// Unknown, expired or revoked refresh token.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// A used refresh token presented outside the grace replay: the family is now revoked.
    #[error("refresh token reused; session revoked")]
    RefreshTokenReused,
    /// A wrong, malformed or already used second factor.
    #[error("invalid MFA code")]
    InvalidMfaCode,
    /// An unknown, expired, used or burned `mfa_token`.
    #[error("invalid MFA token")]
    InvalidMfaToken,
    /// Enrolling while MFA is already on.
    #[error("MFA already enabled")]
    MfaAlreadyEnabled,
    /// Confirming with nothing pending.
    #[error("no pending MFA enrollment")]
    MfaNotPending,
    /// A missing, malformed, expired or wrongly signed access token.
    #[error("invalid access token")]
    InvalidToken,
    /// The access token's session was revoked.
    #[error("session revoked")]
    SessionRevoked,
    /// The sign-in behind the token is older than this many seconds allow.
    #[error("a sign-in within {0} s is required")]
    StepUpRequired(i64),
    /// The caller may not do this in that organization (or it does not exist).
    #[error("forbidden")]
    Forbidden,
    /// The email already belongs to a member of the organization.
    #[error("already a member")]
    AlreadyMember,
    /// The change would leave the organization without an owner.
    #[error("the last owner cannot leave or be removed")]
    LastOwner,
    /// A client registration or client request the registry refuses; the text says why.
    #[error("invalid client: {0}")]
    InvalidClient(String),
    /// An OAuth 2.0 error of the token, introspection or userinfo endpoint (RFC 6749 §5.2,
    /// RFC 6750 §3.1): its registered code and a description for the developer.
    #[error("{}: {}", .0.code(), .0.description())]
    OAuth(super::oauth::OAuthError),
    /// A passkey ceremony that failed its checks (signature, challenge, origin, RP id, user
    /// verification, counter), or a credential this relying party does not know.
    #[error("invalid passkey")]
    InvalidPasskey,
    /// A passkey whose credential is registered already.
    #[error("passkey already registered")]
    PasskeyExists,
    /// A link's token (email verification, password reset) that is unknown, expired, used, or
    /// for an address the account no longer has.
    #[error("invalid or expired link")]
    InvalidEmailToken,
    /// Sign-in refused until the account's address is verified (`REQUIRE_VERIFIED_EMAIL`).
    #[error("email not verified")]
    EmailNotVerified,
    /// A verification asked for an address that is verified already.
    #[error("email already verified")]
    EmailAlreadyVerified,
    /// Nothing the caller may see is there.
    #[error("not found")]
    NotFound,
    /// A rate limit refused the request.
    #[error("rate limited")]
    RateLimited(Decision),
    /// A dependency did not answer in time, an actor is restarting, or the service sheds load.
    #[error("temporarily unavailable")]
    Unavailable(#[source] Cause),
    /// A fault that is not the caller's.
    #[error("internal error")]
    Internal(#[source] Cause),
}

/// The cause of an [`AppError::Unavailable`] or [`AppError::Internal`], kept for the log.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

impl AppError {
    /// An internal error with a message as its cause.
    pub fn internal(what: impl Into<String>) -> Self {
        AppError::Internal(what.into().into())
    }

    /// An unavailable error with a message as its cause.
    pub fn unavailable(what: impl Into<String>) -> Self {
        AppError::Unavailable(what.into().into())
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::EmailTaken => AppError::EmailTaken,
            DomainError::InvalidCredentials => AppError::InvalidCredentials,
            DomainError::NotAMember => AppError::NotAMember,
            DomainError::InvalidRefreshToken => AppError::InvalidRefreshToken,
            DomainError::RefreshTokenReused => AppError::RefreshTokenReused,
            DomainError::InvalidMfaCode => AppError::InvalidMfaCode,
            DomainError::InvalidMfaToken => AppError::InvalidMfaToken,
            DomainError::MfaAlreadyEnabled => AppError::MfaAlreadyEnabled,
            DomainError::MfaNotPending => AppError::MfaNotPending,
            DomainError::Store(e) => e.into(),
            e @ DomainError::Unavailable(_) => AppError::Unavailable(Box::new(e)),
            e @ DomainError::Internal(_) => AppError::Internal(Box::new(e)),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            e @ StoreError::Unavailable(_) => AppError::Unavailable(Box::new(e)),
            e => AppError::Internal(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::telemetry::chain;

    #[test]
    fn a_store_failure_keeps_its_kind_and_its_cause_through_the_domain_layer() {
        let busy = AppError::from(DomainError::from(StoreError::Unavailable(
            "database is locked".into(),
        )));
        assert!(matches!(busy, AppError::Unavailable(_)), "still a 503");
        assert_eq!(
            chain(&busy),
            "temporarily unavailable: database unavailable: database is locked"
        );
        let broken = AppError::from(DomainError::from(StoreError::Other("bad row".into())));
        assert!(matches!(broken, AppError::Internal(_)));
        assert_eq!(chain(&broken), "internal error: database error: bad row");
    }
}
