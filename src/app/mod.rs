//! The application layer: every flow of the service, written once for every front end.
//!
//! A front end (the JSON API in `http`, the hosted pages to come) parses a request into the
//! inputs of one function here, calls it, and renders what it returns. This layer runs the
//! flow: it checks the rate limits, touches storage, asks actors, writes the audit trail and
//! counts the metrics, and answers with domain results and [`AppError`]s that know nothing of
//! HTTP. It is the only layer that reaches the database: [`App`]'s storage and actor handles
//! are private to this module and its children, so the compiler keeps it that way.
//!
//! # Flows
//! - [`signup`]: account, personal organization, owner membership.
//! - [`login`]: the password step, then tokens or an MFA challenge; session start.
//! - [`mfa`]: enrollment, confirmation, the login challenge, disabling.
//! - [`sessions`]: refresh-token rotation, logout, listing and ending sessions.
//! - [`account`]: the caller: profile, switching organization, changing the password.
//! - [`orgs`]: organizations, invitations, members.
//! - [`ops`]: readiness, metrics, clean-up of expired rows.
//! - [`clients`]: the OAuth client registry the operator manages from the command line.
//! - [`oauth`]: the OpenID Connect provider: authorization, the browser session, tokens.
//! - [`email`]: verification and password-reset links, and the outbox that sends all mail.
//! - [`passkeys`]: WebAuthn registration, passkey sign-in and second factor, management.
//! - [`caller`]: who is asking ([`Client`]) and who is signed in ([`Caller`]).
//! - [`profiles`]: the `/auth/me` profile, cached per user for two seconds.

pub mod account;
pub mod caller;
pub mod clients;
pub mod email;
pub mod error;
pub mod login;
pub mod mfa;
pub mod oauth;
pub mod ops;
pub mod orgs;
pub mod passkeys;
pub mod profiles;
pub mod sessions;
pub mod signup;

pub use caller::{Caller, Client};
pub use error::AppError;

/// Rows the flows answer with, re-exported so that front ends render them without naming the
/// storage layer.
pub use crate::db::{Invitation, PasskeyRow, PendingInvitation, Profile, SessionRow};

use crate::app::profiles::Profiles;
use crate::config::Settings;
use crate::db::Db;
use crate::ops::audit::Audit;
use crate::ops::metrics::Metrics;
use crate::security::passwords::Passwords;
use crate::security::ratelimit::{Decision, Policy, RateLimiter};
use crate::security::revocation::Revocations;
use crate::security::tokens::TokenIssuer;
use edge_idp_actors::mfa::MfaConfig;
use edge_idp_actors::refresh::Families;
use edge_idp_actors::{Clock, Handles, KeyHandle, SecretString};
use std::sync::Arc;

/// The handle front ends hold.
pub type SharedApp = Arc<App>;

/// Everything the flows need. Shared behind an `Arc`; nothing in it is locked per request.
pub struct App {
    /// Validated settings.
    pub settings: Settings,
    /// Current signing/verification keys (the JWKS is read from this snapshot).
    pub keys: KeyHandle,
    /// Now.
    pub clock: Clock,
    /// Prometheus metrics (the server edge counts requests into them).
    pub metrics: Arc<Metrics>,
    /// The audit trail.
    pub audit: Audit,
    db: Db,
    actors: Arc<Handles>,
    families: Families<Db>,
    mfa: MfaConfig,
    passwords: Passwords,
    tokens: TokenIssuer,
    limiter: RateLimiter,
    revocations: Revocations,
    profiles: Profiles,
    webauthn: Option<Arc<webauthn_rs::Webauthn>>,
    mailer: email::Mailer,
}

/// What [`App::new`] assembles; built by `startup`.
pub struct Parts {
    /// Validated settings.
    pub settings: Settings,
    /// The database.
    pub db: Db,
    /// The supervised actors.
    pub actors: Arc<Handles>,
    /// Current keys.
    pub keys: KeyHandle,
    /// Refresh-token families on the database.
    pub families: Families<Db>,
    /// TOTP sealing and issuer.
    pub mfa: MfaConfig,
    /// Argon2id, bounded.
    pub passwords: Passwords,
    /// Access-token minting and verification.
    pub tokens: TokenIssuer,
    /// Rate limits.
    pub limiter: RateLimiter,
    /// Revoked sessions, for Bearer checks.
    pub revocations: Revocations,
    /// Now.
    pub clock: Clock,
    /// The audit trail.
    pub audit: Audit,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The passkeys' relying party (`None`: passkeys are off).
    pub webauthn: Option<webauthn_rs::Webauthn>,
    /// Where mail goes (SMTP, or files in development).
    pub delivery: crate::mail::Delivery,
}

impl App {
    /// Assembles the application from its parts.
    pub fn new(p: Parts) -> Self {
        let mailer = email::Mailer::new(
            p.delivery,
            p.settings.master_key.sealer(b"mail-outbox"),
            &p.settings.issuer,
        );
        Self {
            settings: p.settings,
            keys: p.keys,
            clock: p.clock,
            metrics: p.metrics,
            audit: p.audit,
            db: p.db,
            actors: p.actors,
            families: p.families,
            mfa: p.mfa,
            passwords: p.passwords,
            tokens: p.tokens,
            limiter: p.limiter,
            revocations: p.revocations,
            profiles: Profiles::default(),
            webauthn: p.webauthn.map(Arc::new),
            mailer,
        }
    }

    /// The actor handles (start-up stops them; tests inject faults and read restart counts).
    pub fn actors(&self) -> Arc<Handles> {
        self.actors.clone()
    }

    /// The rate limiter (tests read its backend and counters).
    pub fn limiter(&self) -> RateLimiter {
        self.limiter.clone()
    }

    /// Seconds an access token lives.
    pub fn access_token_ttl(&self) -> i64 {
        self.tokens.ttl()
    }

    /// Checks `checks` (all must admit); a refusal is counted and becomes
    /// [`AppError::RateLimited`].
    async fn limited(&self, checks: &[(Policy, &str)]) -> Result<Decision, AppError> {
        let d = self.limiter.check(checks).await;
        if d.allowed {
            return Ok(d);
        }
        if let Some((policy, _)) = checks.first() {
            self.metrics
                .rate_limited
                .with_label_values(&[policy.group(), self.limiter.backend()])
                .inc();
        }
        tracing::info!(
            policy = checks.first().map(|c| c.0.name()).unwrap_or(""),
            "rate limited"
        );
        Err(AppError::RateLimited(d))
    }

    /// Counts a second step (a code, a passkey) against the limit of `email`'s account once the
    /// step has named the account; `decision` becomes the account's, allowed or refused, for
    /// the answer's `RateLimit-*` headers.
    async fn account_limited(&self, email: &str, decision: &mut Decision) -> Result<(), AppError> {
        let key = crate::security::ratelimit::account_key(email);
        match self.limited(&[(Policy::LoginAccount, &key)]).await {
            Ok(d) => {
                *decision = d;
                Ok(())
            }
            Err(AppError::RateLimited(d)) => {
                *decision = d;
                Err(AppError::RateLimited(d))
            }
            Err(e) => Err(e),
        }
    }

    /// The login limits of API.md (per client IP and per account), applied to every flow that
    /// checks a password or a second factor, so that none is a free oracle beside login.
    async fn login_limits(&self, client: &Client, email: &str) -> Result<Decision, AppError> {
        let ip = client.rate_key();
        self.limited(&[
            (Policy::LoginIp, &ip),
            (
                Policy::LoginAccount,
                &crate::security::ratelimit::account_key(email),
            ),
        ])
        .await
    }
}

/// The outcome of a rate-limited flow that passed its limit check: the decision (for the
/// `RateLimit-*` headers, which accompany success and failure alike) and the result.
pub struct Metered<T> {
    /// The tightest limit checked.
    pub decision: Decision,
    /// What the flow answered.
    pub outcome: Result<T, AppError>,
}

/// Tokens handed to a client: an access token, and for a session's start or rotation its
/// refresh token.
pub struct Tokens {
    /// RS256 JWT.
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The refresh token and the seconds until it expires (absent for switch-org).
    pub refresh: Option<(SecretString, i64)>,
}
