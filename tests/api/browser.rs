//! The hosted pages in a real browser: Debian's `chromium`, headless, driven through
//! `chromedriver` over WebDriver (the `fantoccini` crate), with JavaScript turned off, so every
//! step proves the pages work without it. A stock relying party (the `openidconnect` crate)
//! builds the request and redeems the code the browser brings back.
//!
//! Each page is saved as a PNG under `target/screenshots/` for people to look at. The browser's
//! console must stay free of errors (a CSP violation, a missing stylesheet would show there).
//!
//! `CHROMEDRIVER` and `CHROMIUM` name the binaries (default `/usr/bin/chromedriver`,
//! `/usr/bin/chromium`; `.ci/run` installs Debian's `chromium` and `chromium-driver` when they
//! are missing). In CI (`CI=true`) a missing browser fails the test; elsewhere it prints
//! SKIPPED.

use crate::helpers::*;
use crate::mfa::with_mfa;
use crate::oidc::{http, metadata, oidc_app, query, register};
use fantoccini::{Client, ClientBuilder, Locator};
use openidconnect::core::{CoreClient, CoreResponseType, CoreUserInfoClaims};
use openidconnect::{
    AccessTokenHash, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, LogoutRequest, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The browser binaries, or `None` (with a visible note) outside CI when they are missing.
fn binaries(test: &str) -> Option<(PathBuf, PathBuf)> {
    let pick = |var: &str, default: &str| {
        PathBuf::from(std::env::var_os(var).unwrap_or_else(|| default.into()))
    };
    let driver = pick("CHROMEDRIVER", "/usr/bin/chromedriver");
    let chromium = pick("CHROMIUM", "/usr/bin/chromium");
    if driver.is_file() && chromium.is_file() {
        return Some((driver, chromium));
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: no {} or {} and CI=true: the browser is required",
            driver.display(),
            chromium.display()
        );
    }
    eprintln!(
        "SKIPPED {test}: no chromium/chromedriver (apt-get install chromium chromium-driver)"
    );
    None
}

/// A headless chromium under its own chromedriver, both ended when dropped.
struct Chrome {
    driver: Child,
    driver_url: String,
    client: Option<Client>,
    shots: PathBuf,
    /// Console errors seen so far, by page.
    errors: Vec<String>,
    /// JavaScript is on (the passkey pages need it); off, every page must be script-free.
    javascript: bool,
}

impl Chrome {
    async fn start(driver: &Path, chromium: &Path) -> Chrome {
        Self::start_with(driver, chromium, false).await
    }

    /// [`Chrome::start`], with JavaScript on or off.
    async fn start_with(driver: &Path, chromium: &Path, javascript: bool) -> Chrome {
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver_url = format!("http://127.0.0.1:{port}");
        let mut chrome = Chrome {
            driver: child,
            driver_url,
            client: None,
            shots: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"),
            errors: Vec::new(),
            javascript,
        };
        chrome.wait_ready().await;
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // As root (CI) chromium needs --no-sandbox.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
                // By default no JavaScript at all: the pages must not need it.
                "prefs": {"profile.managed_default_content_settings.javascript":
                          if javascript { 1 } else { 2 }},
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let caps = caps.as_object().unwrap().clone().into_iter().collect();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&chrome.driver_url)
            .await
            .expect("a chromium session");
        chrome.client = Some(client);
        std::fs::create_dir_all(&chrome.shots).unwrap();
        chrome
    }

    /// Waits until chromedriver says it is ready (polling its status, 30 s at most).
    async fn wait_ready(&mut self) {
        let http = http();
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("{}/status", self.driver_url)).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return;
                    }
                }
            }
            if let Some(status) = self.driver.try_wait().unwrap() {
                panic!("chromedriver exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not become ready in 30 s");
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Saves a screenshot as `target/screenshots/NAME.png`, checks the page has no script and
    /// notes what the console logged as an error.
    async fn page(&mut self, name: &str) {
        self.page_with_status(name, None).await
    }

    /// [`Chrome::page`] for a page answered with an error `status` (`"400 (Bad Request)"`): the
    /// console's note of that status for the page itself is expected, nothing else.
    async fn page_with_status(&mut self, name: &str, status: Option<&str>) {
        let own = match status {
            Some(s) => Some(format!(
                "{} - Failed to load resource: the server responded with a status of {s}",
                self.url().await
            )),
            None => None,
        };
        let png = self.c().screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        if !self.javascript {
            let scripts = self.c().find_all(Locator::Css("script")).await.unwrap();
            assert!(scripts.is_empty(), "{name}: the page carries a script");
        }
        let mut seen_own = false;
        for e in self.console_errors().await {
            if own.as_ref() == Some(&e) {
                seen_own = true;
            } else {
                self.errors.push(format!("{name}: {e}"));
            }
        }
        assert_eq!(seen_own, own.is_some(), "{name}: the page's own status");
    }

    /// The browser console's entries at level SEVERE since the last call (chromedriver's log
    /// endpoint).
    async fn console_errors(&self) -> Vec<String> {
        let session = self.c().session_id().await.unwrap().unwrap();
        let r: Value = http()
            .post(format!("{}/session/{session}/se/log", self.driver_url))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries = r["value"].as_array().unwrap_or_else(|| panic!("{r}"));
        entries
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn text(&self) -> String {
        self.c()
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn fill(&self, name: &str, value: &str) {
        let field = self
            .c()
            .find(Locator::Css(&format!("input[name=\"{name}\"]")))
            .await
            .unwrap_or_else(|e| panic!("no field {name}: {e}"));
        // Every field has a visible label pointing at it.
        let id = field.attr("id").await.unwrap().expect("an id");
        self.c()
            .find(Locator::Css(&format!("label[for=\"{id}\"]")))
            .await
            .unwrap_or_else(|e| panic!("no label for {name}: {e}"));
        field.send_keys(value).await.unwrap();
    }

    /// Clicks the button matched by `css` and waits until the form's answer has replaced the
    /// page (the button's element goes stale; chromedriver then waits for the load before the
    /// next command).
    async fn press(&self, css: &str) {
        let button = self.c().find(Locator::Css(css)).await.unwrap();
        button.click().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while button.is_enabled().await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{css}: the page was not replaced in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn url(&self) -> url::Url {
        self.c().current_url().await.unwrap()
    }

    async fn close(mut self) {
        if let Some(c) = self.client.take() {
            c.close().await.unwrap();
        }
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A stock OpenID Connect client as discovery configures it.
type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A first-party client of `app` returning to `callback`, registered with the operator's
/// command and configured by discovery from the issuer, as an application would be.
async fn first_party_client(app: &TestApp, callback: &str) -> Rp {
    let rp = register(app, &["--redirect-uri", callback, "--first-party"]);
    let discovered = openidconnect::core::CoreProviderMetadata::discover_async(
        IssuerUrl::new(app.issuer.clone()).unwrap(),
        &http(),
    )
    .await
    .expect("discovery");
    CoreClient::from_provider_metadata(
        discovered,
        ClientId::new(rp.id.clone()),
        rp.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(callback.to_owned()).unwrap())
}

/// An authorization request for `openid email` with PKCE: its URL, state, nonce, verifier.
fn email_request(client: &Rp) -> (url::Url, CsrfToken, Nonce, PkceCodeVerifier) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    (url, state, nonce, verifier)
}

/// Redeems the code the browser brought back to `back` (its `state` checked); the ID token's
/// claims, verified.
async fn redeem(
    client: &Rp,
    back: url::Url,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
) -> openidconnect::core::CoreIdTokenClaims {
    assert_eq!(
        query(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    let code = AuthorizationCode::new(query(&back, "code").expect("a code"));
    let tokens = client
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("code exchange");
    tokens
        .id_token()
        .expect("id_token")
        .claims(&client.id_token_verifier(), &nonce)
        .expect("ID token verifies")
        .clone()
}

/// A stand-in for the application's own pages: answers 200 with a short page to everything.
async fn application_pages() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = "<!doctype html><title>App</title><p>Back at the application.</p>";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_with_mfa_and_consent_in_a_real_browser_and_the_client_gets_verifiable_tokens(
) {
    let test = "browser::a_person_signs_in_with_mfa_and_consent_in_a_real_browser";
    let Some((driver, chromium)) = binaries(test) else {
        return;
    };
    let app = oidc_app().await;
    let (totp, _) = with_mfa(&app, "browser@example.com").await;
    let site = application_pages().await;
    let callback = format!("{site}/callback");
    let signed_out = format!("{site}/signed-out");
    let rp = register(
        &app,
        &[
            "--redirect-uri",
            &callback,
            "--post-logout-redirect-uri",
            &signed_out,
        ],
    );
    let client = CoreClient::from_provider_metadata(
        metadata(&app).await,
        ClientId::new(rp.id.clone()),
        rp.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(callback.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();

    let mut chrome = Chrome::start(&driver, &chromium).await;
    chrome.c().goto(url.as_str()).await.unwrap();
    assert!(
        chrome.text().await.contains("Test app"),
        "{}",
        chrome.text().await
    );
    chrome.page("1-sign-in").await;
    chrome.fill("email", "browser@example.com").await;
    chrome.fill("password", PASSWORD).await;
    chrome.press("button[type=submit]").await;

    // The second factor: the step after the enrollment's own.
    assert!(chrome.url().await.path().ends_with("/oauth2/sign-in"));
    chrome.page("2-second-factor").await;
    app.clock.advance(30);
    chrome.fill("code", &totp.code_at(app.clock.now())).await;
    chrome.press("button[type=submit]").await;

    chrome.page("3-consent").await;
    let text = chrome.text().await;
    assert!(
        text.contains("Allow Test app?") && text.contains("browser@example.com"),
        "{text}"
    );
    chrome.press("button[value=allow]").await;

    // Back at the application with a code, `state` and `iss`.
    let back = chrome.url().await;
    assert!(back.as_str().starts_with(&callback), "{back}");
    assert_eq!(
        query(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(query(&back, "iss").as_deref(), Some(app.base.as_str()));
    let code = AuthorizationCode::new(query(&back, "code").expect("a code"));
    let tokens = client
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id_token");
    let id_verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("ID token verifies");
    assert_eq!(
        claims.access_token_hash(),
        Some(
            &AccessTokenHash::from_token(
                tokens.access_token(),
                id_token.signing_alg().unwrap(),
                id_token.signing_key(&id_verifier).unwrap(),
            )
            .unwrap()
        )
    );
    let amr: Vec<String> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    assert!(amr.contains(&"otp".to_owned()), "{amr:?}");
    let info: CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&http())
        .await
        .expect("userinfo");
    assert_eq!(
        info.email().map(|e| e.as_str()),
        Some("browser@example.com")
    );

    // The sign-in page on a phone-sized screen (prompt=login shows it to a signed-in browser).
    chrome.c().set_window_size(390, 844).await.unwrap();
    chrome
        .c()
        .goto(&format!("{}&prompt=login", url.as_str()))
        .await
        .unwrap();
    chrome.page("4-sign-in-narrow").await;
    chrome.c().set_window_size(1280, 900).await.unwrap();

    // An unregistered redirect URI: the error page, and the browser stays here.
    let mut bad = url.clone();
    let pairs: Vec<(String, String)> = bad
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "redirect_uri" {
                "https://evil.example/cb".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    bad.query_pairs_mut().clear().extend_pairs(pairs);
    chrome.c().goto(bad.as_str()).await.unwrap();
    assert!(chrome.url().await.as_str().starts_with(&app.base));
    assert!(
        chrome
            .text()
            .await
            .contains("This sign-in link is not valid"),
        "{}",
        chrome.text().await
    );
    chrome
        .page_with_status("5-error", Some("400 (Bad Request)"))
        .await;

    // Sign-out asked for by the application without its ID token (the request built by the
    // library from the discovered end_session_endpoint): the person confirms.
    let with_logout = ProviderMetadataWithLogout::discover_async(
        IssuerUrl::new(app.base.clone()).unwrap(),
        &http(),
    )
    .await
    .expect("discovery");
    let end_session = with_logout
        .additional_metadata()
        .end_session_endpoint
        .clone()
        .expect("end_session_endpoint advertised");
    let out = LogoutRequest::from(end_session)
        .set_client_id(ClientId::new(rp.id.clone()))
        .set_post_logout_redirect_uri(PostLogoutRedirectUrl::new(signed_out.clone()).unwrap())
        .set_state(CsrfToken::new("bye".into()))
        .http_get_url();
    chrome.c().goto(out.as_str()).await.unwrap();
    chrome.page("6-sign-out").await;
    chrome.press("button[value=yes]").await;
    let back = chrome.url().await;
    assert_eq!(back.as_str(), format!("{signed_out}?state=bye"));
    let r = http()
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the sign-out ended the client's session");
    chrome
        .c()
        .goto(&app.url("/oauth2/end-session"))
        .await
        .unwrap();
    assert!(
        chrome.text().await.contains("You are signed out"),
        "{}",
        chrome.text().await
    );
    chrome.page("7-signed-out").await;

    assert!(
        chrome.errors.is_empty(),
        "console errors: {:#?}",
        chrome.errors
    );
    chrome.close().await;
}

impl Chrome {
    /// A call of WebDriver's WebAuthn extension (WebAuthn §11.3) for this browser.
    async fn webauthn(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let session = self.c().session_id().await.unwrap().unwrap();
        let mut r = http().request(
            method,
            format!("{}/session/{session}/webauthn/{path}", self.driver_url),
        );
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().await.unwrap().json().await.unwrap();
        assert!(v["value"].get("error").is_none(), "{path}: {v}");
        v["value"].clone()
    }

    /// Adds a virtual authenticator: a CTAP2 platform authenticator with discoverable
    /// credentials and user verification, which consents to every ceremony. Its id.
    async fn add_virtual_authenticator(&self) -> String {
        let v = self
            .webauthn(
                reqwest::Method::POST,
                "authenticator",
                Some(json!({"protocol": "ctap2", "transport": "internal",
                            "hasResidentKey": true, "hasUserVerification": true,
                            "isUserConsenting": true, "isUserVerified": true})),
            )
            .await;
        v.as_str().unwrap_or_else(|| panic!("{v}")).to_owned()
    }

    /// The credentials the virtual authenticator `id` holds (private keys included).
    async fn credentials(&self, id: &str) -> Vec<Value> {
        let v = self
            .webauthn(
                reqwest::Method::GET,
                &format!("authenticator/{id}/credentials"),
                None,
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Keeps the key of the one credential on authenticator `id` (with its sign counter) but
    /// makes it non-discoverable, as a security key that stores no credential would hold it:
    /// autofill no longer offers it.
    async fn make_non_discoverable(&self, id: &str) {
        let held = self.credentials(id).await;
        assert_eq!(held.len(), 1, "{held:?}");
        let credential = &held[0];
        self.webauthn(
            reqwest::Method::DELETE,
            &format!("authenticator/{id}/credentials"),
            None,
        )
        .await;
        let mut again = credential.clone();
        again["isResidentCredential"] = json!(false);
        self.webauthn(
            reqwest::Method::POST,
            &format!("authenticator/{id}/credential"),
            Some(again),
        )
        .await;
    }

    async fn visible(&self, css: &str) -> bool {
        self.c()
            .find(Locator::Css(css))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap()
    }

    /// Waits (30 s at most) until the browser is at a URL starting with `prefix`.
    async fn wait_for_url(&self, prefix: &str) -> url::Url {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let at = self.url().await;
            if at.as_str().starts_with(prefix) {
                return at;
            }
            if std::time::Instant::now() > deadline {
                let text = self.text().await;
                panic!("still at {at}, not {prefix}: {text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_adds_a_passkey_then_signs_in_to_an_application_with_it() {
    let test = "browser::a_person_adds_a_passkey_then_signs_in_to_an_application_with_it";
    let Some((driver, chromium)) = binaries(test) else {
        return;
    };
    // WebAuthn binds passkeys to a domain: the issuer is http://localhost:PORT.
    let app = spawn_with(Opts {
        own_issuer: true,
        localhost: true,
        ..Default::default()
    })
    .await;
    let email = "passkey@example.com";
    let (totp, _) = with_mfa(&app, email).await;
    let site = application_pages().await;
    let callback = format!("{site}/callback");
    let client = first_party_client(&app, &callback).await;
    let authorize = || email_request(&client);
    // The code the browser brought back, redeemed; the ID token's `amr`.
    let amr_of = |back: url::Url, state: CsrfToken, nonce: Nonce, verifier| {
        let client = &client;
        async move {
            let claims = redeem(client, back, state, nonce, verifier).await;
            assert_eq!(claims.email().map(|e| e.as_str()), Some(email));
            claims
                .auth_method_refs()
                .unwrap()
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect::<Vec<_>>()
        }
    };

    let mut chrome = Chrome::start_with(&driver, &chromium, true).await;
    let authenticator = chrome.add_virtual_authenticator().await;

    // Signed in with password and code first; the sign-in page offers a passkey already.
    let (url, _, _, _) = authorize();
    chrome.c().goto(url.as_str()).await.unwrap();
    assert!(
        chrome.visible("#passkey").await,
        "the script shows the passkey button"
    );
    chrome.page("passkey-1-sign-in").await;
    chrome.fill("email", email).await;
    chrome.fill("password", PASSWORD).await;
    chrome
        .press("form[action=\"/oauth2/sign-in\"] button[type=submit]")
        .await;
    app.clock.advance(30);
    chrome.fill("code", &totp.code_at(app.clock.now())).await;
    chrome
        .press("form[action=\"/oauth2/sign-in/mfa\"] button[type=submit]")
        .await;
    chrome.wait_for_url(&callback).await;

    // The account page: no passkey yet; add one.
    chrome
        .c()
        .goto(&format!("{}/account/passkeys", app.issuer))
        .await
        .unwrap();
    assert!(
        chrome.text().await.contains("You have no passkey yet."),
        "{}",
        chrome.text().await
    );
    chrome.page("passkey-2-account-empty").await;
    chrome.fill("name", "This laptop").await;
    chrome.press("#add-passkey").await;
    let text = chrome.text().await;
    assert!(
        text.contains("This laptop") && text.contains("not used yet"),
        "{text}"
    );
    let held = chrome.credentials(&authenticator).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        held[0]["isResidentCredential"], true,
        "a discoverable credential"
    );
    chrome.page("passkey-3-account").await;

    // Another day, no session in this browser: the sign-in page's email field offers the
    // passkey (conditional mediation; the virtual authenticator picks it at once), and the
    // passkey alone signs in, usernameless, its userHandle naming the user.
    chrome.c().delete_all_cookies().await.unwrap();
    let (url, state, nonce, verifier) = authorize();
    chrome.c().goto(url.as_str()).await.unwrap();
    let back = chrome.wait_for_url(&callback).await;
    let amr = amr_of(back, state, nonce, verifier).await;
    assert_eq!(
        amr,
        ["hwk", "mfa"],
        "the passkey alone, with user verification"
    );

    // The same key on a security key that stores no credential: autofill has nothing to
    // offer, so the password comes first, and the second-factor page's passkey button answers.
    chrome.make_non_discoverable(&authenticator).await;
    // Cookies are deleted for the document's own site: go to the provider's first.
    chrome
        .c()
        .goto(&format!("{}/assets/favicon.svg", app.issuer))
        .await
        .unwrap();
    chrome.c().delete_all_cookies().await.unwrap();
    let (url, state, nonce, verifier) = authorize();
    chrome.c().goto(url.as_str()).await.unwrap();
    chrome.fill("email", email).await;
    chrome.fill("password", PASSWORD).await;
    chrome
        .press("form[action=\"/oauth2/sign-in\"] button[type=submit]")
        .await;
    assert!(
        chrome.visible("#passkey").await,
        "the second factor offers the passkey"
    );
    chrome.page("passkey-4-second-factor").await;
    chrome.press("#passkey").await;
    let back = chrome.wait_for_url(&callback).await;
    let amr = amr_of(back, state, nonce, verifier).await;
    assert_eq!(amr, ["pwd", "hwk", "mfa"]);

    // The account page shows the sign-ins.
    chrome
        .c()
        .goto(&format!("{}/account/passkeys", app.issuer))
        .await
        .unwrap();
    assert!(
        chrome.text().await.contains("last used"),
        "{}",
        chrome.text().await
    );
    assert!(
        chrome.errors.is_empty(),
        "console errors: {:#?}",
        chrome.errors
    );
    chrome.close().await;
}

/// Issue #22's walk: a person creates an account on the hosted pages on the way to an
/// application, opens the verification link from the mail a real SMTP server received, forgets
/// the password, resets it through the mailed link, and signs in to the application with the
/// new one. JavaScript is off throughout.
#[tokio::test]
async fn a_person_signs_up_verifies_the_address_and_resets_the_password_in_the_browser() {
    let test = "browser::a_person_signs_up_verifies_the_address_and_resets_the_password";
    let Some((driver, chromium)) = binaries(test) else {
        return;
    };
    let Some(smtp) = crate::email::Smtp::start(test).await else {
        return;
    };
    let mut opts = crate::email::mailing(&smtp);
    opts.own_issuer = true;
    let app = spawn_with(opts).await;
    let site = application_pages().await;
    let callback = format!("{site}/callback");
    let client = first_party_client(&app, &callback).await;
    let authorize = || email_request(&client);
    // The code the browser brought back, redeemed: the verified ID token's email_verified.
    let verified_of = |back: url::Url, state: CsrfToken, nonce: Nonce, verifier| {
        let client = &client;
        async move {
            let claims = redeem(client, back, state, nonce, verifier).await;
            assert_eq!(claims.email().map(|e| e.as_str()), Some("gil@example.com"));
            claims.email_verified()
        }
    };
    let mut chrome = Chrome::start(&driver, &chromium).await;

    // Sign up on the way to the application.
    let (url, state, nonce, verifier) = authorize();
    chrome.c().goto(url.as_str()).await.unwrap();
    chrome.press("#sign-up").await;
    assert!(chrome.text().await.contains("Create your account"));
    chrome.page("email-1-sign-up").await;
    // The name is optional: left empty.
    chrome.fill("email", "gil@example.com").await;
    chrome.fill("password", "password").await;
    chrome.press("button[type=submit]").await;
    assert!(chrome.text().await.contains("Choose another password"));
    chrome.page("email-2-sign-up-weak").await;
    chrome.fill("password", PASSWORD).await;
    chrome.press("button[type=submit]").await;
    let back = chrome.url().await;
    assert!(back.as_str().starts_with(&callback), "{back}");
    assert_eq!(verified_of(back, state, nonce, verifier).await, Some(false));

    // The verification link, from the mail, in the browser.
    let m = smtp.message_to("gil@example.com", "Confirm").await;
    let (link, _) = crate::email::link_in(&m, "/email/verify");
    assert!(link.starts_with(&app.issuer), "{link}");
    chrome.c().goto(&link).await.unwrap();
    assert!(chrome.text().await.contains("Verify your email address"));
    chrome.page("email-3-verify").await;
    chrome.press("button[type=submit]").await;
    assert!(chrome.text().await.contains("Email address verified"));
    chrome.page("email-4-verified").await;

    // Forgot: from the sign-in page's link.
    chrome
        .c()
        .goto(&format!("{}/password/forgot", app.issuer))
        .await
        .unwrap();
    chrome.page("email-5-forgot").await;
    chrome.fill("email", "gil@example.com").await;
    chrome.press("button[type=submit]").await;
    assert!(chrome.text().await.contains("Check your email"));
    chrome.page("email-6-forgot-sent").await;
    let m = smtp.message_to("gil@example.com", "Reset").await;
    let (link, _) = crate::email::link_in(&m, "/password/reset");
    chrome.c().goto(&link).await.unwrap();
    chrome.page("email-7-reset").await;
    let new = "a brand new correct horse";
    chrome.fill("new_password", new).await;
    chrome.fill("confirm_password", new).await;
    chrome.press("button[type=submit]").await;
    assert!(chrome.text().await.contains("Password changed"));
    chrome.page("email-8-reset-done").await;

    // The reset ended the browser session: sign in again, with the new password.
    let (url, state, nonce, verifier) = authorize();
    chrome.c().goto(url.as_str()).await.unwrap();
    assert!(chrome.text().await.contains("Forgot your password?"));
    chrome.fill("email", "gil@example.com").await;
    chrome.fill("password", new).await;
    chrome
        .press("form[action=\"/oauth2/sign-in\"] button[type=submit]")
        .await;
    let back = chrome.url().await;
    assert!(back.as_str().starts_with(&callback), "{back}");
    assert_eq!(verified_of(back, state, nonce, verifier).await, Some(true));
    assert!(chrome.errors.is_empty(), "{:?}", chrome.errors);
    chrome.close().await;
}
