//! HTTP: the route table, the warp filters that dispatch to handlers, and the server edge.
//!
//! - [`ROUTES`] lists every path and its methods; the router's guard answers 404 and 405 (with
//!   `Allow`) from it before any handler runs, and tests compare it with API.md.
//! - Handlers, one module per group of routes: [`auth`], [`mfa`], [`account`], [`orgs`],
//!   [`discovery`], [`passkeys`], [`email`] (mailed links), [`oauth`] (token, userinfo), [`pages`] (the hosted HTML pages). Each parses, calls one function of the application layer (`crate::app`)
//!   and renders; none touches storage or actors.
//! - [`extract`]: bodies, client IP, validation. [`bearer`]: the Bearer filter.
//! - [`reply`]: JSON, `no-store`, rate-limit headers. [`views`]: the answers' JSON shapes.
//! - [`error`]: [`error::ApiError`] and the single mapping to problem responses.
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the handlers and their types.
//! - [`server`]: accept loop, request ids, security headers, in-flight bound, access log.

pub mod account;
pub mod auth;
pub mod bearer;
pub mod discovery;
pub mod email;
pub mod error;
pub mod extract;
pub mod mfa;
pub mod oauth;
pub mod openapi;
pub mod orgs;
pub mod pages;
pub mod passkeys;
pub mod reply;
pub mod server;
pub mod views;

use crate::app::SharedApp;
use error::ApiError;
use extract::{client, form_body, json_body, with_state};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

/// Every route: path template (`{name}` for a parameter) and its methods.
pub const ROUTES: &[(&str, &str)] = &[
    ("/auth/signup", "POST"),
    ("/auth/login", "POST"),
    ("/auth/refresh", "POST"),
    ("/auth/logout", "POST"),
    ("/auth/mfa/enroll", "POST"),
    ("/auth/mfa/confirm", "POST"),
    ("/auth/mfa/verify", "POST"),
    ("/auth/mfa/disable", "POST"),
    ("/auth/passkeys", "GET"),
    ("/auth/passkeys/{id}", "PATCH, DELETE"),
    ("/auth/passkeys/register/begin", "POST"),
    ("/auth/passkeys/register/finish", "POST"),
    ("/auth/passkeys/login/begin", "POST"),
    ("/auth/passkeys/login/finish", "POST"),
    ("/auth/switch-org", "POST"),
    ("/auth/me", "GET"),
    ("/auth/sessions", "GET"),
    ("/auth/sessions/{id}", "DELETE"),
    ("/auth/consents", "GET"),
    ("/auth/consents/{client_id}", "DELETE"),
    ("/auth/password", "POST"),
    ("/auth/password/forgot", "POST"),
    ("/auth/password/reset", "POST"),
    ("/auth/email", "POST"),
    ("/auth/email/verify", "POST"),
    ("/auth/email/verify/resend", "POST"),
    ("/auth/invitations", "GET"),
    ("/auth/invitations/{id}/accept", "POST"),
    ("/auth/invitations/{id}/decline", "POST"),
    ("/orgs", "GET, POST"),
    ("/orgs/{org_id}/invitations", "POST"),
    ("/orgs/{org_id}/invitations/{id}", "DELETE"),
    ("/orgs/{org_id}/members/{user_id}", "DELETE"),
    ("/oauth2/authorize", "GET, POST"),
    ("/oauth2/sign-in", "POST"),
    ("/oauth2/sign-up", "POST"),
    ("/oauth2/sign-in/mfa", "POST"),
    ("/oauth2/sign-in/passkey", "POST"),
    ("/account/passkeys", "GET, POST"),
    ("/account/passkeys/begin", "POST"),
    ("/account/passkeys/{id}/rename", "POST"),
    ("/account/passkeys/{id}/delete", "POST"),
    ("/oauth2/consent", "POST"),
    ("/email/verify", "GET, POST"),
    ("/password/forgot", "GET, POST"),
    ("/password/reset", "GET, POST"),
    ("/oauth2/token", "POST"),
    ("/oauth2/userinfo", "GET, POST"),
    ("/oauth2/introspect", "POST"),
    ("/oauth2/revoke", "POST"),
    ("/oauth2/end-session", "GET, POST"),
    ("/assets/edge-idp.css", "GET"),
    ("/assets/favicon.svg", "GET"),
    ("/assets/passkeys.js", "GET"),
    ("/.well-known/jwks.json", "GET"),
    ("/.well-known/openid-configuration", "GET"),
    ("/.well-known/oauth-authorization-server", "GET"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
    ("/metrics", "GET"),
    ("/openapi.json", "GET"),
];

/// The template of `path` and the methods it allows, if it is a route.
pub fn route_of(path: &str) -> Option<(&'static str, &'static str)> {
    ROUTES
        .iter()
        .copied()
        .find(|(tmpl, _)| template_matches(tmpl, path))
}

/// Segment by segment, a `{name}` matching any non-empty segment. This runs twice per request
/// over the whole table, so a template without parameters is one comparison and nothing
/// allocates.
fn template_matches(tmpl: &str, path: &str) -> bool {
    if tmpl == path {
        return true;
    }
    if !tmpl.as_bytes().contains(&b'{') {
        return false;
    }
    let (mut t, mut p) = (tmpl.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b || (a.starts_with('{') && !b.is_empty()) => {}
            _ => return false,
        }
    }
}

fn guard() -> impl Filter<Extract = (), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and_then(|m: Method, p: warp::path::FullPath| async move {
            match route_of(p.as_str()) {
                None => Err(warp::reject::custom(ApiError::NotFound)),
                Some((_, allow)) if !allow.split(", ").any(|a| a == m.as_str()) => {
                    Err(warp::reject::custom(ApiError::MethodNotAllowed(allow)))
                }
                Some(_) => Ok(()),
            }
        })
        .untuple_one()
}

/// The whole router: guard, endpoints, and the one `recover`.
pub fn routes(state: SharedApp) -> BoxedFilter<(Response,)> {
    let st = || with_state(state.clone());
    let cl = || client(state.clone());
    let post_json = |p: BoxedFilter<()>| p.and(warp::post()).and(st()).and(cl()).and(json_body());

    let signup = post_json(warp::path!("auth" / "signup").boxed())
        .then(|s, c, b| async move { reply::respond(auth::signup(s, c, b).await) });
    let login = post_json(warp::path!("auth" / "login").boxed())
        .then(|s, c, b| async move { reply::respond(auth::login(s, c, b).await) });
    let refresh = post_json(warp::path!("auth" / "refresh").boxed())
        .then(|s, c, b| async move { reply::respond(auth::refresh(s, c, b).await) });
    let logout = post_json(warp::path!("auth" / "logout").boxed())
        .then(|s, c, b| async move { reply::respond(auth::logout(s, c, b).await) });

    let auth = || bearer::bearer(state.clone());
    let mfa_enroll = warp::path!("auth" / "mfa" / "enroll")
        .and(warp::post())
        .and(st())
        .and(auth())
        .then(|s, a| async move { reply::respond(mfa::enroll(s, a).await) });
    let mfa_confirm = warp::path!("auth" / "mfa" / "confirm")
        .and(warp::post())
        .and(st())
        .and(auth())
        .and(json_body())
        .then(|s, a, b| async move { reply::respond(mfa::confirm(s, a, b).await) });
    let mfa_disable = warp::path!("auth" / "mfa" / "disable")
        .and(warp::post())
        .and(st())
        .and(auth())
        .and(json_body())
        .then(|s, a, b| async move { reply::respond(mfa::disable(s, a, b).await) });
    let mfa_verify = post_json(warp::path!("auth" / "mfa" / "verify").boxed())
        .then(|s, c, b| async move { reply::respond(mfa::verify(s, c, b).await) });

    let account = account_routes(&state);
    let passkeys = passkey_routes(&state);
    let oauth = oauth_routes(&state);
    let account_pages = account_page_routes(&state);

    let jwks = warp::path!(".well-known" / "jwks.json")
        .and(warp::get())
        .and(st())
        .then(discovery::jwks);
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .then(discovery::healthz);
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(st())
        .and(warp::header::optional::<String>("authorization"))
        .then(discovery::metrics);
    let openapi = warp::path!("openapi.json")
        .and(warp::get())
        .then(openapi::openapi_json);
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(st())
        .then(discovery::readyz);

    // Second factors (TOTP and passkeys), boxed as one group: each `or` nests the filter's
    // type, and a long chain costs the compiler more than it saves.
    let second_factor = mfa_enroll
        .or(mfa_confirm)
        .unify()
        .or(mfa_verify)
        .unify()
        .or(mfa_disable)
        .unify()
        .or(passkeys)
        .unify()
        .boxed();
    let hosted = oauth
        .or(account_pages)
        .unify()
        .or(email_routes(&state))
        .unify()
        .boxed();

    // The guard admits only a known path with an allowed method, and paths are disjoint, so
    // exactly one branch matches: the order is for speed. Warp tries branches in turn, so the
    // hot ones (JWKS fetches, Bearer checks, refreshes) come first.
    guard()
        .and(
            jwks.or(account)
                .unify()
                .or(refresh)
                .unify()
                .or(signup)
                .unify()
                .or(login)
                .unify()
                .or(logout)
                .unify()
                .or(second_factor)
                .unify()
                .or(hosted)
                .unify()
                .or(healthz)
                .unify()
                .or(readyz)
                .unify()
                .or(metrics)
                .unify()
                .or(openapi)
                .unify(),
        )
        .recover(error::recover)
        .unify()
        .boxed()
}

/// The router of the internal metrics listener (`METRICS_LISTEN_ADDR`): `/metrics` and nothing
/// else, without a token.
pub fn metrics_routes(state: SharedApp) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .map(|s: SharedApp| discovery::render_metrics(&s))
        .recover(error::recover)
        .unify()
        .boxed()
}

/// The OpenID Connect provider's endpoints and hosted pages, boxed as one group.
fn oauth_routes(state: &SharedApp) -> BoxedFilter<(Response,)> {
    let st = || with_state(state.clone());
    let cl = || client(state.clone());
    let cookie = || warp::header::optional::<String>("cookie");
    let authorization = || warp::header::optional::<String>("authorization");
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();

    let authorize_get = warp::path!("oauth2" / "authorize")
        .and(warp::get())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(raw_query)
        .then(pages::authorize_get);
    let authorize_post = warp::path!("oauth2" / "authorize")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::authorize_post);
    let sign_in = warp::path!("oauth2" / "sign-in")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::sign_in);
    let sign_in_mfa = warp::path!("oauth2" / "sign-in" / "mfa")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::sign_in_mfa);
    let consent = warp::path!("oauth2" / "consent")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::consent);
    let token = warp::path!("oauth2" / "token")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(authorization())
        .and(form_body())
        .then(oauth::token);
    let userinfo_get = warp::path!("oauth2" / "userinfo")
        .and(warp::get())
        .and(st())
        .and(cl())
        .and(authorization())
        .then(|s, c, a| oauth::userinfo(s, c, a, None));
    let userinfo_post = warp::path!("oauth2" / "userinfo")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(authorization())
        .and(form_body())
        .then(oauth::userinfo_post);
    let introspect = warp::path!("oauth2" / "introspect")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(authorization())
        .and(form_body())
        .then(oauth::introspect);
    let revoke = warp::path!("oauth2" / "revoke")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(authorization())
        .and(form_body())
        .then(oauth::revoke);
    let end_session_get = warp::path!("oauth2" / "end-session")
        .and(warp::get())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(pages::end_session_get);
    let end_session_post = warp::path!("oauth2" / "end-session")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::end_session_post);
    let css = warp::path!("assets" / "edge-idp.css")
        .and(warp::get())
        .then(pages::stylesheet);
    let icon = warp::path!("assets" / "favicon.svg")
        .and(warp::get())
        .then(pages::favicon);
    let oidc = warp::path!(".well-known" / "openid-configuration")
        .and(warp::get())
        .and(st())
        .then(discovery::openid_configuration);
    let oauth_metadata = warp::path!(".well-known" / "oauth-authorization-server")
        .and(warp::get())
        .and(st())
        .then(discovery::authorization_server_metadata);

    token
        .or(authorize_get)
        .unify()
        .or(authorize_post)
        .unify()
        .or(sign_in)
        .unify()
        .or(sign_in_mfa)
        .unify()
        .or(consent)
        .unify()
        .or(userinfo_get)
        .unify()
        .or(userinfo_post)
        .unify()
        .or(introspect)
        .unify()
        .or(revoke)
        .unify()
        .or(end_session_get)
        .unify()
        .or(end_session_post)
        .unify()
        .or(css)
        .unify()
        .or(icon)
        .unify()
        .or(oidc)
        .unify()
        .or(oauth_metadata)
        .unify()
        .boxed()
}

/// The hosted passkey pages (sign-in with one, the account page) and their script, boxed as
/// one group.
fn account_page_routes(state: &SharedApp) -> BoxedFilter<(Response,)> {
    let st = || with_state(state.clone());
    let cl = || client(state.clone());
    let cookie = || warp::header::optional::<String>("cookie");

    let sign_in = warp::path!("oauth2" / "sign-in" / "passkey")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::sign_in_passkey);
    let page = warp::path!("account" / "passkeys")
        .and(warp::get())
        .and(st())
        .and(cl())
        .and(cookie())
        .then(pages::account_get);
    let add = warp::path!("account" / "passkeys")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::account_add);
    let begin = warp::path!("account" / "passkeys" / "begin")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::account_begin);
    let rename = warp::path!("account" / "passkeys" / String / "rename")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(|id, s, c, k, b| pages::account_rename(s, c, id, k, b));
    let delete = warp::path!("account" / "passkeys" / String / "delete")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(|id, s, c, k, b| pages::account_delete(s, c, id, k, b));
    let script = warp::path!("assets" / "passkeys.js")
        .and(warp::get())
        .then(pages::script);

    sign_in
        .or(page)
        .unify()
        .or(add)
        .unify()
        .or(begin)
        .unify()
        .or(rename)
        .unify()
        .or(delete)
        .unify()
        .or(script)
        .unify()
        .boxed()
}

/// Mailed links and the forgotten password: the JSON endpoints and the hosted pages, boxed as
/// one group.
fn email_routes(state: &SharedApp) -> BoxedFilter<(Response,)> {
    let st = || with_state(state.clone());
    let cl = || client(state.clone());
    let auth = || bearer::bearer(state.clone());
    let cookie = || warp::header::optional::<String>("cookie");
    let query = || warp::query::raw().or(warp::any().map(String::new)).unify();
    let r = |res: Result<Response, ApiError>| async move { reply::respond(res) };

    let verify = warp::path!("auth" / "email" / "verify")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(json_body())
        .then(move |s, c, b| async move { r(email::verify(s, c, b).await).await });
    let change = warp::path!("auth" / "email")
        .and(warp::post())
        .and(st())
        .and(auth())
        .and(json_body())
        .then(move |s, a, b| async move { r(email::change(s, a, b).await).await });
    let resend = warp::path!("auth" / "email" / "verify" / "resend")
        .and(warp::post())
        .and(st())
        .and(auth())
        .then(move |s, a| async move { r(email::resend(s, a).await).await });
    let forgot = warp::path!("auth" / "password" / "forgot")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(json_body())
        .then(move |s, c, b| async move { r(email::forgot(s, c, b).await).await });
    let reset = warp::path!("auth" / "password" / "reset")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(json_body())
        .then(move |s, c, b| async move { r(email::reset(s, c, b).await).await });
    let verify_page = warp::path!("email" / "verify")
        .and(warp::get())
        .and(st())
        .and(cookie())
        .and(query())
        .then(pages::verify_get);
    let verify_post = warp::path!("email" / "verify")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::verify_post);
    let sign_up = warp::path!("oauth2" / "sign-up")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::sign_up);
    let forgot_page = warp::path!("password" / "forgot")
        .and(warp::get())
        .and(st())
        .and(cookie())
        .then(pages::forgot_get);
    let forgot_post = warp::path!("password" / "forgot")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::forgot_post);
    let reset_page = warp::path!("password" / "reset")
        .and(warp::get())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(query())
        .then(pages::reset_get);
    let reset_post = warp::path!("password" / "reset")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(cookie())
        .and(form_body())
        .then(pages::reset_post);

    verify
        .or(change)
        .unify()
        .or(resend)
        .unify()
        .or(forgot)
        .unify()
        .or(reset)
        .unify()
        .or(verify_page)
        .unify()
        .or(verify_post)
        .unify()
        .or(sign_up)
        .unify()
        .or(forgot_page)
        .unify()
        .or(forgot_post)
        .unify()
        .or(reset_page)
        .unify()
        .or(reset_post)
        .unify()
        .boxed()
}

/// Passkey registration, sign-in and management, boxed as one group.
fn passkey_routes(state: &SharedApp) -> BoxedFilter<(Response,)> {
    let st = || with_state(state.clone());
    let cl = || client(state.clone());
    let auth = || bearer::bearer(state.clone());
    let r = |res: Result<Response, ApiError>| async move { reply::respond(res) };

    let register_begin = warp::path!("auth" / "passkeys" / "register" / "begin")
        .and(warp::post())
        .and(st())
        .and(auth())
        .then(move |s, a| async move { r(passkeys::register_begin(s, a).await).await });
    let register_finish = warp::path!("auth" / "passkeys" / "register" / "finish")
        .and(warp::post())
        .and(st())
        .and(auth())
        .and(json_body())
        .then(move |s, a, b| async move { r(passkeys::register_finish(s, a, b).await).await });
    let login_begin = warp::path!("auth" / "passkeys" / "login" / "begin")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(json_body())
        .then(move |s, c, b| async move { r(passkeys::login_begin(s, c, b).await).await });
    let login_finish = warp::path!("auth" / "passkeys" / "login" / "finish")
        .and(warp::post())
        .and(st())
        .and(cl())
        .and(json_body())
        .then(move |s, c, b| async move { r(passkeys::login_finish(s, c, b).await).await });
    let list = warp::path!("auth" / "passkeys")
        .and(warp::get())
        .and(st())
        .and(auth())
        .then(move |s, a| async move { r(passkeys::list(s, a).await).await });
    let rename = warp::path!("auth" / "passkeys" / String)
        .and(warp::patch())
        .and(st())
        .and(auth())
        .and(json_body())
        .then(move |id, s, a, b| async move { r(passkeys::rename(s, a, id, b).await).await });
    let delete = warp::path!("auth" / "passkeys" / String)
        .and(warp::delete())
        .and(st())
        .and(auth())
        .then(move |id, s, a| async move { r(passkeys::delete(s, a, id).await).await });

    login_begin
        .or(login_finish)
        .unify()
        .or(register_begin)
        .unify()
        .or(register_finish)
        .unify()
        .or(list)
        .unify()
        .or(rename)
        .unify()
        .or(delete)
        .unify()
        .boxed()
}

/// Bearer endpoints of the account and organizations, boxed as one group.
fn account_routes(state: &SharedApp) -> BoxedFilter<(Response,)> {
    let st = || with_state(state.clone());
    let auth = || bearer::bearer(state.clone());
    let r = |res: Result<Response, ApiError>| async move { reply::respond(res) };

    let me = warp::path!("auth" / "me")
        .and(warp::get())
        .and(st())
        .and(auth())
        .then(move |s, a| async move { r(account::me(s, a).await).await });
    let switch = warp::path!("auth" / "switch-org")
        .and(warp::post())
        .and(st())
        .and(auth())
        .and(json_body())
        .then(move |s, a, b| async move { r(account::switch_org(s, a, b).await).await });
    let sessions = warp::path!("auth" / "sessions")
        .and(warp::get())
        .and(st())
        .and(auth())
        .then(move |s, a| async move { r(account::sessions(s, a).await).await });
    let delete_session = warp::path!("auth" / "sessions" / String)
        .and(warp::delete())
        .and(st())
        .and(auth())
        .then(move |id, s, a| async move { r(account::delete_session(s, a, id).await).await });
    let consents = warp::path!("auth" / "consents")
        .and(warp::get())
        .and(st())
        .and(auth())
        .then(move |s, a| async move { r(account::consents(s, a).await).await });
    let withdraw_consent = warp::path!("auth" / "consents" / String)
        .and(warp::delete())
        .and(st())
        .and(auth())
        .then(move |id, s, a| async move { r(account::withdraw_consent(s, a, id).await).await });
    let password = warp::path!("auth" / "password")
        .and(warp::post())
        .and(st())
        .and(auth())
        .and(json_body())
        .then(move |s, a, b| async move { r(account::change_password(s, a, b).await).await });
    let create_org = warp::path!("orgs")
        .and(warp::post())
        .and(st())
        .and(auth())
        .and(json_body())
        .then(move |s, a, b| async move { r(orgs::create(s, a, b).await).await });
    let list_orgs = warp::path!("orgs")
        .and(warp::get())
        .and(st())
        .and(auth())
        .then(move |s, a| async move { r(orgs::list(s, a).await).await });
    let remove_member =
        warp::path!("orgs" / String / "members" / String)
            .and(warp::delete())
            .and(st())
            .and(auth())
            .then(move |org, user, s, a| async move {
                r(orgs::remove_member(s, a, org, user).await).await
            });

    me.or(switch)
        .unify()
        .or(sessions)
        .unify()
        .or(delete_session)
        .unify()
        .or(consents)
        .unify()
        .or(withdraw_consent)
        .unify()
        .or(password)
        .unify()
        .or(create_org)
        .unify()
        .or(list_orgs)
        .unify()
        .or(remove_member)
        .unify()
        .or(invitation_routes(state))
        .unify()
        .boxed()
}

/// Bearer endpoints of organization invitations, boxed as one group: the inviter's
/// (`/orgs/{org_id}/invitations…`) and the invitee's (`/auth/invitations…`).
fn invitation_routes(state: &SharedApp) -> BoxedFilter<(Response,)> {
    let st = || with_state(state.clone());
    let auth = || bearer::bearer(state.clone());
    let r = |res: Result<Response, ApiError>| async move { reply::respond(res) };

    let invite = warp::path!("orgs" / String / "invitations")
        .and(warp::post())
        .and(st())
        .and(auth())
        .and(json_body())
        .then(move |org, s, a, b| async move { r(orgs::invite(s, a, org, b).await).await });
    let revoke =
        warp::path!("orgs" / String / "invitations" / String)
            .and(warp::delete())
            .and(st())
            .and(auth())
            .then(move |org, id, s, a| async move {
                r(orgs::revoke_invitation(s, a, org, id).await).await
            });
    let list = warp::path!("auth" / "invitations")
        .and(warp::get())
        .and(st())
        .and(auth())
        .then(move |s, a| async move { r(orgs::invitations(s, a).await).await });
    let accept = warp::path!("auth" / "invitations" / String / "accept")
        .and(warp::post())
        .and(st())
        .and(auth())
        .then(move |id, s, a| async move { r(orgs::accept_invitation(s, a, id).await).await });
    let decline = warp::path!("auth" / "invitations" / String / "decline")
        .and(warp::post())
        .and(st())
        .and(auth())
        .then(move |id, s, a| async move { r(orgs::decline_invitation(s, a, id).await).await });

    invite
        .or(revoke)
        .unify()
        .or(list)
        .unify()
        .or(accept)
        .unify()
        .or(decline)
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_lookup_matches_templates_exactly() {
        assert_eq!(route_of("/auth/login"), Some(("/auth/login", "POST")));
        assert_eq!(route_of("/auth/login/"), None);
        assert_eq!(route_of("/auth"), None);
        assert_eq!(route_of("/nope"), None);
        assert_eq!(
            route_of("/auth/sessions/abc"),
            Some(("/auth/sessions/{id}", "DELETE"))
        );
        assert_eq!(
            route_of("/auth/sessions/"),
            None,
            "a parameter is never empty"
        );
        assert_eq!(route_of("/auth/sessions/a/b"), None);
        assert_eq!(
            route_of("/orgs/o1/members/u1"),
            Some(("/orgs/{org_id}/members/{user_id}", "DELETE"))
        );
        assert_eq!(
            route_of("/orgs/o1/members"),
            None,
            "members join by invitation only"
        );
        assert_eq!(
            route_of("/orgs/o1/invitations"),
            Some(("/orgs/{org_id}/invitations", "POST"))
        );
        assert_eq!(
            route_of("/orgs/o1/invitations/i1"),
            Some(("/orgs/{org_id}/invitations/{id}", "DELETE"))
        );
        assert_eq!(
            route_of("/auth/invitations"),
            Some(("/auth/invitations", "GET"))
        );
        assert_eq!(
            route_of("/auth/invitations/i1/accept"),
            Some(("/auth/invitations/{id}/accept", "POST"))
        );
        assert_eq!(
            route_of("/auth/invitations/i1/decline"),
            Some(("/auth/invitations/{id}/decline", "POST"))
        );
        assert_eq!(route_of("/auth/invitations/i1"), None);
    }

    /// docs/api.md is the project's endpoint reference: every row of its table is a route here
    /// with that method, and every route here has its row.
    #[test]
    fn docs_api_md_lists_exactly_the_routes_of_the_table() {
        let api = include_str!("../../docs/api.md");
        let documented: std::collections::BTreeSet<(String, String)> = api
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let (method, path) = (*cells.get(1)?, *cells.get(2)?);
                let path = path.strip_prefix('`')?.strip_suffix('`')?;
                ["GET", "POST", "DELETE", "PUT", "PATCH"]
                    .contains(&method)
                    .then(|| (method.to_owned(), path.to_owned()))
            })
            .collect();
        let served: std::collections::BTreeSet<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .split(',')
                    .map(move |m| (m.trim().to_owned(), (*path).to_owned()))
            })
            .collect();
        assert!(!documented.is_empty(), "docs/api.md has no endpoint table");
        assert_eq!(documented, served, "docs/api.md against ROUTES");
    }
}
