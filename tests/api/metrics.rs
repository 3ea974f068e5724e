//! `/metrics`: Prometheus text that parses, bounded labels, and counters that move with the flows.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Parses the text format strictly enough to catch breakage: every sample line is
/// `name{labels} value` with a valid name and a float value; HELP/TYPE comments precede samples.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment: {line}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name: {line}"
        );
        if series.contains('{') {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        out.insert(series.to_owned(), v);
    }
    out
}

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let r = app.get("/metrics").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    parse(&r.text().await.unwrap())
}

/// The value of `series`, which must be in the scrape.
fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series)
        .copied()
        .unwrap_or_else(|| panic!("{series} is missing from /metrics"))
}

/// The value of a labelled counter before the flow that moves it: such a series appears at
/// its first increment, so an absent one counts 0.
fn before_count(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_as_the_flows_run_and_labels_are_route_templates() {
    let app = spawn_with(Opts::default().arg("--rate-limit-login", "3/60")).await;
    let before = scrape(&app).await;
    assert_eq!(get(&before, r#"edge_idp_build_info{version="0.1.0"}"#), 1.0);

    app.signup("m1@example.com").await;
    let t = app.login("m1@example.com").await;
    let _ = app
        .post(
            "/auth/login",
            &json!({"email": "m1@example.com", "password": "wrong password here"}),
        )
        .await;
    let _ = app
        .post(
            "/auth/login",
            &json!({"email": "m1@example.com", "password": "wrong password here"}),
        )
        .await;
    assert_eq!(
        app.post(
            "/auth/login",
            &json!({"email": "m1@example.com", "password": PASSWORD})
        )
        .await
        .status(),
        429
    );
    let rt0 = t["refresh_token"].as_str().unwrap();
    let rt1: Value = app.refresh(rt0).await.json().await.unwrap();
    app.clock.advance(11);
    assert_eq!(app.refresh(rt0).await.status(), 401);
    let sid = app.claims(rt1["access_token"].as_str().unwrap()).await["sid"].clone();
    let _ = app
        .http
        .delete(app.url(&format!("/auth/sessions/{}", sid.as_str().unwrap())))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();

    let after = scrape(&app).await;
    let delta = |s: &str| get(&after, s) - before_count(&before, s);
    assert_eq!(delta(r#"edge_idp_logins_total{outcome="success"}"#), 1.0);
    assert_eq!(
        delta(r#"edge_idp_logins_total{outcome="invalid_credentials"}"#),
        2.0
    );
    assert_eq!(
        delta(r#"edge_idp_logins_total{outcome="rate_limited"}"#),
        1.0
    );
    assert_eq!(delta(r#"edge_idp_refreshes_total{outcome="rotated"}"#), 1.0);
    assert_eq!(delta(r#"edge_idp_refreshes_total{outcome="reused"}"#), 1.0);
    // This server was given no Redis: its limits are in process.
    assert_eq!(
        delta(r#"edge_idp_rate_limit_rejections_total{backend="memory",policy="login"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"edge_idp_http_requests_total{method="POST",route="/auth/login",status="429"}"#),
        1.0
    );
    assert!(
        get(
            &after,
            r#"edge_idp_http_request_duration_seconds_count{method="POST",route="/auth/signup"}"#
        ) >= 1.0
    );
    assert!(get(&after, "edge_idp_password_hash_wait_seconds_count") >= 4.0);
    // Route templates, never raw ids.
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains(r#"route="/auth/sessions/{id}""#));
    assert!(
        !text.contains(sid.as_str().unwrap()),
        "no session id in any label"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_restarts_are_counted_by_actor() {
    let app = spawn_app().await;
    app.actors
        .inject_panic(edge_idp_actors::ActorKind::KeyManager);
    restarted(&app, edge_idp_actors::ActorKind::KeyManager, 1).await;
    let m = scrape(&app).await;
    assert_eq!(
        get(&m, r#"edge_idp_actor_restarts_total{actor="key_manager"}"#),
        1.0
    );
    assert_eq!(
        get(&m, r#"edge_idp_actor_restarts_total{actor="rate_limiter"}"#),
        0.0
    );
}
