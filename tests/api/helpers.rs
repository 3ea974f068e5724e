//! `spawn_app()` and typed request helpers: a real server on port 0 over a real libSQL file in
//! a temp folder, talked to over real HTTP.

use edge_idp::cli::Cli;
use edge_idp::startup::{Application, Stopper};
use edge_idp_actors::{Clock, Handles};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A fixed master key for tests, so instances and restarts share it.
pub const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
/// A password the policy accepts.
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub base: String,
    /// `ISSUER` (and the audience of its access tokens).
    pub issuer: String,
    pub http: reqwest::Client,
    pub clock: Clock,
    pub actors: Arc<Handles>,
    pub dir: PathBuf,
    /// The internal metrics listener, when the test asked for one.
    pub metrics_addr: Option<std::net::SocketAddr>,
    limiter: edge_idp::security::ratelimit::RateLimiter,
    audit: Option<edge_idp::ops::audit::Audit>,
    stopper: Stopper,
    join: Option<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Options for [`spawn_with`].
#[derive(Default)]
pub struct Opts {
    /// Extra `--flag value` pairs.
    pub args: Vec<(String, String)>,
    /// Reuse this data folder (restart tests).
    pub data_dir: Option<PathBuf>,
    /// Drive this clock.
    pub clock: Option<Clock>,
    /// Make `ISSUER` the server's own address (`http://127.0.0.1:PORT`), as an OpenID Connect
    /// client needs: it fetches discovery from the issuer.
    pub own_issuer: bool,
    /// With `own_issuer`: name it `http://localhost:PORT` instead, a domain WebAuthn can bind
    /// passkeys to (a browser reaches it on loopback all the same).
    pub localhost: bool,
}

impl Opts {
    pub fn arg(mut self, k: &str, v: impl ToString) -> Self {
        self.args.push((k.to_owned(), v.to_string()));
        self
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Arguments every test server gets: port 0, cheap Argon2 (the cost is not what these tests
/// exercise), the fixed master key.
pub fn base_args(dir: &Path) -> Vec<String> {
    // Each server gets its own Redis namespace (for the tests that give it a Redis): servers
    // sharing keys would share rate-limit counters.
    let prefix = format!("test-{}", uuid::Uuid::now_v7().simple());
    [
        ("--rate-limit-redis-prefix", prefix.as_str()),
        // Generous: a loaded two-core machine must not make a slow Redis answer look like an
        // outage (which would split counters between backends).
        ("--redis-timeout-ms", "2000"),
        ("--listen-addr", "127.0.0.1:0"),
        ("--data-dir", dir.to_str().expect("utf-8 temp path")),
        ("--mfa-encryption-key", MASTER_KEY),
        ("--argon2-memory-kib", "1024"),
        ("--argon2-iterations", "1"),
        ("--issuer", "http://localhost:8000"),
        ("--rate-limit-login", "1000/60"),
        ("--rate-limit-signup", "1000/60"),
        ("--rate-limit-refresh", "1000/60"),
    ]
    .iter()
    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
    .collect()
}

/// Builds (without serving) an application from `base_args(dir)` plus `extra`: for tests of
/// start-up failures, which `spawn_with` would turn into a panic.
pub async fn try_build(
    dir: &Path,
    extra: &[(&str, &str)],
) -> Result<Application, edge_idp::startup::StartError> {
    let mut argv = vec!["edge-idp".to_owned()];
    argv.extend(base_args(dir));
    for (k, v) in extra {
        argv.push((*k).to_owned());
        argv.push((*v).to_owned());
    }
    let config = explicit(argv).config;
    let (key, _) = config.resolve_master_key().expect("master key");
    let settings = config.validate(key).expect("settings");
    Application::build(settings).await
}

/// Parses a test server's command line from `argv` alone. The settings' environment variables
/// (`REDIS_URL`, `CLIENT_IP_HEADER`, … which CI sets for the whole run) are not read: a test
/// server runs exactly the configuration its test wrote, and a test that wants Redis says so.
pub fn explicit(argv: Vec<String>) -> Cli {
    Cli::parse_args_only(argv).expect("test config parses")
}

/// The server binary, run with an empty environment (but `PATH`): what it does is decided by
/// the arguments and variables the test gives it, never by the environment of the run.
pub fn server_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge-idp"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

/// Runs `cmd` to its end, at most `within`: a command that should exit (a refused start, a
/// CLI call) and does not fails its test instead of hanging the run. Its output is captured.
pub fn output_within(
    mut cmd: std::process::Command,
    within: std::time::Duration,
) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edge-idp");
    let deadline = std::time::Instant::now() + within;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("edge-idp did not exit within {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Opts::default()).await
}

pub async fn spawn_with(opts: Opts) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        edge_idp::ops::telemetry::init(edge_idp::config::LogFormat::Pretty);
    }
    let (tmp, dir) = match opts.data_dir {
        Some(d) => (None, d),
        None => {
            let t = tempfile::tempdir().expect("tempdir");
            let d = t.path().to_owned();
            (Some(t), d)
        }
    };
    let mut argv = vec!["edge-idp".to_owned()];
    let mut args = opts.args;
    let listener = if opts.own_issuer {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let host = if opts.localhost {
            "localhost"
        } else {
            "127.0.0.1"
        };
        args.push(("--issuer".into(), format!("http://{host}:{port}")));
        Some(l)
    } else {
        None
    };
    for pair in base_args(&dir).chunks(2) {
        if !args.iter().any(|(k, _)| *k == pair[0]) {
            argv.extend_from_slice(pair);
        }
    }
    for (k, v) in args {
        argv.push(k);
        argv.push(v);
    }
    let config = explicit(argv).config;
    let (key, _) = config.resolve_master_key().expect("master key");
    let settings = config.validate(key).expect("settings");
    let issuer = settings.issuer.clone();
    let clock = opts.clock.unwrap_or_else(Clock::manual_now);
    let app = Application::build_on(settings, clock.clone(), listener)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let actors = app.actors();
    let metrics_addr = app.metrics_addr();
    let limiter = app.limiter();
    let audit = Some(app.audit());
    let stopper = app.stopper();
    let join = tokio::spawn(async move {
        app.run_until_stopped().await.expect("runs");
    });
    TestApp {
        base,
        issuer,
        http: client(),
        clock,
        actors,
        dir,
        metrics_addr,
        limiter,
        audit,
        stopper,
        join: Some(join),
        _tmp: tmp,
    }
}

impl TestApp {
    /// Stops the server and waits until it has shut down (database closed, actors stopped).
    pub async fn stop(mut self) -> PathBuf {
        // Our audit handle would keep the writer (and so the shutdown) waiting.
        self.audit.take();
        self.stopper.stop();
        if let Some(j) = self.join.take() {
            j.await.expect("server task");
        }
        self.dir.clone()
    }

    /// Keeps the temp folder alive beyond this app (restart tests).
    pub fn keep_dir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut r = self.http.post(self.url(path)).body(body);
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        r.send().await.expect("request")
    }

    /// GET with `Authorization: Bearer <token>`.
    /// The claims of an access token, verified with this server's JWKS alone (as a resource
    /// server would).
    pub async fn claims(&self, token: &str) -> Value {
        verify_with_jwks(
            &self.http,
            &self.url("/.well-known/jwks.json"),
            token,
            &self.issuer,
        )
        .await
    }

    pub async fn get_as(&self, path: &str, token: &str) -> Response {
        call(
            self,
            reqwest::Method::GET,
            path,
            &format!("Bearer {token}"),
            None,
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn signup(&self, email: &str) -> Value {
        let r = self
            .post(
                "/auth/signup",
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "signup {email}");
        r.json().await.expect("json")
    }

    pub async fn login(&self, email: &str) -> Value {
        let r = self
            .post(
                "/auth/login",
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "login {email}");
        r.json().await.expect("json")
    }

    pub async fn refresh(&self, token: &str) -> Response {
        self.post("/auth/refresh", &json!({"refresh_token": token}))
            .await
    }
}

/// Asserts a problem response with `code` and returns its body.
pub async fn assert_problem(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status for {code}");
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "problem content type for {code}"
    );
    let body: Value = r.json().await.expect("problem json");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// Verifies an access token with `jsonwebtoken` using only the JWKS document at `jwks_url`.
/// `issuer` is the server's (and the tokens' audience).
pub async fn verify_with_jwks(
    http: &reqwest::Client,
    jwks_url: &str,
    token: &str,
    issuer: &str,
) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = http
        .get(jwks_url)
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("kid published in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .expect("token verifies")
        .claims
}

impl TestApp {
    /// Waits until every audit event recorded so far is stored.
    pub async fn flush_audit(&self) {
        if let Some(a) = &self.audit {
            a.flush().await;
        }
    }

    /// The server's rate limiter (backend in use, counters).
    pub fn limiter(&self) -> edge_idp::security::ratelimit::RateLimiter {
        self.limiter.clone()
    }
}

/// RFC 4648 base32 (no padding), as authenticator apps decode TOTP secrets.
pub fn base32_decode(s: &str) -> Vec<u8> {
    let mut bits = 0u64;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {s}"),
        };
        bits = (bits << 5) | u64::from(v);
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// An independent RFC 6238 TOTP (HMAC-SHA1, 6 digits, 30 s) for checking the server's codes.
pub fn rfc6238(secret: &[u8], unix: i64) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &((unix / 30) as u64).to_be_bytes());
    let h = tag.as_ref();
    let off = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[off]) & 0x7f) << 24
        | u32::from(h[off + 1]) << 16
        | u32::from(h[off + 2]) << 8
        | u32::from(h[off + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// A direct connection to a server's database file, for checks the API cannot make. It waits
/// for the server's write lock (the server flushes audit rows in the background) as the
/// server's own connections do, instead of failing on SQLITE_BUSY.
pub struct DirectDb {
    _db: libsql::Database,
    pub conn: libsql::Connection,
}

pub async fn direct_db(dir: &Path) -> DirectDb {
    let db = libsql::Builder::new_local(dir.join("edge-idp.db"))
        .build()
        .await
        .unwrap();
    let conn = db.connect().unwrap();
    conn.query("PRAGMA busy_timeout = 5000", ()).await.unwrap();
    DirectDb { _db: db, conn }
}

impl DirectDb {
    /// The first column of every row `sql` answers, as text.
    pub async fn texts(&self, sql: &str) -> Vec<String> {
        let mut rows = self.conn.query(sql, ()).await.unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().await.unwrap() {
            out.push(r.get::<String>(0).unwrap());
        }
        out
    }

    /// The first column of every row `sql` answers, as integers.
    pub async fn integers(&self, sql: &str) -> Vec<i64> {
        let mut rows = self.conn.query(sql, ()).await.unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().await.unwrap() {
            out.push(r.get::<i64>(0).unwrap());
        }
        out
    }
}

/// The database in `dir` passes SQLite's `PRAGMA integrity_check`.
pub async fn integrity_ok(dir: &Path) {
    let db = direct_db(dir).await;
    assert_eq!(db.texts("PRAGMA integrity_check").await, ["ok"]);
}

/// Waits (at most 20 s) until the supervisor has restarted `kind` at least `n` times since start.
pub async fn restarted(app: &TestApp, kind: edge_idp_actors::ActorKind, n: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.actors.restarts(kind) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind:?} was not restarted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The one way the tests send an authenticated request: `authorization` is the whole header
/// value (`Bearer …`, or anything a test wants to try).
pub async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    authorization: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = app
        .http
        .request(method, app.url(path))
        .header("authorization", authorization);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

/// Signs `email` up and logs it in: its `Authorization` value and the signup body.
pub async fn authed(app: &TestApp, email: &str) -> (String, Value) {
    let s = app.signup(email).await;
    let t = app.login(email).await;
    (format!("Bearer {}", t["access_token"].as_str().unwrap()), s)
}

/// `auth` invites `email` into `org` as `role`.
pub async fn invite(
    app: &TestApp,
    auth: &str,
    org: &str,
    email: &str,
    role: &str,
) -> reqwest::Response {
    call(
        app,
        reqwest::Method::POST,
        &format!("/orgs/{org}/invitations"),
        auth,
        Some(json!({"email": email, "role": role})),
    )
    .await
}

/// The id of a 202 invitation.
pub async fn invitation_id(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 202);
    let b: Value = r.json().await.unwrap();
    b["id"].as_str().unwrap().to_owned()
}

pub async fn accept(app: &TestApp, auth: &str, id: &str) -> reqwest::Response {
    call(
        app,
        reqwest::Method::POST,
        &format!("/auth/invitations/{id}/accept"),
        auth,
        None,
    )
    .await
}

/// Makes the account of `email` (Bearer `invitee`) a member of `org` the only way there is:
/// `inviter` invites the email, the invitee accepts. Returns the 201 body.
pub async fn join(
    app: &TestApp,
    inviter: &str,
    org: &str,
    email: &str,
    role: &str,
    invitee: &str,
) -> Value {
    let id = invitation_id(invite(app, inviter, org, email, role).await).await;
    let r = accept(app, invitee, &id).await;
    assert_eq!(r.status(), 201, "accept the invitation of {email}");
    r.json().await.unwrap()
}

/// A loopback port free a moment ago, for a component process a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
