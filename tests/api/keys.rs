//! Signing-key rotation: pre-publication, the switch, retirement, agreement between instances,
//! and the `edge-idp keys` subcommands.

use crate::helpers::*;
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

/// Checks a token's signature against the JWKS alone, whatever the token's times (the tests
/// move a manual clock days ahead of the wall clock).
async fn verifies(app: &TestApp, token: &str) -> bool {
    let jwks: jsonwebtoken::jwk::JwkSet = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let Some(jwk) = jwks.find(&kid) else {
        return false;
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.set_audience(&["http://localhost:8000"]);
    v.set_required_spec_claims::<&str>(&[]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .is_ok()
}

fn kid(token: &Value) -> String {
    jsonwebtoken::decode_header(token["access_token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap()
}

async fn kids(app: &TestApp) -> Vec<String> {
    let b: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let mut k: Vec<String> = b["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_published_before_it_signs_and_the_old_one_leaves_after_its_tokens_expire()
{
    let app = spawn_with(Opts::default().arg("--key-rotation-days", 1)).await;
    app.signup("rot@example.com").await;
    let before = app.login("rot@example.com").await;
    let old_kid = kid(&before);
    let r = app.get("/.well-known/jwks.json").await;
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=300",
        "max-age = the pre-publish window"
    );

    // A day less the pre-publish window later, the next key is published but does not sign.
    app.clock.advance(86_400 - 300);
    app.actors.check_keys(T).await.unwrap();
    assert_eq!(kids(&app).await.len(), 2);
    assert_eq!(
        kid(&app.login("rot@example.com").await),
        old_kid,
        "pre-published, not yet signing"
    );

    // After the window, new tokens carry the new kid; tokens of the old key still verify.
    app.clock.advance(300);
    app.actors.check_keys(T).await.unwrap();
    let after = app.login("rot@example.com").await;
    let new_kid = kid(&after);
    assert_ne!(new_kid, old_kid);
    assert!(
        verifies(&app, before["access_token"].as_str().unwrap()).await,
        "old tokens verify until they expire"
    );
    assert!(verifies(&app, after["access_token"].as_str().unwrap()).await);
    assert_eq!(kids(&app).await.len(), 2);

    // Once every token of the old key has expired (TTL + skew margin), it leaves JWKS.
    app.clock.advance(900 + 60);
    app.actors.check_keys(T).await.unwrap();
    assert_eq!(kids(&app).await, vec![new_kid.clone()]);
    assert!(!verifies(&app, before["access_token"].as_str().unwrap()).await);
    assert_eq!(kid(&app.login("rot@example.com").await), new_kid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_agree_on_keys_and_accept_each_others_tokens() {
    let mut a = spawn_app().await;
    let _keep = a.keep_dir();
    let clock = a.clock.clone();
    let b = spawn_with(Opts {
        data_dir: Some(a.dir.clone()),
        clock: Some(clock.clone()),
        ..Default::default()
    })
    .await;
    a.signup("both@example.com").await;
    assert!(a.actors.rotate_keys(T).await.unwrap().is_some());
    assert_eq!(
        b.actors.rotate_keys(T).await.unwrap(),
        None,
        "B sees A's rotation first: only one rotates"
    );
    b.actors.check_keys(T).await.unwrap();
    assert_eq!(kids(&a).await, kids(&b).await);
    clock.advance(300);
    a.actors.check_keys(T).await.unwrap();
    let (ta, tb) = (
        a.login("both@example.com").await,
        b.login("both@example.com").await,
    );
    assert_eq!(kid(&ta), kid(&tb), "both sign with the same active key");
    for (app, token) in [(&a, &tb), (&b, &ta)] {
        let r = app
            .http
            .get(app.url("/auth/me"))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "a token of one instance is accepted by the other"
        );
    }
}

#[test]
fn keys_subcommands_list_and_rotate_on_the_configured_database() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut cmd = server_command();
        cmd.args(args)
            .env("DATA_DIR", tmp.path())
            .env("MFA_ENCRYPTION_KEY", MASTER_KEY);
        let out = output_within(cmd, std::time::Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let list = run(&["keys", "list"]);
    assert_eq!(
        list.lines().filter(|l| l.contains(" signing ")).count(),
        1,
        "{list}"
    );
    let rotated = run(&["keys", "rotate"]);
    assert!(rotated.starts_with("rotated: "), "{rotated}");
    let list = run(&["keys", "list"]);
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(
        list.contains("pre-published") && list.contains(" signing "),
        "{list}"
    );
}
