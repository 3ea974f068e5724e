//! The root supervisor, and the handles through which callers reach its children.
//!
//! ```text
//! Root (RootSupervisor)
//! ├── KeyManager            key set changes; publishes KeyHandle snapshots
//! ├── Users[0..n]           account writes, sharded by normalised email
//! ├── RefreshFamilies[0..n] rotation / reuse, sharded by session id
//! └── RateLimiter           probes the shared rate-limit backend back into service
//! ```
//!
//! ractor's default supervisor stops itself when a child dies; this one restarts the child with
//! the arguments it was first started with and swaps the new reference into [`Handles`], so the
//! next request reaches the new actor. Requests that were waiting on the dead actor see their
//! reply port dropped and end in `Unavailable` (503) at once, never a hang.

use crate::keys::{KeyManager, KeyManagerArgs, KeyManagerMsg};
use crate::limiter::{LimiterArgs, LimiterMsg, RateLimiter};
use crate::refresh::{RefreshArgs, RefreshFamilies, RefreshMsg};
use crate::store::Store;
use crate::users::{Users, UsersArgs, UsersMsg};
use arc_swap::ArcSwapOption;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, Message, SupervisionEvent};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The kinds of child, for restart counts and test hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// The KeyManager.
    KeyManager,
    /// A Users shard.
    Users,
    /// A RefreshFamilies shard.
    RefreshFamilies,
    /// The RateLimiter (backend health).
    RateLimiter,
}

impl ActorKind {
    /// Every kind.
    pub const ALL: [ActorKind; 4] = [
        ActorKind::KeyManager,
        ActorKind::Users,
        ActorKind::RefreshFamilies,
        ActorKind::RateLimiter,
    ];

    /// Stable name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            ActorKind::KeyManager => "key_manager",
            ActorKind::Users => "users",
            ActorKind::RefreshFamilies => "refresh_families",
            ActorKind::RateLimiter => "rate_limiter",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A fixed set of actors of one kind; a key always maps to the same shard.
pub struct Shards<M: Message> {
    slots: Vec<ArcSwapOption<ActorRef<M>>>,
}

impl<M: Message> Shards<M> {
    fn new(n: usize) -> Self {
        Self {
            slots: (0..n.max(1)).map(|_| ArcSwapOption::empty()).collect(),
        }
    }

    /// The shard responsible for `key`, if it is running.
    pub fn pick(&self, key: &[u8]) -> Option<ActorRef<M>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let i = (h.finish() % self.slots.len() as u64) as usize;
        self.slots[i].load_full().map(|a| (*a).clone())
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: there is at least one shard.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn set(&self, i: usize, a: ActorRef<M>) {
        self.slots[i].store(Some(Arc::new(a)));
    }

    fn all(&self) -> Vec<ActorRef<M>> {
        self.slots
            .iter()
            .filter_map(|s| s.load_full().map(|a| (*a).clone()))
            .collect()
    }
}

/// How callers reach the current incarnation of every actor.
pub struct Handles {
    /// The KeyManager.
    pub keys: ArcSwapOption<ActorRef<KeyManagerMsg>>,
    /// Users shards.
    pub users: Shards<UsersMsg>,
    /// RefreshFamilies shards.
    pub refresh: Shards<RefreshMsg>,
    /// The RateLimiter.
    pub limiter: ArcSwapOption<ActorRef<LimiterMsg>>,
    restarts: [AtomicU64; 4],
}

impl Handles {
    /// Empty handles for `shards` shards of each sharded kind; the supervisor fills them.
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(Self {
            keys: ArcSwapOption::empty(),
            users: Shards::new(shards),
            refresh: Shards::new(shards),
            limiter: ArcSwapOption::empty(),
            restarts: Default::default(),
        })
    }

    /// How many actors of `kind` are running now (between a crash and its restart, one fewer).
    pub fn running(&self, kind: ActorKind) -> usize {
        match kind {
            ActorKind::KeyManager => usize::from(self.keys.load().is_some()),
            ActorKind::Users => self.users.all().len(),
            ActorKind::RefreshFamilies => self.refresh.all().len(),
            ActorKind::RateLimiter => usize::from(self.limiter.load().is_some()),
        }
    }

    /// How often actors of `kind` were restarted since start.
    pub fn restarts(&self, kind: ActorKind) -> u64 {
        self.restarts[kind.index()].load(Ordering::Relaxed)
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

    /// Test hook: makes every actor of `kind` panic in its handler.
    pub fn inject_panic(&self, kind: ActorKind) {
        self.inject(kind, crate::Fault::Panic);
    }

    /// Test hook: delivers `fault` to every actor of `kind` (every shard), in turn with their
    /// other messages.
    pub fn inject(&self, kind: ActorKind, fault: crate::Fault) {
        match kind {
            ActorKind::KeyManager => {
                if let Some(k) = self.keys.load_full() {
                    let _ = k.cast(KeyManagerMsg::Fault(fault));
                }
            }
            ActorKind::Users => self
                .users
                .all()
                .iter()
                .for_each(|a| drop(a.cast(UsersMsg::Fault(fault)))),
            ActorKind::RefreshFamilies => self
                .refresh
                .all()
                .iter()
                .for_each(|a| drop(a.cast(RefreshMsg::Fault(fault)))),
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
    /// Users arguments (same for every shard).
    pub users: UsersArgs<S>,
    /// RefreshFamilies arguments (same for every shard).
    pub refresh: RefreshArgs<S>,
    /// RateLimiter arguments.
    pub limiter: LimiterArgs,
    /// Where the children are published.
    pub handles: Arc<Handles>,
}

#[derive(Clone, Copy)]
enum Child {
    Keys,
    Users(usize),
    Refresh(usize),
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
            Child::Users(i) => {
                let (r, _) =
                    Actor::spawn_linked(None, Users::<S>::default(), a.users.clone(), me).await?;
                let id = r.get_id();
                a.handles.users.set(i, r);
                id
            }
            Child::Refresh(i) => {
                let (r, _) = Actor::spawn_linked(
                    None,
                    RefreshFamilies::<S>::default(),
                    a.refresh.clone(),
                    me,
                )
                .await?;
                let id = r.get_id();
                a.handles.refresh.set(i, r);
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
        for i in 0..st.args.handles.users.len() {
            st.spawn(Child::Users(i), me.get_cell()).await?;
        }
        for i in 0..st.args.handles.refresh.len() {
            st.spawn(Child::Refresh(i), me.get_cell()).await?;
        }
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
            Child::Users(_) => ActorKind::Users,
            Child::Refresh(_) => ActorKind::RefreshFamilies,
            Child::Limiter => ActorKind::RateLimiter,
        };
        tracing::error!(actor = kind.name(), reason = %why, "actor died; restarting");
        st.args.handles.restarts[kind.index()].fetch_add(1, Ordering::Relaxed);
        st.spawn(child, me.get_cell()).await
    }
}
