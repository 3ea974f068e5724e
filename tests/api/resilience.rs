//! Restarts on the same data folder, and actors that panic.

use crate::helpers::*;
use edge_idp_actors::ActorKind;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sessions_and_keys_survive_a_restart() {
    let mut app = spawn_app().await;
    let _keep = app.keep_dir();
    app.signup("walt@example.com").await;
    let login = app.login("walt@example.com").await;
    let kid_before = app
        .get("/.well-known/jwks.json")
        .await
        .json::<Value>()
        .await
        .unwrap()["keys"][0]["kid"]
        .clone();
    let clock = app.clock.clone();
    let dir = app.stop().await;

    let app = spawn_with(Opts {
        data_dir: Some(dir),
        clock: Some(clock),
        ..Default::default()
    })
    .await;
    let jwks = app
        .get("/.well-known/jwks.json")
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid_before, "same signing key");
    app.claims(login["access_token"].as_str().unwrap()).await;
    assert_eq!(
        app.refresh(login["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200,
        "session survived"
    );
    app.login("walt@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_refuses_to_start_on_existing_keys() {
    let mut app = spawn_app().await;
    let _keep = app.keep_dir();
    let dir = app.stop().await;
    let other_key = edge_idp_actors::crypto::MasterKey::generate().unwrap();
    let mut argv = vec!["edge-idp".to_owned()];
    argv.extend(
        base_args(&dir)
            .chunks(2)
            .filter(|p| p[0] != "--mfa-encryption-key")
            .flatten()
            .cloned(),
    );
    // `=` form: a base64url key may begin with '-'.
    argv.push(format!("--mfa-encryption-key={}", &*other_key.encode()));
    let config = <edge_idp::cli::Cli as clap::Parser>::try_parse_from(argv)
        .unwrap()
        .config;
    let settings = config.validate(other_key).unwrap();
    let err = edge_idp::startup::Application::build(settings)
        .await
        .err()
        .expect("refuses to start");
    assert!(err.to_string().contains("MFA_ENCRYPTION_KEY"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_is_restarted_and_the_next_request_succeeds() {
    let app = spawn_app().await;
    app.signup("xena@example.com").await;
    let rt = app.login("xena@example.com").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.actors.inject_panic(ActorKind::RateLimiter);
    restarted(&app, ActorKind::RateLimiter, 1).await;
    app.signup("yuri@example.com").await;
    let r = app.refresh(&rt).await;
    assert_eq!(r.status(), 200);

    app.actors.inject_panic(ActorKind::KeyManager);
    restarted(&app, ActorKind::KeyManager, 1).await;
    app.login("xena@example.com").await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "xena@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_with_old_argon2_costs_is_upgraded_at_the_next_login() {
    let mut app = spawn_app().await;
    let _keep = app.keep_dir();
    app.signup("abel@example.com").await;
    let clock = app.clock.clone();
    let dir = app.stop().await;
    let app = spawn_with(
        Opts {
            data_dir: Some(dir.clone()),
            clock: Some(clock),
            ..Default::default()
        }
        .arg("--argon2-memory-kib", 2048),
    )
    .await;
    app.login("abel@example.com").await;
    let db = direct_db(&dir).await;
    let conn = &db.conn;
    let mut rows = conn
        .query(
            "SELECT password_hash FROM users WHERE email = 'abel@example.com'",
            (),
        )
        .await
        .unwrap();
    let hash: String = rows.next().await.unwrap().unwrap().get(0).unwrap();
    assert!(
        hash.starts_with("$argon2id$") && hash.contains("m=2048,t=1,p=1"),
        "{hash}"
    );
    app.login("abel@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_key_pair_is_generated_when_missing_then_imported_and_kept() {
    let mut app0 = spawn_app().await;
    let _keep = app0.keep_dir();
    let dir = app0.stop().await;
    let (private, public) = (dir.join("signing.pem"), dir.join("signing.pub.pem"));
    let opts = || {
        Opts {
            data_dir: Some(dir.clone()),
            ..Default::default()
        }
        .arg("--private-key-path", private.display())
        .arg("--public-key-path", public.display())
    };
    let app = spawn_with(opts()).await;
    assert!(std::fs::read_to_string(&private)
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let token = {
        app.signup("bea@example.com").await;
        app.login("bea@example.com").await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "the earlier key still verifies its tokens"
    );
    let imported = app.stop().await;
    let app = spawn_with(Opts {
        data_dir: Some(imported),
        ..opts()
    })
    .await;
    let again = app.login("bea@example.com").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        jsonwebtoken::decode_header(&again).unwrap().kid,
        header.kid,
        "the imported key signs"
    );
    app.claims(&token).await;
}
