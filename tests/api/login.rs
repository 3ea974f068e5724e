use crate::helpers::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_returns_tokens_whose_access_token_verifies_with_the_jwks_alone() {
    let app = spawn_app().await;
    let s = app.signup("erin@example.com").await;
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "Erin@Example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let t: serde_json::Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert_eq!(t["refresh_expires_in"], 1_209_600);
    let rt = t["refresh_token"].as_str().unwrap();
    assert!(
        rt.len() >= 43 && edge_idp_actors::crypto::b64url_decode(rt).is_some_and(|b| b.len() >= 32),
        "256 bits, base64url"
    );

    let claims = app.claims(t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["iss"], "http://localhost:8000");
    assert_eq!(claims["aud"], "http://localhost:8000");
    assert_eq!(claims["sub"], s["user"]["id"]);
    assert_eq!(claims["org_id"], s["organization"]["id"]);
    assert_eq!(claims["role"], "owner");
    assert_eq!(claims["email"], "erin@example.com");
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(uuid::Uuid::parse_str(claims["sid"].as_str().unwrap()).is_ok());
    let other = app.login("erin@example.com").await;
    let c2 = app.claims(other["access_token"].as_str().unwrap()).await;
    assert_ne!(claims["jti"], c2["jti"], "jti unique");
    assert_ne!(claims["sid"], c2["sid"], "each login starts a session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    app.signup("frank@example.com").await;
    let a = assert_problem(
        app.post(
            "/auth/login",
            &json!({"email": "frank@example.com", "password": "wrong password here"}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    let b = assert_problem(
        app.post(
            "/auth/login",
            &json!({"email": "nobody@example.com", "password": "wrong password here"}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(a, b);
    let c = assert_problem(
        app.post(
            "/auth/login",
            &json!({"email": "frank@example.com", "password": "y".repeat(5000)}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(a, c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn org_id_selects_a_membership_and_a_foreign_org_is_403_only_with_the_right_password() {
    let app = spawn_app().await;
    let mine = app.signup("gina@example.com").await;
    let theirs = app.signup("hank@example.com").await;
    let my_org = mine["organization"]["id"].as_str().unwrap();
    let their_org = theirs["organization"]["id"].as_str().unwrap();

    let r = app
        .post(
            "/auth/login",
            &json!({"email": "gina@example.com", "password": PASSWORD, "org_id": my_org}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "gina@example.com", "password": PASSWORD, "org_id": their_org}),
        )
        .await;
    assert_problem(r, 403, "not_a_member").await;
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "gina@example.com", "password": PASSWORD, "org_id": "no-such-org"}),
        )
        .await;
    assert_problem(r, 403, "not_a_member").await;
    let r = app.post("/auth/login", &json!({"email": "gina@example.com", "password": "wrong password here", "org_id": their_org})).await;
    assert_problem(r, 401, "invalid_credentials").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_rate_limited_per_account_and_a_429_changes_nothing() {
    let app = spawn_with(Opts::default().arg("--rate-limit-login", "3/60")).await;
    app.signup("ivan@example.com").await;
    for _ in 0..3 {
        let r = app
            .post(
                "/auth/login",
                &json!({"email": "ivan@example.com", "password": "wrong password here"}),
            )
            .await;
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["ratelimit-limit"], "3");
    }
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "IVAN@example.com", "password": PASSWORD}),
        )
        .await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    assert_problem(r, 429, "rate_limited").await;
    app.clock.advance(retry as i64);
    app.login("ivan@example.com").await;
}
