//! Organizations, members and invitations over HTTP: every operation's success and error codes,
//! the role rules for each member operation, and an invitation's single use by its own email.

use crate::helpers::*;
use serde_json::{json, Value};

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

async fn decline(app: &TestApp, auth: &str, id: &str) -> reqwest::Response {
    call(
        app,
        reqwest::Method::POST,
        &format!("/auth/invitations/{id}/decline"),
        auth,
        None,
    )
    .await
}

async fn revoke(app: &TestApp, auth: &str, org: &str, id: &str) -> reqwest::Response {
    call(
        app,
        reqwest::Method::DELETE,
        &format!("/orgs/{org}/invitations/{id}"),
        auth,
        None,
    )
    .await
}

/// The caller's pending invitations.
async fn pending(app: &TestApp, auth: &str) -> Vec<Value> {
    let r = call(app, reqwest::Method::GET, "/auth/invitations", auth, None).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    b["invitations"].as_array().unwrap().clone()
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
async fn inviting_needs_owner_or_admin_and_reports_each_error() {
    let app = spawn_app().await;
    let (owner, _) = authed(&app, "o2@example.com").await;
    let (admin, admin_s) = authed(&app, "o3@example.com").await;
    let (member, _) = authed(&app, "o4@example.com").await;
    let (outsider, _) = authed(&app, "o5@example.com").await;
    app.signup("o6@example.com").await;
    let org = create_org(&app, &owner, "Team").await;

    let b = join(&app, &owner, &org, "O3@example.com", "admin", &admin).await;
    let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3, "{b}");
    assert_eq!(
        (
            b["user_id"].as_str().unwrap(),
            b["org_id"].as_str().unwrap(),
            b["role"].as_str().unwrap()
        ),
        (uid(&admin_s).as_str(), org.as_str(), "admin")
    );
    // Admins invite.
    join(&app, &admin, &org, "o4@example.com", "member", &member).await;
    assert_problem(
        invite(&app, &member, &org, "o6@example.com", "member").await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        invite(&app, &outsider, &org, "o6@example.com", "member").await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        invite(
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
    // A current member's email (any case) is 409; the owner's own too.
    assert_problem(
        invite(&app, &owner, &org, "o4@example.com", "admin").await,
        409,
        "already_member",
    )
    .await;
    assert_problem(
        invite(&app, &owner, &org, " o3@EXAMPLE.com ", "member").await,
        409,
        "already_member",
    )
    .await;
    assert_problem(
        invite(&app, &admin, &org, "o2@example.com", "admin").await,
        409,
        "already_member",
    )
    .await;
    assert_problem(
        invite(&app, &owner, &org, "o6@example.com", "owner").await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        invite(&app, &owner, &org, "not-an-email", "member").await,
        422,
        "validation_failed",
    )
    .await;
    assert_problem(
        call(
            &app,
            reqwest::Method::POST,
            &format!("/orgs/{org}/invitations"),
            &owner,
            Some(json!({"email": "o6@example.com", "role": "member", "extra": 1})),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    // Bearer first: no token, no invitation.
    assert_problem(
        app.post(
            &format!("/orgs/{org}/invitations"),
            &json!({"email": "o6@example.com", "role": "member"}),
        )
        .await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_answers_the_same_for_an_account_and_for_an_unknown_email() {
    let app = spawn_app().await;
    let (owner, _) = authed(&app, "n1@example.com").await;
    app.signup("known@example.com").await;
    let org = create_org(&app, &owner, "Oracle-free").await;
    let expires = edge_idp::http::reply::rfc3339(app.clock.now() + 7 * 24 * 3600);
    let mut shapes = Vec::new();
    for (email, role) in [
        (" Known@Example.com ", "member"),
        ("nobody@example.com", "admin"),
    ] {
        let r = invite(&app, &owner, &org, email, role).await;
        assert_eq!(r.status(), 202, "{email}");
        let mut headers: Vec<String> = r
            .headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k != "x-request-id" && k != "date")
            .collect();
        headers.sort();
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["email"], email.trim().to_lowercase());
        assert_eq!(
            (b["org_id"].as_str().unwrap(), b["role"].as_str().unwrap()),
            (org.as_str(), role)
        );
        assert_eq!(b["expires_at"], expires.as_str(), "7 days");
        let id = uuid::Uuid::parse_str(b["id"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 7);
        let mut keys: Vec<String> = b.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        shapes.push((keys, headers));
    }
    assert_eq!(shapes[0], shapes[1], "the same answer for both");
    assert_eq!(shapes[0].0, ["email", "expires_at", "id", "org_id", "role"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_invited_email_sees_and_accepts_an_invitation_once() {
    let app = spawn_app().await;
    let (owner, _) = authed(&app, "i1@example.com").await;
    let (invitee, invitee_s) = authed(&app, "i2@example.com").await;
    let (other, _) = authed(&app, "i3@example.com").await;
    let org = create_org(&app, &owner, "Guild").await;
    let id = invitation_id(invite(&app, &owner, &org, "I2@example.com", "admin").await).await;

    let mine = pending(&app, &invitee).await;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], id.as_str());
    assert_eq!(mine[0]["org_id"], org.as_str());
    assert_eq!(mine[0]["org_name"], "Guild");
    assert_eq!(mine[0]["role"], "admin");
    assert_eq!(
        mine[0]["expires_at"],
        edge_idp::http::reply::rfc3339(app.clock.now() + 7 * 24 * 3600).as_str()
    );
    assert!(
        pending(&app, &other).await.is_empty(),
        "another email sees none"
    );
    assert!(pending(&app, &owner).await.is_empty());
    assert_problem(app.get("/auth/invitations").await, 401, "invalid_token").await;

    // Another account, even the inviter, cannot use it; nor can a malformed or unknown id.
    assert_problem(accept(&app, &other, &id).await, 404, "not_found").await;
    assert_problem(accept(&app, &owner, &id).await, 404, "not_found").await;
    assert_problem(decline(&app, &other, &id).await, 404, "not_found").await;
    assert_problem(accept(&app, &invitee, "not-a-uuid").await, 404, "not_found").await;
    assert_problem(
        accept(&app, &invitee, &uuid::Uuid::now_v7().to_string()).await,
        404,
        "not_found",
    )
    .await;

    let r = accept(&app, &invitee, &id).await;
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["user_id"], uid(&invitee_s).as_str());
    assert_eq!(b["org_id"], org.as_str());
    assert_eq!(b["role"], "admin");
    let orgs: Value = call(&app, reqwest::Method::GET, "/orgs", &invitee, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(orgs["organizations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == org.as_str() && o["role"] == "admin" && o["name"] == "Guild"));
    let me: Value = call(&app, reqwest::Method::GET, "/auth/me", &invitee, None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        me["organizations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == org.as_str()),
        "the profile cache forgot the user: {me}"
    );
    assert!(pending(&app, &invitee).await.is_empty());

    // Single use: used is gone, for accept and decline alike.
    assert_problem(accept(&app, &invitee, &id).await, 404, "not_found").await;
    assert_problem(decline(&app, &invitee, &id).await, 404, "not_found").await;
    assert_problem(revoke(&app, &owner, &org, &id).await, 404, "not_found").await;
    // The new admin invites.
    assert_eq!(
        invite(&app, &invitee, &org, "i3@example.com", "member")
            .await
            .status(),
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_as_a_member_is_409_and_leaves_the_invitation_pending() {
    let app = spawn_app().await;
    let (owner, _) = authed(&app, "am1@example.com").await;
    let (invitee, invitee_s) = authed(&app, "am2@example.com").await;
    let org = create_org(&app, &owner, "Twice").await;
    let first = invitation_id(invite(&app, &owner, &org, "am2@example.com", "member").await).await;
    let second = invitation_id(invite(&app, &owner, &org, "am2@example.com", "admin").await).await;
    assert_eq!(pending(&app, &invitee).await.len(), 2);
    assert_eq!(accept(&app, &invitee, &first).await.status(), 201);
    assert_problem(accept(&app, &invitee, &second).await, 409, "already_member").await;
    let left = pending(&app, &invitee).await;
    assert_eq!(left.len(), 1, "the refused one stays pending");
    assert_eq!(left[0]["id"], second.as_str());
    // Having left, the invitee can still use it.
    assert_eq!(
        remove(&app, &invitee, &org, &uid(&invitee_s))
            .await
            .status(),
        204
    );
    let r = accept(&app, &invitee, &second).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["role"], "admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_or_revoked_invitation_cannot_be_accepted() {
    let app = spawn_app().await;
    let (owner, owner_s) = authed(&app, "d1@example.com").await;
    let (invitee, _) = authed(&app, "d2@example.com").await;
    let (member, _) = authed(&app, "d3@example.com").await;
    let (outsider, _) = authed(&app, "d4@example.com").await;
    let org = create_org(&app, &owner, "Maybe").await;
    join(&app, &owner, &org, "d3@example.com", "member", &member).await;

    // Declined.
    let id = invitation_id(invite(&app, &owner, &org, "d2@example.com", "member").await).await;
    assert_eq!(decline(&app, &invitee, &id).await.status(), 204);
    assert!(pending(&app, &invitee).await.is_empty());
    assert_problem(accept(&app, &invitee, &id).await, 404, "not_found").await;
    assert_problem(decline(&app, &invitee, &id).await, 404, "not_found").await;
    assert_problem(revoke(&app, &owner, &org, &id).await, 404, "not_found").await;

    // Revoked: only by an owner or admin of its own organization.
    let id = invitation_id(invite(&app, &owner, &org, "d2@example.com", "member").await).await;
    assert_problem(revoke(&app, &member, &org, &id).await, 403, "forbidden").await;
    assert_problem(revoke(&app, &outsider, &org, &id).await, 403, "forbidden").await;
    assert_problem(
        revoke(&app, &owner, &uuid::Uuid::now_v7().to_string(), &id).await,
        403,
        "forbidden",
    )
    .await;
    let personal = owner_s["organization"]["id"].as_str().unwrap();
    assert_problem(revoke(&app, &owner, personal, &id).await, 404, "not_found").await;
    assert_problem(
        revoke(&app, &owner, &org, "not-a-uuid").await,
        404,
        "not_found",
    )
    .await;
    assert_problem(
        revoke(&app, &owner, &org, &uuid::Uuid::now_v7().to_string()).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(pending(&app, &invitee).await.len(), 1, "still pending");
    assert_eq!(revoke(&app, &owner, &org, &id).await.status(), 204);
    assert!(pending(&app, &invitee).await.is_empty());
    assert_problem(accept(&app, &invitee, &id).await, 404, "not_found").await;
    assert_problem(decline(&app, &invitee, &id).await, 404, "not_found").await;
    assert_problem(revoke(&app, &owner, &org, &id).await, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_expires_after_seven_days() {
    let app = spawn_app().await;
    let (owner, _) = authed(&app, "e1@example.com").await;
    app.signup("e2@example.com").await;
    let org = create_org(&app, &owner, "Later").await;
    let id = invitation_id(invite(&app, &owner, &org, "e2@example.com", "member").await).await;
    let bearer = |t: &Value| format!("Bearer {}", t["access_token"].as_str().unwrap());
    // The last second: still there (a fresh login, since access tokens do not last a week).
    app.clock.advance(7 * 24 * 3600 - 1);
    let invitee = bearer(&app.login("e2@example.com").await);
    assert_eq!(pending(&app, &invitee).await.len(), 1);
    app.clock.advance(1);
    assert!(pending(&app, &invitee).await.is_empty());
    assert_problem(accept(&app, &invitee, &id).await, 404, "not_found").await;
    assert_problem(decline(&app, &invitee, &id).await, 404, "not_found").await;
    let owner = bearer(&app.login("e1@example.com").await);
    assert_problem(revoke(&app, &owner, &org, &id).await, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_no_longer_added_directly() {
    let app = spawn_app().await;
    let (owner, _) = authed(&app, "x1@example.com").await;
    app.signup("x2@example.com").await;
    let org = create_org(&app, &owner, "Closed").await;
    assert_problem(
        call(
            &app,
            reqwest::Method::POST,
            &format!("/orgs/{org}/members"),
            &owner,
            Some(json!({"email": "x2@example.com", "role": "member"})),
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_rate_limited_per_inviting_user() {
    let app = spawn_with(Opts::default().arg("--rate-limit-invite", "2/3600")).await;
    let (owner, _) = authed(&app, "rl1@example.com").await;
    let (other, _) = authed(&app, "rl2@example.com").await;
    let org = create_org(&app, &owner, "Busy").await;
    let theirs = create_org(&app, &other, "Quiet").await;
    for i in 0..2 {
        let r = invite(&app, &owner, &org, &format!("g{i}@example.com"), "member").await;
        assert_eq!(r.status(), 202);
        assert_eq!(r.headers()["ratelimit-limit"], "2");
    }
    let r = invite(&app, &owner, &org, "g9@example.com", "member").await;
    let h = r.headers().clone();
    assert_eq!(h["ratelimit-remaining"], "0");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_problem(r, 429, "rate_limited").await;
    assert_eq!(
        invite(&app, &other, &theirs, "g9@example.com", "member")
            .await
            .status(),
        202,
        "another inviter has their own budget"
    );
    app.clock.advance(retry as i64);
    // The wait outlasts an access token.
    let t = app.login("rl1@example.com").await;
    let owner = format!("Bearer {}", t["access_token"].as_str().unwrap());
    assert_eq!(
        invite(&app, &owner, &org, "g9@example.com", "member")
            .await
            .status(),
        202,
        "passes after the announced wait"
    );
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
    for (e, role, auth) in [
        ("r2@example.com", "admin", &admin),
        ("r3@example.com", "admin", &admin2),
        ("r4@example.com", "member", &member),
        ("r5@example.com", "member", &member2),
    ] {
        join(&app, &owner, &org, e, role, auth).await;
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
    join(&app, &a, &org, "c2@example.com", "admin", &b).await;
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
