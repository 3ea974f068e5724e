use crate::helpers::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_returns_the_user_and_a_personal_org_owned_by_them() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/auth/signup",
            &json!({"email": "  Alice@Example.COM ", "password": PASSWORD, "name": "Alice"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        b["user"]["email"], "alice@example.com",
        "trimmed and lower-cased"
    );
    assert_eq!(b["user"]["name"], "Alice");
    assert_eq!(b["user"]["mfa_enabled"], false);
    assert!(uuid::Uuid::parse_str(b["user"]["id"].as_str().unwrap()).is_ok());
    assert!(time::OffsetDateTime::parse(
        b["user"]["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());
    assert_eq!(b["organization"]["role"], "owner");
    assert!(uuid::Uuid::parse_str(b["organization"]["id"].as_str().unwrap()).is_ok());

    let r = app.post("/auth/signup", &json!({"email": "bob@example.com", "password": PASSWORD, "organization_name": "Bob Co"})).await;
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["organization"]["name"],
        "Bob Co"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_email_is_409_whatever_its_case() {
    let app = spawn_app().await;
    app.signup("carol@example.com").await;
    let r = app
        .post(
            "/auth/signup",
            &json!({"email": "CAROL@example.com", "password": PASSWORD}),
        )
        .await;
    assert_problem(r, 409, "email_taken").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signups_of_one_email_create_exactly_one_account() {
    let app = spawn_app().await;
    let body = json!({"email": "race@example.com", "password": PASSWORD});
    let futs = (0..8).map(|_| app.post("/auth/signup", &body));
    let statuses: Vec<u16> = futures_util::future::join_all(futs)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwords_are_422_weak_password() {
    let app = spawn_app().await;
    for pw in ["short", "password", "iloveyou", &"x".repeat(129)] {
        let r = app
            .post(
                "/auth/signup",
                &json!({"email": "dave@example.com", "password": pw}),
            )
            .await;
        assert_problem(r, 422, "weak_password").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_fields_are_422_validation_failed_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            "email",
        ),
        (json!({"email": "", "password": PASSWORD}), "email"),
        (
            json!({"email": "a\u{0}b@example.com", "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": format!("{}@example.com", "a".repeat(1000)), "password": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "e@example.com", "password": PASSWORD, "name": ""}),
            "name",
        ),
        (
            json!({"email": "e@example.com", "password": PASSWORD, "name": "x".repeat(101)}),
            "name",
        ),
        (
            json!({"email": "e@example.com", "password": "pass\u{0}word-long-enough"}),
            "password",
        ),
        (json!({"email": "e@example.com"}), "password"),
        (
            json!({"email": "e@example.com", "password": PASSWORD, "admin": true}),
            "admin",
        ),
        (json!({"email": 42, "password": PASSWORD}), "email"),
    ];
    for (body, field) in cases {
        let b = assert_problem(
            app.post("/auth/signup", &body).await,
            422,
            "validation_failed",
        )
        .await;
        let fields: Vec<&str> = b["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body} -> {b}");
    }
}
