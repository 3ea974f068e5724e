//! The security hardening: brute-force guards on every password and second-factor check, the
//! account lockout, step-up for MFA changes, client-IP keying, the password policy, and what
//! responses and files must not reveal. Each test names the guarantee it proves.

use crate::helpers::*;
use crate::mfa::{challenge, enroll_and_confirm, post_auth, verify, with_mfa, with_mfa_session};
use serde_json::{json, Value};

async fn audit_kinds(app: &TestApp) -> Vec<String> {
    app.flush_audit().await;
    direct_db(&app.dir)
        .await
        .texts("SELECT kind FROM audit_events ORDER BY id")
        .await
}

/// `POST /auth/mfa/disable` with `code`, as the session of `tokens`.
async fn disable(app: &TestApp, tokens: &Value, code: impl serde::Serialize) -> reqwest::Response {
    post_auth(
        app,
        "/auth/mfa/disable",
        tokens,
        Some(json!({ "code": code })),
    )
    .await
}

fn retry_after(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_confirm_and_disable_count_against_the_login_limits() {
    let app = spawn_with(Opts::default().arg("--rate-limit-login", "3/60")).await;
    app.signup("sec1@example.com").await;
    let tokens = app.login("sec1@example.com").await; // 1
    assert_eq!(
        post_auth(&app, "/auth/mfa/enroll", &tokens, None)
            .await
            .status(),
        200
    );
    for _ in 0..2 {
        let r = post_auth(
            &app,
            "/auth/mfa/confirm",
            &tokens,
            Some(json!({"code": "000000"})),
        )
        .await;
        assert_problem(r, 401, "invalid_mfa_code").await; // 2, 3
    }
    let r = post_auth(
        &app,
        "/auth/mfa/confirm",
        &tokens,
        Some(json!({"code": "000000"})),
    )
    .await;
    assert!(retry_after(&r) >= 1);
    assert_problem(r, 429, "rate_limited").await;

    // disable: with_mfa's login and confirm are 1 and 2; one wrong code is 3.
    let app = spawn_with(Opts::default().arg("--rate-limit-login", "3/60")).await;
    let (totp, _, tokens) = with_mfa_session(&app, "sec1b@example.com").await;
    let r = disable(&app, &tokens, "000000").await;
    assert_problem(r, 401, "invalid_mfa_code").await;
    let code = totp.code_at(app.clock.now() + 30);
    let r = disable(&app, &tokens, &code).await;
    assert_problem(r, 429, "rate_limited").await;
    // The refused request changed nothing: once a slot frees, the same code passes.
    app.clock.advance(20);
    let r = disable(&app, &tokens, &code).await;
    assert_eq!(r.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_second_factor_answers_are_capped_across_endpoints_then_refused_until_the_window_passes(
) {
    let app = spawn_with(Opts::default().arg("--mfa-failure-limit", "3/900")).await;
    let email = "sec2@example.com";
    let (totp, _) = with_mfa(&app, email).await;
    // A signed-in session (through MFA) to call disable with.
    let ch = challenge(&app, email).await;
    let now = app.clock.now();
    let r = verify(&app, &ch, &totp.code_at(now + 30)).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    // Two wrong answers on disable, one on a login challenge: the cap of 3 is reached.
    for _ in 0..2 {
        let r = disable(&app, &tokens, "000000").await;
        assert_problem(r, 401, "invalid_mfa_code").await;
    }
    let ch = challenge(&app, email).await;
    assert_problem(verify(&app, &ch, "000000").await, 401, "invalid_mfa_code").await;
    // Now even the right code is refused, on every endpoint, until the window passes.
    let right = totp.code_at(app.clock.now() - 30);
    let r = disable(&app, &tokens, &right).await;
    let wait = retry_after(&r);
    assert_problem(r, 429, "rate_limited").await;
    assert!((1..=900).contains(&wait), "retry after {wait}");
    let ch = challenge(&app, email).await;
    assert_problem(verify(&app, &ch, &right).await, 429, "rate_limited").await;
    let kinds = audit_kinds(&app).await;
    assert!(kinds.iter().any(|k| k == "mfa_locked"), "{kinds:?}");
    assert!(
        kinds.iter().any(|k| k == "mfa_attempt_refused"),
        "{kinds:?}"
    );
    // After the window, the right code works and turns MFA off (with a fresh access token:
    // the window outlasts the one we had).
    app.clock.advance(wait as i64);
    let r = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    let tokens: Value = r.json().await.unwrap();
    let code = totp.code_at(app.clock.now());
    let r = disable(&app, &tokens, &code).await;
    assert_eq!(r.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_verify_counts_unknown_tokens_against_the_client_ip() {
    let app = spawn_with(Opts::default().arg("--rate-limit-login", "3/60")).await;
    let forged = "A".repeat(43);
    for _ in 0..3 {
        assert_problem(
            verify(&app, &forged, "123456").await,
            401,
            "invalid_mfa_token",
        )
        .await;
    }
    assert_problem(verify(&app, &forged, "123456").await, 429, "rate_limited").await;
    // A malformed token counts too.
    app.clock.advance(20);
    assert_problem(
        verify(&app, "short", "123456").await,
        401,
        "invalid_mfa_token",
    )
    .await;
    assert_problem(verify(&app, "short", "123456").await, 429, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_codes_on_one_challenge_are_evaluated_at_most_five_times() {
    let app = spawn_with(Opts::default().arg("--mfa-failure-limit", "1000/900")).await;
    let email = "sec3@example.com";
    with_mfa(&app, email).await;
    let ch = challenge(&app, email).await;
    let answers = futures_util::future::join_all((0..8).map(|i| {
        let (app, ch) = (&app, ch.clone());
        async move {
            let r = verify(app, &ch, &format!("00000{i}")).await;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body["code"].as_str().unwrap_or("").to_owned())
        }
    }))
    .await;
    let wrong = answers.iter().filter(|a| a.1 == "invalid_mfa_code").count();
    let burned = answers
        .iter()
        .filter(|a| a.1 == "invalid_mfa_token")
        .count();
    assert_eq!((wrong, burned), (5, 3), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_wrong_passwords_lock_an_account_briefly_for_known_and_unknown_emails_alike() {
    let app = spawn_with(
        Opts::default()
            .arg("--lockout-threshold", "3")
            .arg("--lockout-base-secs", "30")
            .arg("--lockout-max-secs", "100"),
    )
    .await;
    app.signup("sec4@example.com").await;
    let login = |email: &'static str, pw: &'static str| {
        let app = &app;
        async move {
            app.post("/auth/login", &json!({"email": email, "password": pw}))
                .await
        }
    };
    for email in ["sec4@example.com", "nobody4@example.com"] {
        for _ in 0..3 {
            assert_problem(
                login(email, "wrong password here").await,
                401,
                "invalid_credentials",
            )
            .await;
        }
        // Locked: even the right password is refused, and the answer is the same for an
        // address without an account.
        let r = login(email, PASSWORD).await;
        assert_eq!(retry_after(&r), 30, "{email}");
        assert_problem(r, 429, "rate_limited").await;
    }
    // The lock is short: once it has passed, the right password works and clears the count.
    app.clock.advance(30);
    assert_eq!(login("sec4@example.com", PASSWORD).await.status(), 200);
    assert_problem(
        login("sec4@example.com", "wrong password here").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        login("sec4@example.com", PASSWORD).await.status(),
        200,
        "one failure after a success does not lock"
    );
    // Each failure past the threshold doubles the lock, up to the maximum.
    app.clock.advance(30);
    for _ in 0..2 {
        login("nobody4@example.com", "wrong password here").await;
        let r = login("nobody4@example.com", PASSWORD).await;
        assert_eq!(r.status(), 429);
        let wait = retry_after(&r);
        app.clock.advance(wait as i64);
    }
    login("nobody4@example.com", "wrong").await;
    let r = login("nobody4@example.com", PASSWORD).await;
    assert_eq!(retry_after(&r), 100, "capped at LOCKOUT_MAX_SECS");
    let kinds = audit_kinds(&app).await;
    assert!(
        kinds.iter().filter(|k| *k == "account_locked").count() >= 2,
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_writes_the_same_rows_for_a_known_and_an_unknown_email() {
    let app = spawn_app().await;
    app.signup("sec5@example.com").await;
    for email in ["sec5@example.com", "nobody5@example.com"] {
        let r = app
            .post(
                "/auth/login",
                &json!({"email": email, "password": "wrong password here"}),
            )
            .await;
        assert_eq!(r.status(), 401);
    }
    let db = direct_db(&app.dir).await;
    let n = db
        .integers("SELECT failures FROM login_lockouts ORDER BY failures")
        .await;
    assert_eq!(
        n,
        vec![1, 1],
        "one counted failure per address, account or not"
    );
    let mut rows = db
        .conn
        .query(
            "SELECT failed_logins, last_failed_at IS NULL FROM users",
            (),
        )
        .await
        .unwrap();
    let r = rows.next().await.unwrap().unwrap();
    assert_eq!(
        (r.get::<i64>(0).unwrap(), r.get::<i64>(1).unwrap()),
        (0, 1),
        "no write to the account row"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_mfa_needs_a_recent_sign_in_not_just_a_valid_token() {
    let app = spawn_with(Opts::default().arg("--step-up-max-age-secs", "300")).await;
    app.signup("sec6@example.com").await;
    let tokens = app.login("sec6@example.com").await;
    app.clock.advance(301);
    // A refreshed token keeps the sign-in time: still too old.
    let r = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200);
    let refreshed: Value = r.json().await.unwrap();
    let claims = app
        .claims(refreshed["access_token"].as_str().unwrap())
        .await;
    assert_eq!(claims["auth_time"].as_i64().unwrap(), app.clock.now() - 301);
    for t in [&tokens, &refreshed] {
        let r = post_auth(&app, "/auth/mfa/enroll", t, None).await;
        let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            www.contains("insufficient_user_authentication") && www.contains("max_age=300"),
            "{www}"
        );
        assert_problem(r, 401, "insufficient_user_authentication").await;
        let r = post_auth(
            &app,
            "/auth/mfa/confirm",
            t,
            Some(json!({"code": "123456"})),
        )
        .await;
        assert_problem(r, 401, "insufficient_user_authentication").await;
    }
    // A fresh sign-in may.
    let fresh = app.login("sec6@example.com").await;
    assert_eq!(
        post_auth(&app, "/auth/mfa/enroll", &fresh, None)
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_mfa_on_or_off_ends_the_other_sessions() {
    let app = spawn_app().await;
    let email = "sec7@example.com";
    app.signup(email).await;
    let other = app.login(email).await;
    let (totp, _, _) = enroll_and_confirm(&app, email).await; // its own login is kept
    let r = app.refresh(other["refresh_token"].as_str().unwrap()).await;
    assert_problem(r, 401, "invalid_refresh_token").await;
    let r = app
        .get_as("/auth/me", other["access_token"].as_str().unwrap())
        .await;
    assert_problem(r, 401, "session_revoked").await;
    // Off again, from a session signed in with MFA: a second session ends.
    let sign_in = |at: i64| {
        let (app, totp) = (&app, &totp);
        async move {
            let ch = challenge(app, email).await;
            let r = verify(app, &ch, &totp.code_at(at)).await;
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    // Each sign-in uses a later TOTP step than the one before (a step is accepted once).
    let a = sign_in(app.clock.now() + 30).await;
    app.clock.advance(60);
    let b = sign_in(app.clock.now()).await;
    let r = disable(&app, &a, totp.code_at(app.clock.now() + 30)).await;
    assert_eq!(r.status(), 204);
    let r = app.refresh(b["refresh_token"].as_str().unwrap()).await;
    assert_problem(r, 401, "invalid_refresh_token").await;
    assert_eq!(
        app.refresh(a["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_pending_mfa_challenges() {
    let app = spawn_app().await;
    let email = "sec8@example.com";
    let (totp, _) = with_mfa(&app, email).await;
    let ch = challenge(&app, email).await;
    let ch2 = challenge(&app, email).await;
    let r = verify(&app, &ch2, &totp.code_at(app.clock.now() + 30)).await;
    let tokens: Value = r.json().await.unwrap();
    let r = app
        .http
        .post(app.url("/auth/password"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The attacker who had the old password and waited at the second step is out, even with
    // a code that would otherwise pass.
    app.clock.advance(30);
    let r = verify(&app, &ch, &totp.code_at(app.clock.now() + 30)).await;
    assert_problem(r, 401, "invalid_mfa_token").await;
}

/// A login through a proxy that wrote `xff`, as a new email each time (so only the per-IP limit
/// can refuse it); its status.
async fn login_via(app: &TestApp, xff: &str) -> u16 {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let i = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    app.http
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", xff)
        .json(&json!({"email": format!("ip{i}@example.com"), "password": "x"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_read_from_the_right_and_ipv6_is_counted_by_its_64() {
    let app = spawn_with(
        Opts::default()
            .arg("--client-ip-header", "X-Forwarded-For")
            .arg("--rate-limit-login", "2/60"),
    )
    .await;
    // The client writes what it likes on the left; the proxy appended 198.51.100.7.
    assert_eq!(login_via(&app, "1.1.1.1, 198.51.100.7").await, 401);
    assert_eq!(login_via(&app, "2.2.2.2, 198.51.100.7").await, 401);
    assert_eq!(
        login_via(&app, "3.3.3.3, 198.51.100.7").await,
        429,
        "spoofed left-most entries share one bucket"
    );
    // One /64 is one client.
    assert_eq!(login_via(&app, "2001:db8:0:1::1").await, 401);
    assert_eq!(login_via(&app, "2001:db8:0:1::ffff").await, 401);
    assert_eq!(
        login_via(&app, "2001:db8:0:1:abcd::2").await,
        429,
        "one /64, one bucket"
    );
    assert_eq!(login_via(&app, "2001:db8:0:2::1").await, 401, "another /64");

    let two_hops = spawn_with(
        Opts::default()
            .arg("--client-ip-header", "X-Forwarded-For")
            .arg("--trusted-proxy-hops", "2")
            .arg("--rate-limit-login", "1/60"),
    )
    .await;
    assert_eq!(
        login_via(&two_hops, "6.6.6.6, 203.0.113.9, 10.0.0.1").await,
        401
    );
    assert_eq!(
        login_via(&two_hops, "7.7.7.7, 203.0.113.9, 10.0.0.2").await,
        429,
        "the second from the right is the client"
    );
    assert_eq!(login_via(&two_hops, "203.0.113.10, 10.0.0.1").await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_adds_its_own_header_line_is_read_after_the_clients_line() {
    let app = spawn_with(
        Opts::default()
            .arg("--client-ip-header", "X-Forwarded-For")
            .arg("--rate-limit-login", "2/60"),
    )
    .await;
    // The client sent its own line; the proxy added 198.51.100.8 as a second line.
    let login = |spoofed: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(app.url("/auth/login"))
                .header("x-forwarded-for", spoofed)
                .header("x-forwarded-for", "198.51.100.8")
                .json(&json!({"email": format!("{spoofed}@example.com"), "password": "x"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(login("1.1.1.1").await, 401);
    assert_eq!(login("2.2.2.2").await, 401);
    assert_eq!(
        login("3.3.3.3").await,
        429,
        "the client's own line does not buy it a new bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_policy_refuses_repetitive_sequential_guessable_and_context_passwords() {
    let app = spawn_app().await;
    for (email, pw) in [
        ("p1@example.com", "aaaaaaaa"),
        ("p2@example.com", "11111111"),
        ("p3@example.com", "abcdefgh"),
        ("p4@example.com", "Passw0rd!"),
        ("p5@example.com", "Summer2024!"),
        ("grace.hopper@example.com", "grace.hopper rocks 7"),
        ("p7@example.com", "my edge-idp login 7"),
    ] {
        let r = app
            .post("/auth/signup", &json!({"email": email, "password": pw}))
            .await;
        assert_problem(r, 422, "weak_password").await;
    }
    let r = app
        .post(
            "/auth/signup",
            &json!({"email": "p8@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_codes_carry_80_bits_and_are_stored_under_a_key_not_as_plain_sha256() {
    let app = spawn_app().await;
    let (_, codes) = with_mfa(&app, "sec9@example.com").await;
    for c in &codes {
        let raw = c.replace('-', "");
        assert_eq!(raw.len(), 16, "{c}");
        assert!(raw
            .bytes()
            .all(|b| b"abcdefghijklmnopqrstuvwxyz234567".contains(&b)));
    }
    let db = direct_db(&app.dir).await;
    let mut rows = db
        .conn
        .query("SELECT code_hash FROM mfa_recovery_codes", ())
        .await
        .unwrap();
    let plain: Vec<Vec<u8>> = codes
        .iter()
        .map(|c| {
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, c.replace('-', "").as_bytes())
                .as_ref()
                .to_vec()
        })
        .collect();
    let mut n = 0;
    while let Some(r) = rows.next().await.unwrap() {
        let h: Vec<u8> = r.get(0).unwrap();
        assert!(
            !plain.contains(&h),
            "a recovery code is stored as its plain SHA-256"
        );
        n += 1;
    }
    assert_eq!(n, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_and_sessions_are_not_cacheable() {
    let app = spawn_app().await;
    app.signup("sec10@example.com").await;
    let t = app.login("sec10@example.com").await;
    for path in ["/auth/me", "/auth/sessions"] {
        let r = app.get_as(path, t["access_token"].as_str().unwrap()).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(r.headers()["pragma"], "no-cache", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_or_live_on_the_internal_listener() {
    let token = "a-metrics-token-of-some-length";
    let app = spawn_with(Opts::default().arg("--metrics-token", token)).await;
    assert_problem(app.get("/metrics").await, 401, "invalid_token").await;
    assert_problem(
        app.get_as("/metrics", "not-the-token-at-all-x").await,
        401,
        "invalid_token",
    )
    .await;
    let r = app.get_as("/metrics", token).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("http_requests_total"));

    let internal = spawn_with(Opts::default().arg("--metrics-listen-addr", "127.0.0.1:0")).await;
    assert_problem(internal.get("/metrics").await, 404, "not_found").await;
    let addr = internal.metrics_addr.expect("internal listener");
    let r = internal
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("http_requests_total"));
    let r = internal
        .http
        .get(format!("http://{addr}/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "the internal listener serves metrics only");
}

/// RFC 9700 §2.1.2, §2.4: no implicit flow, no password grant; and nothing advertised that the
/// router does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_advertises_no_implicit_flow_no_password_grant_and_no_missing_endpoint() {
    let app = spawn_app().await;
    let d: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["response_types_supported"], json!(["code"]), "{d}");
    assert_eq!(
        d["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"]),
        "{d}"
    );
    assert!(!d.to_string().contains("password"), "{d}");
    assert!(!d.to_string().contains("implicit"), "{d}");
    for (key, value) in d.as_object().unwrap() {
        if let Some(url) = value
            .as_str()
            .filter(|_| key.ends_with("_endpoint") || key.ends_with("_uri"))
        {
            let path = url
                .strip_prefix("http://localhost:8000")
                .unwrap_or_else(|| panic!("{key}: {url}"));
            assert!(
                edge_idp::http::route_of(path).is_some(),
                "{key}: {path} is not served"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_and_its_wal_and_shm_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let server = crate::multiprocess::start(dir.path(), 10);
    // A write, so the WAL and shared-memory files exist.
    let r = crate::multiprocess::post(
        &server.base,
        "/auth/signup",
        json!({"email": "perm@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 201);
    for name in ["edge-idp.db", "edge-idp.db-wal", "edge-idp.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} has mode {:o}", mode & 0o777);
    }
    drop(server);
}
