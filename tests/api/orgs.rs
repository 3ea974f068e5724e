//! Organizations and members over HTTP: every operation's success and error codes, and the role
//! rules for each member operation.

use crate::helpers::*;
use serde_json::{json, Value};

pub async fn authed(app: &TestApp, email: &str) -> (String, Value) {
    let s = app.signup(email).await;
    let t = app.login(email).await;
    (format!("Bearer {}", t["access_token"].as_str().unwrap()), s)
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    auth: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut r = app
        .http
        .request(method, app.url(path))
        .header("authorization", auth);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r.send().await.unwrap()
}

async fn create_org(app: &TestApp, auth: &str, name: &str) -> String {
    let r = call(
        app,
        reqwest::Method::POST,
        "/orgs",
        auth,
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["role"], "owner");
    assert_eq!(b["name"], name);
    b["id"].as_str().unwrap().to_owned()
}

async fn add(app: &TestApp, auth: &str, org: &str, email: &str, role: &str) -> reqwest::Response {
    call(
        app,
        reqwest::Method::POST,
        &format!("/orgs/{org}/members"),
        auth,
        Some(json!({"email": email, "role": role})),
    )
    .await
}

async fn remove(app: &TestApp, auth: &str, org: &str, user: &str) -> reqwest::Response {
    call(
        app,
        reqwest::Method::DELETE,
        &format!("/orgs/{org}/members/{user}"),
        auth,
        None,
    )
    .await
}

fn uid(s: &Value) -> String {
    s["user"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_list_organizations() {
    let app = spawn_app().await;
    let (auth, s) = authed(&app, "o1@example.com").await;
    let org = create_org(&app, &auth, "Acme").await;
    let b: Value = call(&app, reqwest::Method::GET, "/orgs", &auth, None)
        .await
        .json()
        .await
        .unwrap();
    let orgs = b["organizations"].as_array().unwrap();
    assert_eq!(orgs.len(), 2);
    assert_eq!(
        orgs[0]["id"], s["organization"]["id"],
        "personal organization first"
    );
    assert!(orgs
        .iter()
        .any(|o| o["id"] == org.as_str() && o["role"] == "owner" && o["name"] == "Acme"));
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
        json!({}),
        json!({"name": 5}),
    ] {
        assert_problem(
            call(&app, reqwest::Method::POST, "/orgs", &auth, Some(bad)).await,
            422,
            "validation_failed",
        )
        .await;
    }
    assert_problem(app.get("/orgs").await, 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_members_needs_owner_or_admin_and_reports_each_error() {
    let app = spawn_app().await;
    let (owner, _) = authed(&app, "o2@example.com").await;
    let (admin, admin_s) = authed(&app, "o3@example.com").await;
    let (member, member_s) = authed(&app, "o4@example.com").await;
    let (outsider, _) = authed(&app, "o5@example.com").await;
    app.signup("o6@example.com").await;
    let org = create_org(&app, &owner, "Team").await;

    let r = add(&app, &owner, &org, "O3@example.com", "admin").await;
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        (
            b["user_id"].as_str().unwrap(),
            b["org_id"].as_str().unwrap(),
            b["role"].as_str().unwrap()
        ),
        (uid(&admin_s).as_str(), org.as_str(), "admin")
    );
    assert_eq!(
        add(&app, &admin, &org, "o4@example.com", "member")
            .await
            .status(),
        201,
        "admins add members"
    );
    assert_problem(
        add(&app, &member, &org, "o6@example.com", "member").await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        add(&app, &outsider, &org, "o6@example.com", "member").await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        add(
            &app,
            &owner,
            &uuid::Uuid::now_v7().to_string(),
            "o6@example.com",
            "member",
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        add(&app, &owner, &org, "nobody@example.com", "member").await,
        404,
        "user_not_found",
    )
    .await;
    assert_problem(
        add(&app, &owner, &org, "o4@example.com", "admin").await,
        409,
        "already_member",
    )
    .await;
    assert_problem(
        add(&app, &owner, &org, "o6@example.com", "owner").await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        add(&app, &owner, &org, "not-an-email", "member").await,
        422,
        "validation_failed",
    )
    .await;
    let _ = member_s;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_members_follows_the_role_rules_and_keeps_the_last_owner() {
    let app = spawn_app().await;
    let (owner, owner_s) = authed(&app, "r1@example.com").await;
    let (admin, admin_s) = authed(&app, "r2@example.com").await;
    let (admin2, admin2_s) = authed(&app, "r3@example.com").await;
    let (member, member_s) = authed(&app, "r4@example.com").await;
    let (member2, member2_s) = authed(&app, "r5@example.com").await;
    let org = create_org(&app, &owner, "Rules").await;
    for (e, role) in [
        ("r2@example.com", "admin"),
        ("r3@example.com", "admin"),
        ("r4@example.com", "member"),
        ("r5@example.com", "member"),
    ] {
        assert_eq!(add(&app, &owner, &org, e, role).await.status(), 201);
    }
    // Members remove nobody but themselves.
    assert_problem(
        remove(&app, &member, &org, &uid(&member2_s)).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        remove(&app, &member2, &org, &uid(&member2_s))
            .await
            .status(),
        204,
        "anyone may leave"
    );
    // Admins remove members and admins, not owners.
    assert_problem(
        remove(&app, &admin, &org, &uid(&owner_s)).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        remove(&app, &admin, &org, &uid(&member_s)).await.status(),
        204
    );
    assert_eq!(
        remove(&app, &admin, &org, &uid(&admin2_s)).await.status(),
        204
    );
    assert_problem(
        remove(&app, &admin, &org, &uid(&member_s)).await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        remove(&app, &admin, &org, "not-a-uuid").await,
        404,
        "not_found",
    )
    .await;
    // A removed member has no say any more.
    assert_problem(
        remove(&app, &admin2, &org, &uid(&admin_s)).await,
        403,
        "forbidden",
    )
    .await;
    // The last owner stays, even by their own hand; a second owner changes that.
    assert_problem(
        remove(&app, &owner, &org, &uid(&owner_s)).await,
        409,
        "last_owner",
    )
    .await;
    assert_eq!(
        remove(&app, &owner, &org, &uid(&admin_s)).await.status(),
        204,
        "owners remove anyone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_owner_removals_never_leave_an_organization_without_an_owner() {
    let app = spawn_app().await;
    let (a, a_s) = authed(&app, "c1@example.com").await;
    let (b, b_s) = authed(&app, "c2@example.com").await;
    let org = create_org(&app, &a, "Two owners").await;
    // Make b an owner directly in the database: the API only grants admin or member.
    assert_eq!(
        add(&app, &a, &org, "c2@example.com", "admin")
            .await
            .status(),
        201
    );
    let db = direct_db(&app.dir).await;
    let conn = &db.conn;
    conn.execute(
        "UPDATE memberships SET role = 'owner' WHERE user_id = ?1",
        [uid(&b_s)],
    )
    .await
    .unwrap();
    let (ida, idb) = (uid(&a_s), uid(&b_s));
    let (ra, rb) = tokio::join!(remove(&app, &a, &org, &ida), remove(&app, &b, &org, &idb));
    let mut s = [ra.status().as_u16(), rb.status().as_u16()];
    s.sort();
    assert_eq!(s, [204, 409]);
}
