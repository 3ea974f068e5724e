use crate::helpers::*;
use serde_json::{json, Value};

async fn session(app: &TestApp, email: &str) -> String {
    app.signup(email).await;
    app.login(email).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_keeps_the_session() {
    let app = spawn_app().await;
    app.signup("jane@example.com").await;
    let login = app.login("jane@example.com").await;
    let rt0 = login["refresh_token"].as_str().unwrap();
    let r = app.refresh(rt0).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    let rt1 = t["refresh_token"].as_str().unwrap();
    assert_ne!(rt0, rt1);
    let c0 = app.claims(login["access_token"].as_str().unwrap()).await;
    let c1 = app.claims(t["access_token"].as_str().unwrap()).await;
    assert_eq!(c0["sid"], c1["sid"], "same session");
    assert_eq!(c0["org_id"], c1["org_id"]);
    let r2: Value = app.refresh(rt1).await.json().await.unwrap();
    assert_ne!(r2["refresh_token"], t["refresh_token"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_parallel_refreshes_rotate_once_and_all_get_the_same_successor() {
    let app = spawn_app().await;
    let rt = session(&app, "kate@example.com").await;
    let answers = futures_util::future::join_all((0..10).map(|_| app.refresh(&rt))).await;
    let mut successors = Vec::new();
    for r in answers {
        assert_eq!(r.status(), 200);
        successors.push(
            r.json::<Value>().await.unwrap()["refresh_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    successors.dedup();
    assert_eq!(
        successors.len(),
        1,
        "one rotation, ten identical successors"
    );
    // The successor is live: the family was not revoked.
    assert_eq!(app.refresh(&successors[0]).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_lets_exactly_one_of_ten_parallel_refreshes_succeed() {
    let app = spawn_with(Opts::default().arg("--refresh-reuse-grace-secs", 0)).await;
    let rt = session(&app, "liam@example.com").await;
    let answers = futures_util::future::join_all((0..10).map(|_| app.refresh(&rt))).await;
    let mut ok = 0;
    for r in answers {
        if r.status() == 200 {
            ok += 1;
        } else {
            assert_problem(r, 401, "refresh_token_reused").await;
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_replay_returns_the_same_successor_without_a_second_rotation() {
    let app = spawn_app().await;
    let rt0 = session(&app, "mia@example.com").await;
    let a: Value = app.refresh(&rt0).await.json().await.unwrap();
    app.clock.advance(9);
    let b: Value = app.refresh(&rt0).await.json().await.unwrap();
    assert_eq!(a["refresh_token"], b["refresh_token"]);
    assert_ne!(a["access_token"], b["access_token"], "a fresh access token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_after_the_grace_window_revokes_the_family_newest_token_included() {
    let app = spawn_app().await;
    let rt0 = session(&app, "noah@example.com").await;
    let rt1 = app.refresh(&rt0).await.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.clock.advance(11);
    assert_problem(app.refresh(&rt0).await, 401, "refresh_token_reused").await;
    assert_problem(app.refresh(&rt1).await, 401, "invalid_refresh_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_predecessor_of_a_rotated_successor_is_reuse_even_inside_the_grace_window() {
    let app = spawn_app().await;
    let rt0 = session(&app, "olga@example.com").await;
    let rt1 = app.refresh(&rt0).await.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rt2 = app.refresh(&rt1).await.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_problem(app.refresh(&rt0).await, 401, "refresh_token_reused").await;
    assert_problem(app.refresh(&rt2).await, 401, "invalid_refresh_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_malformed_and_expired_tokens_are_invalid_refresh_token() {
    let app = spawn_with(Opts::default().arg("--refresh-token-ttl", 60)).await;
    let rt = session(&app, "pete@example.com").await;
    for bad in [
        "",
        "x",
        "not a token at all",
        &"A".repeat(43),
        &"A".repeat(5000),
    ] {
        assert_problem(app.refresh(bad).await, 401, "invalid_refresh_token").await;
    }
    app.clock.advance(61);
    assert_problem(app.refresh(&rt).await, 401, "invalid_refresh_token").await;
    let r = app
        .post("/auth/refresh", &json!({"refresh_token": 5}))
        .await;
    assert_problem(r, 422, "validation_failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_outlives_session_max_ttl() {
    let app = spawn_with(
        Opts::default()
            .arg("--session-max-ttl", 100)
            .arg("--refresh-token-ttl", 60),
    )
    .await;
    let mut rt = session(&app, "quinn@example.com").await;
    for _ in 0..3 {
        app.clock.advance(30);
        let t: Value = app.refresh(&rt).await.json().await.unwrap();
        assert!(t["refresh_expires_in"].as_i64().unwrap() <= 100 - 30, "{t}");
        rt = t["refresh_token"].as_str().unwrap().to_owned();
    }
    app.clock.advance(15);
    assert_problem(app.refresh(&rt).await, 401, "invalid_refresh_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_window_ends_exactly_refresh_reuse_grace_secs_after_the_rotation() {
    let app = spawn_app().await;
    // Two families rotated at the same instant: one replayed a second before the window ends,
    // the other presented the second it ends.
    let a0 = session(&app, "edge-a@example.com").await;
    let b0 = session(&app, "edge-b@example.com").await;
    let a1: Value = app.refresh(&a0).await.json().await.unwrap();
    assert_eq!(app.refresh(&b0).await.status(), 200);
    app.clock.advance(9);
    let replay: Value = app.refresh(&a0).await.json().await.unwrap();
    assert_eq!(
        replay["refresh_token"], a1["refresh_token"],
        "inside: a replay"
    );
    app.clock.advance(1);
    assert_problem(app.refresh(&b0).await, 401, "refresh_token_reused").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_refused_by_the_rate_limit_leaves_its_token_usable() {
    let app = spawn_with(Opts::default().arg("--rate-limit-refresh", "1/60")).await;
    let rt0 = session(&app, "limited@example.com").await;
    let rt1 = app.refresh(&rt0).await.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = app.refresh(&rt1).await;
    let wait: i64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_problem(refused, 429, "rate_limited").await;
    app.clock.advance(wait);
    let r = app.refresh(&rt1).await;
    assert_eq!(
        r.status(),
        200,
        "the refused presentation neither used nor burned it"
    );
    assert_ne!(
        r.json::<Value>().await.unwrap()["refresh_token"],
        rt1.as_str()
    );
}
