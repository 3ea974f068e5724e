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
    IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PostLogoutRedirectUrl,
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A headless chromium under its own chromedriver, both ended when dropped.
struct Chrome {
    driver: Child,
    driver_url: String,
    client: Option<Client>,
    shots: PathBuf,
    /// Console errors seen so far, by page.
    errors: Vec<String>,
}

impl Chrome {
    async fn start(driver: &Path, chromium: &Path) -> Chrome {
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
        };
        chrome.wait_ready().await;
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // As root (CI) chromium needs --no-sandbox.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
                // No JavaScript at all: the pages must not need it.
                "prefs": {"profile.managed_default_content_settings.javascript": 2},
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
        let scripts = self.c().find_all(Locator::Css("script")).await.unwrap();
        assert!(scripts.is_empty(), "{name}: the page carries a script");
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
