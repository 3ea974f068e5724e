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
}

async fn spawn_in(mode: &Mode<'_>, opts: Opts) -> TestApp {
    match mode {
        Mode::File => spawn_with(opts).await,
        Mode::Remote(s) => spawn_with(opts.arg("--database-url", &s.url)).await,
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
    let claims = verify_with_jwks(
        &app.http,
        &app.url("/.well-known/jwks.json"),
        t["access_token"].as_str().unwrap(),
    )
    .await;
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
    let server = Sqld::start(&bin).await;
    let app = spawn_in(&Mode::Remote(&server), Opts::default()).await;
    core_flows(&app).await;
}

/// `n` instances sharing one primary (and one clock and master key, as a fleet shares NTP and
/// its secrets).
async fn fleet(server: &Sqld, n: usize, grace: u32) -> Vec<TestApp> {
    let clock = edge_idp_actors::Clock::manual_now();
    let mut apps = Vec::new();
    for _ in 0..n {
        let opts = Opts {
            clock: Some(clock.clone()),
            ..Opts::default()
        }
        .arg("--refresh-reuse-grace-secs", grace);
        apps.push(spawn_in(&Mode::Remote(server), opts).await);
    }
    apps
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_primary_rotate_a_token_once() {
    let Some(bin) = sqld::available("three_instances_on_one_primary_rotate_a_token_once") else {
        return;
    };
    let server = Sqld::start(&bin).await;
    // Default grace: every answer carries the one successor.
    let apps = fleet(&server, 3, 10).await;
    apps[0].signup("fleet@example.com").await;
    let t = apps[1].login("fleet@example.com").await;
    let answers = spread_refreshes(&apps, t["refresh_token"].as_str().unwrap()).await;
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    let successors: std::collections::HashSet<_> = answers.iter().map(|a| a.1.clone()).collect();
    assert_eq!(successors.len(), 1, "{answers:?}");
    drop(apps);

    // Strict: exactly one refresh succeeds, the rest are reuse.
    let apps = fleet(&server, 3, 0).await;
    let t = apps[2].login("fleet@example.com").await;
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
    let Some(bin) = sqld::available("across_instances_totp") else {
        return;
    };
    let server = Sqld::start(&bin).await;
    let apps = fleet(&server, 3, 10).await;
    apps[0].signup("fleet-mfa@example.com").await;
    // Signed up on one, logged in on another: the primary is the one truth.
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
async fn a_logout_is_refused_by_the_other_instances_within_five_seconds() {
    let Some(bin) = sqld::available("a_logout_is_refused_by_the_other_instances") else {
        return;
    };
    let server = Sqld::start(&bin).await;
    let apps = fleet(&server, 3, 10).await;
    apps[0].signup("fleet-out@example.com").await;
    let t = apps[0].login("fleet-out@example.com").await;
    let access = t["access_token"].as_str().unwrap();
    for app in &apps {
        assert_eq!(app.get_as("/auth/me", access).await.status(), 200);
    }
    let started = std::time::Instant::now();
    let r = apps[0]
        .post(
            "/auth/logout",
            &json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    assert_eq!(r.status(), 204);
    for app in &apps[1..] {
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
