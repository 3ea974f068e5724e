//! The server edge under slow clients, with real TCP connections on loopback: a body that
//! stalls holds no in-flight permit, half-sent headers and idle connections are closed after
//! the header-read timeout, a stalled body is answered 408, connections are capped, and the
//! health probes answer throughout.

use crate::helpers::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a test waits for the server to act on its own timeouts: far above them, so a slow
/// machine cannot fail the test, and far below a hang.
const PATIENCE: Duration = Duration::from_secs(20);

/// A raw client connection (blocking std I/O: these clients misbehave on purpose, byte by
/// byte, which no HTTP client library does).
async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.base.trim_start_matches("http://").to_owned();
    tokio::task::spawn_blocking(move || TcpStream::connect(addr).expect("connect"))
        .await
        .unwrap()
}

async fn send(s: &mut TcpStream, bytes: &'static [u8]) {
    let mut w = s.try_clone().unwrap();
    tokio::task::spawn_blocking(move || w.write_all(bytes).unwrap())
        .await
        .unwrap();
}

/// A POST whose headers promise 100 bytes of JSON, of which one is sent.
async fn stalled_body(app: &TestApp) -> TcpStream {
    let mut s = connect(app).await;
    send(
        &mut s,
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await;
    s
}

/// Reads until the server closes the connection; what it sent.
/// Reads until the server closes the connection; what it sent. Fails if the server keeps it
/// open for [`PATIENCE`].
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut r = s.try_clone().unwrap();
    tokio::task::spawn_blocking(move || {
        r.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the server kept the connection open: {e}"),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_hold_no_permit_so_health_and_jwks_keep_answering() {
    let app = spawn_with(
        Opts::default()
            .arg("--max-in-flight", "4")
            .arg("--body-read-timeout-secs", "300"),
    )
    .await;
    // Twice as many stalled bodies as there are permits, all still stalled below.
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(stalled_body(&app).await);
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    for path in ["/healthz", "/readyz", "/.well-known/jwks.json"] {
        let r = http.get(app.url(path)).send().await.expect(path);
        assert_eq!(r.status(), 200, "{path} while 8 bodies stall");
    }
    let r = app
        .post(
            "/auth/login",
            &serde_json::json!({"email": "e1@example.com", "password": "x"}),
        )
        .await;
    assert_eq!(
        r.status(),
        401,
        "a whole request is served while bodies stall"
    );
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_after_the_body_timeout() {
    let app = spawn_with(Opts::default().arg("--body-read-timeout-secs", "1")).await;
    let mut s = stalled_body(&app).await;
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-request-id"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_and_idle_keep_alive_connections_are_closed() {
    let app = spawn_with(Opts::default().arg("--header-read-timeout-secs", "1")).await;
    let mut half = connect(&app).await;
    send(&mut half, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    let answer = read_to_close(&mut half).await;
    assert!(
        !answer.contains("200 OK"),
        "half-sent headers were served: {answer}"
    );

    // A keep-alive connection after one answer, then silence.
    let mut idle = connect(&app).await;
    send(&mut idle, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_to_close(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Never a byte at all.
    let mut silent = connect(&app).await;
    assert_eq!(read_to_close(&mut silent).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = spawn_with(
        Opts::default()
            .arg("--max-connections", "2")
            .arg("--header-read-timeout-secs", "300"),
    )
    .await;
    let hold = [connect(&app).await, connect(&app).await];
    let probe = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let r = probe.get(app.url("/healthz")).send().await;
    assert!(
        r.is_err(),
        "a third connection was served beyond MAX_CONNECTIONS=2: {r:?}"
    );
    drop(hold);
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    assert_eq!(
        http.get(app.url("/healthz")).send().await.unwrap().status(),
        200
    );
}
