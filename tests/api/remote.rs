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
