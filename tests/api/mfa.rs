//! TOTP MFA over HTTP, with codes from an independent TOTP implementation (RFC 6238 with
//! aws-lc-rs HMAC-SHA1) computed from the `otpauth_uri` as an authenticator app parses it.

use crate::helpers::*;
use serde_json::{json, Value};

/// What an authenticator app takes from the URI.
pub struct App {
    secret: Vec<u8>,
}

impl App {
    fn import(uri: &str, email: &str) -> App {
        let url = reqwest::Url::parse(uri).expect("otpauth URI parses");
        assert_eq!(url.scheme(), "otpauth");
        assert_eq!(url.host_str(), Some("totp"));
        let label = percent_decode(url.path().trim_start_matches('/'));
        assert_eq!(label, format!("edge-idp:{email}"));
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q.get("issuer").map(String::as_str), Some("edge-idp"));
        assert_eq!(
            q.get("algorithm").map(String::as_str).unwrap_or("SHA1"),
            "SHA1"
        );
        assert_eq!(q.get("digits").map(String::as_str).unwrap_or("6"), "6");
        assert_eq!(q.get("period").map(String::as_str).unwrap_or("30"), "30");
        let secret = base32_decode(&q["secret"]);
        assert_eq!(secret.len(), 20, "160-bit secret");
        App { secret }
    }

    pub fn code_at(&self, unix: i64) -> String {
        rfc6238(&self.secret, unix)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() + 1 {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn bearer(t: &Value) -> String {
    format!("Bearer {}", t["access_token"].as_str().unwrap())
}

pub async fn post_auth(
    app: &TestApp,
    path: &str,
    tokens: &Value,
    body: Option<Value>,
) -> reqwest::Response {
    call(app, reqwest::Method::POST, path, &bearer(tokens), body).await
}

/// Signs up, logs in, enrolls and confirms at the app clock's current time.
pub async fn with_mfa(app: &TestApp, email: &str) -> (App, Vec<String>) {
    let (totp, codes, _) = with_mfa_session(app, email).await;
    (totp, codes)
}

/// [`with_mfa`], also answering the tokens of the session that enrolled (it stays signed in).
pub async fn with_mfa_session(app: &TestApp, email: &str) -> (App, Vec<String>, Value) {
    app.signup(email).await;
    enroll_and_confirm(app, email).await
}

/// Logs an existing account in, enrolls and confirms; the recovery codes and the session.
pub async fn enroll_and_confirm(app: &TestApp, email: &str) -> (App, Vec<String>, Value) {
    let tokens = app.login(email).await;
    let r = post_auth(app, "/auth/mfa/enroll", &tokens, None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let e: Value = r.json().await.unwrap();
    let totp = App::import(e["otpauth_uri"].as_str().unwrap(), email);
    assert_eq!(base32_decode(e["secret"].as_str().unwrap()), totp.secret);
    let r = post_auth(
        app,
        "/auth/mfa/confirm",
        &tokens,
        Some(json!({"code": totp.code_at(app.clock.now())})),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let codes: Vec<String> = r.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (totp, codes, tokens)
}

pub async fn challenge(app: &TestApp, email: &str) -> String {
    let r = app
        .post(
            "/auth/login",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["mfa_required"], true);
    assert_eq!(b["expires_in"], 300);
    assert!(
        b.get("access_token").is_none() && b.get("refresh_token").is_none(),
        "no tokens before the second factor"
    );
    b["mfa_token"].as_str().unwrap().to_owned()
}

pub async fn verify(app: &TestApp, mfa_token: &str, code: &str) -> reqwest::Response {
    app.post(
        "/auth/mfa/verify",
        &json!({"mfa_token": mfa_token, "code": code}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_enroll_confirm_challenge_verify_with_otp_in_amr() {
    let app = spawn_app().await;
    let (totp, _) = with_mfa(&app, "mfa1@example.com").await;
    app.clock.advance(30);
    let ch = challenge(&app, "mfa1@example.com").await;
    let r = verify(&app, &ch, &totp.code_at(app.clock.now())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    let claims = app.claims(t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(
        app.refresh(t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_problem(
        verify(&app, &ch, &totp.code_at(app.clock.now() + 30)).await,
        401,
        "invalid_mfa_token",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_and_adjacent_steps_pass_two_steps_away_fail_and_a_step_is_never_reused() {
    let app = spawn_app().await;
    let (totp, _) = with_mfa(&app, "mfa2@example.com").await;
    app.clock.advance(300);
    let t = app.clock.now();
    let ch = challenge(&app, "mfa2@example.com").await;
    assert_problem(
        verify(&app, &ch, &totp.code_at(t - 60)).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    assert_problem(
        verify(&app, &ch, &totp.code_at(t + 60)).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    assert_eq!(
        verify(&app, &ch, &totp.code_at(t - 30)).await.status(),
        200,
        "previous step"
    );
    let ch = challenge(&app, "mfa2@example.com").await;
    assert_eq!(
        verify(&app, &ch, &totp.code_at(t)).await.status(),
        200,
        "current step"
    );
    let ch = challenge(&app, "mfa2@example.com").await;
    assert_eq!(
        verify(&app, &ch, &totp.code_at(t + 30)).await.status(),
        200,
        "next step"
    );
    let ch = challenge(&app, "mfa2@example.com").await;
    assert_problem(
        verify(&app, &ch, &totp.code_at(t + 30)).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    assert_problem(
        verify(&app, &ch, &totp.code_at(t)).await,
        401,
        "invalid_mfa_code",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_code_works_once_and_five_wrong_codes_burn_the_challenge() {
    let app = spawn_app().await;
    let (totp, codes) = with_mfa(&app, "mfa3@example.com").await;
    let ch = challenge(&app, "mfa3@example.com").await;
    assert_eq!(verify(&app, &ch, &codes[3]).await.status(), 200);
    let ch = challenge(&app, "mfa3@example.com").await;
    assert_problem(verify(&app, &ch, &codes[3]).await, 401, "invalid_mfa_code").await;
    for _ in 0..4 {
        assert_problem(verify(&app, &ch, "000000").await, 401, "invalid_mfa_code").await;
    }
    app.clock.advance(30);
    assert_problem(
        verify(&app, &ch, &totp.code_at(app.clock.now())).await,
        401,
        "invalid_mfa_token",
    )
    .await;
    let ch = challenge(&app, "mfa3@example.com").await;
    assert_eq!(
        verify(&app, &ch, &codes[4].to_uppercase()).await.status(),
        200,
        "recovery codes are case-insensitive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_needs_a_valid_code_and_then_login_needs_only_the_password() {
    let app = spawn_app().await;
    let (totp, codes) = with_mfa(&app, "mfa4@example.com").await;
    app.clock.advance(30);
    let ch = challenge(&app, "mfa4@example.com").await;
    let tokens: Value = verify(&app, &ch, &totp.code_at(app.clock.now()))
        .await
        .json()
        .await
        .unwrap();
    assert_problem(
        post_auth(
            &app,
            "/auth/mfa/disable",
            &tokens,
            Some(json!({"code": "123456"})),
        )
        .await,
        401,
        "invalid_mfa_code",
    )
    .await;
    let r = post_auth(
        &app,
        "/auth/mfa/disable",
        &tokens,
        Some(json!({"code": codes[0]})),
    )
    .await;
    assert_eq!(r.status(), 204);
    let t = app.login("mfa4@example.com").await;
    assert!(t["access_token"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_states_and_their_errors() {
    let app = spawn_app().await;
    app.signup("mfa5@example.com").await;
    let tokens = app.login("mfa5@example.com").await;
    assert_problem(
        post_auth(
            &app,
            "/auth/mfa/confirm",
            &tokens,
            Some(json!({"code": "123456"})),
        )
        .await,
        409,
        "mfa_not_pending",
    )
    .await;
    let first: Value = post_auth(&app, "/auth/mfa/enroll", &tokens, None)
        .await
        .json()
        .await
        .unwrap();
    let second: Value = post_auth(&app, "/auth/mfa/enroll", &tokens, None)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(
        first["secret"], second["secret"],
        "re-enrolling replaces the pending secret"
    );
    let old = App::import(first["otpauth_uri"].as_str().unwrap(), "mfa5@example.com");
    let new = App::import(second["otpauth_uri"].as_str().unwrap(), "mfa5@example.com");
    let now = app.clock.now();
    assert_problem(
        post_auth(
            &app,
            "/auth/mfa/confirm",
            &tokens,
            Some(json!({"code": old.code_at(now)})),
        )
        .await,
        401,
        "invalid_mfa_code",
    )
    .await;
    assert_eq!(
        post_auth(
            &app,
            "/auth/mfa/confirm",
            &tokens,
            Some(json!({"code": new.code_at(now)}))
        )
        .await
        .status(),
        200
    );
    assert_problem(
        post_auth(&app, "/auth/mfa/enroll", &tokens, None).await,
        409,
        "mfa_already_enabled",
    )
    .await;
    assert_problem(
        post_auth(
            &app,
            "/auth/mfa/confirm",
            &tokens,
            Some(json!({"code": new.code_at(now)})),
        )
        .await,
        409,
        "mfa_not_pending",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_holds_no_plaintext_secret_and_swapped_secrets_do_not_open() {
    let mut app = spawn_app().await;
    let _keep = app.keep_dir();
    let (a, _) = with_mfa(&app, "mfa6@example.com").await;
    let (b, _) = with_mfa(&app, "mfa7@example.com").await;
    let db = direct_db(&app.dir).await;
    let conn = &db.conn;
    let mut rows = conn.query("SELECT u.email, m.secret_sealed FROM mfa_secrets m JOIN users u ON u.id = m.user_id ORDER BY u.email", ()).await.unwrap();
    let mut sealed = Vec::new();
    while let Some(r) = rows.next().await.unwrap() {
        let blob: Vec<u8> = r.get(1).unwrap();
        sealed.push(blob);
    }
    assert_eq!(sealed.len(), 2);
    for (blob, app_) in sealed.iter().zip([&a, &b]) {
        assert!(
            !blob
                .windows(app_.secret.len())
                .any(|w| w == app_.secret.as_slice()),
            "raw secret not stored"
        );
    }
    // Put b's sealed secret into a's row: it must not open for a.
    conn.execute(
        "UPDATE mfa_secrets SET secret_sealed = ?1 WHERE user_id = (SELECT id FROM users WHERE email = 'mfa6@example.com')",
        [libsql::Value::Blob(sealed[1].clone())],
    )
    .await
    .unwrap();
    app.clock.advance(30);
    let now = app.clock.now();
    let ch = challenge(&app, "mfa6@example.com").await;
    assert_problem(
        verify(&app, &ch, &b.code_at(now)).await,
        401,
        "invalid_mfa_code",
    )
    .await;
    assert_problem(
        verify(&app, &ch, &a.code_at(now)).await,
        401,
        "invalid_mfa_code",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_codes_and_bad_mfa_tokens_are_4xx_problems() {
    let app = spawn_app().await;
    let (totp, _) = with_mfa(&app, "mfa8@example.com").await;
    let ch = challenge(&app, "mfa8@example.com").await;
    for bad in ["abcdef", "12345", "1234567", ""] {
        assert_problem(verify(&app, &ch, bad).await, 401, "invalid_mfa_code").await;
    }
    assert_problem(
        verify(&app, &ch, &"9".repeat(10_000)).await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        app.post(
            "/auth/mfa/verify",
            &json!({"mfa_token": ch, "code": 123456}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    for forged in ["", "forged", &"A".repeat(43), &"x".repeat(5000)] {
        assert_problem(
            verify(&app, forged, &totp.code_at(app.clock.now())).await,
            401,
            "invalid_mfa_token",
        )
        .await;
    }
    let ch = challenge(&app, "mfa8@example.com").await;
    app.clock.advance(301);
    assert_problem(
        verify(&app, &ch, &totp.code_at(app.clock.now())).await,
        401,
        "invalid_mfa_token",
    )
    .await;
}

/// `/auth/mfa/verify` as a client at `ip` (the server trusts `X-Client-IP`).
async fn verify_from(app: &TestApp, ip: &str, mfa_token: &str, code: &str) -> reqwest::Response {
    app.http
        .post(app.url("/auth/mfa/verify"))
        .header("x-client-ip", ip)
        .json(&json!({"mfa_token": mfa_token, "code": code}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_verify_counts_against_the_login_rate_limit_of_the_account() {
    let app = spawn_with(
        Opts::default()
            .arg("--rate-limit-login", "4/60")
            .arg("--client-ip-header", "X-Client-IP"),
    )
    .await;
    let (totp, _) = with_mfa(&app, "mfa9@example.com").await;
    // with_mfa's login and its confirmation count against the account (a confirmation checks
    // a second factor); the challenge's login is the third, the first verify the fourth. The
    // verifies come each from an IP of its own, so only the account's count can refuse one.
    let ch = challenge(&app, "mfa9@example.com").await;
    let wrong = verify_from(&app, "192.0.2.1", &ch, "000000").await;
    assert_problem(wrong, 401, "invalid_mfa_code").await;
    let code = totp.code_at(app.clock.now() + 30);
    let refused = verify_from(&app, "192.0.2.2", &ch, &code).await;
    assert_eq!(refused.headers()["ratelimit-limit"], "4");
    assert_problem(refused, 429, "rate_limited").await;
    // The refused attempt changed nothing: once a slot frees (60/4 s), the same challenge and
    // code pass.
    app.clock.advance(15);
    assert_eq!(
        verify_from(&app, "192.0.2.3", &ch, &code).await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_management_needs_a_valid_bearer_token_of_a_live_session() {
    let app = spawn_app().await;
    app.signup("mfa10@example.com").await;
    let tokens = app.login("mfa10@example.com").await;
    let r = app
        .http
        .post(app.url("/auth/mfa/enroll"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert_problem(r, 401, "invalid_token").await;
    let r = app
        .http
        .post(app.url("/auth/mfa/enroll"))
        .header("authorization", "Bearer not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "invalid_token").await;
    let mut forged = tokens["access_token"].as_str().unwrap().to_owned();
    forged.push('A');
    let r = app
        .http
        .post(app.url("/auth/mfa/enroll"))
        .header("authorization", format!("Bearer {forged}"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "invalid_token").await;
    app.post(
        "/auth/logout",
        &json!({"refresh_token": tokens["refresh_token"]}),
    )
    .await;
    assert_problem(
        post_auth(&app, "/auth/mfa/enroll", &tokens, None).await,
        401,
        "session_revoked",
    )
    .await;
    let fresh = app.login("mfa10@example.com").await;
    app.clock.advance(901);
    assert_problem(
        post_auth(&app, "/auth/mfa/enroll", &fresh, None).await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_organization_asked_for_at_login_travels_with_the_mfa_token() {
    let app = spawn_app().await;
    let (owner, s) = authed(&app, "mfa-org-owner@example.com").await;
    let org = s["organization"]["id"].as_str().unwrap().to_owned();
    let (member, _) = authed(&app, "mfa-org@example.com").await;
    join(&app, &owner, &org, "mfa-org@example.com", "member", &member).await;
    let (totp, _, _) = enroll_and_confirm(&app, "mfa-org@example.com").await;
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "mfa-org@example.com", "password": PASSWORD, "org_id": org}),
        )
        .await;
    let ch: Value = r.json().await.unwrap();
    let r = verify(
        &app,
        ch["mfa_token"].as_str().unwrap(),
        &totp.code_at(app.clock.now() + 30),
    )
    .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let claims = app.claims(t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["org_id"], org.as_str(), "the organization asked for");
    assert_eq!(claims["role"], "member");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
}
