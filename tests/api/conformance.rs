//! The OpenID Foundation's Basic OP test plan, module by module, where no other test already
//! answers it (docs/conformance.md names the test of every module). The conformance suite
//! itself cannot run here; these are its requests, sent the same way, with its expectations.

use crate::helpers::*;
use crate::oidc::{
    code_of, exchange, http, oidc_app, pkce_request, query, register, Browser, Registered, REDIRECT,
};
use openidconnect::{CsrfToken, PkceCodeVerifier};
use serde_json::Value;

/// An authorization URL for `rp` with `scope` and `extra` parameters (state `xyz`), and its
/// PKCE verifier.
fn request(app: &TestApp, rp: &Registered, scope: &str, extra: &str) -> (String, PkceCodeVerifier) {
    pkce_request(&app.base, &rp.id, scope, "xyz", extra)
}

fn error_of(page: &crate::oidc::Page) -> (Option<String>, Option<String>) {
    assert_eq!(page.status, 302, "{}", page.body);
    let to = page.location();
    (query(&to, "error"), query(&to, "state"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_basic_op_plan_modules_answer_as_the_checklist_says() {
    let app = oidc_app().await;
    app.signup("plan@example.com").await;
    let rp = register(&app, &["--first-party"]);
    let mut browser = Browser::new(&app);
    let state = CsrfToken::new("xyz".into());

    // oidcc-server: sign in once; the code flow answers with a code, state and iss.
    let (url, verifier) = request(&app, &rp, "openid", "");
    let page = browser.get(&url).await;
    let done = browser.sign_in(&page, "plan@example.com", PASSWORD).await;
    let code = code_of(&app, &done, &state);
    let (s, tokens) = exchange(&app, &rp, code.secret(), &verifier).await;
    assert_eq!(s, 200, "{tokens}");

    // oidcc-codereuse-30seconds: 30 s later the same code is refused.
    app.clock.advance(30);
    let (s, b) = exchange(&app, &rp, code.secret(), &verifier).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("invalid_grant")));

    // Requests that must succeed: display, locales, acr_values, an unknown parameter, an
    // essential claim asked through `claims` (not supported, so ignored), login_hint, the
    // scopes in another order.
    for (scope, extra) in [
        ("openid", "&display=page"),
        ("openid", "&display=popup"),
        ("openid", "&ui_locales=fr-CA%20fr%20en"),
        ("openid", "&claims_locales=de%20en"),
        ("openid", "&acr_values=1%202"),
        ("openid", "&extra=foobar"),
        (
            "openid",
            "&claims=%7B%22id_token%22%3A%7B%22email%22%3A%7B%22essential%22%3Atrue%7D%7D%7D",
        ),
        ("openid", "&login_hint=plan%40example.com"),
        ("email%20openid", ""),
    ] {
        let (url, verifier) = request(&app, &rp, scope, extra);
        let page = browser.get(&url).await;
        let code = code_of(&app, &page, &state);
        let (s, b) = exchange(&app, &rp, code.secret(), &verifier).await;
        assert_eq!(s, 200, "{extra}: {b}");
        assert!(b["id_token"].is_string(), "{extra}: {b}");
    }

    // oidcc-scope-address, -phone, -all: those scopes are not offered, so they are ignored:
    // the code comes with what is supported and nothing else.
    let (url, verifier) = request(&app, &rp, "openid%20profile%20email%20address%20phone", "");
    let code = code_of(&app, &browser.get(&url).await, &state);
    let (s, b) = exchange(&app, &rp, code.secret(), &verifier).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["scope"], "openid profile email");
    let access = b["access_token"].as_str().unwrap().to_owned();

    // oidcc-userinfo-get, -post-header, -post-body.
    let get = http()
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let post_header = http()
        .post(app.url("/oauth2/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let post_body = http()
        .post(app.url("/oauth2/userinfo"))
        .form(&[("access_token", access.as_str())])
        .send()
        .await
        .unwrap();
    for (how, r) in [
        ("GET", get),
        ("POST header", post_header),
        ("POST body", post_body),
    ] {
        assert_eq!(r.status(), 200, "{how}");
        let info: Value = r.json().await.unwrap();
        assert_eq!(info["email"], "plan@example.com", "{how}: {info}");
        assert!(info.get("address").is_none() && info.get("phone_number").is_none());
    }

    // oidcc-response-type-missing: an error for the client, with its state.
    let url = format!(
        "{}/oauth2/authorize?client_id={}&redirect_uri={REDIRECT}&scope=openid&state=xyz",
        app.base, rp.id
    );
    let (error, st) = error_of(&browser.get(&url).await);
    assert_eq!(
        (error.as_deref(), st.as_deref()),
        (Some("invalid_request"), Some("xyz"))
    );
    // oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported and
    // oidcc-ensure-request-object-with-redirect-uri: request objects are refused as
    // unsupported (and discovery says request_parameter_supported: false).
    let unsigned = "eyJhbGciOiJub25lIn0.eyJyZWRpcmVjdF91cmkiOiJodHRwczovL2V2aWwuZXhhbXBsZS8ifQ.";
    let (url, _) = request(&app, &rp, "openid", &format!("&request={unsigned}"));
    let (error, _) = error_of(&browser.get(&url).await);
    assert_eq!(error.as_deref(), Some("request_not_supported"));
    let (url, _) = request(
        &app,
        &rp,
        "openid",
        "&request_uri=https%3A%2F%2Fclient.example%2Frequest.jwt",
    );
    let (error, _) = error_of(&browser.get(&url).await);
    assert_eq!(error.as_deref(), Some("request_uri_not_supported"));

    // oidcc-max-age-1: two seconds after the sign-in, the sign-in page again.
    app.clock.advance(2);
    let (url, _) = request(&app, &rp, "openid", "&max_age=1");
    let page = browser.get(&url).await;
    assert!(page.shows("action=\"/oauth2/sign-in\""), "{}", page.body);
}
