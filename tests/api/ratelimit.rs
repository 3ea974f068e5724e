//! Rate limits over HTTP, in process and through Redis.
//!
//! Redis tests read `REDIS_URL` (CI sets it to the Redis on 127.0.0.1:6379 and they are required
//! there). Without it they print that they were skipped, on the real stderr so the note is not
//! swallowed by the test harness, and return.

use crate::helpers::*;
use serde_json::json;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Redis to use, or `None` (with a visible note) when `REDIS_URL` is unset. A set but
/// unreachable `REDIS_URL` fails the test: in CI Redis is required.
async fn redis_url(test: &str) -> Option<String> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: REDIS_URL is not set, so no Redis to test against"
        );
        return None;
    };
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL parses");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("REDIS_URL={url} is set but unreachable: {e}"));
    let _: String = redis::cmd("PING").query_async(&mut c).await.expect("PING");
    Some(url)
}

async fn login_as(app: &TestApp, email: &str, ip: Option<&str>) -> reqwest::Response {
    let mut r = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"email": email, "password": "wrong password here"}));
    if let Some(ip) = ip {
        r = r.header("x-client-ip", ip);
    }
    r.send().await.unwrap()
}

async fn assert_limited(r: reqwest::Response, limit: &str) -> u64 {
    let h = r.headers().clone();
    assert_eq!(h["ratelimit-limit"], limit);
    assert_eq!(h["ratelimit-remaining"], "0");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    let reset: u64 = h["ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1 && reset == retry, "retry {retry} reset {reset}");
    assert_problem(r, 429, "rate_limited").await;
    retry
}

fn opts(redis: Option<&str>) -> Opts {
    let o = Opts::default()
        .arg("--rate-limit-login", "3/60")
        .arg("--rate-limit-signup", "2/60")
        .arg("--rate-limit-refresh", "2/60")
        .arg("--client-ip-header", "X-Client-IP");
    match redis {
        Some(url) => o.arg("--redis-url", url),
        None => o,
    }
}

/// Every policy of API.md: `count` pass, the next is 429 with the headers, and after the
/// announced wait it passes again.
async fn each_policy(redis: Option<&str>) {
    let app = spawn_with(opts(redis)).await;
    // Per client IP: three accounts from one IP.
    for i in 0..3 {
        let r = login_as(&app, &format!("ip{i}@example.com"), Some("203.0.113.1")).await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["ratelimit-limit"], "3");
    }
    let wait = assert_limited(
        login_as(&app, "ip9@example.com", Some("203.0.113.1")).await,
        "3",
    )
    .await;
    // Per account: one account from three other IPs.
    for i in 0..3 {
        assert_eq!(
            login_as(&app, "acct@example.com", Some(&format!("198.51.100.{i}")))
                .await
                .status(),
            401
        );
    }
    assert_limited(
        login_as(&app, "ACCT@example.com", Some("198.51.100.9")).await,
        "3",
    )
    .await;
    app.clock.advance(wait as i64);
    assert_eq!(
        login_as(&app, "ip9@example.com", Some("203.0.113.1"))
            .await
            .status(),
        401,
        "passes after the window"
    );

    // Signup per IP; a malformed header value counts against the peer address.
    let signup = |email: String, ip: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(app.url("/auth/signup"))
                .header("x-client-ip", ip)
                .json(&json!({"email": email, "password": PASSWORD}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        signup("s1@example.com".into(), "not-an-ip").await.status(),
        201
    );
    assert_eq!(
        app.post(
            "/auth/signup",
            &json!({"email": "s2@example.com", "password": PASSWORD})
        )
        .await
        .status(),
        201
    );
    let wait = assert_limited(signup("s3@example.com".into(), "999.1.1.1").await, "2").await;
    assert_eq!(
        signup("s3@example.com".into(), "192.0.2.7").await.status(),
        201,
        "another IP has its own budget"
    );
    app.clock.advance(wait as i64);
    assert_eq!(
        app.post(
            "/auth/signup",
            &json!({"email": "s4@example.com", "password": PASSWORD})
        )
        .await
        .status(),
        201
    );

    // Refresh per IP.
    for _ in 0..2 {
        assert_problem(
            app.refresh("A".repeat(43).as_str()).await,
            401,
            "invalid_refresh_token",
        )
        .await;
    }
    let wait = assert_limited(app.refresh("A".repeat(43).as_str()).await, "2").await;
    app.clock.advance(wait as i64);
    assert_problem(
        app.refresh("A".repeat(43).as_str()).await,
        401,
        "invalid_refresh_token",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_in_process() {
    each_policy(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_through_redis() {
    let Some(url) = redis_url("each_policy_through_redis").await else {
        return;
    };
    each_policy(Some(&url)).await;
}

/// Two servers on one Redis namespace and one clock: `n` alternating requests, counted.
async fn admitted(a: &TestApp, b: &TestApp, n: usize, email: &str) -> usize {
    let mut ok = 0;
    for i in 0..n {
        let app = if i % 2 == 0 { a } else { b };
        let r = login_as(app, email, None).await;
        assert!(r.status() == 401 || r.status() == 429, "{}", r.status());
        ok += usize::from(r.status() == 401);
    }
    ok
}

async fn pair(url: &str, prefix: &str, clock: &edge_idp_actors::Clock) -> (TestApp, TestApp) {
    let o = || {
        Opts {
            clock: Some(clock.clone()),
            ..Default::default()
        }
        .arg("--redis-url", url)
        .arg("--rate-limit-redis-prefix", prefix)
        .arg("--rate-limit-login", "4/60")
    };
    (spawn_with(o()).await, spawn_with(o()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_hold_the_limit_for_the_sum_of_their_traffic() {
    let Some(url) = redis_url("two_instances_sharing_redis").await else {
        return;
    };
    let prefix = format!("pair-{}", uuid::Uuid::now_v7().simple());
    let clock = edge_idp_actors::Clock::manual_now();
    let (a, b) = pair(&url, &prefix, &clock).await;
    assert_eq!(admitted(&a, &b, 10, "shared@example.com").await, 4);
}

struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> OwnRedis {
        Self::start_with(port, &[])
    }

    fn start_with(port: u16, extra: &[&str]) -> OwnRedis {
        let child = Command::new("redis-server")
            .args(extra)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (CI machines have it)");
        OwnRedis { child, port }
    }

    /// Starts on a free port: one picked and released, so another process may take it before
    /// redis-server binds it; then redis-server exits and another port is tried.
    async fn start_free(extra: &[&str]) -> OwnRedis {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut redis = Self::start_with(port, extra);
            if redis.answers().await {
                return redis;
            }
            redis.kill();
        }
        panic!("own redis-server did not start on any of five ports");
    }

    async fn ready(&mut self) {
        assert!(self.answers().await, "own redis-server did not start");
    }

    /// Whether it answers PING within 10 s (false at once if the process exited).
    async fn answers(&mut self) -> bool {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn until_backend(
    app: &TestApp,
    limiter: &edge_idp::security::ratelimit::RateLimiter,
    backend: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while limiter.backend() != backend {
        assert!(
            tokio::time::Instant::now() < deadline,
            "backend did not become {backend}"
        );
        let _ = app.get("/healthz").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_test_limits_in_process_then_shared_counting_resumes() {
    if redis_url("redis_stopped_mid_test").await.is_none() {
        return;
    }
    let mut redis = OwnRedis::start_free(&[]).await;
    let port = redis.port;
    let url = format!("redis://127.0.0.1:{port}");
    let clock = edge_idp_actors::Clock::manual_now();
    let (a, b) = pair(&url, "fallback", &clock).await;
    let (la, lb) = (a.limiter(), b.limiter());
    assert_eq!(
        admitted(&a, &b, 6, "phase1@example.com").await,
        4,
        "shared through Redis"
    );

    redis.kill();
    assert!(
        login_as(&b, "phase2b@example.com", None).await.status() == 401,
        "B answers from memory too"
    );
    // Answered (never a 5xx), and limited in process: A alone admits a full burst of its own.
    let mut ok = 0;
    for _ in 0..6 {
        let r = login_as(&a, "phase2@example.com", None).await;
        assert!(r.status() == 401 || r.status() == 429, "{}", r.status());
        ok += usize::from(r.status() == 401);
    }
    assert_eq!(ok, 4, "in-process limit holds while Redis is down");
    assert_eq!(la.backend(), "memory");
    assert!(la.backend_switches() >= 1);

    let mut redis = OwnRedis::start(port);
    redis.ready().await;
    until_backend(&a, &la, "redis").await;
    until_backend(&b, &lb, "redis").await;
    assert_eq!(
        admitted(&a, &b, 8, "phase3@example.com").await,
        4,
        "shared counting resumed"
    );
}

/// On Redis Cluster a script may touch several keys only if they hash to one slot: the login
/// check's per-IP and per-account keys must, or every check fails with CROSSSLOT and the
/// limiter falls back to process memory. A one-node cluster owning every slot refuses
/// cross-slot scripts exactly as a large one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_multi_key_login_check_works_on_a_redis_cluster() {
    if redis_url("the_multi_key_login_check_works_on_a_redis_cluster")
        .await
        .is_none()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nodes = dir.path().join("nodes.conf");
    let redis = OwnRedis::start_free(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        nodes.to_str().unwrap(),
        "--dir",
        dir.path().to_str().unwrap(),
    ])
    .await;
    let port = redis.port;
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: String = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query_async(&mut c)
        .await
        .expect("slots assigned");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut c)
            .await
            .unwrap();
        if info.contains("cluster_state:ok") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cluster did not come up: {info}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app = spawn_with(opts(Some(&url))).await;
    let limiter = app.limiter();
    for _ in 0..3 {
        assert_eq!(
            login_as(&app, "cluster@example.com", None).await.status(),
            401
        );
    }
    assert_limited(login_as(&app, "cluster@example.com", None).await, "3").await;
    assert_eq!(limiter.backend(), "redis");
    assert_eq!(
        limiter.backend_switches(),
        0,
        "a check failed on the cluster"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        keys.len() >= 2 && keys.iter().all(|k| k.starts_with("{test-")),
        "{keys:?}"
    );
}
