//! `/auth/me`, `/auth/switch-org`, `/auth/sessions`, `/auth/password`, and revoked sessions on
//! Bearer endpoints.

use crate::helpers::*;
use serde_json::{json, Value};

async fn get(app: &TestApp, path: &str, bearer: &str) -> reqwest::Response {
    call(app, reqwest::Method::GET, path, bearer, None).await
}

async fn post(app: &TestApp, path: &str, bearer: &str, body: Value) -> reqwest::Response {
    call(app, reqwest::Method::POST, path, bearer, Some(body)).await
}

fn bearer(t: &Value) -> String {
    format!("Bearer {}", t["access_token"].as_str().unwrap())
}

async fn claims(app: &TestApp, t: &Value) -> Value {
    app.claims(t["access_token"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_shows_the_user_memberships_and_active_org() {
    let app = spawn_app().await;
    let (auth, s) = authed(&app, "me1@example.com").await;
    let r = get(&app, "/auth/me", &auth).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["user"]["email"], "me1@example.com");
    assert_eq!(b["user"]["id"], s["user"]["id"]);
    assert_eq!(b["user"]["mfa_enabled"], false);
    assert_eq!(b["organizations"].as_array().unwrap().len(), 1);
    assert_eq!(b["organizations"][0]["role"], "owner");
    assert_eq!(b["active_org_id"], s["organization"]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_org_changes_org_and_role_keeps_sid_and_refresh_stays_there_until_removal() {
    let app = spawn_app().await;
    let (owner_auth, _) = authed(&app, "sw1@example.com").await;
    let s = app.signup("sw2@example.com").await;
    let login = app.login("sw2@example.com").await;
    let org: Value = app
        .http
        .post(app.url("/orgs"))
        .header("authorization", &owner_auth)
        .json(&json!({"name": "Other"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org_id = org["id"].as_str().unwrap();
    join(
        &app,
        &owner_auth,
        org_id,
        "sw2@example.com",
        "member",
        &bearer(&login),
    )
    .await;

    let r = post(
        &app,
        "/auth/switch-org",
        &bearer(&login),
        json!({"org_id": org_id}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let switched: Value = r.json().await.unwrap();
    assert!(
        switched.get("refresh_token").is_none() && switched.get("refresh_expires_in").is_none()
    );
    assert_eq!(switched["token_type"], "Bearer");
    let (before, after) = (claims(&app, &login).await, claims(&app, &switched).await);
    assert_eq!(after["org_id"], org_id);
    assert_eq!(after["role"], "member");
    assert_eq!(after["sid"], before["sid"], "same session");
    assert_eq!(
        get(&app, "/auth/me", &bearer(&switched))
            .await
            .json::<Value>()
            .await
            .unwrap()["active_org_id"],
        org_id
    );

    let refreshed: Value = app
        .refresh(login["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(&app, &refreshed).await["org_id"],
        org_id,
        "refresh stays in the new org"
    );

    // Removed from the org: the next refresh falls back to the default organization.
    let member_id = s["user"]["id"].as_str().unwrap();
    let r = app
        .http
        .delete(app.url(&format!("/orgs/{org_id}/members/{member_id}")))
        .header("authorization", &owner_auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let again: Value = app
        .refresh(refreshed["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let c = claims(&app, &again).await;
    assert_eq!(c["org_id"], s["organization"]["id"]);
    assert_eq!(c["role"], "owner");

    assert_problem(
        post(
            &app,
            "/auth/switch-org",
            &bearer(&again),
            json!({"org_id": org_id}),
        )
        .await,
        403,
        "not_a_member",
    )
    .await;
    assert_problem(
        post(
            &app,
            "/auth/switch-org",
            &bearer(&again),
            json!({"org_id": uuid::Uuid::now_v7()}),
        )
        .await,
        403,
        "not_a_member",
    )
    .await;
    assert_problem(
        post(
            &app,
            "/auth/switch-org",
            &bearer(&again),
            json!({"org_id": "nonsense"}),
        )
        .await,
        403,
        "not_a_member",
    )
    .await;
    assert_problem(
        post(&app, "/auth/switch-org", &bearer(&again), json!({})).await,
        422,
        "validation_failed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_with_current_and_another_users_session_is_404() {
    let app = spawn_app().await;
    app.signup("ss1@example.com").await;
    app.signup("ss2@example.com").await;
    let a1 = app.login("ss1@example.com").await;
    let a2 = app
        .http
        .post(app.url("/auth/login"))
        .header("user-agent", "phone/1.0")
        .json(&json!({"email": "ss1@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let other = app.login("ss2@example.com").await;
    let b: Value = get(&app, "/auth/sessions", &bearer(&a1))
        .await
        .json()
        .await
        .unwrap();
    let list = b["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let sid1 = claims(&app, &a1).await["sid"].clone();
    let sid2 = claims(&app, &a2).await["sid"].clone();
    let me = list.iter().find(|s| s["id"] == sid1).unwrap();
    assert_eq!(me["current"], true);
    assert_eq!(me["ip"], "127.0.0.1");
    let phone = list.iter().find(|s| s["id"] == sid2).unwrap();
    assert_eq!(phone["current"], false);
    assert_eq!(phone["user_agent"], "phone/1.0");
    assert!(phone["created_at"].is_string() && phone["last_used_at"].is_string());

    let other_sid = claims(&app, &other).await["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .http
        .delete(app.url(&format!("/auth/sessions/{other_sid}")))
        .header("authorization", bearer(&a1))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    assert_eq!(
        app.refresh(other["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200,
        "the other user's session lives on"
    );
    let r = app
        .http
        .delete(app.url("/auth/sessions/garbage"))
        .header("authorization", bearer(&a1))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;

    let r = app
        .http
        .delete(app.url(&format!("/auth/sessions/{}", sid2.as_str().unwrap())))
        .header("authorization", bearer(&a1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_problem(
        app.refresh(a2["refresh_token"].as_str().unwrap()).await,
        401,
        "invalid_refresh_token",
    )
    .await;
    assert_problem(
        get(&app, "/auth/me", &bearer(&a2)).await,
        401,
        "session_revoked",
    )
    .await;
    let b: Value = get(&app, "/auth/sessions", &bearer(&a1))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_revokes_every_other_session_and_keeps_the_current_one() {
    let app = spawn_app().await;
    app.signup("pw1@example.com").await;
    let current = app.login("pw1@example.com").await;
    let other = app.login("pw1@example.com").await;
    assert_problem(post(&app, "/auth/password", &bearer(&current), json!({"current_password": "wrong password x", "new_password": "a brand new passphrase"})).await, 401, "invalid_credentials").await;
    assert_problem(
        post(
            &app,
            "/auth/password",
            &bearer(&current),
            json!({"current_password": PASSWORD, "new_password": "password"}),
        )
        .await,
        422,
        "weak_password",
    )
    .await;
    assert_problem(
        post(
            &app,
            "/auth/password",
            &bearer(&current),
            json!({"current_password": PASSWORD}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let r = post(
        &app,
        "/auth/password",
        &bearer(&current),
        json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
    )
    .await;
    assert_eq!(r.status(), 204);

    assert_problem(
        app.refresh(other["refresh_token"].as_str().unwrap()).await,
        401,
        "invalid_refresh_token",
    )
    .await;
    assert_problem(
        get(&app, "/auth/me", &bearer(&other)).await,
        401,
        "session_revoked",
    )
    .await;
    assert_eq!(get(&app, "/auth/me", &bearer(&current)).await.status(), 200);
    assert_eq!(
        app.refresh(current["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_problem(
        app.post(
            "/auth/login",
            &json!({"email": "pw1@example.com", "password": PASSWORD}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "pw1@example.com", "password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_reuse_revokes_bearer_tokens_of_the_family_at_once() {
    let app = spawn_app().await;
    app.signup("ru1@example.com").await;
    let login = app.login("ru1@example.com").await;
    assert_eq!(get(&app, "/auth/me", &bearer(&login)).await.status(), 200);
    let rt0 = login["refresh_token"].as_str().unwrap();
    app.refresh(rt0).await;
    app.clock.advance(11);
    assert_problem(app.refresh(rt0).await, 401, "refresh_token_reused").await;
    assert_problem(
        get(&app, "/auth/me", &bearer(&login)).await,
        401,
        "session_revoked",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_checked_for_signature_issuer_audience_type_and_time() {
    // The server signs with a key pair it writes where we can read it, so the wrong-claim
    // tokens below carry valid signatures: only the claim or header checked can refuse them.
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = (dir.path().join("k.pem"), dir.path().join("k.pub.pem"));
    let app = spawn_with(
        Opts::default()
            .arg("--private-key-path", private.display())
            .arg("--public-key-path", public.display()),
    )
    .await;
    app.signup("bt1@example.com").await;
    let login = app.login("bt1@example.com").await;
    let token = login["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let claims: Value =
        serde_json::from_slice(&edge_idp_actors::crypto::b64url_decode(parts[1]).unwrap()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let pem = std::fs::read(&private).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let sign = |header: &jsonwebtoken::Header, claims: &Value| {
        jsonwebtoken::encode(header, claims, &key).unwrap()
    };
    let me = |t: String| {
        let app = &app;
        async move { get(app, "/auth/me", &format!("Bearer {t}")).await }
    };
    // The control: our signing of the server's own claims is accepted, so each refusal below
    // is the check it names.
    assert_eq!(me(sign(&header, &claims)).await.status(), 200);
    let with = |k: &str, v: Value| {
        let mut c = claims.clone();
        c[k] = v;
        c
    };
    let now = app.clock.now();
    let mut wrong_typ = header.clone();
    wrong_typ.typ = Some("JWT".into());
    let mut unknown_kid = header.clone();
    unknown_kid.kid = Some("not-a-published-kid".into());
    let mut hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs256.typ = header.typ.clone();
    hs256.kid = header.kid.clone();
    let public_pem = std::fs::read(&public).unwrap();
    let confused = jsonwebtoken::encode(
        &hs256,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_pem).unwrap(),
    )
    .unwrap();
    let none_alg = format!(
        "{}.{}.",
        edge_idp_actors::crypto::b64url(
            json!({"alg": "none", "typ": "at+jwt", "kid": header.kid})
                .to_string()
                .as_bytes()
        ),
        parts[1]
    );
    for (case, bad) in [
        (
            "audience",
            sign(&header, &with("aud", json!("https://elsewhere.example"))),
        ),
        (
            "issuer",
            sign(&header, &with("iss", json!("https://evil.example"))),
        ),
        ("type", sign(&wrong_typ, &claims)),
        ("expiry", sign(&header, &with("exp", json!(now - 1)))),
        ("not before", sign(&header, &with("nbf", json!(now + 600)))),
        ("key id", sign(&unknown_kid, &claims)),
        ("HS256 keyed with the public key", confused),
        ("alg none", none_alg),
        ("signature", format!("{}.{}.", parts[0], parts[1])),
        ("shape", "garbage".to_owned()),
    ] {
        let r = me(bad).await;
        assert_eq!(r.status(), 401, "a token with a wrong {case} was accepted");
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        assert_problem(r, 401, "invalid_token").await;
    }
    assert_problem(
        app.http
            .get(app.url("/auth/me"))
            .header("authorization", format!("Basic {token}"))
            .send()
            .await
            .unwrap(),
        401,
        "invalid_token",
    )
    .await;
    app.clock.advance(900);
    assert_problem(
        get(&app, "/auth/me", &format!("Bearer {token}")).await,
        401,
        "invalid_token",
    )
    .await;
}
