//! The domain core of edge-idp: its supervised actors, the domain services the application
//! layer calls, and the storage traits they need.
//!
//! # Layout
//! - [`supervisor`]: the root supervisor, restart policy and the [`Handles`] callers use.
//! - [`keys`]: the KeyManager and the [`KeySet`] snapshot that signing reads without a mailbox.
//! - [`limiter`]: the RateLimiter actor, which brings the shared backend back after a failure.
//! - [`refresh`]: refresh-token families: rotation, grace replay, reuse detection.
//! - [`mfa`]: TOTP enrollment and checks, recovery codes.
//! - [`store`]: the storage traits; the binary implements them on libSQL.
//! - [`crypto`], [`secret`], [`clock`]: sealing at rest, redacted secrets, time as a parameter.
//! - [`fs`]: [`fs::write_private`], the one way secret files are written.
//! - [`error`]: [`DomainError`], the one error of this layer.
//!
//! Actors own what needs one owner per process (key-set changes, the shared backend's health),
//! not throughput: hot paths (signing, verification, rate limits) and account and session
//! writes never wait on a mailbox; the database's conditional writes order the latter. Every request to an actor goes through [`ask`], which has a
//! timeout, so a stalled or dead actor turns into `Unavailable` rather than a hang.
//!
//! This crate knows nothing of HTTP.

pub mod clock;
pub mod crypto;
pub mod error;
pub mod fs;
pub mod keys;
pub mod limiter;
pub mod mfa;
pub mod refresh;
pub mod secret;
pub mod store;
pub mod supervisor;

pub use clock::Clock;
pub use error::{DomainError, StoreError};
pub use keys::{KeyHandle, KeySet};
pub use secret::SecretString;
pub use supervisor::{ActorKind, Handles, RootArgs, RootSupervisor};

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};
use std::time::Duration;

/// A fault injected into an actor by a test, handled like any other message: in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Panic inside the handler (the supervisor restarts the actor).
    Panic,
    /// Handle nothing else for this long (the actor's asks time out meanwhile).
    Stall(Duration),
}

impl Fault {
    /// Applies the fault inside `actor`'s handler.
    #[allow(clippy::panic)] // the injected panic is the point: it exercises supervision.
    pub async fn strike(self, actor: &str) {
        match self {
            Fault::Panic => panic!("injected fault: {actor}"),
            Fault::Stall(d) => {
                tracing::warn!(actor, stall_ms = d.as_millis() as u64, "injected stall");
                tokio::time::sleep(d).await;
            }
        }
    }
}

/// Sends a request to `actor` and waits at most `timeout` for its answer.
///
/// A missing actor (between a crash and its restart), a full stop, a dropped reply port (the
/// actor panicked while handling this request) and a timeout all become
/// [`DomainError::Unavailable`].
pub async fn ask<M, T>(
    actor: Option<ActorRef<M>>,
    build: impl FnOnce(RpcReplyPort<Result<T, DomainError>>) -> M,
    timeout: Duration,
) -> Result<T, DomainError>
where
    M: Message,
    T: Send + 'static,
{
    let actor = actor.ok_or_else(|| DomainError::Unavailable("actor restarting".into()))?;
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(r)) => r,
        Ok(CallResult::Timeout) => Err(DomainError::Unavailable("actor timed out".into())),
        Ok(CallResult::SenderError) => Err(DomainError::Unavailable(
            "actor failed while handling the request".into(),
        )),
        Err(_) => Err(DomainError::Unavailable("actor not running".into())),
    }
}
