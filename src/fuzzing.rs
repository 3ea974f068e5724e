//! What the fuzz targets (`fuzz/`) run, and what `tests/fuzz_corpus.rs` replays over their
//! committed corpus on every `cargo test`.
//!
//! Each entry takes arbitrary bytes through one parser that sees attacker-controlled input
//! before any authentication, and checks the parser's contract beyond "does not panic": a
//! refused request body is a 4xx problem, a Bearer value is either refused or yields claims this
//! issuer signed, an opaque token is only ever accepted in the one shape we issue. They live in
//! the library, not in the fuzz crate, so a crash the fuzzer finds is replayed by `cargo test`
//! from its saved input and stays fixed.

use crate::http::extract::{self, parse_client_ip};
use crate::http::{account, auth, bearer, mfa, orgs};
use crate::security::tokens::TokenIssuer;
use bytes::Bytes;
use serde::de::DeserializeOwned;

fn body_as<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    match extract::parse::<T>(Ok(Bytes::copy_from_slice(data))) {
        Ok(v) => Some(v),
        Err(e) => {
            let (status, code, _) = e.parts();
            assert!(
                status.is_client_error(),
                "a request body was answered {status} ({code})"
            );
            None
        }
    }
}

/// Every JSON request body of the API, then the field checks the handlers apply.
pub fn request_bodies(data: &[u8]) {
    if let Some(r) = body_as::<auth::SignupRequest>(data) {
        let _ = extract::email("email", &r.email);
        let _ = crate::security::passwords::check_policy(r.password.expose(), &[]);
        let _ = extract::text("name", r.name.as_deref(), 100);
        let _ = extract::text("organization_name", r.organization_name.as_deref(), 100);
    }
    if let Some(r) = body_as::<auth::LoginRequest>(data) {
        let _ = extract::email("email", &r.email);
    }
    body_as::<auth::RefreshRequest>(data);
    body_as::<auth::LogoutRequest>(data);
    body_as::<account::SwitchOrgRequest>(data);
    if let Some(r) = body_as::<account::PasswordRequest>(data) {
        let _ = crate::security::passwords::check_policy(r.new_password.expose(), &[]);
    }
    if let Some(r) = body_as::<orgs::CreateOrgRequest>(data) {
        let _ = extract::text("name", Some(&r.name), 100);
    }
    if let Some(r) = body_as::<orgs::InviteRequest>(data) {
        let _ = extract::email("email", &r.email);
    }
    body_as::<mfa::CodeRequest>(data);
    body_as::<mfa::VerifyRequest>(data);
}

/// A token issuer with one fixed signing key (PKCS#8 DER), its clock stopped at `now`: the
/// fuzz targets' and the corpus test's, so a saved input verifies the same way each time.
#[allow(clippy::expect_used)] // a fixed harness key: failing here is a broken harness, not input.
pub fn issuer_with_key(pkcs8_der: &[u8], now: i64) -> TokenIssuer {
    let key = edge_idp_actors::keys::SigningKey::from_pkcs8(pkcs8_der, 0, None)
        .expect("the fuzzing key parses");
    let set = edge_idp_actors::KeySet::build(vec![key], now).expect("a key set of one key");
    TokenIssuer::new(
        std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(set)),
        "https://fuzz.edge-idp.test".into(),
        "edge-idp".into(),
        900,
        edge_idp_actors::Clock::manual(now),
    )
}

/// An `Authorization` header value through the Bearer extraction and verification. Nothing an
/// attacker can write without the private key verifies; what does verify is this issuer's.
pub fn bearer_value(issuer: &TokenIssuer, data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    for token in [bearer::bearer_token(value), Some(value)]
        .into_iter()
        .flatten()
    {
        if let Some(claims) = issuer.verify(token) {
            assert!(
                !claims.sub.is_empty() && !claims.sid.is_empty(),
                "verified claims without subject or session"
            );
        }
    }
}

/// A `CLIENT_IP_HEADER` value.
pub fn client_ip_header(data: &[u8]) {
    if let Ok(value) = std::str::from_utf8(data) {
        if let Some(ip) = parse_client_ip(value, 1) {
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            assert_eq!(last.parse::<std::net::IpAddr>().ok(), Some(ip));
        }
    }
}

/// Refresh tokens, MFA challenge tokens and id path segments: accepted only in the shapes we
/// issue (43 base64url characters; a UUID), refused before any database read otherwise.
pub fn opaque_tokens(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if crate::app::sessions::token_shaped(value) {
        assert_eq!(value.len(), 43);
        let _ = edge_idp_actors::refresh::token_hash(value);
    }
    if crate::http::extract::token_shaped_uuid(value).is_some() {
        assert!(value.len() <= 64);
    }
}
