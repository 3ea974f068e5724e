//! Mail: verification, password reset, the outbox, delivered through a real SMTP server.
//!
//! The server is aiosmtpd (PyPI), run as a process per test on a free loopback port with the
//! handler in `tests/smtp/sink.py`, which writes each accepted message as JSON (decoded parts)
//! beside its raw form. `.ci/run` installs aiosmtpd; in CI (`CI=true`) a missing one fails the
//! test, elsewhere it prints SKIPPED.

use crate::helpers::*;
use crate::mfa::enroll_and_confirm;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running aiosmtpd, and the folder its sink writes to.
pub struct Smtp {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Whether aiosmtpd is installed (`None` with a visible note outside CI; a panic in CI).
fn aiosmtpd(test: &str) -> Option<()> {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: python3 with aiosmtpd is required when CI=true (pip install aiosmtpd)");
    }
    eprintln!("SKIPPED {test}: no python3 aiosmtpd (pip install aiosmtpd)");
    None
}

impl Smtp {
    /// Starts a server, or `None` (SKIPPED) without aiosmtpd outside CI.
    pub async fn start(test: &str) -> Option<Self> {
        aiosmtpd(test)?;
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Smtp {
            child: None,
            port: free_port(),
            dir: tmp.path().join("mail"),
            _tmp: tmp,
        };
        s.up().await;
        Some(s)
    }

    /// `SMTP_URL` for this server.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port and waits until it accepts connections.
    pub async fn up(&mut self) {
        let sink = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "sink.JsonSink"])
            .arg(&self.dir)
            .env("PYTHONPATH", sink)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 -m aiosmtpd");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "aiosmtpd did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server (the port refuses connections after).
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message received so far (decoded), oldest first by file name is not promised.
    pub fn received(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits (at most 20 s) until `n` messages have arrived; they.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} messages expected, {} arrived: {got:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The one message to `to` (waiting for it), failing on a second.
    pub async fn message_to(&self, to: &str, subject_has: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got: Vec<Value> = self
                .received()
                .into_iter()
                .filter(|m| m["rcpt_tos"] == json!([to]))
                .filter(|m| m["subject"].as_str().unwrap().contains(subject_has))
                .collect();
            match got.len() {
                1 => return got.into_iter().next().unwrap(),
                0 => {}
                n => panic!("{n} messages to {to} about {subject_has:?}: {got:?}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message to {to} about {subject_has:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.down();
    }
}

/// Waits (at most 20 s) until every message in the outbox under `dir` is marked sent and its
/// body erased: none can go again.
async fn outbox_sent(dir: &Path) {
    let db = direct_db(dir).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = db
            .integers(
                "SELECT COUNT(*) FROM mail_outbox WHERE sent_at IS NULL OR sealed IS NOT NULL",
            )
            .await;
        if waiting == [0] {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "mail left unsent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The recipient of every message received, sorted.
fn recipients(smtp: &Smtp) -> Vec<String> {
    let mut to: Vec<String> = smtp
        .received()
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    to
}

/// A server that mails through `smtp`, looking at its outbox every 20 ms.
pub fn mailing(smtp: &Smtp) -> Opts {
    Opts::default()
        .arg("--smtp-url", smtp.url())
        .arg("--mail-poll-ms", 20)
}

/// An aiosmtpd, a server mailing through it, and `email` signed up there: with the token of
/// the verification link it was mailed. `None` (SKIPPED) without aiosmtpd outside CI.
async fn signed_up(test: &str, email: &str) -> Option<(Smtp, TestApp, String)> {
    let smtp = Smtp::start(test).await?;
    let app = spawn_with(mailing(&smtp)).await;
    app.signup(email).await;
    let (_, token) = link_in(&smtp.message_to(email, "Confirm").await, "/email/verify");
    Some((smtp, app, token))
}

/// The link of `page` in a message's text part, and its token.
pub fn link_in(m: &Value, page: &str) -> (String, String) {
    let text = m["text"].as_str().expect("a text part");
    let link = text
        .split_whitespace()
        .find(|w| w.contains(page))
        .unwrap_or_else(|| panic!("no {page} link in {text}"))
        .to_owned();
    let token = link.split("token=").nth(1).expect("token").to_owned();
    let html = m["html"].as_str().expect("an HTML part");
    assert!(
        html.contains(&format!("href=\"{link}\"")),
        "the HTML part links the same address: {html}"
    );
    (link, token)
}

/// `POST /auth/password/reset` with a link's token.
async fn reset_with(app: &TestApp, token: &str, new_password: &str) -> reqwest::Response {
    app.post(
        "/auth/password/reset",
        &json!({"token": token, "new_password": new_password}),
    )
    .await
}

/// `POST /auth/email/verify` with a link's token.
async fn verify_with(app: &TestApp, token: &str) -> reqwest::Response {
    app.post("/auth/email/verify", &json!({"token": token}))
        .await
}

async fn me(app: &TestApp, access: &str) -> Value {
    let r = app.get_as("/auth/me", access).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn signup_mails_a_verification_link_through_smtp_that_verifies_the_address_once() {
    let Some(smtp) = Smtp::start("signup_mails_a_verification_link").await else {
        return;
    };
    let app = spawn_with(mailing(&smtp).arg("--product-name", "Acme ID")).await;
    app.signup("ada@example.com").await;
    let m = smtp.message_to("ada@example.com", "Confirm").await;
    assert_eq!(m["subject"], "Confirm your email address for Acme ID");
    assert_eq!(m["mail_from"], "no-reply@localhost");
    let from = m["from"].as_str().unwrap();
    assert!(
        from.contains("Acme ID") && from.ends_with("<no-reply@localhost>"),
        "{from}"
    );
    assert_eq!(m["content_type"], "multipart/alternative");
    let (link, token) = link_in(&m, "/email/verify");
    assert_eq!(
        link,
        format!("http://localhost:8000/email/verify?token={token}")
    );
    assert_eq!(token.len(), 43);

    let tokens = app.login("ada@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(me(&app, access).await["user"]["email_verified"], false);

    // The link's page (the server's own address stands in for the issuer's host).
    let page = app.get(&format!("/email/verify?token={token}")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Verify my email address"), "{html}");

    let r = verify_with(&app, &token).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["email"], "ada@example.com");
    assert_eq!(b["email_verified"], true);
    assert_eq!(me(&app, access).await["user"]["email_verified"], true);
    let info: Value = app
        .get_as("/oauth2/userinfo", access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["email_verified"], true);

    // Once only.
    assert_problem(verify_with(&app, &token).await, 400, "invalid_email_token").await;
    assert_problem(
        verify_with(&app, &"x".repeat(43)).await,
        400,
        "invalid_email_token",
    )
    .await;
    // Verified: a resend is refused.
    let r = app
        .http
        .post(app.url("/auth/email/verify/resend"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "email_already_verified").await;
}

#[tokio::test]
async fn resend_sends_a_new_link_within_its_limit_and_require_verified_email_gates_sign_in() {
    let Some(smtp) = Smtp::start("resend_and_require_verified").await else {
        return;
    };
    let app = spawn_with(
        mailing(&smtp)
            .arg("--rate-limit-email", "2/3600")
            .arg("--require-verified-email", "true"),
    )
    .await;
    app.signup("bo@example.com").await;
    smtp.message_to("bo@example.com", "Confirm").await;
    // The right password only learns that the address is not verified.
    let wrong = app
        .post(
            "/auth/login",
            &json!({"email": "bo@example.com", "password": "not the password at all"}),
        )
        .await;
    assert_problem(wrong, 401, "invalid_credentials").await;
    let right = app
        .post(
            "/auth/login",
            &json!({"email": "bo@example.com", "password": PASSWORD}),
        )
        .await;
    assert_problem(right, 403, "email_not_verified").await;

    // A signed-in user (the gate lifted for the test's own server) asks again.
    let mut opts = mailing(&smtp).arg("--rate-limit-email", "2/3600");
    opts.data_dir = Some(app.dir.clone());
    // One clock for both: mail is due by the queuing instance's clock, so the sender's must
    // not lag behind it (a real fleet's skew delays mail by as much).
    opts.clock = Some(app.clock.clone());
    let open = spawn_with(opts).await;
    let tokens = open.login("bo@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let resend = || async {
        open.http
            .post(open.url("/auth/email/verify/resend"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    };
    let r = resend().await;
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("ratelimit-remaining"));
    assert_eq!(r.json::<Value>().await.unwrap()["email"], "bo@example.com");
    let all = smtp.wait_for(2).await;
    assert_eq!(all.len(), 2, "the signup's and the resend's");
    assert_eq!(resend().await.status(), 202);
    assert_problem(resend().await, 429, "rate_limited").await;

    // The newest link verifies; then the gated server lets the password in.
    let all = smtp.wait_for(3).await;
    let (_, token) = link_in(&all[0], "/email/verify");
    let r = verify_with(&app, &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.login("bo@example.com").await["token_type"], "Bearer");
    open.stop().await;
}

#[tokio::test]
async fn forgot_password_answers_alike_for_every_address_and_its_link_resets_once() {
    let Some((smtp, app, _)) = signed_up("forgot_password", "cy@example.com").await else {
        return;
    };
    let before = app.login("cy@example.com").await;

    let ask = |email: &'static str| {
        let app = &app;
        async move {
            let r = app
                .post("/auth/password/forgot", &json!({"email": email}))
                .await;
            let status = r.status();
            let mut headers: BTreeMap<String, String> = r
                .headers()
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "date" | "x-request-id"))
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            // The per-IP count runs on between the two requests (and is the tighter limit).
            headers.remove("ratelimit-remaining");
            headers.remove("ratelimit-reset");
            (status, headers, r.bytes().await.unwrap())
        }
    };
    let unknown = ask("nobody@example.com").await;
    let known = ask("CY@example.com ").await;
    assert_eq!(unknown.0, StatusCode::ACCEPTED);
    assert_eq!(unknown, known, "no oracle: status, headers and body alike");

    let m = smtp.message_to("cy@example.com", "Reset").await;
    assert_eq!(m["subject"], "Reset your edge-idp password");
    let (link, token) = link_in(&m, "/password/reset");
    assert!(link.starts_with("http://localhost:8000/password/reset?token="));
    // Nothing was queued for the unknown address.
    let db = direct_db(&app.dir).await;
    let queued = db
        .integers("SELECT COUNT(*) FROM mail_outbox WHERE recipient = 'nobody@example.com'")
        .await;
    assert_eq!(queued, [0]);

    // A refused password leaves the link working.
    assert_problem(
        reset_with(&app, &token, "password").await,
        422,
        "weak_password",
    )
    .await;
    let new_password = "a brand new correct horse";
    let r = reset_with(&app, &token, new_password).await;
    assert_eq!(r.status(), 204);
    // Once only.
    assert_problem(
        reset_with(&app, &token, "another new password here").await,
        400,
        "invalid_email_token",
    )
    .await;
    // Every session ended; the old password is gone, the new one works, the address counts as
    // proven, and a notice went out.
    let r = app.refresh(before["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 401);
    let r = app
        .get_as("/auth/me", before["access_token"].as_str().unwrap())
        .await;
    assert_eq!(r.status(), 401);
    let old = app
        .post(
            "/auth/login",
            &json!({"email": "cy@example.com", "password": PASSWORD}),
        )
        .await;
    assert_problem(old, 401, "invalid_credentials").await;
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "cy@example.com", "password": new_password}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let access = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(me(&app, &access).await["user"]["email_verified"], true);
    let notice = smtp.message_to("cy@example.com", "was changed").await;
    assert!(notice["text"]
        .as_str()
        .unwrap()
        .contains("reset through a link"));
    let resets = crate::audit::rows(&app)
        .await
        .into_iter()
        .filter(|r| r["kind"] == "password_reset")
        .count();
    assert_eq!(resets, 1);
}

#[tokio::test]
async fn a_reset_keeps_the_second_factor_and_links_expire_and_are_hashed_at_rest() {
    let Some((smtp, app, di_token)) = signed_up("reset_keeps_mfa", "di@example.com").await else {
        return;
    };
    let r = verify_with(&app, &di_token).await;
    assert_eq!(r.status(), 200);
    // Another account's link stays unused, for the expiry below.
    app.signup("dj@example.com").await;
    let verify = smtp.message_to("dj@example.com", "Confirm").await;
    let (_, verify_token) = link_in(&verify, "/email/verify");
    enroll_and_confirm(&app, "di@example.com").await;

    let r = app
        .post("/auth/password/forgot", &json!({"email": "di@example.com"}))
        .await;
    assert_eq!(r.status(), 202);
    let m = smtp.message_to("di@example.com", "Reset").await;
    let (_, token) = link_in(&m, "/password/reset");

    // No link is in the database files in clear, nor in the outbox's sealed bodies.
    for f in std::fs::read_dir(&app.dir).unwrap() {
        let path = f.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            for t in [&token, &verify_token] {
                assert!(
                    !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                    "a token in clear in {}",
                    path.display()
                );
            }
        }
    }

    // Thirty minutes later the reset link no longer works; a new one does.
    app.clock.advance(30 * 60);
    assert_problem(
        reset_with(&app, &token, "a brand new correct horse").await,
        400,
        "invalid_email_token",
    )
    .await;
    let page = app.get(&format!("/password/reset?token={token}")).await;
    assert_eq!(page.status(), 400);
    let r = app
        .post("/auth/password/forgot", &json!({"email": "di@example.com"}))
        .await;
    assert_eq!(r.status(), 202);
    let all = smtp.wait_for(4).await;
    let fresh = all
        .iter()
        .filter(|m| m["subject"].as_str().unwrap().starts_with("Reset"))
        .map(|m| link_in(m, "/password/reset").1)
        .find(|t| *t != token)
        .expect("a second reset link");
    let r = reset_with(&app, &fresh, "a brand new correct horse").await;
    assert_eq!(r.status(), 204);
    // MFA is not bypassed (the address was proven before): the new password leads to the
    // second factor.
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "di@example.com", "password": "a brand new correct horse"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["mfa_required"], true);

    // A day later the verification link has expired too.
    app.clock.advance(24 * 3600);
    assert_problem(
        verify_with(&app, &verify_token).await,
        400,
        "invalid_email_token",
    )
    .await;
}

#[tokio::test]
async fn forgot_password_is_limited_per_address_and_per_ip() {
    let app = spawn_with(Opts::default().arg("--rate-limit-email", "2/3600")).await;
    let ask = |email: &'static str| {
        let app = &app;
        async move {
            app.post("/auth/password/forgot", &json!({"email": email}))
                .await
        }
    };
    assert_eq!(ask("a@example.com").await.status(), 202);
    assert_eq!(ask("a@example.com").await.status(), 202);
    // Per address (known or not), before the IP's own count runs out.
    assert_problem(ask("a@example.com").await, 429, "rate_limited").await;
    // Per IP: the two refused and admitted so far counted against it.
    assert_problem(ask("b@example.com").await, 429, "rate_limited").await;
}

#[tokio::test]
async fn with_smtp_down_requests_succeed_and_every_mail_arrives_once_when_it_is_back() {
    let Some(mut smtp) = Smtp::start("smtp_down_then_back").await else {
        return;
    };
    smtp.down();
    let mut opts = mailing(&smtp);
    opts.args
        .push(("--metrics-token".into(), "metrics-token-for-tests".into()));
    let app = spawn_with(opts).await;
    for i in 0..3 {
        app.signup(&format!("down{i}@example.com")).await;
    }
    // Each waits in the outbox after a failed attempt.
    let metrics = || async {
        app.http
            .get(app.url("/metrics"))
            .bearer_auth("metrics-token-for-tests")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = metrics().await;
        if m.contains("edge_idp_mail_attempts_failed_total{outcome=\"retry\"}")
            && m.contains("edge_idp_mail_outbox_queued 3")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    smtp.up().await;
    // The retry is due after the backoff; time is the test's.
    app.clock.advance(edge_idp::app::email::backoff(0) + 1);
    let got = smtp.wait_for(3).await;
    app.clock.advance(3600);
    // Every message is marked sent (so none can go again), and each arrived once.
    outbox_sent(&app.dir).await;
    assert_eq!(
        recipients(&smtp),
        [
            "down0@example.com",
            "down1@example.com",
            "down2@example.com"
        ],
        "{got:?}"
    );
    // The gauges follow at the sender's next look.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !metrics().await.contains("edge_idp_mail_outbox_queued 0") {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_instances_sharing_one_outbox_never_send_a_message_twice() {
    let Some(mut smtp) = Smtp::start("two_instances_one_outbox").await else {
        return;
    };
    smtp.down();
    let clock = edge_idp_actors::Clock::manual_now();
    let mut a_opts = mailing(&smtp);
    a_opts.clock = Some(clock.clone());
    let mut a = spawn_with(a_opts).await;
    let mut b_opts = mailing(&smtp);
    b_opts.clock = Some(clock.clone());
    b_opts.data_dir = Some(a.dir.clone());
    let b = spawn_with(b_opts).await;
    for i in 0..10 {
        let app = if i % 2 == 0 { &a } else { &b };
        app.signup(&format!("pair{i}@example.com")).await;
    }
    // Both instances see all ten due once the server is back.
    smtp.up().await;
    clock.advance(edge_idp::app::email::backoff(0) + 1);
    smtp.wait_for(10).await;
    clock.advance(3600);
    outbox_sent(&a.dir).await;
    let mut expected: Vec<String> = (0..10).map(|i| format!("pair{i}@example.com")).collect();
    expected.sort();
    assert_eq!(recipients(&smtp), expected, "each message once");

    // The sender stops with mail waiting: the other instance takes the lease and sends it.
    smtp.down();
    a.signup("handover@example.com").await;
    // B works on A's folder: it outlives A.
    let _folder = a.keep_dir();
    let dir = a.stop().await;
    smtp.up().await;
    clock.advance(edge_idp::app::email::backoff(0) + 1);
    smtp.message_to("handover@example.com", "Confirm").await;
    outbox_sent(&dir).await;
    assert_eq!(recipients(&smtp).len(), 11, "each message once");
    b.stop().await;
}

/// The token of the verification link in a raw `.eml` message.
fn verify_token_in(eml: &str) -> String {
    unquote(eml)
        .split("/email/verify?token=")
        .nth(1)
        .expect("the mail holds its link")
        .get(..43)
        .expect("a whole token")
        .to_owned()
}

/// Quoted-printable, as lettre may encode a long text part.
fn unquote(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Waits (at most 20 s) for a development mail (`DATA_DIR/mail/*.eml`, written without
/// `SMTP_URL`) whose subject is `subject`; its text.
pub async fn eml_with_subject(data_dir: &Path, subject: &str) -> String {
    let dir = data_dir.join("mail");
    let header = format!("Subject: {subject}\r\n");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = std::fs::read_dir(&dir).ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .map(|p| std::fs::read_to_string(p).unwrap())
                .find(|text| text.contains(&header))
        });
        if let Some(text) = found {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no .eml about {subject:?} under {dir:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn without_smtp_the_mail_is_an_eml_file_whose_link_works() {
    let app = spawn_app().await;
    app.signup("eve@example.com").await;
    let eml = eml_with_subject(&app.dir, "Confirm your email address for edge-idp").await;
    assert!(eml.contains("To: eve@example.com"), "{eml}");
    let token = verify_token_in(&eml);
    let r = verify_with(&app, &token).await;
    assert_eq!(r.status(), 200, "{eml}");
}

/// A browser's visit without a browser: the CSRF cookie a page sets, sent back with its form.
struct Visit<'a> {
    app: &'a TestApp,
    cookie: String,
}

impl<'a> Visit<'a> {
    /// GETs `path`, keeping the CSRF cookie it sets; the page's status and HTML.
    async fn get(app: &'a TestApp, path: &str) -> (Self, u16, String) {
        let r = app.get(path).await;
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.starts_with("edge_idp_csrf="))
            .expect("a csrf cookie");
        let status = r.status().as_u16();
        (Visit { app, cookie }, status, r.text().await.unwrap())
    }

    /// POSTs `fields` (and the CSRF token) as the page's form.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let csrf = self.cookie.split_once('=').unwrap().1.to_owned();
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        let r = self
            .app
            .http
            .post(self.app.url(path))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

#[tokio::test]
async fn a_person_verifies_the_address_and_resets_the_password_on_the_hosted_pages() {
    let Some((smtp, app, token)) = signed_up("hosted_email_pages", "fay@example.com").await else {
        return;
    };

    // The link's page uses nothing until its button is pressed.
    let (visit, status, html) = Visit::get(&app, &format!("/email/verify?token={token}")).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!("name=\"token\" value=\"{token}\"")));
    let (status, html) = visit.post("/email/verify", &[("token", &token)]).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Email address verified") && html.contains("fay@example.com"));
    let (status, html) = visit.post("/email/verify", &[("token", &token)]).await;
    assert_eq!(status, 400);
    assert!(html.contains("This link does not work"));
    // A form without its CSRF cookie is refused.
    let r = app
        .http
        .post(app.url("/email/verify"))
        .form(&[("csrf", "x"), ("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Forgot: the sign-in page links it; the page says the same for any address.
    let (visit, status, html) = Visit::get(&app, "/password/forgot").await;
    assert_eq!(status, 200);
    assert!(html.contains("Reset your password"));
    let (status, unknown) = visit
        .post("/password/forgot", &[("email", "nobody@example.com")])
        .await;
    assert_eq!(status, 200);
    let (_, known) = visit
        .post("/password/forgot", &[("email", "fay@example.com")])
        .await;
    assert_eq!(unknown, known);
    assert!(known.contains("Check your email"));
    let (_, token) = link_in(
        &smtp.message_to("fay@example.com", "Reset").await,
        "/password/reset",
    );

    let (visit, status, html) = Visit::get(&app, &format!("/password/reset?token={token}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Choose a new password"));
    let new = "a brand new correct horse";
    let reset_form = |password: &'static str, confirm: &'static str| {
        let (visit, token) = (&visit, token.clone());
        async move {
            let fields = [
                ("token", token.as_str()),
                ("new_password", password),
                ("confirm_password", confirm),
            ];
            visit.post("/password/reset", &fields).await
        }
    };
    let (status, html) = reset_form(new, "other").await;
    assert_eq!(status, 200);
    assert!(html.contains("The two passwords differ"));
    let (status, html) = reset_form("password", "password").await;
    assert_eq!(status, 200);
    assert!(html.contains("Choose another password"), "{html}");
    let (status, html) = reset_form(new, new).await;
    assert_eq!(status, 200);
    assert!(html.contains("Password changed"), "{html}");
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "fay@example.com", "password": new}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let (status, _) = reset_form(new, new).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_email_change_waits_for_the_new_address_and_tells_the_old_one() {
    let Some((smtp, app, _)) = signed_up("email_change", "old@example.com").await else {
        return;
    };
    let tokens = app.login("old@example.com").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let change = |new: &str, password: &str| {
        let body = json!({"new_email": new, "password": password});
        let access = access.clone();
        let app = &app;
        async move {
            app.http
                .post(app.url("/auth/email"))
                .bearer_auth(access)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    assert_problem(
        change("new@example.com", "wrong password here").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_problem(
        change("old@example.com", PASSWORD).await,
        409,
        "email_taken",
    )
    .await;
    let r = change(" NEW@example.com", PASSWORD).await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.unwrap()["pending_email"],
        "new@example.com"
    );

    let confirm = smtp.message_to("new@example.com", "Confirm your new").await;
    let notice = smtp.message_to("old@example.com", "is being changed").await;
    assert!(notice["text"].as_str().unwrap().contains("new@example.com"));
    assert!(notice["text"]
        .as_str()
        .unwrap()
        .contains("Nothing changes unless"));
    // Nothing changed yet.
    assert_eq!(me(&app, &access).await["user"]["email"], "old@example.com");
    app.login("old@example.com").await;

    let (_, token) = link_in(&confirm, "/email/verify");
    let r = verify_with(&app, &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["email"], "new@example.com");
    let profile = me(&app, &access).await;
    assert_eq!(profile["user"]["email"], "new@example.com");
    assert_eq!(profile["user"]["email_verified"], true);
    // Userinfo answers the address and its proof together, not the token's older claim.
    let info: Value = app
        .get_as("/oauth2/userinfo", &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], "new@example.com");
    assert_eq!(info["email_verified"], true);
    app.login("new@example.com").await;
    assert_problem(
        app.post(
            "/auth/login",
            &json!({"email": "old@example.com", "password": PASSWORD}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    smtp.message_to("old@example.com", "was changed").await;

    // Another account takes the address before its link is used: checked again, refused.
    let r = change("third@example.com", PASSWORD).await;
    assert_eq!(r.status(), 202);
    let confirm = smtp
        .message_to("third@example.com", "Confirm your new")
        .await;
    app.signup("third@example.com").await;
    let (_, token) = link_in(&confirm, "/email/verify");
    assert_problem(verify_with(&app, &token).await, 409, "email_taken").await;
    assert_eq!(me(&app, &access).await["user"]["email"], "new@example.com");
    // The "was changed" notice is queued by the change itself: one for the one change made,
    // none for the refused one.
    let told = direct_db(&app.dir)
        .await
        .texts("SELECT recipient FROM mail_outbox WHERE kind = 'email_changed'")
        .await;
    assert_eq!(told, ["old@example.com"]);
}

#[tokio::test]
async fn security_notices_go_out_for_a_disabled_second_factor_and_a_new_device() {
    let Some(smtp) = Smtp::start("security_notices").await else {
        return;
    };
    let app = spawn_with(mailing(&smtp).arg("--new-sign-in-notice", "true")).await;
    app.signup("hal@example.com").await;
    smtp.message_to("hal@example.com", "Confirm").await;
    let login_as = |agent: &'static str| {
        let app = &app;
        async move {
            let r = app
                .http
                .post(app.url("/auth/login"))
                .header("user-agent", agent)
                .json(&json!({"email": "hal@example.com", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    // The first device is the account's own; again from it, nothing; from another, a notice.
    login_as("Firefox/1").await;
    login_as("Firefox/1").await;
    login_as("Safari/2").await;
    let m = smtp.message_to("hal@example.com", "New sign-in").await;
    assert!(m["text"].as_str().unwrap().contains("Safari/2"));
    login_as("Safari/2").await;

    // MFA off mails a notice.
    let (totp, _, session) = enroll_and_confirm(&app, "hal@example.com").await;
    let r = app
        .http
        .post(app.url("/auth/mfa/disable"))
        .bearer_auth(session["access_token"].as_str().unwrap())
        .json(&json!({"code": totp.code_at(app.clock.now() + 30)}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    smtp.message_to("hal@example.com", "Two-step verification was turned off")
        .await;
    // Exactly: the verification; two new devices (Safari, then the enrollment's login, whose
    // client sends no User-Agent); MFA off.
    let mut subjects: Vec<String> = smtp
        .received()
        .iter()
        .map(|m| {
            m["subject"]
                .as_str()
                .unwrap()
                .split(' ')
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Confirm your email",
            "New sign-in to",
            "New sign-in to",
            "Two-step verification was"
        ],
    );
}

#[tokio::test]
async fn require_verified_email_also_holds_for_a_passkey_sign_in() {
    use crate::passkeys::{register, sign_in, Device};
    let mut open = spawn_app().await;
    open.signup("ivy@example.com").await;
    let tokens = open.login("ivy@example.com").await;
    let mut device = Device::new();
    register(&open, &tokens, &mut device, "Laptop").await;
    let _folder = open.keep_dir();
    let clock = open.clock.clone();
    let dir = open.stop().await;

    let gated = spawn_with(
        Opts {
            data_dir: Some(dir),
            clock: Some(clock),
            ..Default::default()
        }
        .arg("--require-verified-email", "true"),
    )
    .await;
    assert_problem(
        sign_in(&gated, &mut device).await,
        403,
        "email_not_verified",
    )
    .await;
    // The development mail's link proves the address; then the passkey signs in.
    let eml = eml_with_subject(&gated.dir, "Confirm your email address for edge-idp").await;
    let token = verify_token_in(&eml);
    let r = verify_with(&gated, &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sign_in(&gated, &mut device).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_without_smtp_logs_no_link() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = crate::multiprocess::start_logged(
        tmp.path(),
        &[
            "--app-env",
            "production",
            "--issuer",
            "https://idp.example.com",
            "--argon2-memory-kib",
            "19456",
            "--argon2-iterations",
            "2",
        ],
        "info",
    );
    let r = crate::multiprocess::post(
        &server.base,
        "/auth/signup",
        json!({"email": "prod@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let eml = eml_with_subject(tmp.path(), "Confirm your email address for edge-idp").await;
    let token = verify_token_in(&eml);
    assert!(server.terminate().success());
    let log = server.lines.lock().unwrap().join("\n");
    assert!(
        log.contains("set SMTP_URL to deliver it"),
        "the start warns"
    );
    assert!(log.contains("mail written (no SMTP_URL)"), "{log}");
    assert!(!log.contains(&token), "production logged a link's token");
}

#[tokio::test]
async fn a_link_works_once_even_twice_in_one_second_and_a_reset_ends_pending_changes() {
    let Some((smtp, app, verify)) = signed_up("link_once_per_second", "jo@example.com").await
    else {
        return;
    };
    assert_eq!(verify_with(&app, &verify).await.status(), 200);
    let tokens = app.login("jo@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    // A change asked with the old password…
    let r = app
        .http
        .post(app.url("/auth/email"))
        .bearer_auth(access)
        .json(&json!({"new_email": "jo.new@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (_, change) = link_in(
        &smtp
            .message_to("jo.new@example.com", "Confirm your new")
            .await,
        "/email/verify",
    );

    let r = app
        .post("/auth/password/forgot", &json!({"email": "jo@example.com"}))
        .await;
    assert_eq!(r.status(), 202);
    let (_, token) = link_in(
        &smtp.message_to("jo@example.com", "Reset").await,
        "/password/reset",
    );
    // Two resets with one link in the same second (the manual clock stands still): one wins,
    // and its password is the one in force.
    let reset = |password: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let r = reset_with(app, &token, password).await;
            (r.status().as_u16(), password)
        }
    };
    let (a, b) = tokio::join!(
        reset("first brand new correct horse"),
        reset("second brand new correct horse")
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [204, 400], "{a:?} {b:?}");
    let winner = if a.0 == 204 { a.1 } else { b.1 };
    let loser = if a.0 == 204 { b.1 } else { a.1 };
    let login = |password: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/auth/login",
                &json!({"email": "jo@example.com", "password": password}),
            )
            .await
            .status()
        }
    };
    assert_eq!(login(winner).await, 200);
    assert_eq!(login(loser).await, 401);
    // …does not outlive the reset.
    assert_problem(verify_with(&app, &change).await, 400, "invalid_email_token").await;
}

#[tokio::test]
async fn a_password_change_ends_the_pending_reset_and_change_links() {
    let Some((smtp, app, _)) = signed_up("password_change_links", "pat@example.com").await else {
        return;
    };
    let access = app.login("pat@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = |path: &'static str, body: Value| {
        let app = &app;
        let access = access.clone();
        async move {
            let r = app.http.post(app.url(path)).bearer_auth(access);
            r.json(&body).send().await.unwrap().status().as_u16()
        }
    };
    // A reset link mailed (anyone can ask for one) and a change asked with the old password…
    assert_eq!(
        post("/auth/password/forgot", json!({"email": "pat@example.com"})).await,
        202
    );
    let (_, reset) = link_in(
        &smtp.message_to("pat@example.com", "Reset").await,
        "/password/reset",
    );
    let change = json!({"new_email": "pat.new@example.com", "password": PASSWORD});
    assert_eq!(post("/auth/email", change).await, 202);
    let (_, change) = link_in(
        &smtp
            .message_to("pat.new@example.com", "Confirm your new")
            .await,
        "/email/verify",
    );
    // …then the owner changes the password: neither link outlives it.
    let new_password = "a brand new correct horse";
    let body = json!({"current_password": PASSWORD, "new_password": new_password});
    assert_eq!(post("/auth/password", body).await, 204);
    assert_problem(
        reset_with(&app, &reset, "someone else's new password").await,
        400,
        "invalid_email_token",
    )
    .await;
    assert_problem(verify_with(&app, &change).await, 400, "invalid_email_token").await;
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "pat@example.com", "password": new_password}),
        )
        .await;
    assert_eq!(r.status(), 200, "the changed password is the one in force");
}

#[tokio::test]
async fn a_reset_that_first_proves_the_address_removes_what_its_creator_set_up() {
    let Some(smtp) = Smtp::start("reset_first_proof").await else {
        return;
    };
    let app = spawn_with(mailing(&smtp)).await;
    // Someone signs up with an address that is not theirs and turns on a second factor.
    let _ = crate::mfa::with_mfa(&app, "kim@example.com").await;
    smtp.message_to("kim@example.com", "Confirm").await;
    // The address's owner resets the password through the link sent to them.
    let r = app
        .post(
            "/auth/password/forgot",
            &json!({"email": "kim@example.com"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let (_, token) = link_in(
        &smtp.message_to("kim@example.com", "Reset").await,
        "/password/reset",
    );
    let new = "a brand new correct horse";
    let r = reset_with(&app, &token, new).await;
    assert_eq!(r.status(), 204);
    // The second factor the creator set up is gone: the new password alone signs in.
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "kim@example.com", "password": new}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert!(t["access_token"].is_string(), "{t}");
    assert_eq!(
        me(&app, t["access_token"].as_str().unwrap()).await["user"]["mfa_enabled"],
        false
    );
}

#[tokio::test]
async fn every_use_of_a_link_counts_against_the_login_limit_per_ip() {
    let app = spawn_with(Opts::default().arg("--rate-limit-login", "2/60")).await;
    let body = json!({"token": "g".repeat(43)});
    let guess = || app.post("/auth/email/verify", &body);
    assert_problem(guess().await, 400, "invalid_email_token").await;
    assert_problem(guess().await, 400, "invalid_email_token").await;
    assert_problem(guess().await, 429, "rate_limited").await;
    let r = reset_with(&app, &"g".repeat(43), "a brand new correct horse").await;
    assert_problem(r, 429, "rate_limited").await;
}
