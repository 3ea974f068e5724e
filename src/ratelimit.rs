//! Rate limiting: GCRA over a bounded in-process store.
//!
//! GCRA (the generic cell-rate algorithm) keeps one number per key, the theoretical arrival time
//! (TAT), and admits a burst of `count` followed by an even `count` per `seconds`. We chose it
//! over a sliding window because its state is one integer (cheap in memory and, later, one
//! atomic Redis script) and its answers give exact `Retry-After` values.
//!
//! Checks read a concurrent cache directly: no actor mailbox sits on this hot path. The cache is
//! bounded (max entries, time-to-idle) so a flood of distinct IPs cannot grow it without limit.
//! A request that checks several keys (login: per IP and per account) is admitted only if every
//! key admits it, and a refused request changes no counter.

use edge_idp_actors::crypto::sha256;
use edge_idp_actors::Clock;
use moka::sync::Cache;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `count/seconds`: a burst of `count`, then on average `count` per `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Burst size and requests per period.
    pub count: u32,
    /// Period, seconds.
    pub period_secs: u32,
}

impl FromStr for Quota {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (c, p) = s
            .trim()
            .split_once('/')
            .ok_or("expected count/seconds, e.g. 10/60")?;
        let count: u32 = c
            .trim()
            .parse()
            .map_err(|_| "count must be a positive integer")?;
        let period_secs: u32 = p
            .trim()
            .parse()
            .map_err(|_| "seconds must be a positive integer")?;
        if count == 0 || period_secs == 0 {
            return Err("count and seconds must be positive".into());
        }
        Ok(Quota { count, period_secs })
    }
}

impl Quota {
    fn period_ms(self) -> i64 {
        i64::from(self.period_secs) * 1000
    }
    /// Milliseconds between two admissions at the sustained rate.
    fn interval_ms(self) -> i64 {
        (self.period_ms() / i64::from(self.count)).max(1)
    }
}

/// The policies of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// `/auth/login` and `/auth/mfa/verify` per client IP.
    LoginIp,
    /// `/auth/login` and `/auth/mfa/verify` per account (normalised email).
    LoginAccount,
    /// `/auth/signup` per client IP.
    SignupIp,
    /// `/auth/refresh` per client IP.
    RefreshIp,
}

impl Policy {
    /// Stable name for metrics and keys.
    pub fn name(self) -> &'static str {
        match self {
            Policy::LoginIp => "login_ip",
            Policy::LoginAccount => "login_account",
            Policy::SignupIp => "signup_ip",
            Policy::RefreshIp => "refresh_ip",
        }
    }
}

/// The answer for one request, for the `RateLimit-*` and `Retry-After` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota's count.
    pub limit: u32,
    /// Requests left in the current burst.
    pub remaining: u32,
    /// Whole seconds until the limit admits again (refused), or until the burst is whole again
    /// (admitted); at least 1 when refused.
    pub reset_secs: u64,
}

/// The per-account key: a hash of the normalised email, so that neither the key nor its
/// presence reveals whether an account exists, and no email sits in the limiter's store.
pub fn account_key(normalised_email: &str) -> String {
    let h = sha256(normalised_email.as_bytes());
    h[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// In-process GCRA limiter.
#[derive(Clone)]
pub struct RateLimiter {
    quotas: Arc<[(Policy, Quota)]>,
    cells: Cache<(Policy, String), Arc<Mutex<i64>>>,
    clock: Clock,
}

/// Largest number of keys kept in process; beyond it the least recently used are evicted.
pub const MAX_KEYS: u64 = 100_000;

impl RateLimiter {
    /// A limiter for the given quotas.
    pub fn new(limits: &crate::config::Limits, clock: Clock) -> Self {
        let quotas: Arc<[(Policy, Quota)]> = Arc::new([
            (Policy::LoginIp, limits.login),
            (Policy::LoginAccount, limits.login),
            (Policy::SignupIp, limits.signup),
            (Policy::RefreshIp, limits.refresh),
        ]);
        let longest = quotas
            .iter()
            .map(|(_, q)| q.period_secs)
            .max()
            .unwrap_or(3600);
        let cells = Cache::builder()
            .max_capacity(MAX_KEYS)
            // An idle key whose TAT lies in the past is the same as no key at all.
            .time_to_idle(Duration::from_secs(u64::from(longest)))
            .build();
        Self {
            quotas,
            cells,
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
    pub fn check(&self, checks: &[(Policy, &str)]) -> Decision {
        let now = self.clock.now_ms();
        let mut cells: Vec<(Quota, Arc<Mutex<i64>>)> = checks
            .iter()
            .map(|(p, k)| {
                (
                    self.quota(*p),
                    self.cells
                        .get_with((*p, (*k).to_owned()), || Arc::new(Mutex::new(i64::MIN))),
                )
            })
            .collect();
        // Lock in a fixed order so two requests sharing keys cannot deadlock.
        cells.sort_by_key(|(_, c)| Arc::as_ptr(c) as usize);
        let mut guards: Vec<_> = cells
            .iter()
            .map(|(q, c)| (*q, c.lock().unwrap_or_else(|e| e.into_inner())))
            .collect();
        let mut verdict: Option<Decision> = None;
        let mut new_tats = Vec::with_capacity(guards.len());
        for (q, tat) in guards.iter() {
            let d = gcra(*q, **tat, now);
            new_tats.push(d.1);
            verdict = Some(match verdict {
                None => d.0,
                Some(v) => most_restrictive(v, d.0),
            });
        }
        let verdict = verdict.unwrap_or(Decision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset_secs: 0,
        });
        if verdict.allowed {
            for ((_, tat), new) in guards.iter_mut().zip(new_tats) {
                **tat = new;
            }
        }
        verdict
    }

    /// Keys currently held (for tests and metrics).
    pub fn stored_keys(&self) -> u64 {
        self.cells.run_pending_tasks();
        self.cells.entry_count()
    }
}

fn most_restrictive(a: Decision, b: Decision) -> Decision {
    match (a.allowed, b.allowed) {
        (true, false) => b,
        (false, true) => a,
        _ if b.remaining < a.remaining
            || (b.remaining == a.remaining && b.reset_secs > a.reset_secs) =>
        {
            b
        }
        _ => a,
    }
}

/// One GCRA step: the decision and the TAT to store if the request is admitted.
fn gcra(q: Quota, tat: i64, now: i64) -> (Decision, i64) {
    let t = q.interval_ms();
    let period = q.period_ms();
    let base = tat.max(now);
    let new_tat = base + t;
    let ceil_secs = |ms: i64| ((ms.max(0) + 999) / 1000) as u64;
    if new_tat - now > period {
        // Admitted again once new_tat - now <= period, i.e. at new_tat - period.
        let wait = new_tat - period - now;
        let d = Decision {
            allowed: false,
            limit: q.count,
            remaining: 0,
            reset_secs: ceil_secs(wait).max(1),
        };
        return (d, tat);
    }
    let remaining = ((period - (new_tat - now)) / t) as u32;
    let d = Decision {
        allowed: true,
        limit: q.count,
        remaining,
        reset_secs: ceil_secs(new_tat - now),
    };
    (d, new_tat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;

    fn limiter(login: &str) -> (RateLimiter, Clock) {
        let q: Quota = login.parse().unwrap();
        let clock = Clock::manual(1_000_000);
        (
            RateLimiter::new(
                &Limits {
                    login: q,
                    signup: q,
                    refresh: q,
                },
                clock.clone(),
            ),
            clock,
        )
    }

    #[test]
    fn burst_of_count_passes_then_refuses_then_recovers_after_the_interval() {
        let (l, clock) = limiter("3/60");
        for i in 0..3 {
            let d = l.check(&[(Policy::LoginIp, "1.2.3.4")]);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 2 - i);
        }
        let d = l.check(&[(Policy::LoginIp, "1.2.3.4")]);
        assert!(!d.allowed);
        assert_eq!(d.reset_secs, 20, "one slot frees every 60/3 s");
        assert!(
            l.check(&[(Policy::LoginIp, "5.6.7.8")]).allowed,
            "keys are independent"
        );
        clock.advance(20);
        assert!(l.check(&[(Policy::LoginIp, "1.2.3.4")]).allowed);
        assert!(!l.check(&[(Policy::LoginIp, "1.2.3.4")]).allowed);
    }

    #[test]
    fn a_refused_multi_key_request_counts_against_no_key() {
        let (l, _) = limiter("2/60");
        assert!(l.check(&[(Policy::LoginAccount, "a")]).allowed);
        assert!(l.check(&[(Policy::LoginAccount, "a")]).allowed);
        // The account is exhausted; the IP must not be charged for the refused attempts.
        for _ in 0..5 {
            assert!(
                !l.check(&[(Policy::LoginIp, "ip"), (Policy::LoginAccount, "a")])
                    .allowed
            );
        }
        assert_eq!(l.check(&[(Policy::LoginIp, "ip")]).remaining, 1);
    }

    #[test]
    fn quota_parsing() {
        assert_eq!(
            "10/60".parse::<Quota>().unwrap(),
            Quota {
                count: 10,
                period_secs: 60
            }
        );
        assert!("10".parse::<Quota>().is_err());
        assert!("0/60".parse::<Quota>().is_err());
        assert!("a/b".parse::<Quota>().is_err());
    }

    #[test]
    fn account_keys_do_not_contain_the_email() {
        let k = account_key("alice@example.com");
        assert!(!k.contains("alice"));
        assert_eq!(k, account_key("alice@example.com"));
    }
}
