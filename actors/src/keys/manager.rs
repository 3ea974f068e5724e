//! The KeyManager actor: the only writer of the key set. It reloads keys (picking up other
//! instances' rotations), rotates on schedule or on demand, and publishes each new snapshot.

use super::bootstrap::{load_keys, stored};
use super::material::SigningKey;
use super::{KeyError, KeyHandle, KeySet};
use crate::crypto::Sealer;
use crate::error::DomainError;
use crate::store::KeyStore;
use crate::Clock;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;

/// Called with the new kid after this instance stored a rotation (the audit trail).
pub type OnRotate = Arc<dyn Fn(&str) + Send + Sync>;

/// When keys rotate.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// How long a key signs before the next one takes over (`KEY_ROTATION_DAYS`); `None` is off.
    pub period: Option<i64>,
    /// How long a new key is in JWKS before it signs: at least the JWKS `max-age`, so a cached
    /// JWKS never meets an unknown `kid`.
    pub prepublish: i64,
    /// How long a key stays published after it stops signing: the access-token lifetime plus a
    /// clock-skew margin, so every token it signed verifies until it expires.
    pub retire_after: i64,
    /// How often every instance reloads keys (picking up another instance's rotation) and checks
    /// whether a rotation is due.
    pub check_every: std::time::Duration,
}

/// Messages of the KeyManager.
pub enum KeyManagerMsg {
    /// Re-reads the keys from the database and publishes a new snapshot.
    Reload(RpcReplyPort<Result<(), DomainError>>),
    /// Rotates if due, then reloads; sent on a timer (and by tests, with a reply).
    Tick(Option<RpcReplyPort<Result<(), DomainError>>>),
    /// Rotates now (pre-publishing the new key), whatever the schedule; answers the new kid, or
    /// `None` when another instance had just rotated.
    Rotate(RpcReplyPort<Result<Option<String>, DomainError>>),
    /// Test hook: a panic or a stall, to exercise supervision and timeouts.
    Fault(crate::Fault),
}

/// Start-up arguments of the KeyManager (kept by the supervisor for restarts).
#[derive(Clone)]
pub struct KeyManagerArgs<S> {
    /// Where keys live.
    pub store: S,
    /// The signing-keys sealer.
    pub sealer: Sealer,
    /// The published snapshot.
    pub handle: KeyHandle,
    /// Now.
    pub clock: Clock,
    /// Rotation schedule.
    pub rotation: RotationPolicy,
    /// Told about each rotation this instance stores.
    pub on_rotate: Option<OnRotate>,
}

/// Generates and stores a key that starts signing `policy.prepublish` seconds from `now`, and
/// schedules the retirement of the keys it replaces. Only one instance wins when several try at
/// once: the insert is conditional on no key newer than `newest_seen` existing.
pub async fn rotate<S: KeyStore>(
    store: &S,
    sealer: &Sealer,
    policy: &RotationPolicy,
    newest_seen: i64,
    now: i64,
    on_rotate: Option<&OnRotate>,
) -> Result<Option<String>, KeyError> {
    let activates_at = now + policy.prepublish;
    let (key, der) = tokio::task::spawn_blocking(move || SigningKey::generate(activates_at))
        .await
        .map_err(|e| KeyError::Crypto(e.to_string()))??;
    let mut row = stored(&key, &der, sealer, now)?;
    row.activates_at = activates_at;
    let retire_at = activates_at + policy.retire_after;
    if store
        .insert_rotated_key(row, newest_seen, retire_at)
        .await?
    {
        tracing::info!(kid = %key.kid, activates_at, retire_previous_at = retire_at, "signing key rotated");
        if let Some(f) = on_rotate {
            f(&key.kid);
        }
        Ok(Some(key.kid.clone()))
    } else {
        Ok(None)
    }
}

impl<S: KeyStore> KeyManagerArgs<S> {
    async fn reload(&self) -> Result<Arc<KeySet>, DomainError> {
        let keys = load_keys(&self.store, &self.sealer)
            .await
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        let set = Arc::new(
            KeySet::build(keys, self.clock.now())
                .map_err(|e| DomainError::Internal(e.to_string()))?,
        );
        self.handle.store(set.clone());
        Ok(set)
    }

    async fn rotate_now(&self, newest_seen: i64) -> Result<Option<String>, DomainError> {
        let kid = rotate(
            &self.store,
            &self.sealer,
            &self.rotation,
            newest_seen,
            self.clock.now(),
            self.on_rotate.as_ref(),
        )
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))?;
        self.reload().await?;
        Ok(kid)
    }

    /// Reloads, and rotates when the newest key has signed (or will have, by the time its
    /// successor is published) for a whole period.
    async fn tick(&self) -> Result<(), DomainError> {
        let set = self.reload().await?;
        if let Some(period) = self.rotation.period {
            let newest = set.newest().activates_at;
            if self.clock.now() + self.rotation.prepublish >= newest + period {
                self.rotate_now(newest).await?;
            }
        }
        Ok(())
    }
}

/// Owns the key set's changes; never on the signing path.
pub struct KeyManager<S>(std::marker::PhantomData<S>);

impl<S> Default for KeyManager<S> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<S: KeyStore> Actor for KeyManager<S> {
    type Msg = KeyManagerMsg;
    type State = KeyManagerArgs<S>;
    type Arguments = KeyManagerArgs<S>;

    async fn pre_start(
        &self,
        me: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        me.send_interval(args.rotation.check_every, || KeyManagerMsg::Tick(None));
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            KeyManagerMsg::Reload(reply) => {
                let _ = reply.send(st.reload().await.map(|_| ()));
            }
            KeyManagerMsg::Tick(reply) => {
                let r = st.tick().await;
                if let Err(e) = &r {
                    tracing::warn!(error = %e, "key check failed; will retry");
                }
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            KeyManagerMsg::Rotate(reply) => {
                let newest = st.handle.load().newest().activates_at;
                let _ = reply.send(st.rotate_now(newest).await);
            }
            KeyManagerMsg::Fault(f) => f.strike("KeyManager").await,
        }
        Ok(())
    }
}
