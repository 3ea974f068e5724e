//! Rate limiting: one GCRA semantics, two backends (Redis shared by every instance, and a
//! bounded in-process store), and the switch between them.
//!
//! GCRA (the generic cell-rate algorithm) keeps one number per key, the theoretical arrival time
//! (TAT), and admits a burst of `count` followed by an even `count` per `seconds`. We chose it
//! over a sliding window because its state is one integer (one Redis string with an expiry, one
//! `i64` in memory) and its answers give exact `Retry-After` values.
//!
//! A request that checks several keys (login: per IP and per account) is admitted only if every
//! key admits it, and a refused request changes no counter: in Redis both happen in one atomic
//! server-side script (EVALSHA, loaded again on NOSCRIPT), so a burst spread over many
//! instances never passes the limit; in memory, under the keys' locks.
//!
//! Checks never pass through an actor mailbox. When Redis errors or exceeds its short timeout,
//! the check is answered from memory at once and the backend is marked down (logged once); the
//! RateLimiter actor probes Redis and marks it up again. Times come from the service [`Clock`],
//! so instances' clocks must agree (NTP) for shared limits to be exact.
//!
//! The parts: `gcra` (the algorithm and its types), `memory` (the in-process store),
//! `redis` (the Redis backend), and here the [`RateLimiter`] facade that switches between
//! them. This module imports nothing from `crate::config`: configuration depends on it (for
//! [`Quota`] and [`Limits`]), never the other way round.

mod gcra;
mod memory;
mod redis;

pub use self::gcra::{account_key, Decision, Policy, Quota};
use self::memory::Memory;
pub use self::redis::RedisBackend;
use edge_idp_actors::limiter::{BackendHealth, BackendProbe};
use edge_idp_actors::Clock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The rate-limit quotas of API.md.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Login and MFA verify, per IP and per account.
    pub login: Quota,
    /// Signup per IP.
    pub signup: Quota,
    /// Refresh per IP.
    pub refresh: Quota,
    /// Organization invitations per inviting user.
    pub invite: Quota,
    /// Mail a client can cause, per IP and per address.
    pub email: Quota,
}

/// The rate limiter every limited route calls.
#[derive(Clone)]
pub struct RateLimiter {
    quotas: Arc<[(Policy, Quota)]>,
    memory: Memory,
    redis: Option<RedisBackend>,
    health: Arc<BackendHealth>,
    clock: Clock,
}

/// Largest number of keys kept in process by default; beyond it the least recently used go.
pub const MAX_KEYS: u64 = 100_000;

impl RateLimiter {
    /// A limiter for the given quotas; with `redis`, counters are shared through it.
    pub fn new(limits: &Limits, clock: Clock, redis: Option<RedisBackend>, max_keys: u64) -> Self {
        let quotas: Arc<[(Policy, Quota)]> = Arc::new([
            (Policy::LoginIp, limits.login),
            (Policy::LoginAccount, limits.login),
            (Policy::SignupIp, limits.signup),
            (Policy::RefreshIp, limits.refresh),
            (Policy::InviteUser, limits.invite),
            (Policy::EmailIp, limits.email),
            (Policy::EmailAccount, limits.email),
        ]);
        let longest = quotas
            .iter()
            .map(|(_, q)| q.period_secs)
            .max()
            .unwrap_or(3600);
        let health = Arc::new(BackendHealth::default());
        // Optimistic: the first check tries Redis, and a failure switches to memory at once.
        health.up.store(redis.is_some(), Ordering::SeqCst);
        Self {
            quotas,
            memory: Memory::new(max_keys, Duration::from_secs(u64::from(longest))),
            redis,
            health,
            clock,
        }
    }

    fn quota(&self, p: Policy) -> Quota {
        self.quotas
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, q)| *q)
            .unwrap_or(Quota {
                count: 1,
                period_secs: 1,
            })
    }

    /// Checks every `(policy, key)` pair; admits only if all admit, and then counts the request
    /// against each. The returned decision is the most restrictive one.
    pub async fn check(&self, checks: &[(Policy, &str)]) -> Decision {
        let now = self.clock.now_ms();
        let checks: Vec<(Policy, Quota, &str)> = checks
            .iter()
            .map(|(p, k)| (*p, self.quota(*p), *k))
            .collect();
        let mut decision = None;
        if let Some(r) = self
            .redis
            .as_ref()
            .filter(|_| self.health.up.load(Ordering::SeqCst))
        {
            match r.check(&checks, now).await {
                Ok(d) => decision = Some(d),
                Err(e) => self.health.mark_down("redis", &e),
            }
        }
        decision.unwrap_or_else(|| self.memory.check(&checks, now))
    }

    /// `"redis"` while the shared backend is in use, else `"memory"`.
    pub fn backend(&self) -> &'static str {
        if self.redis.is_some() && self.health.up.load(Ordering::SeqCst) {
            "redis"
        } else {
            "memory"
        }
    }

    /// How often the backend switched between Redis and memory.
    pub fn backend_switches(&self) -> u64 {
        self.health.switches.load(Ordering::Relaxed)
    }

    /// The health flag and probe the RateLimiter actor needs.
    pub fn health(&self) -> (Option<Arc<dyn BackendProbe>>, Arc<BackendHealth>) {
        (
            self.redis
                .clone()
                .map(|r| Arc::new(r) as Arc<dyn BackendProbe>),
            self.health.clone(),
        )
    }

    /// Keys currently held in process (for tests and metrics).
    pub fn stored_keys(&self) -> u64 {
        self.memory.stored_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(login: &str) -> (RateLimiter, Clock) {
        let q: Quota = login.parse().unwrap();
        let clock = Clock::manual(1_000_000);
        (
            RateLimiter::new(
                &Limits {
                    login: q,
                    signup: q,
                    refresh: q,
                    invite: q,
                    email: q,
                },
                clock.clone(),
                None,
                MAX_KEYS,
            ),
            clock,
        )
    }

    #[tokio::test]
    async fn a_flood_of_distinct_keys_leaves_the_store_bounded() {
        let q: Quota = "10/60".parse().unwrap();
        let l = RateLimiter::new(
            &Limits {
                login: q,
                signup: q,
                refresh: q,
                invite: q,
                email: q,
            },
            Clock::manual(0),
            None,
            1_000,
        );
        for i in 0..50_000u32 {
            let ip = std::net::Ipv4Addr::from(i).to_string();
            assert!(l.check(&[(Policy::LoginIp, &ip)]).await.allowed);
        }
        let n = l.stored_keys();
        assert!(n <= 1_000, "{n} keys held");
    }

    #[tokio::test]
    async fn burst_of_count_passes_then_refuses_then_recovers_after_the_interval() {
        let (l, clock) = limiter("3/60");
        for i in 0..3 {
            let d = l.check(&[(Policy::LoginIp, "1.2.3.4")]).await;
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 2 - i);
        }
        let d = l.check(&[(Policy::LoginIp, "1.2.3.4")]).await;
        assert!(!d.allowed);
        assert_eq!(d.reset_secs, 20, "one slot frees every 60/3 s");
        assert!(
            l.check(&[(Policy::LoginIp, "5.6.7.8")]).await.allowed,
            "keys are independent"
        );
        clock.advance(20);
        assert!(l.check(&[(Policy::LoginIp, "1.2.3.4")]).await.allowed);
        assert!(!l.check(&[(Policy::LoginIp, "1.2.3.4")]).await.allowed);
    }

    #[tokio::test]
    async fn a_refused_multi_key_request_counts_against_no_key() {
        let (l, _) = limiter("2/60");
        assert!(l.check(&[(Policy::LoginAccount, "a")]).await.allowed);
        assert!(l.check(&[(Policy::LoginAccount, "a")]).await.allowed);
        // The account is exhausted; the IP must not be charged for the refused attempts.
        for _ in 0..5 {
            assert!(
                !l.check(&[(Policy::LoginIp, "ip"), (Policy::LoginAccount, "a")])
                    .await
                    .allowed
            );
        }
        assert_eq!(l.check(&[(Policy::LoginIp, "ip")]).await.remaining, 1);
    }
}
