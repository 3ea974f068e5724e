//! The root supervisor, and the handles through which callers reach its children.
//!
//! ```text
//! Root (RootSupervisor)
//! ├── KeyManager    the one owner of key-set changes; publishes KeyHandle snapshots
//! └── RateLimiter   probes the shared rate-limit backend back into service
//! ```
//!
//! These are the two things in the service that need one owner per process. Account and
//! session writes have none: they are ordered where every instance meets, by conditional
//! writes at the database's primary (see `refresh` and the application layer), so no mailbox
//! stands in their way.
//!
//! ractor's default supervisor stops itself when a child dies; this one restarts the child with
//! the arguments it was first started with and swaps the new reference into [`Handles`], so the
//! next request reaches the new actor. Requests that were waiting on the dead actor see their
//! reply port dropped and end in `Unavailable` (503) at once, never a hang.

use crate::keys::{KeyManager, KeyManagerArgs, KeyManagerMsg};
use crate::limiter::{LimiterArgs, LimiterMsg, RateLimiter};
use crate::store::Store;
use arc_swap::ArcSwapOption;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The kinds of child, for restart counts and test hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// The KeyManager.
    KeyManager,
    /// The RateLimiter (backend health).
    RateLimiter,
}

impl ActorKind {
    /// Every kind.
    pub const ALL: [ActorKind; 2] = [ActorKind::KeyManager, ActorKind::RateLimiter];

    /// Stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ActorKind::KeyManager => "key_manager",
            ActorKind::RateLimiter => "rate_limiter",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How callers reach the current incarnation of every actor.
pub struct Handles {
    /// The KeyManager.
    pub keys: ArcSwapOption<ActorRef<KeyManagerMsg>>,
    /// The RateLimiter.
    pub limiter: ArcSwapOption<ActorRef<LimiterMsg>>,
    restarts: [AtomicU64; 2],
}

impl Handles {
    /// Empty handles; the supervisor fills them.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            keys: ArcSwapOption::empty(),
            limiter: ArcSwapOption::empty(),
            restarts: Default::default(),
        })
    }

    /// How many actors of `kind` are running now (between a crash and its restart, one fewer).
    pub fn running(&self, kind: ActorKind) -> usize {
        match kind {
            ActorKind::KeyManager => usize::from(self.keys.load().is_some()),
            ActorKind::RateLimiter => usize::from(self.limiter.load().is_some()),
        }
    }

    /// How often actors of `kind` were restarted since start (counted once the restarted one
    /// answers through the handles).
    pub fn restarts(&self, kind: ActorKind) -> u64 {
        self.restarts[kind.index()].load(Ordering::Acquire)
    }

    /// Runs the KeyManager's periodic check now (reload, rotate if due) and waits for it.
    pub async fn check_keys(&self, timeout: std::time::Duration) -> Result<(), crate::DomainError> {
        crate::ask(
            self.keys.load_full().map(|a| (*a).clone()),
            |r| KeyManagerMsg::Tick(Some(r)),
            timeout,
        )
        .await
    }

    /// Rotates the signing key now and waits for it; the new kid, or `None` if another instance
    /// rotated at the same moment.
    pub async fn rotate_keys(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Option<String>, crate::DomainError> {
        crate::ask(
            self.keys.load_full().map(|a| (*a).clone()),
            KeyManagerMsg::Rotate,
            timeout,
        )
        .await
    }

    /// Waits at most `timeout` for the actor of `kind` to handle a message: `Ok` once it
    /// answers (tests use it to see a stalled actor come back).
    pub async fn ping(
        &self,
        kind: ActorKind,
        timeout: std::time::Duration,
    ) -> Result<(), crate::DomainError> {
        match kind {
            ActorKind::KeyManager => self.check_keys(timeout).await,
            ActorKind::RateLimiter => {
                crate::ask(
                    self.limiter.load_full().map(|a| (*a).clone()),
                    LimiterMsg::Ping,
                    timeout,
                )
                .await
            }
        }
    }

    /// Test hook: makes every actor of `kind` panic in its handler.
    pub fn inject_panic(&self, kind: ActorKind) {
        self.inject(kind, crate::Fault::Panic);
    }

    /// Test hook: delivers `fault` to the actor of `kind`, in turn with its other messages.
    pub fn inject(&self, kind: ActorKind, fault: crate::Fault) {
        match kind {
            ActorKind::KeyManager => {
                if let Some(k) = self.keys.load_full() {
                    let _ = k.cast(KeyManagerMsg::Fault(fault));
                }
            }
            ActorKind::RateLimiter => {
                if let Some(l) = self.limiter.load_full() {
                    let _ = l.cast(LimiterMsg::Fault(fault));
                }
            }
        }
    }
}

/// Everything the tree needs to start (and restart) its children.
pub struct RootArgs<S> {
    /// KeyManager arguments.
    pub keys: KeyManagerArgs<S>,
    /// RateLimiter arguments.
    pub limiter: LimiterArgs,
    /// Where the children are published.
    pub handles: Arc<Handles>,
}

#[derive(Clone, Copy)]
enum Child {
    Keys,
    Limiter,
}

/// State of the root: its arguments and which actor id is which child.
pub struct RootState<S> {
    args: RootArgs<S>,
    children: HashMap<ActorId, Child>,
}

/// The root of the supervision tree.
pub struct RootSupervisor<S>(std::marker::PhantomData<S>);

impl<S> Default for RootSupervisor<S> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<S: Store> RootState<S> {
    async fn spawn(&mut self, child: Child, me: ActorCell) -> Result<(), ActorProcessingErr> {
        let a = &self.args;
        let id = match child {
            Child::Keys => {
                let (r, _) =
                    Actor::spawn_linked(None, KeyManager::<S>::default(), a.keys.clone(), me)
                        .await?;
                let id = r.get_id();
                a.handles.keys.store(Some(Arc::new(r)));
                id
            }
            Child::Limiter => {
                let (r, _) = Actor::spawn_linked(None, RateLimiter, a.limiter.clone(), me).await?;
                let id = r.get_id();
                a.handles.limiter.store(Some(Arc::new(r)));
                id
            }
        };
        self.children.insert(id, child);
        Ok(())
    }
}

impl<S: Store> Actor for RootSupervisor<S> {
    type Msg = ();
    type State = RootState<S>;
    type Arguments = RootArgs<S>;

    async fn pre_start(
        &self,
        me: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut st = RootState {
            children: HashMap::new(),
            args,
        };
        st.spawn(Child::Keys, me.get_cell()).await?;
        st.spawn(Child::Limiter, me.get_cell()).await?;
        Ok(st)
    }

    async fn post_stop(
        &self,
        me: ActorRef<Self::Msg>,
        _st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        me.stop_children_and_wait(None, Some(std::time::Duration::from_secs(5)))
            .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        me: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match &evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.clone().unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(child) = st.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        let kind = match child {
            Child::Keys => ActorKind::KeyManager,
            Child::Limiter => ActorKind::RateLimiter,
        };
        tracing::error!(actor = kind.name(), reason = %why, "actor died; restarting");
        st.spawn(child, me.get_cell()).await?;
        // Counted once the new incarnation is what the handles reach: whoever sees the count
        // (a test, a metric scrape) and then asks, reaches the new one, not the dead one.
        st.args.handles.restarts[kind.index()].fetch_add(1, Ordering::Release);
        Ok(())
    }
}
