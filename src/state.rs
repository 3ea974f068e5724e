//! The shared state every handler receives: settings, storage, the actor handles, and the
//! lock-free services of the hot paths (key snapshot, token issuer, rate limiter, hasher).

use crate::config::Settings;
use crate::db::Db;
use crate::security::passwords::Passwords;
use crate::security::ratelimit::RateLimiter;
use crate::security::tokens::TokenIssuer;
use edge_idp_actors::{Clock, Handles, KeyHandle};
use std::sync::Arc;

/// Everything a request may need. Shared behind an `Arc`; nothing in it is locked per request.
pub struct AppState {
    /// Validated settings.
    pub settings: Settings,
    /// The database (reads go straight to it; ordered writes go through actors).
    pub db: Db,
    /// Current actor references.
    pub actors: Arc<Handles>,
    /// Current signing/verification keys.
    pub keys: KeyHandle,
    /// Argon2id, bounded.
    pub passwords: Passwords,
    /// Access-token minting.
    pub tokens: TokenIssuer,
    /// Rate limits.
    pub limiter: RateLimiter,
    /// Revoked sessions, for Bearer checks.
    pub revocations: crate::security::revocation::Revocations,
    /// `/auth/me` profiles.
    pub profiles: crate::profiles::Profiles,
    /// Now.
    pub clock: Clock,
    /// The audit trail.
    pub audit: crate::ops::audit::Audit,
    /// Prometheus metrics.
    pub metrics: Arc<crate::ops::metrics::Metrics>,
}

/// The handle handlers hold.
pub type SharedState = Arc<AppState>;
