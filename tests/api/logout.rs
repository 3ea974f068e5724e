use crate::helpers::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_session_named_by_any_of_its_tokens() {
    let app = spawn_app().await;
    app.signup("rita@example.com").await;
    let rt0 = app.login("rita@example.com").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rt1 = app.refresh(&rt0).await.json::<Value>().await.unwrap()["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = app.login("rita@example.com").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The used token names the session too.
    let r = app
        .post("/auth/logout", &json!({"refresh_token": rt0}))
        .await;
    assert_eq!(r.status(), 204);
    assert_problem(app.refresh(&rt1).await, 401, "invalid_refresh_token").await;
    assert_eq!(
        app.refresh(&other).await.status(),
        200,
        "other sessions live on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_all_revokes_every_session_of_the_user_only() {
    let app = spawn_app().await;
    app.signup("sam@example.com").await;
    app.signup("tess@example.com").await;
    let a = app.login("sam@example.com").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.login("sam@example.com").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = app.login("tess@example.com").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.post("/auth/logout", &json!({"refresh_token": a, "all": true}))
            .await
            .status(),
        204
    );
    assert_problem(app.refresh(&a).await, 401, "invalid_refresh_token").await;
    assert_problem(app.refresh(&b).await, 401, "invalid_refresh_token").await;
    assert_eq!(app.refresh(&t).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_with_an_unknown_token_is_204_and_bad_bodies_are_problems() {
    let app = spawn_app().await;
    assert_eq!(
        app.post("/auth/logout", &json!({"refresh_token": "A".repeat(43)}))
            .await
            .status(),
        204
    );
    assert_eq!(
        app.post(
            "/auth/logout",
            &json!({"refresh_token": "nope", "all": true})
        )
        .await
        .status(),
        204
    );
    assert_problem(
        app.post("/auth/logout", &json!({"all": true})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        app.post("/auth/logout", &json!({"refresh_token": "x", "all": "yes"}))
            .await,
        422,
        "validation_failed",
    )
    .await;
}
