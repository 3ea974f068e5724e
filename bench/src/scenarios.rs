//! The scenarios, the accounts they need, and the physical baselines.
//!
//! Every scenario is a closed loop: `concurrency` workers, each sending its next request when the
//! previous one answered, for a fixed time. A request counts as an error unless it gets exactly
//! the answer the contract promises (status and body shape), so a fast wrong answer never
//! inflates a figure.
//!
//! The load generator shares the cores with the server, so its own work per request lowers
//! every figure. `me` and `jwks` answer the same bytes to the same worker until something
//! changes: each worker checks an answer in full once and then compares bytes, checking in full
//! again any answer that differs. That is as strict as parsing every answer and no dearer (perf
//! showed the JSON parse was a small part of the client's cost; receiving the answer is most).

use crate::client::{json, Http};
use crate::Args;
use serde_json::json;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

const PASSWORD: &str = "correct horse battery staple";

/// What `--scenarios` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Scenario {
    /// `POST /auth/signup`, a new account each time.
    Signup,
    /// `POST /auth/login` of prepared accounts.
    Login,
    /// Login of an account with MFA, then `POST /auth/mfa/verify` with a TOTP code: one figure
    /// per completed login (two requests).
    LoginMfa,
    /// `POST /auth/refresh`, each worker rotating its own session's chain.
    Refresh,
    /// `GET /auth/me` with a Bearer token.
    Me,
    /// `GET /.well-known/jwks.json`.
    Jwks,
}

impl Scenario {
    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Signup => "signup",
            Scenario::Login => "login",
            Scenario::LoginMfa => "login_mfa",
            Scenario::Refresh => "refresh",
            Scenario::Me => "me",
            Scenario::Jwks => "jwks",
        }
    }

    /// Runs the scenario for `dur` with `c` workers.
    pub async fn run(
        self,
        http: &Http,
        base: &str,
        p: &Prepared,
        c: usize,
        dur: Duration,
    ) -> Result<Stats, String> {
        let (http, base, p) = (http.clone(), base.to_owned(), p.clone());
        let before = match self {
            Scenario::Refresh => Some(refresh_outcomes(&http, &base).await?),
            _ => None,
        };
        let (h2, b2) = (http.clone(), base.clone());
        let mut stats = load(c, dur, move |w, i| {
            let (http, base, p) = (http.clone(), base.clone(), p.clone());
            async move { self.once(&http, &base, &p, w, c, i).await }
        })
        .await;
        if let Some(before) = before {
            // Zero lost or double rotations: the server counted exactly one rotation per
            // successful answer, and never a replay or a reuse in a clean chain.
            let after = refresh_outcomes(&h2, &b2).await?;
            let ok = stats.count - stats.errors;
            let delta = |k: &str| {
                after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0)
            };
            if delta("rotated") as u64 != ok || delta("replayed") != 0.0 || delta("reused") != 0.0 {
                stats.errors += 1;
                stats.first_error.get_or_insert(format!(
                    "accounting: {ok} answers, server counted rotated {}, replayed {}, reused {}",
                    delta("rotated"),
                    delta("replayed"),
                    delta("reused")
                ));
            }
        }
        Ok(stats)
    }

    /// One request (one flow for login_mfa) of worker `w` of `c`, iteration `i`.
    pub async fn once(
        self,
        http: &Http,
        base: &str,
        p: &Prepared,
        w: usize,
        c: usize,
        i: u64,
    ) -> Result<Flow, String> {
        match self {
            Scenario::Signup => {
                let body = json!({"email": format!("signup-{}-{w}-{i}@bench.example", run_id()), "password": PASSWORD});
                let a = http
                    .post(&format!("{base}/auth/signup"), None, &body)
                    .await?;
                json(&a, 201).map(|_| Flow::Done)
            }
            Scenario::Login => {
                let email = &p.0.users[(w + i as usize * 7) % p.0.users.len()];
                let body = json!({"email": email, "password": PASSWORD});
                let a = http
                    .post(&format!("{base}/auth/login"), None, &body)
                    .await?;
                let v = json(&a, 200)?;
                v["refresh_token"]
                    .as_str()
                    .map(|_| Flow::Done)
                    .ok_or("no refresh_token".into())
            }
            Scenario::LoginMfa => login_mfa(http, base, p, w, c).await,
            Scenario::Refresh => {
                let mut token = p.0.refresh[w].lock().await;
                let body = json!({"refresh_token": *token});
                let a = http
                    .post(&format!("{base}/auth/refresh"), None, &body)
                    .await?;
                let v = json(&a, 200)?;
                let next = v["refresh_token"].as_str().ok_or("no refresh_token")?;
                if next == token.as_str() {
                    return Err("the same refresh token came back".into());
                }
                *token = next.to_owned();
                Ok(Flow::Done)
            }
            Scenario::Me => {
                let a = http
                    .get(&format!("{base}/auth/me"), Some(&p.0.access[w]))
                    .await?;
                let mut last = p.0.checked[w].lock().unwrap_or_else(|e| e.into_inner());
                same_or_checked(&mut last.me, &a, |v| {
                    v["user"]["id"].as_str().map(drop).ok_or("no user".into())
                })
            }
            Scenario::Jwks => {
                let a = http
                    .get(&format!("{base}/.well-known/jwks.json"), None)
                    .await?;
                let mut last = p.0.checked[w].lock().unwrap_or_else(|e| e.into_inner());
                same_or_checked(&mut last.jwks, &a, |v| {
                    v["keys"][0]["kid"]
                        .as_str()
                        .map(drop)
                        .ok_or("no key".into())
                })
            }
        }
    }
}

/// Distinguishes this bench process's signups from earlier runs' on a `--url` server.
fn run_id() -> u128 {
    static ID: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    })
}

/// The figures of one run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests (or completed flows) sent.
    pub count: u64,
    /// Of which wrong or failed.
    pub errors: u64,
    /// The first error's description.
    pub first_error: Option<String>,
    /// Completed per second.
    pub rps: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Some worker ran out of work before the time was up (login_mfa: raise `--mfa-users`); the
    /// figure is then a lower bound.
    pub exhausted: bool,
}

/// An operation's answer to the load loop: done, or nothing left to do for this worker (not an
/// error of the server: login_mfa runs out of unused TOTP steps when accounts are too few).
pub enum Flow {
    /// One request (or flow) completed as the contract says.
    Done,
    /// This worker stops.
    Exhausted,
}

/// Closed-loop load: `c` workers call `op(worker, iteration)` until `dur` has passed.
pub async fn load<F, Fut>(c: usize, dur: Duration, op: F) -> Stats
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Flow, String>> + Send,
{
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for w in 0..c {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut first, mut exhausted) = (Vec::new(), 0u64, None, false);
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = op(w, i).await;
                match r {
                    Ok(Flow::Exhausted) => {
                        exhausted = true;
                        break;
                    }
                    Ok(Flow::Done) => {}
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert(e);
                    }
                }
                lat.push(t.elapsed().as_micros() as u32);
                i += 1;
            }
            (lat, errors, first, exhausted)
        }));
    }
    let mut all = Vec::new();
    let mut stats = Stats::default();
    for t in tasks {
        match t.await {
            Ok((lat, errors, first, exhausted)) => {
                all.extend(lat);
                stats.exhausted |= exhausted;
                stats.errors += errors;
                if stats.first_error.is_none() {
                    stats.first_error = first;
                }
            }
            Err(e) => {
                stats.errors += 1;
                stats
                    .first_error
                    .get_or_insert(format!("worker failed: {e}"));
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    stats.count = all.len() as u64;
    stats.rps = (stats.count - stats.errors.min(stats.count)) as f64 / elapsed;
    let pct = |q: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1;
        f64::from(all[idx]) / 1000.0
    };
    stats.p50_ms = pct(0.50);
    stats.p99_ms = pct(0.99);
    stats
}

/// The hello-world figure.
pub async fn hello(http: &Http, base: &str, c: usize, dur: Duration) -> Stats {
    let (http, url) = (http.clone(), format!("{base}/healthz"));
    load(c, dur, move |_, _| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            match http.get(&url, None).await? {
                (200, _) => Ok(Flow::Done),
                (s, _) => Err(format!("status {s}")),
            }
        }
    })
    .await
}

/// Accounts, sessions and MFA secrets the scenarios use.
#[derive(Clone)]
pub struct Prepared(Arc<Inner>);

/// What [`Prepared`] holds.
pub struct Inner {
    users: Vec<String>,
    /// One session per worker: its access token (me) and its refresh chain (refresh).
    access: Vec<String>,
    refresh: Vec<Mutex<String>>,
    mfa: Vec<MfaUser>,
    /// Per worker, the last `me` and `jwks` answers checked in full.
    checked: Vec<std::sync::Mutex<Checked>>,
}

/// A worker's last fully checked answers.
#[derive(Default)]
struct Checked {
    me: bytes::Bytes,
    jwks: bytes::Bytes,
}

/// Done if `answer` is the one `last` holds; else `check` decides, and a good one is kept.
fn same_or_checked(
    last: &mut bytes::Bytes,
    answer: &crate::client::Answer,
    check: impl FnOnce(serde_json::Value) -> Result<(), String>,
) -> Result<Flow, String> {
    if answer.0 == 200 && !last.is_empty() && answer.1 == *last {
        return Ok(Flow::Done);
    }
    check(json(answer, 200)?)?;
    *last = answer.1.clone();
    Ok(Flow::Done)
}

struct MfaUser {
    email: String,
    secret: Vec<u8>,
    /// The highest TOTP step this bench has used for the account (the server refuses replays).
    last_step: AtomicI64,
}

impl Prepared {
    /// Signs up `args.users` accounts, logs each worker in once, and enrolls `args.mfa_users`
    /// accounts in MFA when `login_mfa` is to run.
    pub async fn new(http: &Http, base: &str, args: &Args) -> Result<Self, String> {
        let tag = std::process::id();
        let users: Vec<String> = (0..args.users.max(1))
            .map(|i| format!("user-{tag}-{i}@bench.example"))
            .collect();
        parallel(&users, args.concurrency, |email| {
            let (http, base) = (http.clone(), base.to_owned());
            async move {
                let a = http
                    .post(
                        &format!("{base}/auth/signup"),
                        None,
                        &json!({"email": email, "password": PASSWORD}),
                    )
                    .await?;
                json(&a, 201).map(drop)
            }
        })
        .await?;
        let mut access = Vec::new();
        let mut refresh = Vec::new();
        for w in 0..args.concurrency {
            let email = &users[w % users.len()];
            let a = http
                .post(
                    &format!("{base}/auth/login"),
                    None,
                    &json!({"email": email, "password": PASSWORD}),
                )
                .await?;
            let v = json(&a, 200)?;
            access.push(
                v["access_token"]
                    .as_str()
                    .ok_or("no access_token")?
                    .to_owned(),
            );
            refresh.push(Mutex::new(
                v["refresh_token"]
                    .as_str()
                    .ok_or("no refresh_token")?
                    .to_owned(),
            ));
        }
        let mfa_count = if args.scenarios.contains(&Scenario::LoginMfa) {
            args.mfa_users.max(args.concurrency)
        } else {
            0
        };
        let mfa_emails: Vec<String> = (0..mfa_count)
            .map(|i| format!("mfa-{tag}-{i}@bench.example"))
            .collect();
        let mfa = parallel(&mfa_emails, args.concurrency, |email| {
            let (http, base) = (http.clone(), base.to_owned());
            async move { enroll(&http, &base, &email).await }
        })
        .await?;
        Ok(Self(Arc::new(Inner {
            users,
            access,
            refresh,
            mfa,
            checked: (0..args.concurrency).map(|_| Default::default()).collect(),
        })))
    }
}

/// Runs `f` over `items` with at most `c` at once, in order of results.
async fn parallel<T, F, Fut>(items: &[String], c: usize, f: F) -> Result<Vec<T>, String>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(c.max(1)) {
        let results = futures_util::future::join_all(chunk.iter().cloned().map(&f)).await;
        for r in results {
            out.push(r?);
        }
    }
    Ok(out)
}

async fn enroll(http: &Http, base: &str, email: &str) -> Result<MfaUser, String> {
    let creds = json!({"email": email, "password": PASSWORD});
    json(
        &http
            .post(&format!("{base}/auth/signup"), None, &creds)
            .await?,
        201,
    )?;
    let v = json(
        &http
            .post(&format!("{base}/auth/login"), None, &creds)
            .await?,
        200,
    )?;
    let token = v["access_token"]
        .as_str()
        .ok_or("no access_token")?
        .to_owned();
    let e = json(
        &http
            .post(&format!("{base}/auth/mfa/enroll"), Some(&token), &json!({}))
            .await?,
        200,
    )?;
    let secret = base32_decode(e["secret"].as_str().ok_or("no secret")?)?;
    let step = now_step();
    let code = totp(&secret, step);
    json(
        &http
            .post(
                &format!("{base}/auth/mfa/confirm"),
                Some(&token),
                &json!({"code": code}),
            )
            .await?,
        200,
    )?;
    Ok(MfaUser {
        email: email.to_owned(),
        secret,
        last_step: AtomicI64::new(step),
    })
}

/// One login with MFA by worker `w` of `c`, on an account of its own share whose next unused
/// TOTP step is still accepted (the current step and one either side).
async fn login_mfa(
    http: &Http,
    base: &str,
    p: &Prepared,
    w: usize,
    c: usize,
) -> Result<Flow, String> {
    static CURSOR: AtomicUsize = AtomicUsize::new(0);
    let mine: Vec<&MfaUser> = p.0.mfa.iter().skip(w).step_by(c).collect();
    if mine.is_empty() {
        return Err("no MFA accounts for this worker".into());
    }
    let start = CURSOR.fetch_add(1, Ordering::Relaxed);
    let now = now_step();
    let mut chosen = None;
    for k in 0..mine.len() {
        let u = mine[(start + k) % mine.len()];
        let last = u.last_step.load(Ordering::Relaxed);
        // Not the previous step, though the server still takes it: a 30 s boundary passing
        // during the login (hundreds of milliseconds under load) would put it out of the
        // window by the time the code is verified.
        let step = (last + 1).max(now);
        if step <= now + 1
            && u.last_step
                .compare_exchange(last, step, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            chosen = Some((u, step));
            break;
        }
    }
    let Some((u, step)) = chosen else {
        return Ok(Flow::Exhausted);
    };
    let creds = json!({"email": u.email, "password": PASSWORD});
    let v = json(
        &http
            .post(&format!("{base}/auth/login"), None, &creds)
            .await?,
        200,
    )?;
    let mfa_token = v["mfa_token"].as_str().ok_or("no mfa_token")?;
    let body = json!({"mfa_token": mfa_token, "code": totp(&u.secret, step)});
    let v = json(
        &http
            .post(&format!("{base}/auth/mfa/verify"), None, &body)
            .await?,
        200,
    )?;
    v["refresh_token"]
        .as_str()
        .map(|_| Flow::Done)
        .ok_or("no refresh_token".into())
}

fn now_step() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64 / 30)
}

/// RFC 6238 TOTP, SHA-1, 6 digits, for a step.
fn totp(secret: &[u8], step: i64) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &(step as u64).to_be_bytes());
    let h = mac.as_ref();
    let off = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[off] & 0x7f, h[off + 1], h[off + 2], h[off + 3]]);
    format!("{:06}", bin % 1_000_000)
}

fn base32_decode(s: &str) -> Result<Vec<u8>, String> {
    let (mut out, mut buf, mut bits) = (Vec::new(), 0u64, 0u32);
    for ch in s.trim_end_matches('=').bytes() {
        let v = match ch {
            b'A'..=b'Z' => ch - b'A',
            b'2'..=b'7' => ch - b'2' + 26,
            _ => return Err(format!("not base32: {ch}")),
        };
        buf = (buf << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Ok(out)
}

/// `edge_idp_refreshes_total` by outcome, from `/metrics`.
async fn refresh_outcomes(
    http: &Http,
    base: &str,
) -> Result<std::collections::HashMap<String, f64>, String> {
    let (status, body) = http.get(&format!("{base}/metrics"), None).await?;
    if status != 200 {
        return Err(format!("/metrics answered {status}"));
    }
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("edge_idp_refreshes_total{outcome=\""))
        .filter_map(|rest| {
            let (outcome, value) = rest.split_once("\"} ")?;
            Some((outcome.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

/// Argon2id hashes per second at the given cost on `threads` threads, each reusing its working
/// memory (the best the machine can do at that cost).
pub fn argon2_per_sec(m_kib: u32, t: u32, threads: usize, dur: Duration) -> Result<f64, String> {
    use argon2::{Algorithm, Argon2, Block, Params, Version};
    let params = Params::new(m_kib, t, 1, Some(32)).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let params = params.clone();
            std::thread::spawn(move || {
                let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                let mut blocks = vec![Block::default(); params.block_count()];
                let mut out = [0u8; 32];
                let mut n = 0u64;
                while start.elapsed() < dur {
                    if a.hash_password_into_with_memory(
                        PASSWORD.as_bytes(),
                        b"bench-salt-16byt",
                        &mut out,
                        &mut blocks,
                    )
                    .is_ok()
                    {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// A PHC Argon2id hash at the given cost, for seeded accounts.
pub fn phc(m_kib: u32, t: u32) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use argon2::{Algorithm, Argon2, Params, Version};
    let params = Params::new(m_kib, t, 1, None).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(b"seeded-accounts!").map_err(|e| e.to_string())?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// RS256 (RSA-2048 PKCS#1 v1.5, SHA-256) signatures per second on `threads` threads, with a
/// key parsed once: what signing an access token costs at best.
pub fn rs256_per_sec(threads: usize, dur: Duration) -> Result<f64, String> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;
    let key = Arc::new(KeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?);
    // About the size of an access token's header and claims.
    let msg = vec![b'x'; 420];
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (key, msg) = (key.clone(), msg.clone());
            std::thread::spawn(move || {
                let rng = SystemRandom::new();
                let mut sig = vec![0u8; key.public_modulus_len()];
                let mut n = 0u64;
                while start.elapsed() < dur {
                    if key.sign(&RSA_PKCS1_SHA256, &rng, &msg, &mut sig).is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_the_rfc_6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        // RFC 6238 appendix B, 8 digits there; the last 6 here.
        assert_eq!(totp(secret, 59 / 30), "287082");
        assert_eq!(totp(secret, 1_111_111_109 / 30), "081804");
        assert_eq!(totp(secret, 2_000_000_000 / 30), "279037");
    }

    #[test]
    fn base32_round_trips_the_rfc_4648_vector() {
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
    }
}

/// What an open-loop login flood above capacity got back.
#[derive(Debug, Default)]
pub struct Overload {
    /// Logins offered per second.
    pub offered_per_s: f64,
    /// Logins sent.
    pub sent: u64,
    /// Answered 200 with tokens.
    pub served: u64,
    /// Answered 503 or 429: shed.
    pub shed: u64,
    /// Anything else, or no answer within [`OVERLOAD_GIVE_UP`].
    pub errors: u64,
    /// The first of those.
    pub first_error: Option<String>,
    /// Latency of the served, and of the shed, answers: p50, p99, max (ms).
    pub served_ms: [f64; 3],
    /// See `served_ms`.
    pub shed_ms: [f64; 3],
}

/// A login the overload run gets no answer to within this long counts as an error: the point
/// of shedding is that nobody waits that long.
pub const OVERLOAD_GIVE_UP: Duration = Duration::from_secs(30);

/// One login of the overload and burst runs: whether it was served (`Ok(true)`) or shed, and
/// how long its answer took (µs).
type Sent = tokio::task::JoinSet<(Result<bool, String>, u32)>;

fn send_login(sent: &mut Sent, http: &Http, base: &str, email: String) {
    let (http, url) = (http.clone(), format!("{base}/auth/login"));
    sent.spawn(async move {
        let t = Instant::now();
        let body = json!({"email": email, "password": PASSWORD});
        let r = tokio::time::timeout(OVERLOAD_GIVE_UP, http.post(&url, None, &body)).await;
        let took = t.elapsed().as_micros() as u32;
        let outcome = match r {
            Err(_) => Err("no answer within 30 s".to_owned()),
            Ok(Err(e)) => Err(e),
            Ok(Ok(a)) if a.0 == 503 || a.0 == 429 => Ok(false),
            Ok(Ok(a)) => json(&a, 200).map(|_| true),
        };
        (outcome, took)
    });
}

async fn collect(mut sent: Sent, offered_per_s: f64) -> Overload {
    let mut o = Overload {
        offered_per_s,
        ..Default::default()
    };
    let (mut served, mut shed) = (Vec::new(), Vec::new());
    while let Some(r) = sent.join_next().await {
        o.sent += 1;
        match r {
            Ok((Ok(true), took)) => served.push(took),
            Ok((Ok(false), took)) => shed.push(took),
            Ok((Err(e), _)) => {
                o.errors += 1;
                o.first_error.get_or_insert(e);
            }
            Err(e) => {
                o.errors += 1;
                o.first_error.get_or_insert(e.to_string());
            }
        }
    }
    o.served = served.len() as u64;
    o.shed = shed.len() as u64;
    o.served_ms = percentiles(served);
    o.shed_ms = percentiles(shed);
    o
}

/// Logins offered at `rate` per second for `dur`, whatever the answers take (an open loop: a
/// slow server is not given a break by its clients waiting).
pub async fn overload(http: &Http, base: &str, p: &Prepared, rate: f64, dur: Duration) -> Overload {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + dur;
    let mut sent = Sent::new();
    let mut i = 0usize;
    while Instant::now() < deadline {
        ticker.tick().await;
        send_login(
            &mut sent,
            http,
            base,
            p.0.users[i % p.0.users.len()].clone(),
        );
        i += 1;
    }
    collect(sent, rate).await
}

/// `n` logins sent at once, then nothing: what a burst gets (served whole when the hashing
/// threads can work through it within `HASH_MAX_WAIT_MS`).
pub async fn burst(http: &Http, base: &str, p: &Prepared, n: usize) -> Overload {
    let mut sent = Sent::new();
    for i in 0..n {
        send_login(
            &mut sent,
            http,
            base,
            p.0.users[i % p.0.users.len()].clone(),
        );
    }
    collect(sent, 0.0).await
}

fn percentiles(mut v: Vec<u32>) -> [f64; 3] {
    if v.is_empty() {
        return [0.0; 3];
    }
    v.sort_unstable();
    let at = |q: f64| {
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        f64::from(v[i]) / 1000.0
    };
    [at(0.5), at(0.99), at(1.0)]
}
