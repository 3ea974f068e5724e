//! The audit trail: a row for each event kind with who, what, when, IP and request id; and no
//! secret in audit rows or in the server's log output.

use crate::helpers::*;
use serde_json::{json, Value};

pub async fn rows(app: &TestApp) -> Vec<Value> {
    app.flush_audit().await;
    let db = direct_db(&app.dir).await;
    let c = &db.conn;
    let mut r = c.query("SELECT at, kind, user_id, session_id, org_id, subject_id, ip, request_id, detail FROM audit_events ORDER BY id", ()).await.unwrap();
    let mut out = Vec::new();
    while let Some(row) = r.next().await.unwrap() {
        let s = |i| row.get::<Option<String>>(i).unwrap();
        out.push(json!({"at": row.get::<i64>(0).unwrap(), "kind": s(1), "user_id": s(2), "session_id": s(3), "org_id": s(4),
                        "subject_id": s(5), "ip": s(6), "request_id": s(7), "detail": s(8)}));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_security_event_leaves_a_row_without_secrets() {
    let app = spawn_app().await;
    let mut secrets: Vec<String> = vec![PASSWORD.into()];
    let s = app.signup("au1@example.com").await;
    app.signup("au2@example.com").await;
    let t = app
        .http
        .post(app.url("/auth/login"))
        .header("x-request-id", "req-login-1")
        .json(&json!({"email": "au1@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let t: Value = t.json().await.unwrap();
    let _ = app
        .post(
            "/auth/login",
            &json!({"email": "au1@example.com", "password": "not the password 1"}),
        )
        .await;
    let _ = app
        .post(
            "/auth/login",
            &json!({"email": "ghost@example.com", "password": "not the password 2"}),
        )
        .await;
    secrets.extend(["not the password 1".into(), "not the password 2".into()]);
    let at = t["access_token"].as_str().unwrap().to_owned();
    let rt0 = t["refresh_token"].as_str().unwrap().to_owned();
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth(&at);

    // MFA on, a failed second factor, off again.
    let e: Value = auth(app.http.post(app.url("/auth/mfa/enroll")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = base32_decode(e["secret"].as_str().unwrap());
    secrets.push(e["secret"].as_str().unwrap().to_owned());
    let code = rfc6238(&secret, app.clock.now());
    let rc: Value = auth(app.http.post(app.url("/auth/mfa/confirm")))
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recovery: Vec<String> = rc["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    secrets.extend(recovery.iter().cloned());
    let ch: Value = app
        .post(
            "/auth/login",
            &json!({"email": "au1@example.com", "password": PASSWORD}),
        )
        .await
        .json()
        .await
        .unwrap();
    let mfa_token = ch["mfa_token"].as_str().unwrap().to_owned();
    secrets.push(mfa_token.clone());
    let _ = app
        .post(
            "/auth/mfa/verify",
            &json!({"mfa_token": mfa_token, "code": "000000"}),
        )
        .await;
    assert_eq!(
        auth(app.http.post(app.url("/auth/mfa/disable")))
            .json(&json!({"code": recovery[0]}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    // Organizations and members.
    let org: Value = auth(app.http.post(app.url("/orgs")))
        .json(&json!({"name": "Audited"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org_id = org["id"].as_str().unwrap().to_owned();
    let inv: Value = auth(
        app.http
            .post(app.url(&format!("/orgs/{org_id}/invitations"))),
    )
    .json(&json!({"email": "au2@example.com", "role": "member"}))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let invitation = inv["id"].as_str().unwrap().to_owned();
    let au2 = app.login("au2@example.com").await;
    secrets.extend([
        au2["access_token"].as_str().unwrap().to_owned(),
        au2["refresh_token"].as_str().unwrap().to_owned(),
    ]);
    let m: Value = app
        .http
        .post(app.url(&format!("/auth/invitations/{invitation}/accept")))
        .bearer_auth(au2["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let member = m["user_id"].as_str().unwrap().to_owned();
    assert_eq!(
        auth(
            app.http
                .delete(app.url(&format!("/orgs/{org_id}/members/{member}")))
        )
        .send()
        .await
        .unwrap()
        .status(),
        204
    );

    // Switching organization, a wrong current password, ending a session.
    let switched = auth(app.http.post(app.url("/auth/switch-org")))
        .json(&json!({"org_id": org_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), 200);
    let wrong = auth(app.http.post(app.url("/auth/password")))
        .json(&json!({"current_password": "not the password 3", "new_password": "a new long passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    secrets.extend(["not the password 3".into(), "a new long passphrase".into()]);
    let other = app.login("au1@example.com").await;
    secrets.push(other["refresh_token"].as_str().unwrap().to_owned());
    let other_claims = app.claims(other["access_token"].as_str().unwrap()).await;
    let other_sid = other_claims["sid"].as_str().unwrap().to_owned();
    let ended = auth(
        app.http
            .delete(app.url(&format!("/auth/sessions/{other_sid}"))),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(ended.status(), 204);

    // Reuse, password change, logout, key rotation.
    let rt1: Value = app.refresh(&rt0).await.json().await.unwrap();
    secrets.extend([
        rt0.clone(),
        rt1["refresh_token"].as_str().unwrap().to_owned(),
        at.clone(),
    ]);
    app.clock.advance(11);
    assert_eq!(app.refresh(&rt0).await.status(), 401);
    let fresh = app.login("au2@example.com").await;
    secrets.push(fresh["refresh_token"].as_str().unwrap().to_owned());
    let r = app
        .http
        .post(app.url("/auth/password"))
        .bearer_auth(fresh["access_token"].as_str().unwrap())
        .json(&json!({"current_password": PASSWORD, "new_password": "another long passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    secrets.push("another long passphrase".into());
    assert_eq!(
        app.post(
            "/auth/logout",
            &json!({"refresh_token": fresh["refresh_token"]})
        )
        .await
        .status(),
        204
    );
    app.actors
        .rotate_keys(std::time::Duration::from_secs(10))
        .await
        .unwrap();

    let rows = rows(&app).await;
    let kinds: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for k in [
        "signup",
        "login",
        "login_failed",
        "mfa_enroll",
        "mfa_enabled",
        "mfa_challenge",
        "mfa_failed",
        "mfa_disabled",
        "org_created",
        "org_invitation_created",
        "org_invitation_accepted",
        "member_removed",
        "switch_org",
        "password_change_failed",
        "session_deleted",
        "refresh_token_reused",
        "password_changed",
        "logout",
        "key_rotation",
    ] {
        assert!(kinds.contains(k), "no {k} row in {kinds:?}");
    }
    let login = rows.iter().find(|r| r["kind"] == "login").unwrap();
    assert_eq!(login["user_id"], s["user"]["id"]);
    assert_eq!(login["ip"], "127.0.0.1");
    assert_eq!(login["request_id"], "req-login-1");
    assert!(login["session_id"].is_string() && login["at"].as_i64().unwrap() > 0);
    // Every row a request wrote says where it came from and which request it was; every one
    // but a failed login of an unknown email names its user.
    for row in &rows {
        let kind = row["kind"].as_str().unwrap();
        if kind == "key_rotation" {
            continue;
        }
        assert_eq!(row["ip"], "127.0.0.1", "{kind}");
        assert!(
            row["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{kind} has no request id"
        );
        if !(kind == "login_failed" && row["detail"] == "unknown account") {
            assert!(row["user_id"].is_string(), "{kind} names no user");
        }
    }
    let switch = rows.iter().find(|r| r["kind"] == "switch_org").unwrap();
    assert_eq!(switch["org_id"], org_id.as_str());
    let deleted = rows
        .iter()
        .find(|r| r["kind"] == "session_deleted")
        .unwrap();
    assert_eq!(deleted["session_id"], other_sid.as_str());
    let reuse = rows
        .iter()
        .find(|r| r["kind"] == "refresh_token_reused")
        .unwrap();
    assert!(
        reuse["session_id"].is_string(),
        "the revoked family is named"
    );
    // An invitation's rows name it, never the invited email (which may have no account).
    for kind in ["org_invitation_created", "org_invitation_accepted"] {
        let row = rows.iter().find(|r| r["kind"] == kind).unwrap();
        assert_eq!(row["subject_id"], invitation.as_str(), "{kind}");
        assert_eq!(row["org_id"], org_id.as_str(), "{kind}");
        assert_eq!(row["detail"], "member", "{kind}");
    }
    let text = serde_json::to_string(&rows).unwrap();
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret leaked into audit rows"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_the_server_log_output() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = crate::multiprocess::start_logged(
        tmp.path(),
        &["--refresh-reuse-grace-secs", "0"],
        "debug",
    );
    let base = server.base.clone();
    let http = client();
    let post = |p: &str, b: Value| http.post(format!("{base}{p}")).json(&b).send();
    assert_eq!(
        post(
            "/auth/signup",
            json!({"email": "log@example.com", "password": PASSWORD})
        )
        .await
        .unwrap()
        .status(),
        201
    );
    let _ = post(
        "/auth/login",
        json!({"email": "log@example.com", "password": "a wrong secret 9"}),
    )
    .await
    .unwrap();
    let t: Value = post(
        "/auth/login",
        json!({"email": "log@example.com", "password": PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let t2: Value = post("/auth/refresh", json!({"refresh_token": rt}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Reuse of the first token (strict mode), under a request id we follow into the actor.
    let r = http
        .post(format!("{base}/auth/refresh"))
        .header("x-request-id", "trace-reuse-1")
        .json(&json!({"refresh_token": rt}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let t3: Value = post(
        "/auth/login",
        json!({"email": "log@example.com", "password": PASSWORD}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let e: Value = http
        .post(format!("{base}/auth/mfa/enroll"))
        .bearer_auth(t3["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let _ = post(
        "/auth/logout",
        json!({"refresh_token": t3["refresh_token"]}),
    )
    .await
    .unwrap();
    // SIGTERM, not SIGKILL: log lines are written in batches, and a clean stop writes the last
    // one; the readers then see the pipes close and have every line.
    assert!(server.terminate().success(), "the server stops cleanly");
    let log = server.lines.lock().unwrap().join("\n");
    assert!(log.contains("\"audit\""), "the audit events are in the log");
    assert!(
        log.lines()
            .any(|l| l.contains("edge_idp_actors::refresh") && l.contains("trace-reuse-1")),
        "the request id follows the request into the rotation"
    );
    // The master key came by flag: no key file was generated whose contents could leak.
    assert!(!tmp.path().join("mfa_encryption.key").exists());
    for secret in [
        PASSWORD,
        "a wrong secret 9",
        &rt,
        t["access_token"].as_str().unwrap(),
        t2["refresh_token"].as_str().unwrap(),
        t3["refresh_token"].as_str().unwrap(),
        e["secret"].as_str().unwrap(),
        MASTER_KEY,
    ] {
        assert!(
            secret.is_empty() || !log.contains(secret),
            "a secret appeared in the log output"
        );
    }
}
