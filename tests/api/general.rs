//! The general rules of API.md: problem responses, body rules, headers on every response.

use crate::helpers::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECURITY: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers_and_a_request_id() {
    let app = spawn_app().await;
    let responses = [
        app.get("/healthz").await,
        app.get("/no/such/path").await,
        app.post("/auth/login", &json!({})).await,
        app.http
            .delete(app.url("/auth/login"))
            .send()
            .await
            .unwrap(),
    ];
    for r in responses {
        for (k, v) in SECURITY {
            assert_eq!(
                r.headers().get(*k).and_then(|h| h.to_str().ok()),
                Some(*v),
                "{k} on {}",
                r.url()
            );
        }
        let id = r.headers()["x-request-id"].to_str().unwrap();
        assert!(!id.is_empty() && id.len() <= 128);
    }
    let echoed = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "abc.DEF_123-x")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc.DEF_123-x");
    for insane in ["has space", &"a".repeat(129), "semi;colon"] {
        let r = app
            .http
            .get(app.url("/healthz"))
            .header("x-request-id", insane)
            .send()
            .await
            .unwrap();
        assert_ne!(r.headers()["x-request-id"], insane);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_security_headers_and_request_id_are_on_successes_and_every_kind_of_refusal() {
    let app = spawn_with(Opts::default().arg("--rate-limit-refresh", "1/60")).await;
    let signup = app
        .post(
            "/auth/signup",
            &json!({"email": "hdr@example.com", "password": PASSWORD}),
        )
        .await;
    let t = app.login("hdr@example.com").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let _ = app.refresh("A".repeat(43).as_str()).await;
    let responses = [
        (201, signup),
        (
            204,
            app.post("/auth/logout", &json!({"refresh_token": rt}))
                .await,
        ),
        (401, app.get_as("/auth/me", "not-a-token").await),
        (
            413,
            app.http
                .post(app.url("/auth/login"))
                .header("content-type", "application/json")
                .body(vec![b' '; 17 * 1024])
                .send()
                .await
                .unwrap(),
        ),
        (
            415,
            app.http
                .post(app.url("/auth/login"))
                .header("content-type", "text/plain")
                .body("{}")
                .send()
                .await
                .unwrap(),
        ),
        (429, app.refresh("A".repeat(43).as_str()).await),
    ];
    for (status, r) in responses {
        assert_eq!(r.status(), status);
        for (k, v) in SECURITY {
            assert_eq!(
                r.headers().get(*k).and_then(|h| h.to_str().ok()),
                Some(*v),
                "{k} on a {status}"
            );
        }
        assert!(
            r.headers().contains_key("x-request-id"),
            "no request id on a {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_response_is_marked_no_store() {
    let app = spawn_app().await;
    app.signup("nostore@example.com").await;
    let login = app
        .post(
            "/auth/login",
            &json!({"email": "nostore@example.com", "password": PASSWORD}),
        )
        .await;
    let check = |r: &reqwest::Response, what: &str| {
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{what}");
        assert_eq!(r.headers()["pragma"], "no-cache", "{what}");
    };
    check(&login, "login");
    let t: serde_json::Value = login.json().await.unwrap();
    let refreshed = app.refresh(t["refresh_token"].as_str().unwrap()).await;
    check(&refreshed, "refresh");
    let t: serde_json::Value = refreshed.json().await.unwrap();
    let me: serde_json::Value = app
        .get_as("/auth/me", t["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let switched = app
        .http
        .post(app.url("/auth/switch-org"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .json(&json!({"org_id": me["active_org_id"]}))
        .send()
        .await
        .unwrap();
    check(&switched, "switch-org");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let app = spawn_app().await;
    assert_problem(app.get("/nope").await, 404, "not_found").await;
    assert_problem(app.get("/auth/login/extra").await, 404, "not_found").await;
    let r = app.get("/auth/login").await;
    assert_eq!(r.headers()["allow"], "POST");
    assert_problem(r, 405, "method_not_allowed").await;
    let r = app.post("/.well-known/jwks.json", &json!({})).await;
    assert_eq!(r.headers()["allow"], "GET");
    assert_problem(r, 405, "method_not_allowed").await;
    // A path with several methods names them all.
    let r = app.http.delete(app.url("/orgs")).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "GET, POST");
    assert_problem(r, 405, "method_not_allowed").await;
}

/// Sends a chunked body with no Content-Length over a raw connection; returns the status line.
async fn chunked_post(base: &str, path: &str, total: usize) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 4096];
    let mut sent = 0;
    while sent < total {
        let part = format!("{:x}\r\n", chunk.len());
        if s.write_all(part.as_bytes()).await.is_err()
            || s.write_all(&chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_4xx_problems_and_the_server_stays_healthy() {
    let app = spawn_app().await;
    app.signup("uma@example.com").await;
    let huge = format!(
        r#"{{"email":"a@example.com","password":"{}"}}"#,
        "x".repeat(20_000)
    );
    let deep = "[".repeat(10_000);
    let routes = [
        "/auth/signup",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
    ];
    for path in routes {
        let cases: Vec<(Option<&str>, Vec<u8>, u16, &str)> = vec![
            (Some("application/json"), b"{".to_vec(), 400, "invalid_json"),
            (Some("application/json"), b"".to_vec(), 400, "invalid_json"),
            (
                Some("application/json"),
                b"{\"a\":1} trailing".to_vec(),
                400,
                "invalid_json",
            ),
            (
                Some("application/json"),
                vec![0xff, 0xfe, b'{'],
                400,
                "invalid_json",
            ),
            (
                Some("application/json"),
                deep.clone().into_bytes(),
                400,
                "invalid_json",
            ),
            (
                Some("application/json"),
                b"[]".to_vec(),
                422,
                "validation_failed",
            ),
            (
                Some("application/json"),
                b"null".to_vec(),
                422,
                "validation_failed",
            ),
            (
                Some("application/json"),
                b"{}".to_vec(),
                422,
                "validation_failed",
            ),
            (
                Some("application/json"),
                b"{\"unknown\":\"field\"}".to_vec(),
                422,
                "validation_failed",
            ),
            (
                Some("application/json"),
                huge.clone().into_bytes(),
                413,
                "payload_too_large",
            ),
            (
                Some("text/plain"),
                b"{}".to_vec(),
                415,
                "unsupported_media_type",
            ),
            (None, b"{}".to_vec(), 415, "unsupported_media_type"),
        ];
        for (ct, body, status, code) in cases {
            let r = app.post_raw(path, ct, body.clone()).await;
            assert_eq!(
                r.status().as_u16(),
                status,
                "{path} {ct:?} {}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
            assert_problem(r, status, code).await;
        }
        let line = chunked_post(&app.base, path, 64 * 1024).await;
        assert!(
            line.contains("413"),
            "{path}: chunked oversized body -> {line}"
        );
    }
    let wrong_types = [
        (
            "/auth/signup",
            json!({"email": ["a"], "password": PASSWORD}),
        ),
        (
            "/auth/login",
            json!({"email": "uma@example.com", "password": 123}),
        ),
        (
            "/auth/login",
            json!({"email": "uma@example.com", "password": PASSWORD, "org_id": 7}),
        ),
        ("/auth/login", json!({"email": "", "password": PASSWORD})),
        (
            "/auth/login",
            json!({"email": "\u{0}", "password": PASSWORD}),
        ),
        (
            "/auth/login",
            json!({"email": "x".repeat(5000), "password": PASSWORD}),
        ),
        ("/auth/refresh", json!({"refresh_token": null})),
        ("/auth/logout", json!({"refresh_token": {"nested": true}})),
    ];
    for (path, body) in wrong_types {
        assert_problem(app.post(path, &body).await, 422, "validation_failed").await;
    }
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.login("uma@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_with_a_charset_parameter_is_accepted() {
    let app = spawn_app().await;
    let body = json!({"email": "vera@example.com", "password": PASSWORD}).to_string();
    let r = app
        .post_raw(
            "/auth/signup",
            Some("application/json; charset=utf-8"),
            body,
        )
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_rules_hold_on_the_bearer_endpoints_and_mfa_verify() {
    let app = spawn_app().await;
    app.signup("bodies@example.com").await;
    let t = app.login("bodies@example.com").await;
    let token = t["access_token"].as_str().unwrap().to_owned();
    let me: serde_json::Value = app.get_as("/auth/me", &token).await.json().await.unwrap();
    let org = me["active_org_id"].as_str().unwrap().to_owned();
    let paths = [
        "/auth/mfa/confirm".to_owned(),
        "/auth/mfa/disable".to_owned(),
        "/auth/switch-org".to_owned(),
        "/auth/password".to_owned(),
        "/orgs".to_owned(),
        format!("/orgs/{org}/invitations"),
        "/auth/mfa/verify".to_owned(),
    ];
    for path in &paths {
        let send = |ct: &'static str, body: Vec<u8>| {
            app.http
                .post(app.url(path))
                .bearer_auth(&token)
                .header("content-type", ct)
                .body(body)
                .send()
        };
        let cases = [
            (
                400,
                "invalid_json",
                send("application/json", b"{\"oops\"".to_vec()),
            ),
            (
                413,
                "payload_too_large",
                send("application/json", vec![b' '; 17 * 1024]),
            ),
            (
                415,
                "unsupported_media_type",
                send("text/plain", b"{}".to_vec()),
            ),
        ];
        for (status, code, r) in cases {
            let r = r.await.unwrap();
            assert_eq!(r.status(), status, "{path}");
            assert_problem(r, status, code).await;
        }
    }
}
