//! The rate limiter's own cost per check, for both backends, each against a baseline measured
//! in the same run: a mutex-guarded `HashMap` update for the in-process store, a Redis `PING`
//! round trip for the Redis backend.
//!
//! `cargo bench --bench ratelimit` (uses `REDIS_URL`, default `redis://127.0.0.1:6379`; the
//! Redis part is skipped, saying so, when it does not answer).

// A measuring harness: a failed setup should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edge_idp::security::ratelimit::{Limits, Policy, Quota, RateLimiter, RedisBackend, MAX_KEYS};
use edge_idp_actors::Clock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const KEYS: usize = 1_000;

fn limits() -> Limits {
    let q: Quota = "1000000/60".parse().expect("quota");
    Limits {
        login: q,
        signup: q,
        refresh: q,
        invite: q,
        email: q,
    }
}

fn per_op(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_nanos() as f64 / n as f64
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
        .collect();
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model()
    );

    let n = 1_000_000;
    let map: Mutex<HashMap<String, i64>> = Mutex::new(HashMap::new());
    let t = Instant::now();
    for i in 0..n {
        let mut m = map.lock().expect("lock");
        *m.entry(keys[i % KEYS].clone()).or_insert(0) += 1;
    }
    let base = per_op(t.elapsed(), n);

    let mem = RateLimiter::new(&limits(), Clock::system(), None, MAX_KEYS);
    let t = Instant::now();
    rt.block_on(async {
        for i in 0..n {
            std::hint::black_box(
                mem.check(&[
                    (Policy::LoginIp, &keys[i % KEYS]),
                    (Policy::LoginAccount, &keys[(i + 7) % KEYS]),
                ])
                .await,
            );
        }
    });
    let memory = per_op(t.elapsed(), n);
    println!("baseline  mutex HashMap update          {base:>10.0} ns/op");
    println!(
        "memory    GCRA check, 2 keys            {memory:>10.0} ns/op   = {:.1}x baseline",
        memory / base
    );

    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    rt.block_on(async {
        let Ok(client) = redis::Client::open(url.as_str()) else {
            return println!("redis     skipped: bad REDIS_URL");
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return println!("redis     skipped: {url} does not answer");
        };
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            let _: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .expect("PING");
        }
        let ping = per_op(t.elapsed(), n);
        let prefix = format!("bench-{}", std::process::id());
        let backend =
            RedisBackend::new(&url, &prefix, Duration::from_millis(500)).expect("backend");
        let limiter = RateLimiter::new(&limits(), Clock::system(), Some(backend), MAX_KEYS);
        let t = Instant::now();
        for i in 0..n {
            std::hint::black_box(
                limiter
                    .check(&[
                        (Policy::LoginIp, &keys[i % KEYS]),
                        (Policy::LoginAccount, &keys[(i + 7) % KEYS]),
                    ])
                    .await,
            );
        }
        let gcra = per_op(t.elapsed(), n);
        assert_eq!(limiter.backend(), "redis", "the benchmark stayed on Redis");
        println!(
            "baseline  Redis PING round trip         {:>10.1} us/op",
            ping / 1000.0
        );
        println!(
            "redis     GCRA script, 2 keys           {:>10.1} us/op   = {:.2}x PING",
            gcra / 1000.0,
            gcra / ping
        );
    });
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
