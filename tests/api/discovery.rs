use crate::helpers::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_publishes_rs256_signing_keys_with_public_caching() {
    let app = spawn_app().await;
    let r = app.get("/.well-known/jwks.json").await;
    assert_eq!(r.status(), 200);
    let cc = r.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cc.starts_with("public, max-age="), "{cc}");
    let b: Value = r.json().await.unwrap();
    let keys = b["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    for (f, v) in [("kty", "RSA"), ("use", "sig"), ("alg", "RS256")] {
        assert_eq!(k[f], v);
    }
    let (n, e) = (k["n"].as_str().unwrap(), k["e"].as_str().unwrap());
    assert_eq!(
        k["kid"],
        edge_idp_actors::keys::thumbprint(n, e),
        "kid is the RFC 7638 thumbprint"
    );
    assert!(
        k.get("d").is_none() && k.get("p").is_none(),
        "no private members"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_configuration_points_at_the_jwks() {
    let app = spawn_app().await;
    let b: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["issuer"], "http://localhost:8000");
    assert_eq!(b["jwks_uri"], "http://localhost:8000/.well-known/jwks.json");
    assert_eq!(
        b["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    assert!(b["token_endpoint_auth_methods_supported"].is_array());
    assert!(b["response_types_supported"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    assert_eq!(app.get("/readyz").await.status(), 200);
}
