//! The Redis backend: the same GCRA as a server-side Lua script over every key of a request at
//! once, so instances sharing Redis share their counters.

use super::gcra::{combine, Decision, Policy, Quota};
use edge_idp_actors::limiter::BackendProbe;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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
    pub(super) async fn check(
        &self,
        checks: &[(Policy, Quota, &str)],
        now: i64,
    ) -> Result<Decision, String> {
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
