//! `Authorization` values through Bearer extraction and RS256 verification, with a fixed key
//! (`fuzz/keys/`, a key for fuzzing only) so saved inputs replay the same way.
#![no_main]
use std::sync::OnceLock;

static ISSUER: OnceLock<edge_idp::security::tokens::TokenIssuer> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let issuer = ISSUER.get_or_init(|| {
        edge_idp::fuzzing::issuer_with_key(include_bytes!("../keys/fuzz-signing-key.der"), 1_800_000_000)
    });
    edge_idp::fuzzing::bearer_value(issuer, data);
});
