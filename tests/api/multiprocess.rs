//! Two server *processes* on one database file: the refresh guarantees must hold across them.

use crate::helpers::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// A server process, killed when dropped (a failed test leaves no process behind).
pub struct Server {
    child: Child,
    pub base: String,
    /// Its log lines (stdout and stderr), when started with [`start_logged`]; the reader
    /// threads, joined by [`Server::terminate`] so that every line is in.
    pub lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then its exit status (at most 30 s later) with every log line read.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        assert!(Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the real binary on port 0 and reads the bound address from its `listening` log line.
pub fn start(dir: &Path, grace: u32) -> Server {
    spawn(
        dir,
        &["--refresh-reuse-grace-secs", &grace.to_string()],
        None,
    )
}

/// [`start`] with other arguments (after the tests' base ones, which they override).
pub fn start_with_args(dir: &Path, args: &[&str]) -> Server {
    spawn(dir, args, None)
}

/// [`start`] with `args`, logging at `rust_log`, every line of stdout and stderr kept in
/// [`Server::lines`].
pub fn start_logged(dir: &Path, args: &[&str], rust_log: &str) -> Server {
    spawn(dir, args, Some(rust_log))
}

fn spawn(dir: &Path, args: &[&str], rust_log: Option<&str>) -> Server {
    let mut cmd = server_command();
    for pair in base_args(dir).chunks(2) {
        if !args.contains(&pair[0].as_str()) {
            cmd.arg(&pair[0]).arg(&pair[1]);
        }
    }
    cmd.args(args).args(["--log-format", "json"]);
    cmd.stdout(Stdio::piped());
    match rust_log {
        Some(level) => cmd.env("RUST_LOG", level).stderr(Stdio::piped()),
        None => cmd.stderr(Stdio::inherit()),
    };
    let mut child = cmd.spawn().expect("spawn edge-idp");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let mut streams: Vec<Box<dyn std::io::Read + Send>> =
        vec![Box::new(child.stdout.take().expect("stdout"))];
    if let Some(err) = child.stderr.take() {
        streams.push(Box::new(err));
    }
    let keep = rust_log.is_some();
    let readers = streams
        .into_iter()
        .map(|stream| {
            let (tx, lines) = (tx.clone(), lines.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("\"listening\"") {
                        let v: Value = serde_json::from_str(&line).expect("json log line");
                        let _ = tx.send(v["addr"].as_str().expect("addr").to_owned());
                    }
                    if keep {
                        lines.lock().unwrap().push(line);
                    }
                }
            })
        })
        .collect();
    // Only the readers hold senders now: a process that exits without announcing itself
    // closes its pipes, and the wait ends at once.
    drop(tx);
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server announced its address");
    Server {
        child,
        base: format!("http://{addr}"),
        lines,
        readers,
    }
}

pub async fn post(base: &str, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn parallel_refreshes(grace: u32) -> Vec<(u16, Option<String>)> {
    let tmp = tempfile::tempdir().unwrap();
    let a = start(tmp.path(), grace);
    let b = start(tmp.path(), grace);
    let r = post(
        &a.base,
        "/auth/signup",
        serde_json::json!({"email": "zoe@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = post(
        &b.base,
        "/auth/login",
        serde_json::json!({"email": "zoe@example.com", "password": PASSWORD}),
    )
    .await;
    let rt = r.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let futs = (0..10).map(|i| {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let rt = rt.clone();
        async move {
            let r = post(
                &base,
                "/auth/refresh",
                serde_json::json!({"refresh_token": rt}),
            )
            .await;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (
                status,
                body["refresh_token"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| body["code"].as_str().map(str::to_owned)),
            )
        }
    });
    futures_util::future::join_all(futs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_rotate_once_and_serve_the_same_successor() {
    let answers = parallel_refreshes(10).await;
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    let mut tokens: Vec<_> = answers.into_iter().map(|(_, t)| t).collect();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        1,
        "exactly one rotation across both processes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_in_strict_mode_let_exactly_one_refresh_succeed() {
    let answers = parallel_refreshes(0).await;
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == 200).count(),
        1,
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s != 200)
            .all(|(s, c)| *s == 401 && c.as_deref() == Some("refresh_token_reused")),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_requests_in_flight_then_stops_cleanly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start(tmp.path(), 10);
    let r = client()
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A signup in flight when the signal arrives: its head sent with `Expect: 100-continue`,
    // so the server's `100 Continue` says it has parsed the request and is reading the body
    // (a connection whose head the server has not read yet is idle, and may be closed).
    let body = json!({"email": "draining@example.com", "password": PASSWORD}).to_string();
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /auth/signup HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte))
            .await
            .expect("100 Continue within 10 s")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed before 100 Continue: {:?}",
            String::from_utf8_lossy(&interim)
        );
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );
    conn.write_all(first.as_bytes()).await.unwrap();
    // The signal from another thread, so that this one can watch the drain.
    let pid = s.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // Shutting down: new connections are refused from now on...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...and the request already on its way is still read and answered.
    conn.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "the request in flight was not answered: {answer:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        client()
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_single_sign_on_and_redeem_a_code_once() {
    use crate::oidc::{pkce_request, register_in, Browser, REDIRECT};
    let tmp = tempfile::tempdir().unwrap();
    let a = start(tmp.path(), 10);
    let b = start(tmp.path(), 10);
    let r = post(
        &a.base,
        "/auth/signup",
        json!({"email": "fleet@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let rp = register_in(tmp.path(), &["--first-party"]);
    let (at_a, verifier) = pkce_request(&a.base, &rp.id, "openid+offline_access", "st", "");
    let at_b = at_a.replacen(&a.base, &b.base, 1);
    let code_in = |page: &crate::oidc::Page| {
        assert!(page.status == 302 || page.status == 303, "{}", page.body);
        let to = page.location();
        to.query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {to}"))
    };

    // Signed in on one instance, the browser is signed in on the other.
    let mut browser = Browser::new_at(&a.base);
    let page = browser.get(&at_a).await;
    let done = browser.sign_in(&page, "fleet@example.com", PASSWORD).await;
    let code = code_in(&done);
    browser.base = b.base.clone();
    let sso = browser.get(&at_b).await;
    code_in(&sso);

    // The code presented to both at once: redeemed exactly once, and the loser's attempt
    // revokes what the winner got.
    let exchange = |base: String| {
        let form = [
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", verifier.secret().clone()),
        ];
        let (id, secret) = (rp.id.clone(), rp.secret.clone());
        async move {
            let r = client()
                .post(format!("{base}/oauth2/token"))
                .basic_auth(id, secret)
                .form(&form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (x, y) = tokio::join!(exchange(a.base.clone()), exchange(b.base.clone()));
    let answers = [x, y];
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .any(|(s, b)| *s == 400 && b["error"] == "invalid_grant"),
        "{answers:?}"
    );
    let refresh = won[0]["refresh_token"].as_str().unwrap().to_owned();
    let r = client()
        .post(format!("{}/oauth2/token", a.base))
        .basic_auth(&rp.id, rp.secret.as_deref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "the second presentation revoked the first one's session"
    );
}

/// RFC 6238 code for `unix` from a base32 secret.
fn totp(secret_b32: &str, unix: i64) -> String {
    rfc6238(&base32_decode(secret_b32), unix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_step_is_accepted_once_across_two_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start(tmp.path(), 10);
    let b = start(tmp.path(), 10);
    let creds = serde_json::json!({"email": "multi@example.com", "password": PASSWORD});
    assert_eq!(
        post(&a.base, "/auth/signup", creds.clone()).await.status(),
        201
    );
    let t: Value = post(&a.base, "/auth/login", creds.clone())
        .await
        .json()
        .await
        .unwrap();
    let auth = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let e: Value = client()
        .post(format!("{}/auth/mfa/enroll", a.base))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = e["secret"].as_str().unwrap().to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let r = client()
        .post(format!("{}/auth/mfa/confirm", b.base))
        .header("authorization", &auth)
        .json(&serde_json::json!({"code": totp(&secret, now)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "confirmed on the other process");
    let ch_a = post(&a.base, "/auth/login", creds.clone())
        .await
        .json::<Value>()
        .await
        .unwrap()["mfa_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ch_b = post(&b.base, "/auth/login", creds.clone())
        .await
        .json::<Value>()
        .await
        .unwrap()["mfa_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = totp(&secret, now + 30);
    let (ra, rb) = tokio::join!(
        post(
            &a.base,
            "/auth/mfa/verify",
            serde_json::json!({"mfa_token": ch_a, "code": code})
        ),
        post(
            &b.base,
            "/auth/mfa/verify",
            serde_json::json!({"mfa_token": ch_b, "code": code})
        ),
    );
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 401],
        "the same step is accepted by exactly one process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_refused_at_once_here_and_within_five_seconds_on_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let a = start(tmp.path(), 10);
    let b = start(tmp.path(), 10);
    let creds = serde_json::json!({"email": "rev@example.com", "password": PASSWORD});
    assert_eq!(
        post(&a.base, "/auth/signup", creds.clone()).await.status(),
        201
    );
    let t: Value = post(&a.base, "/auth/login", creds)
        .await
        .json()
        .await
        .unwrap();
    let auth = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let me = |base: &str| {
        client()
            .get(format!("{base}/auth/me"))
            .header("authorization", &auth)
            .send()
    };
    assert_eq!(
        me(&b.base).await.unwrap().status(),
        200,
        "B has seen the session live"
    );
    let started = std::time::Instant::now();
    assert_eq!(
        post(
            &a.base,
            "/auth/logout",
            serde_json::json!({"refresh_token": t["refresh_token"]})
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        me(&a.base).await.unwrap().status(),
        401,
        "refused at once where it was revoked"
    );
    loop {
        let r = me(&b.base).await.unwrap();
        if r.status() == 401 {
            assert_eq!(r.json::<Value>().await.unwrap()["code"], "session_revoked");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B still accepts the revoked session after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the binary with `env` and returns (exit code, stderr).
fn run_expecting_failure(env: &[(&str, &str)]) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = server_command();
    cmd.env("DATA_DIR", tmp.path())
        .env("LISTEN_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = output_within(cmd, std::time::Duration::from_secs(30));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_and_unsafe_settings_stop_the_start_with_one_line_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("ACCESS_TOKEN_TTL", "abc")], "ACCESS_TOKEN_TTL"),
        (&[("RATE_LIMIT_LOGIN", "ten")], "RATE_LIMIT_LOGIN"),
        (&[("MFA_ENCRYPTION_KEY", "too-short")], "MFA_ENCRYPTION_KEY"),
        (&[("ISSUER", "not a url")], "ISSUER"),
        (
            &[
                ("APP_ENV", "production"),
                ("ISSUER", "https://idp.example.com"),
            ],
            "MFA_ENCRYPTION_KEY",
        ),
        (
            &[
                ("APP_ENV", "production"),
                ("ISSUER", "http://idp.example.com"),
                ("MFA_ENCRYPTION_KEY", MASTER_KEY),
            ],
            "ISSUER",
        ),
        (
            &[
                ("APP_ENV", "production"),
                ("ISSUER", "https://idp.example.com"),
                ("MFA_ENCRYPTION_KEY", MASTER_KEY),
                ("ARGON2_MEMORY_KIB", "1024"),
            ],
            "ARGON2_MEMORY_KIB",
        ),
    ];
    for (env, var) in cases {
        let (code, stderr) = run_expecting_failure(env);
        assert_ne!(code, 0, "{env:?} must not start");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{env:?}: one line, got {stderr:?}");
        assert!(
            lines[0].contains(var),
            "{env:?}: {:?} should name {var}",
            lines[0]
        );
    }
}

/// A value of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
#[cfg(target_os = "linux")]
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

/// Measured from outside the process, by the kernel: the peak resident memory (`VmHWM`, no
/// sampling to race) of a burst of concurrent hashes stays within `HASH_CONCURRENCY ×
/// ARGON2_MEMORY_KIB` above the idle server, and the memory leaves the process after the burst.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_memory_measured_by_the_kernel_is_bounded_by_the_threads_and_given_back() {
    const COST_KIB: u64 = 32 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let s = start_with_args(
        tmp.path(),
        &[
            "--argon2-memory-kib",
            &COST_KIB.to_string(),
            "--hash-concurrency",
            "2",
        ],
    );
    let pid = s.pid();
    let warm = client().get(format!("{}/healthz", s.base)).send().await;
    assert_eq!(warm.unwrap().status(), 200);
    let idle = status_kib(pid, "VmRSS");
    // Eight signups at once: eight hashes for two threads.
    let burst = (0..8).map(|i| {
        post(
            &s.base,
            "/auth/signup",
            json!({"email": format!("mem{i}@example.com"), "password": PASSWORD}),
        )
    });
    for r in futures_util::future::join_all(burst).await {
        assert_eq!(r.status(), 201);
    }
    let peak = status_kib(pid, "VmHWM");
    assert!(
        peak >= idle + COST_KIB,
        "the hashes' memory did not show ({idle} → {peak} KiB): the bound below proves nothing"
    );
    assert!(
        peak <= idle + 2 * COST_KIB + 16 * 1024,
        "peak {peak} KiB over idle {idle} KiB: more than two hashing buffers"
    );
    // Given back once the threads are idle (2 s); bounded, polled, not slept on. What the
    // signups left besides (rows, page caches, allocator arenas: about 9 MiB here) stays; a
    // hashing buffer kept would be a whole 32 MiB.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status_kib(pid, "VmRSS") > idle + COST_KIB / 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "hashing memory still resident: {} KiB, idle {idle} KiB",
            status_kib(pid, "VmRSS")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_ceremony_begun_on_one_process_finishes_on_the_other_and_an_assertion_counts_once(
) {
    use crate::passkeys::Device;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (start(dir.path(), 10), start(dir.path(), 10));
    let email = "mp-passkey@example.com";
    let r = post(
        &a.base,
        "/auth/signup",
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let t: Value = post(
        &a.base,
        "/auth/login",
        json!({"email": email, "password": PASSWORD}),
    )
    .await
    .json()
    .await
    .unwrap();
    let bearer = format!("Bearer {}", t["access_token"].as_str().unwrap());
    let http = client();

    // Registration begun on A, finished on B.
    let begun: Value = http
        .post(format!("{}/auth/passkeys/register/begin", a.base))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut device = Device::new();
    let credential = device.create(&begun);
    let r = http
        .post(format!("{}/auth/passkeys/register/finish", b.base))
        .header("authorization", &bearer)
        .json(&json!({"ceremony_id": begun["ceremony_id"], "credential": credential}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // A sign-in begun on B; its one assertion sent to both at once: accepted exactly once.
    for _ in 0..3 {
        let begun: Value = post(&b.base, "/auth/passkeys/login/begin", json!({}))
            .await
            .json()
            .await
            .unwrap();
        let body = json!({"ceremony_id": begun["ceremony_id"], "credential": device.get(&begun)});
        let (ra, rb) = tokio::join!(
            post(&a.base, "/auth/passkeys/login/finish", body.clone()),
            post(&b.base, "/auth/passkeys/login/finish", body)
        );
        let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 404], "one sign-in, one used ceremony");
    }
}
