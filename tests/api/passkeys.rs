//! Passkeys over the JSON API, answered by a software authenticator that is not our code
//! (`webauthn-authenticator-rs`'s `SoftPasskey`, which signs with ES256 and reports user
//! verification): registration, usernameless sign-in, the second factor, and every refusal the
//! issue names.
//!
//! `SoftPasskey` keeps no discoverable credentials: given an empty `allowCredentials` it has
//! nothing to answer with. For a usernameless sign-in the test's "browser" therefore tells it
//! which of its credentials to use, as a platform authenticator picks its own; the assertion
//! then carries no `userHandle`, and the server finds the user by the credential id. The
//! discoverable path with a `userHandle` runs in the browser test with Chromium's virtual
//! authenticator.

use crate::audit::rows;
use crate::helpers::*;
use crate::mfa::{post_auth, with_mfa_session};
use serde_json::{json, Value};
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;

/// The issuer of the test servers: the RP id is `localhost`.
pub const ORIGIN: &str = "http://localhost:8000";

/// A person's device: a software authenticator and the origin its browser reports.
pub struct Device {
    wa: WebauthnAuthenticator<SoftPasskey>,
    origin: Url,
    /// base64url ids of the credentials it created.
    pub credentials: Vec<String>,
}

impl Default for Device {
    fn default() -> Self {
        Self::at(ORIGIN)
    }
}

impl Device {
    pub fn new() -> Self {
        Self::default()
    }

    /// A device whose browser reports `origin`.
    pub fn at(origin: &str) -> Self {
        Self {
            wa: WebauthnAuthenticator::new(SoftPasskey::new(true)),
            origin: Url::parse(origin).unwrap(),
            credentials: Vec::new(),
        }
    }

    /// `navigator.credentials.create()` with a `begin` answer's `publicKey`: the `credential`
    /// to send to `finish`.
    pub fn create(&mut self, begun: &Value) -> Value {
        let options: CreationChallengeResponse =
            serde_json::from_value(json!({"publicKey": begun["publicKey"]})).unwrap();
        let credential = self
            .wa
            .do_registration(self.origin.clone(), options)
            .expect("the authenticator creates a credential");
        self.credentials.push(credential.id.clone());
        serde_json::to_value(credential).unwrap()
    }

    /// `navigator.credentials.get()`: with no `allowCredentials`, this device's newest
    /// credential answers (see the module docs).
    pub fn get(&mut self, begun: &Value) -> Value {
        let mut pk = begun["publicKey"].clone();
        if pk["allowCredentials"].as_array().is_none_or(Vec::is_empty) {
            let newest = self
                .credentials
                .last()
                .expect("a credential on this device");
            pk["allowCredentials"] = json!([{"type": "public-key", "id": newest}]);
        }
        self.get_with(pk)
    }

    /// `navigator.credentials.get()` with exactly these options.
    pub fn get_with(&mut self, public_key: Value) -> Value {
        let options: RequestChallengeResponse =
            serde_json::from_value(json!({"publicKey": public_key})).unwrap();
        let assertion = self
            .wa
            .do_authentication(self.origin.clone(), options)
            .expect("the authenticator signs");
        serde_json::to_value(assertion).unwrap()
    }
}

async fn ok_json(r: reqwest::Response, status: u16) -> Value {
    let code = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(code, status, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `register/begin` for the session of `tokens`: `{ceremony_id, publicKey}`.
pub async fn register_begin(app: &TestApp, tokens: &Value) -> Value {
    let r = post_auth(app, "/auth/passkeys/register/begin", tokens, None).await;
    ok_json(r, 200).await
}

/// `register/finish` for the session of `tokens` with `body`.
async fn register_finish(app: &TestApp, tokens: &Value, body: Value) -> reqwest::Response {
    post_auth(app, "/auth/passkeys/register/finish", tokens, Some(body)).await
}

/// Registers a passkey on `device` for the session of `tokens`; the finish answer.
pub async fn register(app: &TestApp, tokens: &Value, device: &mut Device, name: &str) -> Value {
    let begun = register_begin(app, tokens).await;
    let credential = device.create(&begun);
    ok_json(
        register_finish(
            app,
            tokens,
            json!({"ceremony_id": begun["ceremony_id"], "credential": credential, "name": name}),
        )
        .await,
        201,
    )
    .await
}

/// `login/begin` with `body`.
pub async fn login_begin(app: &TestApp, body: Value) -> Value {
    ok_json(app.post("/auth/passkeys/login/begin", &body).await, 200).await
}

async fn login_finish(app: &TestApp, ceremony_id: &Value, credential: &Value) -> reqwest::Response {
    app.post(
        "/auth/passkeys/login/finish",
        &json!({"ceremony_id": ceremony_id, "credential": credential}),
    )
    .await
}

/// A usernameless sign-in with `device`: the finish answer.
pub async fn sign_in(app: &TestApp, device: &mut Device) -> reqwest::Response {
    let begun = login_begin(app, json!({})).await;
    let assertion = device.get(&begun);
    login_finish(app, &begun["ceremony_id"], &assertion).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_registers_then_signs_in_alone_without_a_username() {
    let app = spawn_app().await;
    let signup = app.signup("pk1@example.com").await;
    let user_id = signup["user"]["id"].as_str().unwrap();
    let tokens = app.login("pk1@example.com").await;

    let r = post_auth(&app, "/auth/passkeys/register/begin", &tokens, None).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let begun = ok_json(r, 200).await;
    let pk = &begun["publicKey"];
    assert!(begun["ceremony_id"].as_str().unwrap().len() >= 43);
    assert!(
        pk["challenge"].as_str().unwrap().len() >= 43,
        "32 bytes, base64url"
    );
    assert_eq!(pk["rp"]["id"], "localhost");
    assert_eq!(pk["rp"]["name"], "edge-idp");
    assert_eq!(pk["user"]["name"], "pk1@example.com");
    assert_eq!(
        pk["user"]["id"],
        b64url(uuid::Uuid::parse_str(user_id).unwrap().as_bytes()),
        "the user handle is the user id's bytes"
    );
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "preferred");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    assert!(pk["excludeCredentials"]
        .as_array()
        .is_none_or(Vec::is_empty));

    let mut device = Device::new();
    let credential = device.create(&begun);
    let r = register_finish(
        &app,
        &tokens,
        json!({"ceremony_id": begun["ceremony_id"], "credential": credential, "name": "Laptop"}),
    )
    .await;
    let created = ok_json(r, 201).await;
    assert_eq!(created["name"], "Laptop");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    // A second registration excludes the passkey the account has.
    let again = register_begin(&app, &tokens).await;
    assert_eq!(
        again["publicKey"]["excludeCredentials"][0]["id"],
        device.credentials[0]
    );

    let list = ok_json(
        app.get_as("/auth/passkeys", tokens["access_token"].as_str().unwrap())
            .await,
        200,
    )
    .await;
    let listed = &list["passkeys"][0];
    assert_eq!(listed["id"], created["id"]);
    assert_eq!(listed["name"], "Laptop");
    assert_eq!(listed["last_used_at"], Value::Null);
    assert_eq!(listed["backup_eligible"], false);

    // Sign-in: no username, no allowCredentials.
    let begun = login_begin(&app, json!({})).await;
    assert!(begun["publicKey"]["allowCredentials"]
        .as_array()
        .is_none_or(Vec::is_empty));
    assert_eq!(begun["publicKey"]["rpId"], "localhost");
    assert_eq!(begun["publicKey"]["userVerification"], "required");
    let assertion = device.get(&begun);
    let t = ok_json(
        login_finish(&app, &begun["ceremony_id"], &assertion).await,
        200,
    )
    .await;
    assert!(t["refresh_token"].is_string());
    let claims = app.claims(t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], user_id);
    assert_eq!(
        claims["amr"],
        json!(["hwk", "mfa"]),
        "a device-bound key with user verification"
    );
    let r = app.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "an ordinary session");

    let list = ok_json(
        app.get_as("/auth/passkeys", tokens["access_token"].as_str().unwrap())
            .await,
        200,
    )
    .await;
    assert!(list["passkeys"][0]["last_used_at"].is_string());

    let kinds: Vec<Value> = rows(&app)
        .await
        .into_iter()
        .map(|r| r["kind"].clone())
        .collect();
    assert!(kinds.contains(&json!("passkey_registered")));
    assert!(kinds.contains(&json!("passkey_login")));
    // The owner is told by mail (here a development `.eml` file: no SMTP_URL).
    crate::email::eml_with_subject(&app.dir, "A passkey was added to your edge-idp account").await;
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_answers_the_second_factor_after_the_password() {
    let app = spawn_app().await;
    let (_totp, _codes, tokens) = with_mfa_session(&app, "pk2@example.com").await;
    let mut device = Device::new();
    register(&app, &tokens, &mut device, "Phone").await;

    let r = app
        .post(
            "/auth/login",
            &json!({"email": "pk2@example.com", "password": PASSWORD}),
        )
        .await;
    let challenge = ok_json(r, 200).await;
    assert_eq!(challenge["mfa_methods"], json!(["totp", "passkey"]));
    let mfa_token = challenge["mfa_token"].clone();

    let begun = login_begin(&app, json!({"mfa_token": mfa_token})).await;
    assert_eq!(
        begun["publicKey"]["allowCredentials"][0]["id"], device.credentials[0],
        "the login's user's passkeys"
    );
    let assertion = device.get(&begun);
    let t = ok_json(
        login_finish(&app, &begun["ceremony_id"], &assertion).await,
        200,
    )
    .await;
    let claims = app.claims(t["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "mfa"]));

    // The mfa_token was consumed: neither a code nor another passkey ceremony takes it again.
    let r = app
        .post(
            "/auth/mfa/verify",
            &json!({"mfa_token": mfa_token, "code": "000000"}),
        )
        .await;
    assert_problem(r, 401, "invalid_mfa_token").await;
    let r = app
        .post(
            "/auth/passkeys/login/begin",
            &json!({"mfa_token": mfa_token}),
        )
        .await;
    assert_problem(r, 401, "invalid_mfa_token").await;

    // An account without a passkey is offered TOTP only, and has no passkey ceremony.
    with_mfa_session(&app, "pk2b@example.com").await;
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "pk2b@example.com", "password": PASSWORD}),
        )
        .await;
    let challenge = ok_json(r, 200).await;
    assert_eq!(challenge["mfa_methods"], json!(["totp"]));
    let r = app
        .post(
            "/auth/passkeys/login/begin",
            &json!({"mfa_token": challenge["mfa_token"]}),
        )
        .await;
    assert_problem(r, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceremonies_from_another_origin_or_rp_id_are_refused() {
    let app = spawn_app().await;
    app.signup("pk3@example.com").await;
    let tokens = app.login("pk3@example.com").await;

    // Another port of the same host is another origin.
    let begun = register_begin(&app, &tokens).await;
    let credential = Device::at("http://localhost:9999").create(&begun);
    let r = register_finish(
        &app,
        &tokens,
        json!({"ceremony_id": begun["ceremony_id"], "credential": credential}),
    )
    .await;
    assert_problem(r, 401, "invalid_passkey").await;

    // A phishing site relays the options under its own RP id.
    let mut begun = register_begin(&app, &tokens).await;
    begun["publicKey"]["rp"]["id"] = json!("evil.example");
    let credential = Device::at("https://evil.example").create(&begun);
    let r = register_finish(
        &app,
        &tokens,
        json!({"ceremony_id": begun["ceremony_id"], "credential": credential}),
    )
    .await;
    assert_problem(r, 401, "invalid_passkey").await;

    // A real passkey, then a sign-in relayed from another origin.
    let mut device = Device::new();
    register(&app, &tokens, &mut device, "Key").await;
    let begun = login_begin(&app, json!({})).await;
    let mut pk = begun["publicKey"].clone();
    pk["allowCredentials"] = json!([{"type": "public-key", "id": device.credentials[0]}]);
    let mut elsewhere = Device::at("http://localhost:9999");
    // The same key material is not available elsewhere, so relay through the real device but
    // report the other origin: the client data says where the ceremony ran.
    std::mem::swap(&mut elsewhere.wa, &mut device.wa);
    let assertion = elsewhere.get_with(pk);
    std::mem::swap(&mut elsewhere.wa, &mut device.wa);
    let r = login_finish(&app, &begun["ceremony_id"], &assertion).await;
    assert_problem(r, 401, "invalid_passkey").await;

    let failed = rows(&app)
        .await
        .into_iter()
        .filter(|r| r["kind"] == "passkey_failed")
        .count();
    assert_eq!(failed, 3, "each refusal is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceremony_is_used_once_and_expires() {
    let app = spawn_app().await;
    app.signup("pk4@example.com").await;
    let tokens = app.login("pk4@example.com").await;
    let mut device = Device::new();

    // Registration: a finished ceremony cannot be finished again.
    let begun = register_begin(&app, &tokens).await;
    let credential = device.create(&begun);
    let body = json!({"ceremony_id": begun["ceremony_id"], "credential": credential});
    let r = post_auth(
        &app,
        "/auth/passkeys/register/finish",
        &tokens,
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = post_auth(&app, "/auth/passkeys/register/finish", &tokens, Some(body)).await;
    assert_problem(r, 404, "not_found").await;

    // Sign-in: the same assertion twice on its ceremony (the challenge used twice).
    let begun = login_begin(&app, json!({})).await;
    let assertion = device.get(&begun);
    assert_eq!(
        login_finish(&app, &begun["ceremony_id"], &assertion)
            .await
            .status(),
        200
    );
    let r = login_finish(&app, &begun["ceremony_id"], &assertion).await;
    assert_problem(r, 404, "not_found").await;

    // A replayed assertion on a new ceremony: its challenge is not this one's.
    let fresh = login_begin(&app, json!({})).await;
    let r = login_finish(&app, &fresh["ceremony_id"], &assertion).await;
    assert_problem(r, 401, "invalid_passkey").await;
    // ... and the failed attempt burned that ceremony.
    let good = device.get(&fresh);
    let r = login_finish(&app, &fresh["ceremony_id"], &good).await;
    assert_problem(r, 404, "not_found").await;

    // Expired: five minutes.
    let begun = login_begin(&app, json!({})).await;
    let assertion = device.get(&begun);
    app.clock.advance(301);
    let r = login_finish(&app, &begun["ceremony_id"], &assertion).await;
    assert_problem(r, 404, "not_found").await;

    // Unknown and malformed ceremony ids.
    let r = login_finish(&app, &json!("A".repeat(43)), &assertion).await;
    assert_problem(r, 404, "not_found").await;
    let r = login_finish(&app, &json!("not a ceremony"), &assertion).await;
    assert_problem(r, 404, "not_found").await;
    let r = app
        .post(
            "/auth/passkeys/login/finish",
            &json!({"ceremony_id": "x", "credential": {"id": 1}}),
        )
        .await;
    assert_problem(r, 422, "validation_failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_ceremony_credential_and_passkeys_are_refused() {
    let app = spawn_app().await;
    app.signup("pk5a@example.com").await;
    let alice = app.login("pk5a@example.com").await;
    let mut alices = Device::new();
    let alice_key = register(&app, &alice, &mut alices, "Alice's").await;

    let (_totp, _codes, bob) = with_mfa_session(&app, "pk5b@example.com").await;
    let mut bobs = Device::new();
    register(&app, &bob, &mut bobs, "Bob's").await;

    // Bob's registration ceremony, finished with Alice's token.
    let begun = register_begin(&app, &bob).await;
    let credential = alices.create(&begun);
    let r = register_finish(
        &app,
        &alice,
        json!({"ceremony_id": begun["ceremony_id"], "credential": credential}),
    )
    .await;
    assert_problem(r, 404, "not_found").await;

    // Bob's second factor answered with Alice's passkey.
    let r = app
        .post(
            "/auth/login",
            &json!({"email": "pk5b@example.com", "password": PASSWORD}),
        )
        .await;
    let mfa_token = ok_json(r, 200).await["mfa_token"].clone();
    let begun = login_begin(&app, json!({"mfa_token": mfa_token})).await;
    let mut pk = begun["publicKey"].clone();
    pk["allowCredentials"] = json!([{"type": "public-key", "id": alices.credentials[0]}]);
    let assertion = alices.get_with(pk);
    let r = login_finish(&app, &begun["ceremony_id"], &assertion).await;
    assert_problem(r, 401, "invalid_passkey").await;

    // Bob cannot see, rename or delete Alice's passkey.
    let path = format!("/auth/passkeys/{}", alice_key["id"].as_str().unwrap());
    let bearer = format!("Bearer {}", bob["access_token"].as_str().unwrap());
    let r = call(
        &app,
        reqwest::Method::PATCH,
        &path,
        &bearer,
        Some(json!({"name": "mine"})),
    )
    .await;
    assert_problem(r, 404, "not_found").await;
    let r = call(&app, reqwest::Method::DELETE, &path, &bearer, None).await;
    assert_problem(r, 404, "not_found").await;
    let list = ok_json(
        app.get_as("/auth/passkeys", bob["access_token"].as_str().unwrap())
            .await,
        200,
    )
    .await;
    assert_eq!(list["passkeys"].as_array().unwrap().len(), 1);
    assert_eq!(list["passkeys"][0]["name"], "Bob's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_counter_that_goes_back_is_refused_and_audited() {
    let app = spawn_app().await;
    app.signup("pk6@example.com").await;
    let tokens = app.login("pk6@example.com").await;
    let mut device = Device::new();
    register(&app, &tokens, &mut device, "Key").await;

    // Two ceremonies signed in order (counters 1 and 2), finished in the other order: the
    // second finish presents a counter at or below the stored one, as a clone would.
    let first = login_begin(&app, json!({})).await;
    let second = login_begin(&app, json!({})).await;
    let earlier = device.get(&first);
    let later = device.get(&second);
    assert_eq!(
        login_finish(&app, &second["ceremony_id"], &later)
            .await
            .status(),
        200
    );
    let r = login_finish(&app, &first["ceremony_id"], &earlier).await;
    assert_problem(r, 401, "invalid_passkey").await;
    let audited = rows(&app)
        .await
        .into_iter()
        .find(|r| r["kind"] == "passkey_failed")
        .expect("a passkey_failed row");
    assert!(
        audited["detail"]
            .as_str()
            .unwrap()
            .contains("cloned authenticator"),
        "{audited}"
    );
    assert!(audited["user_id"].is_string());

    // The authenticator's next signature moves on and is accepted.
    assert_eq!(sign_in(&app, &mut device).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_are_renamed_and_deleted_by_their_owner() {
    let app = spawn_app().await;
    app.signup("pk7@example.com").await;
    let tokens = app.login("pk7@example.com").await;
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().unwrap());
    let mut device = Device::new();
    let key = register(&app, &tokens, &mut device, "Old name").await;
    let path = format!("/auth/passkeys/{}", key["id"].as_str().unwrap());

    let r = call(
        &app,
        reqwest::Method::PATCH,
        &path,
        &bearer,
        Some(json!({"name": "  Work laptop "})),
    )
    .await;
    let renamed = ok_json(r, 200).await;
    assert_eq!(renamed["name"], "Work laptop");
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(65)}),
        json!({}),
    ] {
        let r = call(&app, reqwest::Method::PATCH, &path, &bearer, Some(bad)).await;
        assert_problem(r, 422, "validation_failed").await;
    }
    let r = call(
        &app,
        reqwest::Method::PATCH,
        "/auth/passkeys/nope",
        &bearer,
        Some(json!({"name": "a"})),
    )
    .await;
    assert_problem(r, 404, "not_found").await;

    // Deleting needs a recent sign-in, like adding one.
    app.clock.advance(301);
    let r = call(&app, reqwest::Method::DELETE, &path, &bearer, None).await;
    assert_problem(r, 401, "insufficient_user_authentication").await;
    let r = post_auth(&app, "/auth/passkeys/register/begin", &tokens, None).await;
    assert_problem(r, 401, "insufficient_user_authentication").await;
    let fresh = app.login("pk7@example.com").await;
    let bearer = format!("Bearer {}", fresh["access_token"].as_str().unwrap());
    let r = call(&app, reqwest::Method::DELETE, &path, &bearer, None).await;
    assert_eq!(r.status(), 204);
    let r = call(&app, reqwest::Method::DELETE, &path, &bearer, None).await;
    assert_problem(r, 404, "not_found").await;

    // A deleted passkey signs in no more.
    let r = sign_in(&app, &mut device).await;
    assert_problem(r, 401, "invalid_passkey").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_ceremonies_count_against_the_login_limits() {
    let app = spawn_with(Opts::default().arg("--rate-limit-login", "2/60")).await;
    for _ in 0..2 {
        login_begin(&app, json!({})).await;
    }
    let r = app.post("/auth/passkeys/login/begin", &json!({})).await;
    let body = assert_problem(r, 429, "rate_limited").await;
    assert!(body["detail"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_domain_for_the_rp_id_passkeys_are_off() {
    let app = spawn_with(Opts {
        own_issuer: true,
        ..Opts::default()
    })
    .await;
    let r = app.post("/auth/passkeys/login/begin", &json!({})).await;
    assert_problem(r, 404, "not_found").await;
}
