//! Password hashing (Argon2id) and the password policy.
//!
//! A hash costs ~20 ms and 19 MiB, so an unbounded number in flight would turn a login flood
//! into memory exhaustion. Hashes run on a fixed set of `HASH_CONCURRENCY` threads of their own
//! (not tokio's blocking pool, which grows to hundreds of threads), behind a semaphore of the
//! same size. A request that finds every slot taken waits only if it can expect a slot within
//! `HASH_MAX_WAIT_MS`, judged from the measured hash duration (`pool`); otherwise it is shed at
//! once with 503 (its client retries after `Retry-After`). So a burst is served, and under twice
//! the load the machine can hash the waits stay within the budget instead of growing until
//! every request times out; a request that still cannot get a slot within the ask timeout is
//! shed too.
//!
//! Each hashing thread allocates its Argon2 working memory at its first hash and reuses it:
//! the server's memory for hashing is at most `HASH_CONCURRENCY × m_cost`, whatever the load,
//! and no hash pays for a 19 MiB allocation and its page faults. The buffer holds Argon2's
//! internal blocks of the last hash (as good as the hash itself to an attacker, which is to say
//! a brute-force target), is overwritten by the next one, and is zeroized and given back to the
//! system once its thread has had no hash for [`IDLE_RELEASE`] (and when the thread ends): a
//! server between login bursts holds no hashing memory and no traces of the last passwords'
//! work, and a burst pays one allocation per thread, not one per hash.
//!
//! Unknown emails are verified against a dummy hash of the same cost, so the answer and its
//! timing do not reveal whether an account exists.
//!
//! The parts: `policy` (what a password must not be), `hash` (the Argon2id computations),
//! `pool` (the threads, their memory and the slots in front of them), `alloc` (glibc tuning so
//! that memory given back leaves the process), and here the [`Passwords`] service.

mod alloc;
mod hash;
mod policy;
mod pool;

use self::hash::{dummy_hash, hash_in, matches_in};
pub use self::policy::{check_policy, context_words, PolicyError};
use self::pool::HashPool;
pub use self::pool::{HashMetrics, IDLE_RELEASE};
use argon2::password_hash::PasswordHash;
use argon2::Params;
use edge_idp_actors::{DomainError, SecretString};
use std::sync::Arc;
use std::time::Duration;

/// Outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whether the password matched.
    pub ok: bool,
    /// A hash with the current costs, when the stored one used other costs.
    pub rehash: Option<String>,
}

/// Argon2id with the configured cost, bounded concurrency and a dummy hash.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    pool: HashPool,
    dummy: Arc<str>,
}

impl Passwords {
    /// Starts the hashing threads and makes the dummy hash, whose duration is the first
    /// estimate of a hash's. A request finding the `concurrency` slots taken waits if it can
    /// expect a slot within `max_wait` (and fewer than `max_waiting` wait), for `wait` at most;
    /// a thread gives its memory back after `idle` without a hash ([`IDLE_RELEASE`] in the
    /// server).
    pub async fn new(
        params: Params,
        concurrency: usize,
        max_waiting: usize,
        max_wait: Duration,
        wait: Duration,
        idle: Duration,
        observe: HashMetrics,
    ) -> Result<Self, DomainError> {
        let started = std::time::Instant::now();
        let dummy = dummy_hash(&params)?;
        let pool = HashPool::new(
            concurrency,
            max_waiting,
            max_wait,
            wait,
            idle,
            started.elapsed(),
            observe,
        )?;
        Ok(Self {
            params,
            pool,
            dummy: dummy.into(),
        })
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: SecretString) -> Result<String, DomainError> {
        let params = self.params.clone();
        self.pool
            .on_slot(move |memory| hash_in(memory, &params, password.expose()))
            .await?
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no account,
    /// which always answers `ok: false` after the same work.
    pub async fn verify(
        &self,
        password: SecretString,
        phc: Option<String>,
    ) -> Result<Verified, DomainError> {
        let params = self.params.clone();
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        self.pool
            .on_slot(move |memory| {
                let parsed = PasswordHash::new(&phc)
                    .map_err(|e| DomainError::Internal(format!("stored hash unreadable: {e}")))?;
                let ok = matches_in(memory, &parsed, password.expose())? && known;
                let current = Params::try_from(&parsed).map(|p| {
                    p.m_cost() == params.m_cost()
                        && p.t_cost() == params.t_cost()
                        && p.p_cost() == params.p_cost()
                });
                let outdated =
                    parsed.algorithm != argon2::ARGON2ID_IDENT || !current.unwrap_or(false);
                let rehash = if ok && outdated {
                    Some(hash_in(memory, &params, password.expose())?)
                } else {
                    None
                };
                Ok(Verified { ok, rehash })
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::hash::hasher;
    use super::*;
    use argon2::password_hash::SaltString;
    use std::sync::atomic::Ordering;

    fn observe() -> HashMetrics {
        HashMetrics {
            wait: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("w", "w"))
                .unwrap(),
            queue: prometheus::IntGauge::new("q", "q").unwrap(),
            memory: prometheus::IntGauge::new("m", "m").unwrap(),
        }
    }

    /// Two hashing threads, room for 32 waiting within 2 s, the server's idle release.
    async fn passwords(params: Params) -> Passwords {
        Passwords::new(
            params,
            2,
            32,
            Duration::from_secs(2),
            Duration::from_secs(5),
            IDLE_RELEASE,
            observe(),
        )
        .await
        .unwrap()
    }

    /// `HASH_QUEUE`, the hard bound on waiting requests, holds whatever the estimate.
    #[tokio::test]
    async fn beyond_the_waiting_bound_a_hash_is_shed_at_once_and_admitted_again_after() {
        let p = Passwords::new(
            Params::new(128, 1, 1, None).unwrap(),
            1,
            1,
            Duration::from_secs(30),
            Duration::from_secs(30),
            IDLE_RELEASE,
            observe(),
        )
        .await
        .unwrap();
        // Every slot taken: the next request waits, the one after it is over the bound.
        let held = p.pool.slots.clone().acquire_many_owned(1).await.unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.hash(SecretString::new("waits its turn".into())).await })
        };
        while p.pool.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let shed = p.hash(SecretString::new("one too many".into())).await;
        assert!(
            matches!(shed, Err(DomainError::Unavailable(_))),
            "expected 503-class shedding, got {shed:?}"
        );
        drop(held);
        assert!(waiter.await.unwrap().unwrap().starts_with("$argon2id$"));
        assert_eq!(p.pool.waiting.load(Ordering::Acquire), 0);
        assert!(p.hash(SecretString::new("room again".into())).await.is_ok());
    }

    #[tokio::test]
    async fn a_hash_that_could_not_start_within_the_budget_is_shed_and_the_rest_are_served() {
        // One thread, 100 ms a hash (set, not measured, so the rule is tested at a known
        // duration), a 350 ms budget: three may wait behind the running hash, a fourth not.
        let p = Passwords::new(
            Params::new(128, 1, 1, None).unwrap(),
            1,
            1_000,
            Duration::from_millis(350),
            Duration::from_secs(30),
            IDLE_RELEASE,
            observe(),
        )
        .await
        .unwrap();
        p.pool.set_estimate(Duration::from_millis(100));
        let held = p.pool.slots.clone().acquire_many_owned(1).await.unwrap();
        let mut waiters = Vec::new();
        for i in 1..=3 {
            let q = p.clone();
            waiters.push(tokio::spawn(async move {
                q.hash(SecretString::new(format!("waiter {i}"))).await
            }));
            while p.pool.waiting.load(Ordering::Acquire) < i {
                tokio::task::yield_now().await;
            }
        }
        // Shed at once: it never joins the wait (bounded, so a broken rule fails, not hangs).
        let shed = tokio::time::timeout(
            Duration::from_secs(5),
            p.hash(SecretString::new("over the budget".into())),
        )
        .await
        .expect("the fourth request waited instead of being shed");
        assert!(
            matches!(shed, Err(DomainError::Unavailable(_))),
            "expected 503-class shedding, got {shed:?}"
        );
        assert_eq!(
            p.pool.waiting.load(Ordering::Acquire),
            3,
            "the shed one never waited"
        );
        drop(held);
        for w in waiters {
            assert!(w.await.unwrap().unwrap().starts_with("$argon2id$"));
        }
        assert!(
            p.pool.estimate() < Duration::from_millis(100),
            "learned from real hashes"
        );
    }

    #[tokio::test]
    async fn verify_accepts_the_right_password_and_upgrades_old_costs() {
        let weak = Params::new(64, 1, 1, None).unwrap();
        let p_old = passwords(weak).await;
        let phc = p_old
            .hash(SecretString::new("right password".into()))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let v = p_old
            .verify(
                SecretString::new("right password".into()),
                Some(phc.clone()),
            )
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                rehash: None
            }
        );
        assert!(
            !p_old
                .verify(
                    SecretString::new("wrong password".into()),
                    Some(phc.clone())
                )
                .await
                .unwrap()
                .ok
        );
        assert!(
            !p_old
                .verify(SecretString::new("right password".into()), None)
                .await
                .unwrap()
                .ok,
            "dummy never matches"
        );

        let p_new = passwords(Params::new(128, 2, 1, None).unwrap()).await;
        let v = p_new
            .verify(SecretString::new("right password".into()), Some(phc))
            .await
            .unwrap();
        assert!(v.ok);
        assert!(v.rehash.unwrap().contains("m=128,t=2,p=1"));
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let params = Params::new(256, 2, 1, None).unwrap();
        let p = passwords(params.clone()).await;
        // Ours, checked by the reference verifier: right and wrong password.
        let ours = p
            .hash(SecretString::new("pässword one".into()))
            .await
            .unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(hasher(&params)
            .verify_password("pässword one".as_bytes(), &parsed)
            .is_ok());
        assert!(hasher(&params)
            .verify_password(b"password two", &parsed)
            .is_err());
        // The reference hasher's, checked by ours (hashes stored before this pool existed),
        // with other costs and a longer output than ours.
        let other = Params::new(512, 3, 1, Some(48)).unwrap();
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let theirs = hasher(&other)
            .hash_password(b"legacy password", &salt)
            .unwrap()
            .to_string();
        let v = p
            .verify(
                SecretString::new("legacy password".into()),
                Some(theirs.clone()),
            )
            .await
            .unwrap();
        assert!(v.ok && v.rehash.is_some(), "{v:?}");
        assert!(
            !p.verify(SecretString::new("legacy passwort".into()), Some(theirs))
                .await
                .unwrap()
                .ok
        );
    }

    #[tokio::test]
    async fn hashing_memory_is_held_while_busy_and_given_back_when_idle() {
        let idle = Duration::from_millis(200);
        let metrics = observe();
        let held = metrics.memory.clone();
        let p = Passwords::new(
            Params::new(1024, 1, 1, None).unwrap(),
            2,
            8,
            Duration::from_secs(2),
            Duration::from_secs(5),
            idle,
            metrics,
        )
        .await
        .unwrap();
        assert_eq!(held.get(), 0, "nothing held before the first hash");
        let phc = p
            .hash(SecretString::new("burst of logins".into()))
            .await
            .unwrap();
        let one = 1024 * 1024;
        assert_eq!(held.get(), one, "one thread holds the cost's memory");
        // Back to back, within the idle time: the memory is reused, not allocated again.
        for _ in 0..4 {
            p.verify(
                SecretString::new("burst of logins".into()),
                Some(phc.clone()),
            )
            .await
            .unwrap();
            assert!(held.get() <= 2 * one, "at most one buffer per thread");
        }
        // Then no hash for longer than `idle`: every thread gives its buffer back.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while held.get() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "still holding {} bytes long after the idle time",
                held.get()
            );
            tokio::time::sleep(idle / 4).await;
        }
        // And the next hash works, allocating again.
        assert!(
            p.verify(SecretString::new("burst of logins".into()), Some(phc))
                .await
                .unwrap()
                .ok
        );
        assert_eq!(held.get(), one);
    }
}
