//! The one error type of the domain layer.
//!
//! Actors and stores speak in these variants; they know nothing of HTTP. The binary maps each
//! variant to a status and a problem `code` in exactly one place (`http::error`).

use thiserror::Error;

/// What can go wrong in a domain operation, as a caller needs to tell it apart.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DomainError {
    /// Signup with an email that already has an account.
    #[error("email already registered")]
    EmailTaken,
    /// Wrong password, or no such account: deliberately the same variant.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The user is not a member of the requested organization (or it does not exist).
    #[error("not a member of that organization")]
    NotAMember,
    /// Unknown, expired or revoked refresh token.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// A used refresh token presented outside the grace replay: the family is now revoked.
    #[error("refresh token reused; session revoked")]
    RefreshTokenReused,
    /// A TOTP or recovery code that is wrong, malformed, or a TOTP step already used.
    #[error("invalid MFA code")]
    InvalidMfaCode,
    /// An `mfa_token` that is unknown, expired, used or burned.
    #[error("invalid MFA token")]
    InvalidMfaToken,
    /// Enrolling while MFA is already on.
    #[error("MFA already enabled")]
    MfaAlreadyEnabled,
    /// Confirming with nothing pending.
    #[error("no pending MFA enrollment")]
    MfaNotPending,
    /// An actor did not answer in time, died, or a dependency is overloaded. Retry later.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// Storage failed (busy, unreachable, or a fault); the store's error is the source.
    #[error("storage failed")]
    Store(#[source] StoreError),
    /// A fault that is not the caller's: corrupt data, crypto failure.
    /// The text is for logs only, never for a response body.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Storage failures, as the storage adapters report them.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A uniqueness constraint refused the write; the payload names it.
    #[error("conflict on {0}")]
    Conflict(&'static str),
    /// The database is busy, locked or unreachable right now.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, a corrupt row, a failed migration.
    #[error("database error: {0}")]
    Other(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                DomainError::Internal(format!("unexpected conflict on {what}"))
            }
            e => DomainError::Store(e),
        }
    }
}
