//! Remote mode: the service on a libSQL server (sqld, as Turso runs it), one instance and
//! several. The same flows run on a local file and on a remote primary (the database is a
//! parameter of the test app), and the one-use guarantees are checked across instances that
//! share only the primary.

use crate::helpers::*;
use crate::mfa::{challenge, enroll_and_confirm, post_auth, verify};
use crate::sqld::{self, Sqld};
use serde_json::{json, Value};

/// Where a test app keeps its data.
enum Mode<'a> {
    File,
    Remote(&'a Sqld),
    /// An embedded replica of the primary in the app's own data folder.
    Replica(&'a Sqld),
}

async fn spawn_in(mode: &Mode<'_>, opts: Opts) -> TestApp {
    match mode {
        Mode::File => spawn_with(opts).await,
        Mode::Remote(s) => spawn_with(opts.arg("--database-url", &s.url)).await,
        Mode::Replica(s) => {
            spawn_with(
                opts.arg("--database-sync-url", &s.url)
                    .arg("--database-sync-interval", 0.2),
            )
            .await
        }
    }
}

/// Signup, login, refresh (rotation, grace replay, reuse), MFA (enroll, confirm, challenge, a
/// TOTP step once), switch-org, invitations, sessions, logout and JWKS: the service's flows,
/// whatever the database.
async fn core_flows(app: &TestApp) {
    let owner = app.signup("flow-owner@example.com").await;
    let org_id = owner["organization"]["id"].as_str().unwrap().to_owned();
    app.signup("flow-member@example.com").await;
    assert_problem(
        app.post(
            "/auth/signup",
            &json!({"email": "flow-owner@example.com", "password": PASSWORD}),
        )
        .await,
        409,
        "email_taken",
    )
    .await;

    // Login, JWKS-verifiable tokens, refresh: rotation, grace replay, then reuse.
    let t = app.login("flow-owner@example.com").await;
    let claims = app.claims(t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["org_id"], org_id.as_str());
    let first = t["refresh_token"].as_str().unwrap().to_owned();
    let r1: Value = app.refresh(&first).await.json().await.unwrap();
    let r1b: Value = app.refresh(&first).await.json().await.unwrap();
    assert_eq!(r1["refresh_token"], r1b["refresh_token"], "grace replay");
    let second = r1["refresh_token"].as_str().unwrap().to_owned();
    let r2 = app.refresh(&second).await;
    assert_eq!(r2.status(), 200);
    assert_problem(app.refresh(&first).await, 401, "refresh_token_reused").await;
    let r2: Value = r2.json().await.unwrap();
    assert_problem(
        app.refresh(r2["refresh_token"].as_str().unwrap()).await,
        401,
        "invalid_refresh_token",
    )
    .await;

    // Organizations: create, invite, accept, switch.
    let t = app.login("flow-owner@example.com").await;
    let bearer = t["access_token"].as_str().unwrap().to_owned();
    let org: Value = app
        .http
        .post(app.url("/orgs"))
        .bearer_auth(&bearer)
        .json(&json!({"name": "Flow Co"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let team = org["id"].as_str().unwrap().to_owned();
    let inv: Value = app
        .http
        .post(app.url(&format!("/orgs/{team}/invitations")))
        .bearer_auth(&bearer)
        .json(&json!({"email": "flow-member@example.com", "role": "member"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = app.login("flow-member@example.com").await;
    let mb = m["access_token"].as_str().unwrap();
    let r = app
        .http
        .post(app.url(&format!(
            "/auth/invitations/{}/accept",
            inv["id"].as_str().unwrap()
        )))
        .bearer_auth(mb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .http
        .post(app.url("/auth/switch-org"))
        .bearer_auth(mb)
        .json(&json!({"org_id": team}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me: Value = app.get_as("/auth/me", mb).await.json().await.unwrap();
    assert_eq!(me["active_org_id"], team.as_str());

    // Sessions and logout: the revoked session is refused on Bearer endpoints.
    let sessions: Value = app.get_as("/auth/sessions", mb).await.json().await.unwrap();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 1);
    let r = app
        .post(
            "/auth/logout",
            &json!({"refresh_token": m["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_problem(app.get_as("/auth/me", mb).await, 401, "session_revoked").await;

    // MFA: enroll, confirm, a challenge, a TOTP step accepted once.
    let (totp, codes, _) = enroll_and_confirm(app, "flow-owner@example.com").await;
    let ch = challenge(app, "flow-owner@example.com").await;
    let code = totp.code_at(app.clock.now() + 30);
    assert_eq!(verify(app, &ch, &code).await.status(), 200);
    let ch = challenge(app, "flow-owner@example.com").await;
    assert_problem(verify(app, &ch, &code).await, 401, "invalid_mfa_code").await;
    let r = verify(app, &ch, &codes[0]).await;
    assert_eq!(r.status(), 200, "a recovery code");
    let t: Value = r.json().await.unwrap();
    let r = post_auth(
        app,
        "/auth/mfa/disable",
        &t,
        Some(json!({"code": codes[0]})),
    )
    .await;
    assert_problem(r, 401, "invalid_mfa_code").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_flows_on_a_local_file() {
    let app = spawn_in(&Mode::File, Opts::default()).await;
    core_flows(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_flows_on_a_remote_primary() {
    let Some(bin) = sqld::available("core_flows_on_a_remote_primary") else {
        return;
    };
    let server = Sqld::start_logged(&bin).await;
    let app = spawn_in(&Mode::Remote(&server), Opts::default()).await;
    // The start's migrations may use transactions of their own; the flows may not.
    let started = server.requests().len();
    core_flows(&app).await;
    app.flush_audit().await;
    let requests = &server.requests()[started..];

    // Every one-use decision and the writes that follow from it reach the primary as one
    // request: no transaction is left open across requests, so none ends with a COMMIT sent
    // on its own.
    let interactive: Vec<_> = requests
        .iter()
        .filter(|r| r.contains(r#"Execute(ExecuteStreamReq { stmt: Stmt { sql: Some("COMMIT")"#))
        .collect();
    assert!(
        interactive.is_empty(),
        "interactive transactions: {interactive:?}"
    );
    let batched = |decision: &str, follows: &[&str]| {
        let carrying: Vec<_> = requests.iter().filter(|r| r.contains(decision)).collect();
        assert!(!carrying.is_empty(), "no request carried {decision:?}");
        for r in carrying {
            assert!(
                r.contains("BEGIN IMMEDIATE"),
                "{decision:?} outside a transaction"
            );
            for f in follows {
                assert!(r.contains(f), "{decision:?} sent without {f:?}: {r}");
            }
        }
    };
    // A rotation: the conditional update, the successor, the predecessor's copy erased, the
    // session touched, and the token and principal read back, all in one request.
    batched(
        "UPDATE refresh_tokens SET used_at",
        &[
            "INSERT INTO refresh_tokens",
            "UPDATE refresh_tokens SET successor_sealed = NULL",
            "UPDATE sessions SET last_used_at",
            "FROM refresh_tokens r JOIN sessions s",
        ],
    );
    // Signup, a session's start, a logout, MFA turned on, an invitation accepted.
    batched(
        "INSERT INTO users",
        &["INSERT INTO organizations", "INSERT INTO memberships"],
    );
    batched("INSERT INTO sessions", &["INSERT INTO refresh_tokens"]);
    batched(
        "UPDATE sessions SET revoked_at",
        &["UPDATE refresh_tokens SET successor_sealed = NULL"],
    );
    batched(
        "UPDATE mfa_secrets SET status = 'enabled'",
        &[
            "INSERT INTO mfa_recovery_codes",
            "UPDATE users SET mfa_enabled = 1",
        ],
    );
    batched(
        "UPDATE org_invitations SET accepted_at",
        &["INSERT INTO memberships"],
    );
}

/// `n` instances sharing one primary (and one clock and master key, as a fleet shares NTP and
/// its secrets), in remote mode or each with its own embedded replica.
async fn fleet(server: &Sqld, replicas: bool, n: usize, grace: u32) -> Vec<TestApp> {
    let mode = if replicas {
        Mode::Replica(server)
    } else {
        Mode::Remote(server)
    };
    let clock = edge_idp_actors::Clock::manual_now();
    let mut apps = Vec::new();
    for _ in 0..n {
        let opts = Opts {
            clock: Some(clock.clone()),
            ..Opts::default()
        }
        .arg("--refresh-reuse-grace-secs", grace)
        // The tests below retry a login until a replica has synced: not a lockout.
        .arg("--lockout-threshold", 100);
        apps.push(spawn_in(&mode, opts).await);
    }
    apps
}

/// Logs in on `app` once the account made on another instance has reached it: at once in
/// remote mode, within the sync interval (200 ms here) on a replica.
async fn login_synced(app: &TestApp, email: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let r = app
            .post(
                "/auth/login",
                &json!({"email": email, "password": PASSWORD}),
            )
            .await;
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        assert_problem(r, 401, "invalid_credentials").await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{email} could not log in on another instance within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Ten refreshes of one token at once, spread over the fleet: (status, successor) of each.
async fn spread_refreshes(apps: &[TestApp], token: &str) -> Vec<(u16, Option<String>)> {
    futures_util::future::join_all((0..10).map(|i| async move {
        let r = apps[i % apps.len()].refresh(token).await;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        (status, body["refresh_token"].as_str().map(str::to_owned))
    }))
    .await
}

/// Runs `check` on a fresh sqld twice: the fleet in remote mode, then with a replica each.
async fn in_both_fleet_modes(test: &str, check: impl AsyncFn(&Sqld, bool)) {
    let Some(bin) = sqld::available(test) else {
        return;
    };
    for replicas in [false, true] {
        let server = Sqld::start(&bin).await;
        check(&server, replicas).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_primary_rotate_a_token_once() {
    in_both_fleet_modes("three_instances_rotate_once", rotate_once).await;
}

async fn rotate_once(server: &Sqld, replicas: bool) {
    // Default grace: every answer carries the one successor.
    let apps = fleet(server, replicas, 3, 10).await;
    apps[0].signup("fleet@example.com").await;
    let t = login_synced(&apps[1], "fleet@example.com").await;
    let answers = spread_refreshes(&apps, t["refresh_token"].as_str().unwrap()).await;
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    let successors: std::collections::HashSet<_> = answers.iter().map(|a| a.1.clone()).collect();
    assert_eq!(successors.len(), 1, "{answers:?}");
    drop(apps);

    // Strict: exactly one refresh succeeds, the rest are reuse.
    let apps = fleet(server, replicas, 3, 0).await;
    let t = login_synced(&apps[2], "fleet@example.com").await;
    let answers = spread_refreshes(&apps, t["refresh_token"].as_str().unwrap()).await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    assert_eq!(ok, 1, "{answers:?}");
    assert!(
        answers.iter().all(|a| a.0 == 200 || a.0 == 401),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_instances_a_totp_step_is_accepted_once_and_a_signup_can_log_in_at_once() {
    in_both_fleet_modes("across_instances_totp", totp_once).await;
}

async fn totp_once(server: &Sqld, replicas: bool) {
    let apps = fleet(server, replicas, 3, 10).await;
    apps[0].signup("fleet-mfa@example.com").await;
    // Signed up on one, logged in on another: the primary is the one truth.
    login_synced(&apps[1], "fleet-mfa@example.com").await;
    let (totp, _, _) = enroll_and_confirm(&apps[1], "fleet-mfa@example.com").await;
    let code = totp.code_at(apps[0].clock.now() + 30);
    let ch_a = challenge(&apps[0], "fleet-mfa@example.com").await;
    let ch_b = challenge(&apps[2], "fleet-mfa@example.com").await;
    assert_eq!(verify(&apps[0], &ch_a, &code).await.status(), 200);
    assert_problem(
        verify(&apps[2], &ch_b, &code).await,
        401,
        "invalid_mfa_code",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_a_deleted_session_and_a_logout_of_all_are_refused_by_the_other_instances() {
    in_both_fleet_modes("a_logout_is_refused_elsewhere", logout_seen).await;
}

async fn logout_seen(server: &Sqld, replicas: bool) {
    let apps = fleet(server, replicas, 3, 10).await;
    apps[0].signup("fleet-out@example.com").await;
    // Three ways to end a session, each on one instance, each seen by the others: a logout,
    // a session deleted by its user, and a logout of all sessions.
    let one = apps[0].login("fleet-out@example.com").await;
    let two = apps[0].login("fleet-out@example.com").await;
    let three = apps[0].login("fleet-out@example.com").await;
    for t in [&one, &two, &three] {
        for app in &apps {
            let access = t["access_token"].as_str().unwrap();
            assert_eq!(app.get_as("/auth/me", access).await.status(), 200);
        }
    }
    let r = apps[0]
        .post(
            "/auth/logout",
            &json!({"refresh_token": one["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status(), 204);
    revoked_elsewhere(&[&apps[1], &apps[2]], &one).await;

    let sid = apps[1].claims(two["access_token"].as_str().unwrap()).await["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = apps[1]
        .http
        .delete(apps[1].url(&format!("/auth/sessions/{sid}")))
        .bearer_auth(three["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    revoked_elsewhere(&[&apps[0], &apps[2]], &two).await;

    let r = apps[2]
        .post(
            "/auth/logout",
            &json!({"refresh_token": three["refresh_token"], "all": true}),
        )
        .await;
    assert_eq!(r.status(), 204);
    revoked_elsewhere(&[&apps[0], &apps[1]], &three).await;
}

/// Each of `apps` refuses the access token of `t` with `session_revoked` within five seconds.
async fn revoked_elsewhere(apps: &[&TestApp], t: &Value) {
    let access = t["access_token"].as_str().unwrap();
    let started = std::time::Instant::now();
    for app in apps {
        loop {
            let r = app.get_as("/auth/me", access).await;
            if r.status() == 401 {
                assert_problem(r, 401, "session_revoked").await;
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "another instance still accepts the revoked session after 5 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_racing_to_start_on_an_empty_primary_all_come_up_with_one_key() {
    let Some(bin) = sqld::available("instances_racing_to_start") else {
        return;
    };
    let server = Sqld::start(&bin).await;
    let mode = Mode::Remote(&server);
    let spawn = || spawn_in(&mode, Opts::default());
    let (a, b, c) = tokio::join!(spawn(), spawn(), spawn());
    let mut kids = std::collections::HashSet::new();
    for app in [&a, &b, &c] {
        let jwks: Value = app
            .get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .unwrap();
        for k in jwks["keys"].as_array().unwrap() {
            kids.insert(k["kid"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(kids.len(), 1, "one signing key for the fleet: {kids:?}");
}

/// An Ed25519 key pair for sqld's JWT authentication: the PKCS#8 private key (DER) and the
/// public key as the PEM file sqld reads.
fn jwt_keys() -> (Vec<u8>, String) {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    // SubjectPublicKeyInfo of an Ed25519 key: a fixed prefix, then the 32 key bytes.
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(pair.public_key().as_ref());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
    (pkcs8.as_ref().to_vec(), pem)
}

fn jwt(private: &[u8], claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_ed_der(private);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims,
        &key,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_jwt_auth_the_right_token_starts_and_a_bad_one_fails_with_one_clear_line() {
    let Some(bin) = sqld::available("with_jwt_auth") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (private, pem) = jwt_keys();
    let key_file = dir.path().join("jwt_pub.pem");
    std::fs::write(&key_file, pem).unwrap();
    let server = Sqld::start_with_auth(&bin, dir.path(), &key_file).await;
    let (other_private, _) = jwt_keys();
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    for (what, token) in [
        ("missing", String::new()),
        ("expired", jwt(&private, json!({"a": "rw", "exp": past}))),
        ("read-only", jwt(&private, json!({"a": "ro"}))),
        (
            "signed by another key",
            jwt(&other_private, json!({"a": "rw"})),
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let err = try_build(
            data.path(),
            &[
                ("--database-url", &server.url),
                ("--database-auth-token", &token),
            ],
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("a {what} token started the service"));
        let line = err.to_string();
        assert!(line.contains("DATABASE_AUTH_TOKEN"), "{what}: {line}");
        assert!(!line.contains('\n'), "{what}: one line: {line}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{what}: the refusal took {:?}",
            started.elapsed()
        );
    }
    let token = jwt(&private, json!({"a": "rw"}));
    let app = spawn_with(
        Opts::default()
            .arg("--database-url", &server.url)
            .arg("--database-auth-token", &token),
    )
    .await;
    app.signup("jwt@example.com").await;
    app.login("jwt@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_mid_traffic_makes_writes_503_while_keys_answer_and_all_recovers() {
    let Some(bin) = sqld::available("a_primary_killed_mid_traffic") else {
        return;
    };
    let mut server = Sqld::start(&bin).await;
    let app = spawn_in(&Mode::Remote(&server), Opts::default()).await;
    for i in 0..5 {
        app.signup(&format!("acked{i}@example.com")).await;
    }
    let t = app.login("acked0@example.com").await;
    let token = t["refresh_token"].as_str().unwrap().to_owned();

    server.kill();
    // Writes: a clean 503, promptly; never a 500, never a hang.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = http
            .post(app.url("/auth/refresh"))
            .json(&json!({"refresh_token": token}))
            .send()
            .await
            .expect("answered, not hung");
        let body = r.text().await.unwrap();
        for internal in [
            "sqld",
            "hrana",
            "stream",
            "127.0.0.1",
            "database",
            "primary",
        ] {
            assert!(
                !body.to_lowercase().contains(internal),
                "a 503 leaks {internal}: {body}"
            );
        }
        assert!(body.contains("\"code\":\"unavailable\""), "{body}");
        let r = http
            .post(app.url("/auth/signup"))
            .json(&json!({"email": "lost@example.com", "password": PASSWORD}))
            .send()
            .await
            .expect("answered, not hung");
        assert_problem(r, 503, "unavailable").await;
    }
    // What needs no database keeps answering: keys, discovery, liveness, and a resource server
    // verifying the access token with the JWKS alone.
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/healthz",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    app.claims(t["access_token"].as_str().unwrap()).await;
    assert_problem(app.get("/readyz").await, 503, "unavailable").await;

    server.restart(&bin).await;
    // Everything recovers without a restart of the service: the same refresh token rotates
    // once (the refused attempts rotated nothing), and is then a grace replay.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let first = loop {
        let r = app.refresh(&token).await;
        if r.status() == 200 {
            break r.json::<Value>().await.unwrap();
        }
        assert_eq!(r.status(), 503);
        assert!(
            std::time::Instant::now() < deadline,
            "writes did not resume"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let again: Value = app.refresh(&token).await.json().await.unwrap();
    assert_eq!(
        first["refresh_token"], again["refresh_token"],
        "one rotation"
    );
    assert_eq!(app.get("/readyz").await.status(), 200);
    // No acknowledged write was lost.
    for i in 0..5 {
        app.login(&format!("acked{i}@example.com")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_flows_on_an_embedded_replica() {
    let Some(bin) = sqld::available("core_flows_on_an_embedded_replica") else {
        return;
    };
    let server = Sqld::start(&bin).await;
    let app = spawn_in(&Mode::Replica(&server), Opts::default()).await;
    core_flows(&app).await;
}
