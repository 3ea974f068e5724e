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

use edge_idp_actors::crypto::sha256;
use edge_idp_actors::limiter::{BackendHealth, BackendProbe};
use edge_idp_actors::Clock;
use moka::sync::Cache;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::Ordering;
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
    /// `POST /orgs/{org_id}/invitations` per inviting user (its user id).
    InviteUser,
}

impl Policy {
    /// The limit a route applies (`login`, `signup`, `refresh`), for metrics.
    pub fn group(self) -> &'static str {
        match self {
            Policy::LoginIp | Policy::LoginAccount => "login",
            Policy::SignupIp => "signup",
            Policy::RefreshIp => "refresh",
            Policy::InviteUser => "invite",
        }
    }

    /// Stable name for metrics and keys.
    pub fn name(self) -> &'static str {
        match self {
            Policy::LoginIp => "login_ip",
            Policy::LoginAccount => "login_account",
            Policy::SignupIp => "signup_ip",
            Policy::RefreshIp => "refresh_ip",
            Policy::InviteUser => "invite_user",
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

/// The in-process GCRA store: bounded, keys idle out.
#[derive(Clone)]
struct Memory {
    cells: Cache<(Policy, String), Arc<Mutex<i64>>>,
}

impl Memory {
    fn new(max_keys: u64, idle: Duration) -> Self {
        // An idle key whose TAT lies in the past is the same as no key at all.
        Self {
            cells: Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(idle)
                .build(),
        }
    }

    fn check(&self, checks: &[(Policy, Quota, &str)], now: i64) -> Decision {
        let mut cells: Vec<(Quota, Arc<Mutex<i64>>)> = checks
            .iter()
            .map(|(p, q, k)| {
                (
                    *q,
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
        let steps: Vec<(Decision, i64)> =
            guards.iter().map(|(q, tat)| gcra(*q, **tat, now)).collect();
        let verdict = combine(steps.iter().map(|s| s.0));
        if verdict.allowed {
            for ((_, tat), (_, new)) in guards.iter_mut().zip(steps) {
                **tat = new;
            }
        }
        verdict
    }
}

fn combine(ds: impl Iterator<Item = Decision>) -> Decision {
    ds.reduce(most_restrictive).unwrap_or(Decision {
        allowed: true,
        limit: 0,
        remaining: 0,
        reset_secs: 0,
    })
}

/// GCRA over several keys, atomically, in Redis. `KEYS`: the keys; `ARGV[1]`: now (ms); then
/// per key its interval and period (ms). Answers `allowed` then per key `(admitted, remaining,
/// ms until reset)`. Writes only when every key admits; each key expires when its burst is whole.
const GCRA_LUA: &str = r#"
local now = tonumber(ARGV[1])
local out = {0}
local news = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local t = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + t
  if new_tat - now > period then
    allowed = 0
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = new_tat - period - now
  else
    out[#out + 1] = 1
    out[#out + 1] = math.floor((period - (new_tat - now)) / t)
    out[#out + 1] = new_tat - now
  end
  news[i] = new_tat
end
if allowed == 1 then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%d', news[i]), 'PX', math.max(news[i] - now, 1))
  end
end
out[1] = allowed
return out
"#;

const TIMED_OUT: &str = "timed out";

/// The Redis backend: a reconnecting connection manager, created lazily so that the service
/// starts (in memory) even when Redis is down.
#[derive(Clone)]
pub struct RedisBackend {
    client: redis::Client,
    conn: Arc<tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>>,
    script: Arc<redis::Script>,
    prefix: Arc<str>,
    timeout: Duration,
}

impl RedisBackend {
    /// A backend for `url`; keys are `{<prefix>}:rl:<policy>:<key>`. The braces are a Redis
    /// Cluster hash tag: the script reads and writes several keys at once (login: per IP and
    /// per account), which a cluster allows only for keys of one slot, so every limiter key
    /// carries the same tag. The limiter's keys therefore live on one shard of a cluster.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            conn: Arc::default(),
            script: Arc::new(redis::Script::new(GCRA_LUA)),
            prefix: prefix.into(),
            timeout,
        })
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, String> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let c = tokio::time::timeout(
            self.timeout * 2,
            self.client.get_connection_manager_with_config(cfg),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// One check; a broken connection (Redis restarted, say) is retried once on the connection
    /// the manager re-establishes, a timeout is not.
    async fn check(&self, checks: &[(Policy, Quota, &str)], now: i64) -> Result<Decision, String> {
        match self.check_once(checks, now).await {
            Err(e) if e != TIMED_OUT => self.check_once(checks, now).await,
            other => other,
        }
    }

    async fn check_once(
        &self,
        checks: &[(Policy, Quota, &str)],
        now: i64,
    ) -> Result<Decision, String> {
        let mut conn = self.connection().await?;
        let mut inv = self.script.prepare_invoke();
        inv.arg(now);
        for (p, q, k) in checks {
            inv.key(redis_key(&self.prefix, *p, k));
            inv.arg(q.interval_ms()).arg(q.period_ms());
        }
        let out: Vec<i64> = tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| TIMED_OUT.to_owned())?
            .map_err(|e| e.to_string())?;
        if out.len() != 1 + 3 * checks.len() {
            return Err(format!("unexpected script answer of {} values", out.len()));
        }
        let ceil_secs = |ms: i64| ((ms.max(0) + 999) / 1000) as u64;
        let each = checks.iter().zip(out[1..].chunks(3)).map(|((_, q, _), v)| {
            let allowed = v[0] == 1;
            let reset = ceil_secs(v[2]);
            Decision {
                allowed,
                limit: q.count,
                remaining: v[1].max(0) as u32,
                reset_secs: if allowed { reset } else { reset.max(1) },
            }
        });
        let mut d = combine(each);
        d.allowed = out[0] == 1;
        Ok(d)
    }
}

/// The Redis key of one counter, hash-tagged by the prefix (see [`RedisBackend::new`]).
fn redis_key(prefix: &str, policy: Policy, key: &str) -> String {
    format!("{{{prefix}}}:rl:{}:{key}", policy.name())
}

impl BackendProbe for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn ping(&self) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            let Ok(mut c) = self.connection().await else {
                return false;
            };
            let pong: Result<Result<String, _>, _> =
                tokio::time::timeout(self.timeout, redis::cmd("PING").query_async(&mut c)).await;
            matches!(pong, Ok(Ok(_)))
        })
    }
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
    pub fn new(
        limits: &crate::config::Limits,
        clock: Clock,
        redis: Option<RedisBackend>,
        max_keys: u64,
    ) -> Self {
        let quotas: Arc<[(Policy, Quota)]> = Arc::new([
            (Policy::LoginIp, limits.login),
            (Policy::LoginAccount, limits.login),
            (Policy::SignupIp, limits.signup),
            (Policy::RefreshIp, limits.refresh),
            (Policy::InviteUser, limits.invite),
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
        self.memory.cells.run_pending_tasks();
        self.memory.cells.entry_count()
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
                    invite: q,
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
