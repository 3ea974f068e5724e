//! The OpenID Connect provider, driven by a real relying party: the `openidconnect` crate (not
//! our code) discovers the provider, builds the authorization request with PKCE and a nonce,
//! exchanges the code and validates the ID token with its own JWKS handling. The browser is a
//! cookie-keeping HTTP client that fills in the hosted forms as a person would.

use crate::helpers::*;
use crate::mfa::with_mfa;
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreUserInfoClaims};
use openidconnect::url::Url;
use openidconnect::{
    AccessTokenHash, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// An OAuth client registered with `edge-idp clients create --json` on the app's database.
pub struct Registered {
    pub id: String,
    pub secret: Option<String>,
}

pub fn register(app: &TestApp, extra: &[&str]) -> Registered {
    register_in(&app.dir, extra)
}

/// [`register`] on the database under the data folder `dir`.
pub fn register_in(dir: &std::path::Path, extra: &[&str]) -> Registered {
    let mut cmd = server_command();
    cmd.arg("clients")
        .args([
            "create",
            "--json",
            "--name",
            "Test app",
            "--redirect-uri",
            REDIRECT,
        ])
        .args(extra)
        .env("DATA_DIR", dir)
        .env("MFA_ENCRYPTION_KEY", MASTER_KEY);
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    Registered {
        id: v["client_id"].as_str().unwrap().to_owned(),
        secret: v["client_secret"].as_str().map(str::to_owned),
    }
}

/// A browser: keeps cookies, follows nothing, reads hidden form fields.
pub struct Browser {
    http: reqwest::Client,
    /// The server forms are posted to.
    pub base: String,
    cookies: HashMap<String, String>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Url {
        let l = self.headers["location"].to_str().unwrap();
        Url::parse(l).unwrap_or_else(|e| panic!("{l}: {e}"))
    }

    fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body))
            + marker.len();
        let end = start + self.body[start..].find('"').unwrap();
        unescape(&self.body[start..end])
    }

    pub fn shows(&self, text: &str) -> bool {
        self.body.contains(text)
    }
}

fn unescape(s: &str) -> String {
    s.replace("&#38;", "&")
        .replace("&amp;", "&")
        .replace("&#61;", "=")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

pub fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self::new_at(&app.base)
    }

    /// A browser posting its forms to the server at `base`.
    pub fn new_at(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let r = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (k, rest) = c.split_once('=').unwrap();
            let v = rest.split(';').next().unwrap();
            self.cookies.insert(k.to_owned(), v.to_owned());
        }
        Page {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.send(req).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(req).await
    }

    /// Fills in the sign-in form of `page`.
    pub async fn sign_in(&mut self, page: &Page, email: &str, password: &str) -> Page {
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.shows("action=\"/oauth2/sign-in\""), "{}", page.body);
        let (csrf, authz) = (page.field("csrf"), page.field("authz"));
        self.post(
            "/oauth2/sign-in",
            &[
                ("csrf", &csrf),
                ("authz", &authz),
                ("email", email),
                ("password", password),
            ],
        )
        .await
    }

    async fn consent(&mut self, page: &Page, decision: &str) -> Page {
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.shows("action=\"/oauth2/consent\""), "{}", page.body);
        let (csrf, authz) = (page.field("csrf"), page.field("authz"));
        self.post(
            "/oauth2/consent",
            &[("csrf", &csrf), ("authz", &authz), ("decision", decision)],
        )
        .await
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Redeems `code` at the token endpoint as the confidential client `rp` (Basic): the status
/// and the JSON answer.
pub async fn exchange(
    app: &TestApp,
    rp: &Registered,
    code: &str,
    verifier: &openidconnect::PkceCodeVerifier,
) -> (u16, Value) {
    let r = http()
        .post(app.url("/oauth2/token"))
        .basic_auth(&rp.id, rp.secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.secret()),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Presents `refresh_token` at the token endpoint as `rp`.
async fn refresh_as(app: &TestApp, rp: &Registered, refresh_token: &str) -> reqwest::Response {
    http()
        .post(app.url("/oauth2/token"))
        .basic_auth(&rp.id, rp.secret.as_deref())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .unwrap()
}

pub async fn oidc_app() -> TestApp {
    spawn_with(Opts {
        own_issuer: true,
        ..Default::default()
    })
    .await
}

pub async fn metadata(app: &TestApp) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http())
        .await
        .expect("discovery")
}

/// The redirect back to the client after `page`: a code with `state` and `iss` untouched.
pub fn code_of(app: &TestApp, page: &Page, state: &CsrfToken) -> AuthorizationCode {
    assert!(
        page.status == 303 || page.status == 302,
        "{} {}",
        page.status,
        page.body
    );
    let to = page.location();
    assert!(to.as_str().starts_with(REDIRECT), "{to}");
    assert_eq!(
        query(&to, "state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(
        query(&to, "iss").as_deref(),
        Some(app.base.as_str()),
        "RFC 9207"
    );
    AuthorizationCode::new(query(&to, "code").unwrap_or_else(|| panic!("no code in {to}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_client_signs_a_user_in_with_pkce_consent_and_gets_verifiable_tokens() {
    let app = oidc_app().await;
    app.signup("rp@example.com").await;
    let rp = register(&app, &[]);
    let meta = metadata(&app).await;
    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(rp.id.clone()),
        rp.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    let mut browser = Browser::new(&app);
    let page = browser.get(url.as_str()).await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers["cache-control"], "no-store");
    let wrong = browser
        .sign_in(&page, "rp@example.com", "not the password")
        .await;
    assert!(
        wrong.shows("The email or password is incorrect."),
        "{}",
        wrong.body
    );
    let consent = browser.sign_in(&wrong, "rp@example.com", PASSWORD).await;
    assert!(consent.shows("See your email address"), "{}", consent.body);
    let done = browser.consent(&consent, "allow").await;
    let code = code_of(&app, &done, &state);

    let tokens = client
        .exchange_code(code.clone())
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http())
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id_token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("ID token verifies");
    let expected = claims.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual, expected);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("rp@example.com"));
    assert!(claims.auth_time().is_some());
    let access = app.claims(tokens.access_token().secret()).await;
    assert_eq!(access["client_id"], rp.id);
    assert_eq!(access["scope"], "openid email offline_access");
    assert!(
        access["org_id"].is_string() && access["role"] == "owner",
        "{access}"
    );

    let info: CoreUserInfoClaims = client
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&http())
        .await
        .expect("userinfo");
    assert_eq!(info.email().map(|e| e.as_str()), Some("rp@example.com"));

    let refresh = tokens
        .refresh_token()
        .expect("refresh token with offline_access");
    let refreshed = client
        .exchange_refresh_token(refresh)
        .unwrap()
        .request_async(&http())
        .await
        .expect("refresh");
    let id2 = refreshed.id_token().expect("ID token on refresh");
    id2.claims(&verifier, |_: Option<&Nonce>| Ok::<(), String>(()))
        .expect("refreshed ID token verifies");

    // The code again: refused, and the session its first use started is revoked.
    let again = client
        .exchange_code(code)
        .unwrap()
        .set_pkce_verifier(PkceCodeChallenge::new_random_sha256().1)
        .request_async(&http())
        .await;
    assert!(again.is_err(), "a code works once");
    let after = client
        .exchange_refresh_token(refreshed.refresh_token().unwrap())
        .unwrap()
        .request_async(&http())
        .await;
    assert!(after.is_err(), "reusing the code revoked its session");

    // Single sign-on: a second, first-party public client gets a code without any page, and
    // redeems it as the stock library does for a client without a secret (`none`: its
    // client_id in the form, the PKCE verifier as its proof).
    let spa = register(&app, &["--public", "--first-party"]);
    assert!(spa.secret.is_none());
    let spa_client = CoreClient::from_provider_metadata(
        metadata(&app).await,
        ClientId::new(spa.id.clone()),
        None,
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, spa_verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, spa_state, spa_nonce) = spa_client
        .authorize_url(
            AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let sso = browser.get(url.as_str()).await;
    let spa_code = code_of(&app, &sso, &spa_state);
    let spa_tokens = spa_client
        .exchange_code(spa_code)
        .unwrap()
        .set_pkce_verifier(spa_verifier)
        .request_async(&http())
        .await
        .expect("a public client's code exchange");
    spa_tokens
        .id_token()
        .expect("id_token")
        .claims(&spa_client.id_token_verifier(), &spa_nonce)
        .expect("the public client's ID token verifies");
    // Consent is remembered: the first client asks again without a page.
    let (url, _) = pkce_request(&app.base, &rp.id, "openid+email", "s3", "&prompt=none");
    let again = browser.get(&url).await;
    code_of(&app, &again, &CsrfToken::new("s3".into()));
}

/// An authorization request to the server at `base` for `client_id` with PKCE (S256) and
/// `scope` (already URL-encoded), `state`, and `extra` parameters appended: the URL and the
/// verifier the code exchange needs.
pub fn pkce_request(
    base: &str,
    client_id: &str,
    scope: &str,
    state: &str,
    extra: &str,
) -> (String, openidconnect::PkceCodeVerifier) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = format!(
        "{base}/oauth2/authorize?response_type=code&client_id={client_id}&redirect_uri={REDIRECT}&scope={scope}&state={state}&code_challenge={}&code_challenge_method=S256{extra}",
        challenge.as_str()
    );
    (url, verifier)
}

fn authorize_url(app: &TestApp, client_id: &str, extra: &str) -> String {
    pkce_request(&app.base, client_id, "openid", "xyz", extra).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_max_age_and_mfa_decide_which_pages_are_shown() {
    let app = oidc_app().await;
    let (totp, _) = with_mfa(&app, "twofa@example.com").await;
    let rp = register(&app, &["--first-party"]);

    // prompt=none without a session: an error for the client, no page.
    let mut browser = Browser::new(&app);
    let r = browser
        .get(&authorize_url(&app, &rp.id, "&prompt=none"))
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        query(&r.location(), "error").as_deref(),
        Some("login_required")
    );
    assert_eq!(query(&r.location(), "state").as_deref(), Some("xyz"));

    // Password, then the second factor's page, then the code.
    let page = browser.get(&authorize_url(&app, &rp.id, "")).await;
    let mfa = browser.sign_in(&page, "twofa@example.com", PASSWORD).await;
    assert!(mfa.shows("action=\"/oauth2/sign-in/mfa\""), "{}", mfa.body);
    let form = |code: &str| {
        vec![
            ("csrf".to_owned(), mfa.field("csrf")),
            ("authz".to_owned(), mfa.field("authz")),
            ("mfa_token".to_owned(), mfa.field("mfa_token")),
            ("code".to_owned(), code.to_owned()),
        ]
    };
    let wrong: Vec<(String, String)> = form("000000");
    let wrong: Vec<(&str, &str)> = wrong
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let again = browser.post("/oauth2/sign-in/mfa", &wrong).await;
    assert!(again.shows("That code is not right"), "{}", again.body);
    // The next TOTP step: the one enrollment was confirmed with is spent.
    app.clock.advance(30);
    let right = form(&totp.code_at(app.clock.now()));
    let right: Vec<(&str, &str)> = right
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let done = browser.post("/oauth2/sign-in/mfa", &right).await;
    code_of(&app, &done, &CsrfToken::new("xyz".into()));

    // With the session: prompt=none answers at once; prompt=login and an exceeded max_age
    // show the sign-in page again.
    let r = browser
        .get(&authorize_url(&app, &rp.id, "&prompt=none"))
        .await;
    code_of(&app, &r, &CsrfToken::new("xyz".into()));
    let r = browser
        .get(&authorize_url(&app, &rp.id, "&prompt=login"))
        .await;
    assert!(r.shows("action=\"/oauth2/sign-in\""), "{}", r.body);
    app.clock.advance(30);
    let r = browser
        .get(&authorize_url(&app, &rp.id, "&max_age=10"))
        .await;
    assert!(
        r.shows("action=\"/oauth2/sign-in\""),
        "max_age exceeded: {}",
        r.body
    );
    let r = browser
        .get(&authorize_url(&app, &rp.id, "&max_age=10000"))
        .await;
    code_of(&app, &r, &CsrfToken::new("xyz".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_the_code_flow_are_refused() {
    let app = oidc_app().await;
    app.signup("victim@example.com").await;
    let rp = register(&app, &["--first-party"]);
    let other = register(&app, &["--first-party"]);
    let public = register(&app, &["--public", "--first-party"]);
    let mut browser = Browser::new(&app);

    // Unregistered or prefix-matched redirect URIs: an error page, never a redirect.
    for bad in [
        "http://127.0.0.1:9/callback/evil",
        "http://127.0.0.1:9/callbac",
        "https://evil.example/callback",
    ] {
        let url = authorize_url(&app, &rp.id, "").replace(REDIRECT, bad);
        let r = browser.get(&url).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.headers.get("location").is_none(), "{bad}: redirected");
        assert!(r.shows("not registered"), "{}", r.body);
    }
    // A public client without PKCE: an error back at its redirect URI.
    let no_pkce = format!(
        "{}/oauth2/authorize?response_type=code&client_id={}&redirect_uri={REDIRECT}&scope=openid&state=p",
        app.base, public.id
    );
    let r = browser.get(&no_pkce).await;
    assert_eq!(
        query(&r.location(), "error").as_deref(),
        Some("invalid_request")
    );

    // A form without its CSRF token.
    let page = browser.get(&authorize_url(&app, &rp.id, "")).await;
    let r = browser
        .post(
            "/oauth2/sign-in",
            &[
                ("authz", &page.field("authz")),
                ("email", "victim@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    // A code, with its verifier kept to try the attacks one by one.
    let (url, verifier) = pkce_request(&app.base, &rp.id, "openid", "a", "");
    let page = browser.get(&url).await;
    let done = browser.sign_in(&page, "victim@example.com", PASSWORD).await;
    let code = code_of(&app, &done, &CsrfToken::new("a".into()));
    let token = |id: &str, secret: &str, form: Vec<(&'static str, String)>| {
        let (id, secret) = (id.to_owned(), secret.to_owned());
        let url = app.url("/oauth2/token");
        async move {
            let r = http()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let www = r
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, www, r.json::<Value>().await.unwrap())
        }
    };
    let exchange = |verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.secret().clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };
    let secret = rp.secret.clone().unwrap();
    let (s, www, b) = token(&rp.id, "wrong-secret", exchange(verifier.secret())).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    assert!(www.unwrap().starts_with("Basic"));
    let (s, _, b) = token(
        &other.id,
        other.secret.as_deref().unwrap(),
        exchange(verifier.secret()),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "another client's code"
    );
    let wrong_verifier = PkceCodeChallenge::new_random_sha256().1;
    let (s, _, b) = token(&rp.id, &secret, exchange(wrong_verifier.secret())).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "wrong verifier"
    );
    // None of those burned the code: its client still redeems it, once.
    let (s, _, b) = token(&rp.id, &secret, exchange(verifier.secret())).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert!(
        b.get("refresh_token").is_none(),
        "no offline_access, no refresh token"
    );
    let (s, _, b) = token(&rp.id, &secret, exchange(verifier.secret())).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "second use"
    );

    // An expired code.
    let page = browser.get(&url).await;
    let code = code_of(&app, &page, &CsrfToken::new("a".into()));
    app.clock.advance(61);
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("code", code.secret().clone()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("code_verifier", verifier.secret().clone()),
    ];
    let (s, _, b) = token(&rp.id, &secret, form).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("invalid_grant")),
        "expired"
    );

    // Grants the client is not registered for, and unknown ones.
    let (s, _, b) = token(
        &rp.id,
        &secret,
        vec![("grant_type", "client_credentials".into())],
    )
    .await;
    assert_eq!((s, b["error"].as_str()), (400, Some("unauthorized_client")));
    let (s, _, b) = token(&rp.id, &secret, vec![("grant_type", "password".into())]).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_give_a_client_its_own_token_that_no_user_endpoint_accepts() {
    let app = oidc_app().await;
    let svc = register(
        &app,
        &["--grant", "client_credentials", "--scope", "reports:read"],
    );
    let r = http()
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &svc.id),
            ("client_secret", svc.secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["scope"], "reports:read");
    assert!(b.get("refresh_token").is_none() && b.get("id_token").is_none());
    let token = b["access_token"].as_str().unwrap();
    let claims = app.claims(token).await;
    assert_eq!(claims["sub"], svc.id);
    assert_eq!(claims["client_id"], svc.id);
    assert!(claims.get("email").is_none() && claims.get("org_id").is_none());
    let me = call(&app, reqwest::Method::GET, "/auth/me", token, None).await;
    assert_eq!(me.status(), 401, "a client's token is no user's");
    let info = http()
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_advertises_the_endpoints_that_answer() {
    let app = oidc_app().await;
    let meta: Value = app
        .get("/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    let rfc8414: Value = app
        .get("/.well-known/oauth-authorization-server")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(meta, rfc8414);
    assert_eq!(meta["issuer"], app.base);
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    for s in ["openid", "profile", "email", "offline_access"] {
        assert!(
            meta["scopes_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == s),
            "{s}"
        );
    }
    // Every advertised endpoint is served (never the router's 404).
    for key in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "introspection_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
        "jwks_uri",
    ] {
        let url = meta[key].as_str().unwrap();
        assert!(url.starts_with(&app.base), "{key}: {url}");
        let path = &url[app.base.len()..];
        assert!(
            edge_idp::http::route_of(path).is_some(),
            "{key} {path} is not routed"
        );
    }
}

/// Signs `email` in to `rp` with `openid offline_access` through the hosted page and exchanges
/// the code: the authorization URL (to come back to) and the token response.
async fn sign_in_offline(
    app: &TestApp,
    browser: &mut Browser,
    rp: &Registered,
    email: &str,
) -> (String, Value) {
    let (url, verifier) = pkce_request(&app.base, &rp.id, "openid+offline_access", "st", "");
    let page = browser.get(&url).await;
    let done = browser.sign_in(&page, email, PASSWORD).await;
    let code = code_of(app, &done, &CsrfToken::new("st".into()));
    let (_, tokens) = exchange(app, rp, code.secret(), &verifier).await;
    assert!(tokens["access_token"].is_string(), "{tokens}");
    (url, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_refresh_token_is_its_own_and_logging_out_everywhere_ends_single_sign_on() {
    let app = oidc_app().await;
    app.signup("sso@example.com").await;
    let rp = register(&app, &["--first-party"]);
    let other = register(&app, &["--first-party"]);
    let mut browser = Browser::new(&app);
    let (url, tokens) = sign_in_offline(&app, &mut browser, &rp, "sso@example.com").await;
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("offline_access")
        .to_owned();
    // Neither another client nor the first-party API can rotate it, and trying burns nothing.
    let r = refresh_as(&app, &other, &refresh).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = app
        .post(
            "/auth/refresh",
            &serde_json::json!({"refresh_token": refresh}),
        )
        .await;
    assert_problem(r, 401, "invalid_refresh_token").await;
    let r = refresh_as(&app, &rp, &refresh).await;
    assert_eq!(r.status(), 200, "its own client still rotates it");
    let rotated: Value = r.json().await.unwrap();

    // A code the browser session got just before it ended (held back by someone with the
    // cookie) must not start a session after "log out everywhere".
    let (held, held_verifier) =
        pkce_request(&app.base, &rp.id, "openid+offline_access", "held", "");
    let held_page = browser.get(&held).await;
    let held_code = code_of(&app, &held_page, &CsrfToken::new("held".into()));

    // "Log out everywhere" on the JSON API ends the browser session too: the next
    // authorization asks for the password again.
    let first_party = app.login("sso@example.com").await;
    let r = app
        .post(
            "/auth/logout",
            &serde_json::json!({"refresh_token": first_party["refresh_token"], "all": true}),
        )
        .await;
    assert_eq!(r.status(), 204);
    let again = browser.get(&url).await;
    assert!(again.shows("action=\"/oauth2/sign-in\""), "{}", again.body);
    let r = http()
        .post(app.url("/oauth2/token"))
        .basic_auth(&rp.id, rp.secret.as_deref())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rotated["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "the client's session ended with the others"
    );
    let (status, body) = exchange(&app, &rp, held_code.secret(), &held_verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "a code from the ended browser session starts nothing: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_tells_resource_servers_what_is_live_and_revocation_ends_a_clients_session() {
    let app = oidc_app().await;
    app.signup("intro@example.com").await;
    let rp = register(&app, &["--first-party"]);
    let api = register(&app, &["--grant", "client_credentials", "--scope", "api"]);
    let spa = register(&app, &["--public", "--first-party"]);
    let mut browser = Browser::new(&app);
    let (_, tokens) = sign_in_offline(&app, &mut browser, &rp, "intro@example.com").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    // A resource server (another confidential client) asks.
    let introspect = |token: &str, id: &str, secret: Option<&str>| {
        let form = [
            ("token", token.to_owned()),
            ("client_id", id.to_owned()),
            ("client_secret", secret.unwrap_or("").to_owned()),
        ];
        let req = http().post(app.url("/oauth2/introspect")).form(&form);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let api_secret = api.secret.as_deref();
    let (s, b) = introspect(&access, &api.id, api_secret).await;
    assert_eq!(s, 200);
    assert_eq!(b["active"], true, "{b}");
    assert_eq!(b["client_id"], rp.id);
    assert_eq!(b["scope"], "openid offline_access");
    assert_eq!(b["iss"], app.base);
    assert_eq!(b["token_type"], "Bearer");
    assert!(
        b["sub"].is_string() && b["exp"].is_i64() && b["iat"].is_i64(),
        "{b}"
    );
    let (_, b) = introspect(&refresh, &api.id, api_secret).await;
    assert_eq!(b["active"], true, "{b}");
    assert_eq!(b["token_type"], "refresh_token");
    let (_, b) = introspect("not-a-token", &api.id, api_secret).await;
    assert_eq!(b, serde_json::json!({"active": false}));
    let (s, b) = introspect(&access, &spa.id, None).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("invalid_client")),
        "public clients may not introspect"
    );
    let (s, _) = introspect(&access, &api.id, Some("wrong")).await;
    assert_eq!(s, 401);

    // Revocation: another client's attempt changes nothing; the owner's ends the session.
    let revoke = |id: &str, secret: Option<&str>, token: &str| {
        let form = [
            ("token", token.to_owned()),
            ("client_id", id.to_owned()),
            ("client_secret", secret.unwrap_or("").to_owned()),
        ];
        http().post(app.url("/oauth2/revoke")).form(&form).send()
    };
    let r = revoke(&api.id, api_secret, &refresh).await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, b) = introspect(&refresh, &api.id, api_secret).await;
    assert_eq!(b["active"], true, "another client cannot revoke it");
    let r = revoke(&rp.id, rp.secret.as_deref(), &refresh)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, b) = introspect(&refresh, &api.id, api_secret).await;
    assert_eq!(b["active"], false, "the family is revoked");
    let (_, b) = introspect(&access, &api.id, api_secret).await;
    assert_eq!(
        b["active"], false,
        "its session's access tokens are inactive at once"
    );
    let r = revoke(&rp.id, rp.secret.as_deref(), "unknown-token")
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "unknown tokens answer 200");
}

const BYE: &str = "http://127.0.0.1:9/signed-out";

/// An end-session request's URL with `pairs`.
fn end_session_url(app: &TestApp, pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&app.url("/oauth2/end-session")).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rp_initiated_logout_ends_the_browser_session_and_returns_only_to_a_registered_address() {
    let app = oidc_app().await;
    app.signup("bye@example.com").await;
    let rp = register(&app, &["--first-party", "--post-logout-redirect-uri", BYE]);
    let other = register(
        &app,
        &[
            "--first-party",
            "--post-logout-redirect-uri",
            "http://127.0.0.1:9/other-signed-out",
        ],
    );
    let mut browser = Browser::new(&app);
    let (url, tokens) = sign_in_offline(&app, &mut browser, &rp, "bye@example.com").await;
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    // Never an open redirect: each of these is an error page without a Location, and signs
    // no one out.
    let forged = {
        let at = id_token.len() - 20;
        let c = if &id_token[at..at + 1] == "A" {
            "B"
        } else {
            "A"
        };
        format!("{}{c}{}", &id_token[..at], &id_token[at + 1..])
    };
    let with_query = format!("{BYE}?next=http://evil.example/");
    let refused: [(&str, Vec<(&str, &str)>); 6] = [
        (
            "an unregistered address",
            vec![
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", "http://evil.example/"),
            ],
        ),
        (
            "a registered address with a query added",
            vec![
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", with_query.as_str()),
            ],
        ),
        (
            "another client's address",
            vec![
                ("id_token_hint", id_token.as_str()),
                (
                    "post_logout_redirect_uri",
                    "http://127.0.0.1:9/other-signed-out",
                ),
            ],
        ),
        (
            "an address without a client",
            vec![("post_logout_redirect_uri", BYE)],
        ),
        (
            "a hint for another client than client_id",
            vec![
                ("id_token_hint", id_token.as_str()),
                ("client_id", other.id.as_str()),
            ],
        ),
        ("a forged hint", vec![("id_token_hint", forged.as_str())]),
    ];
    for (what, pairs) in &refused {
        let page = browser.get(&end_session_url(&app, pairs)).await;
        assert_eq!(page.status, 400, "{what}: {}", page.body);
        assert!(page.headers.get("location").is_none(), "{what}");
        assert!(page.shows("This sign-out link is not valid"), "{what}");
    }
    // Without a hint the user is asked first; the question itself changes nothing, and its
    // form needs its CSRF token.
    let ask = browser
        .get(&end_session_url(
            &app,
            &[
                ("client_id", rp.id.as_str()),
                ("post_logout_redirect_uri", BYE),
            ],
        ))
        .await;
    assert_eq!(ask.status, 200, "{}", ask.body);
    assert!(ask.shows("Sign out?") && ask.shows("action=\"/oauth2/end-session\""));
    assert_eq!(
        ask.headers["content-security-policy"],
        edge_idp::http::pages::PAGE_CSP
    );
    let forged_form = browser
        .post(
            "/oauth2/end-session",
            &[
                ("client_id", rp.id.as_str()),
                ("post_logout_redirect_uri", BYE),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(forged_form.status, 403, "{}", forged_form.body);
    let sso = browser.get(&url).await;
    assert_eq!(sso.status, 302, "still signed in: {}", sso.body);

    // With its own ID token the client signs its user out at once and gets `state` back.
    let out = browser
        .get(&end_session_url(
            &app,
            &[
                ("id_token_hint", id_token.as_str()),
                ("post_logout_redirect_uri", BYE),
                ("state", "s t&ate"),
            ],
        ))
        .await;
    assert_eq!(out.status, 302, "{}", out.body);
    let to = out.location();
    assert!(to.as_str().starts_with(BYE), "{to}");
    assert_eq!(query(&to, "state").as_deref(), Some("s t&ate"));
    let cleared = out.headers["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("edge_idp_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // The sessions the browser session started end with it: the refresh token, the access
    // token, single sign-on.
    let r = refresh_as(&app, &rp, &refresh).await;
    assert_eq!(r.status(), 400);
    let r = http()
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let again = browser.get(&url).await;
    assert!(again.shows("action=\"/oauth2/sign-in\""), "{}", again.body);
    // The same request again has nothing left to end: the signed-out page or the address.
    let page = browser
        .get(&end_session_url(
            &app,
            &[("id_token_hint", id_token.as_str())],
        ))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.shows("You are signed out"), "{}", page.body);

    // Without a hint, the user's confirmation signs out and goes back to the client.
    let (_, tokens) = sign_in_offline(&app, &mut browser, &rp, "bye@example.com").await;
    let ask = browser
        .get(&end_session_url(
            &app,
            &[
                ("client_id", rp.id.as_str()),
                ("post_logout_redirect_uri", BYE),
                ("state", "x"),
            ],
        ))
        .await;
    let mut form: Vec<(&str, String)> = ["csrf", "client_id", "post_logout_redirect_uri", "state"]
        .iter()
        .map(|n| (*n, ask.field(n)))
        .collect();
    form.push(("confirm", "yes".into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = browser.post("/oauth2/end-session", &form).await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.location().as_str(), format!("{BYE}?state=x"));
    let r = http()
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the confirmed sign-out ended the client's session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_hint_at_authorization_must_name_the_signed_in_user() {
    let app = oidc_app().await;
    app.signup("hint@example.com").await;
    app.signup("other-hint@example.com").await;
    let rp = register(&app, &["--first-party"]);
    let mut browser = Browser::new(&app);
    let (_, tokens) = sign_in_offline(&app, &mut browser, &rp, "hint@example.com").await;
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let mut other_browser = Browser::new(&app);
    let (_, other_tokens) =
        sign_in_offline(&app, &mut other_browser, &rp, "other-hint@example.com").await;
    let ask = |hint: &str| {
        format!(
            "{}&prompt=none&id_token_hint={hint}",
            authorize_url(&app, &rp.id, "")
        )
    };
    // oidcc-id-token-hint: the signed-in user's own ID token, prompt=none: a code at once.
    let page = browser.get(&ask(&id_token)).await;
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(
        query(&page.location(), "code").is_some(),
        "{}",
        page.location()
    );
    // Another user's: this browser's session does not count.
    let page = browser
        .get(&ask(other_tokens["id_token"].as_str().unwrap()))
        .await;
    assert_eq!(
        query(&page.location(), "error").as_deref(),
        Some("login_required")
    );
    // Not one of ours.
    let page = browser.get(&ask("eyJhbGciOiJub25lIn0.e30.")).await;
    assert_eq!(
        query(&page.location(), "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_lists_and_withdraws_what_they_granted_and_the_clients_tokens_end_with_it() {
    let app = oidc_app().await;
    app.signup("grants@example.com").await;
    app.signup("someone-else@example.com").await;
    let rp = register(&app, &[]);
    let mut browser = Browser::new(&app);
    let (url, verifier) = pkce_request(&app.base, &rp.id, "openid+offline_access", "st", "");
    let page = browser.get(&url).await;
    let consent = browser.sign_in(&page, "grants@example.com", PASSWORD).await;
    let done = browser.consent(&consent, "allow").await;
    let code = code_of(&app, &done, &CsrfToken::new("st".into()));
    let (_, tokens) = exchange(&app, &rp, code.secret(), &verifier).await;
    let refresh = tokens["refresh_token"].as_str().expect("offline_access");

    let me = app.login("grants@example.com").await;
    let bearer = me["access_token"].as_str().unwrap();
    let r = app.get_as("/auth/consents", bearer).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let list: Value = r.json().await.unwrap();
    let grants = list["consents"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{list}");
    assert_eq!(grants[0]["client_id"], rp.id);
    assert_eq!(grants[0]["client_name"], "Test app");
    assert_eq!(grants[0]["scope"], "openid offline_access");
    assert!(grants[0]["granted_at"].as_str().unwrap().ends_with('Z'));
    // Another user sees none of it and cannot withdraw it.
    let other = app.login("someone-else@example.com").await;
    let other_bearer = other["access_token"].as_str().unwrap();
    let r = app.get_as("/auth/consents", other_bearer).await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["consents"],
        serde_json::json!([])
    );
    let withdraw = |bearer: &str| {
        app.http
            .delete(app.url(&format!("/auth/consents/{}", rp.id)))
            .bearer_auth(bearer)
            .send()
    };
    assert_problem(withdraw(other_bearer).await.unwrap(), 404, "not_found").await;

    // Withdrawn: the client's refresh token ends, and the next authorization asks again.
    let r = withdraw(bearer).await.unwrap();
    assert_eq!(r.status(), 204);
    let r = refresh_as(&app, &rp, refresh).await;
    assert_eq!(r.status(), 400, "the client's session ended with the grant");
    let r = http()
        .get(app.url("/oauth2/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let again = browser.get(&url).await;
    assert!(again.shows("action=\"/oauth2/consent\""), "{}", again.body);
    // The user's own first-party session is untouched; a second withdrawal finds nothing.
    let r = app.get_as("/auth/consents", bearer).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["consents"],
        serde_json::json!([])
    );
    assert_problem(withdraw(bearer).await.unwrap(), 404, "not_found").await;
}
