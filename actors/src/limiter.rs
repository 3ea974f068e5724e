//! The RateLimiter actor: watches the shared rate-limit backend and switches back to it.
//!
//! Rate-limit checks themselves never pass through this actor (they would queue every login
//! behind one mailbox): they call the backend directly and, when it fails or times out, flip a
//! shared health flag and answer from process memory at once. What must happen in order, and
//! off the request path, is the way back: this actor probes the backend on a timer while it is
//! marked down, and marks it up (logging the switch once) when it answers again.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A shared backend that can be asked whether it answers.
pub trait BackendProbe: Send + Sync + 'static {
    /// Backend name for logs.
    fn name(&self) -> &'static str;
    /// One bounded probe (it must time out by itself).
    fn ping(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

/// Health of the shared backend, read by every rate-limit check.
#[derive(Default)]
pub struct BackendHealth {
    /// Whether checks go to the shared backend.
    pub up: AtomicBool,
    /// How often the backend was switched (down or up), for metrics.
    pub switches: AtomicU64,
}

impl BackendHealth {
    /// Marks the backend down; logs and counts only the transition.
    pub fn mark_down(&self, backend: &str, why: &str) {
        if self.up.swap(false, Ordering::SeqCst) {
            self.switches.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                backend,
                reason = why,
                "rate-limit backend unreachable; limiting in process until it answers"
            );
        }
    }

    /// Marks the backend up; logs and counts only the transition.
    pub fn mark_up(&self, backend: &str) {
        if !self.up.swap(true, Ordering::SeqCst) {
            self.switches.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                backend,
                "rate-limit backend answers; shared limiting resumed"
            );
        }
    }
}

/// Messages of the RateLimiter actor.
pub enum LimiterMsg {
    /// Probe the backend if it is down.
    Tick,
    /// Answers once every earlier message is handled (tests: "it answers again").
    Ping(ractor::RpcReplyPort<Result<(), crate::DomainError>>),
    /// Test hook: a panic or a stall, to exercise supervision and timeouts.
    Fault(crate::Fault),
}

/// Start-up arguments (kept by the supervisor for restarts).
#[derive(Clone)]
pub struct LimiterArgs {
    /// The shared backend, if one is configured.
    pub probe: Option<Arc<dyn BackendProbe>>,
    /// Its health flag.
    pub health: Arc<BackendHealth>,
    /// How often to probe while down.
    pub every: Duration,
}

/// The actor.
#[derive(Default)]
pub struct RateLimiter;

impl Actor for RateLimiter {
    type Msg = LimiterMsg;
    type State = LimiterArgs;
    type Arguments = LimiterArgs;

    async fn pre_start(
        &self,
        me: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        if args.probe.is_some() {
            me.send_interval(args.every, || LimiterMsg::Tick);
        }
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LimiterMsg::Tick => {
                if let Some(p) = &st.probe {
                    if !st.health.up.load(Ordering::SeqCst) && p.ping().await {
                        st.health.mark_up(p.name());
                    }
                }
            }
            LimiterMsg::Ping(reply) => {
                let _ = reply.send(Ok(()));
            }
            LimiterMsg::Fault(f) => f.strike("RateLimiter").await,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend whose answer the test sets, and which counts the probes it got.
    #[derive(Default)]
    struct Switchable {
        answers: AtomicBool,
        probes: AtomicU64,
    }

    impl BackendProbe for Switchable {
        fn name(&self) -> &'static str {
            "switchable"
        }
        fn ping(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
            self.probes.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { self.answers.load(Ordering::SeqCst) })
        }
    }

    /// Asks the actor to answer once every earlier message is handled.
    async fn settled(actor: &ActorRef<LimiterMsg>) {
        crate::ask(
            Some(actor.clone()),
            LimiterMsg::Ping,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_backend_marked_down_is_probed_and_marked_up_once_it_answers_and_not_before() {
        let backend = Arc::new(Switchable::default());
        let health = Arc::new(BackendHealth::default());
        health.mark_up("switchable");
        let switched = health.switches.load(Ordering::SeqCst);
        let (actor, join) = Actor::spawn(
            None,
            RateLimiter,
            LimiterArgs {
                probe: Some(backend.clone()),
                health: health.clone(),
                // Ticks are driven by hand below; the timer must not add its own.
                every: Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
        // Up: a tick does not probe.
        actor.cast(LimiterMsg::Tick).unwrap();
        settled(&actor).await;
        assert_eq!(backend.probes.load(Ordering::SeqCst), 0);
        // Down and still failing: probed, stays down.
        health.mark_down("switchable", "test");
        actor.cast(LimiterMsg::Tick).unwrap();
        settled(&actor).await;
        assert_eq!(backend.probes.load(Ordering::SeqCst), 1);
        assert!(!health.up.load(Ordering::SeqCst));
        // It answers again: the next tick marks it up, counted as a second switch.
        backend.answers.store(true, Ordering::SeqCst);
        actor.cast(LimiterMsg::Tick).unwrap();
        settled(&actor).await;
        assert!(health.up.load(Ordering::SeqCst));
        assert_eq!(
            health.switches.load(Ordering::SeqCst),
            switched + 2,
            "down, then up"
        );
        actor.stop(None);
        join.await.unwrap();
    }
}
