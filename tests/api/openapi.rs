//! `GET /openapi.json` against the live router: every documented operation is served (never the
//! guard's 404/405), answers a status the document lists for it, and every route of the router
//! is documented. Schemathesis (`scripts/schemathesis.sh`, run by `.ci/run`) fuzzes the rest.

use crate::helpers::*;
use serde_json::Value;
use std::collections::BTreeSet;

#[tokio::test]
async fn every_documented_operation_is_served_and_answers_a_documented_status() {
    let app = spawn_app().await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((path.clone(), method.to_uppercase()));
            // Path parameters get a well-formed id that names nothing.
            let concrete = path
                .split('/')
                .map(|s| {
                    if s.starts_with('{') {
                        "0190aaaa-0000-7000-8000-000000000000"
                    } else {
                        s
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app
                .http
                .request(method.clone(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16().to_string();
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_owned());
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key(&status),
                "{method} {path} answered {status}, documented {:?}",
                responses.keys().collect::<Vec<_>>()
            );
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_ne!(body["code"], "not_found", "{method} {path} is not routed");
            assert_ne!(
                body["code"], "method_not_allowed",
                "{method} {path} is not routed"
            );
            if let Some(ctype) = ctype {
                let media = ctype.split(';').next().unwrap().trim().to_owned();
                assert!(
                    responses[&status]["content"].get(&media).is_some(),
                    "{method} {path} {status}: {media} is not documented"
                );
            }
        }
    }
    // And the other way: every route of the router's table is in the document.
    let routed: BTreeSet<(String, String)> = edge_idp::http::ROUTES
        .iter()
        .flat_map(|(p, ms)| ms.split(", ").map(|m| (p.to_string(), m.to_string())))
        .collect();
    assert_eq!(documented, routed);
}

#[tokio::test]
async fn the_documented_schemas_match_what_the_server_sends() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemas = &doc["components"]["schemas"];
    // A signup answer has exactly the documented required fields of its schema.
    let body = app.signup("schema@example.com").await;
    let required = |name: &str| -> BTreeSet<String> {
        schemas[name]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no required list: {}", schemas[name]))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&body), required("SignupResponse"));
    assert_eq!(keys(&body["user"]), keys(&schemas["User"]["properties"]));
    let tokens = app.login("schema@example.com").await;
    assert_eq!(keys(&tokens), keys(&schemas["TokenResponse"]["properties"]));
    // Every error is the documented problem shape.
    let problem = assert_problem(
        app.post("/auth/login", &serde_json::json!({})).await,
        422,
        "validation_failed",
    )
    .await;
    assert!(keys(&problem).is_subset(&keys(&schemas["Problem"]["properties"])));
    assert!(required("Problem").is_subset(&keys(&problem)));
}
