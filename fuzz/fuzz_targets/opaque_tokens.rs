//! Refresh tokens, MFA challenge tokens and id path segments.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_idp::fuzzing::opaque_tokens(data));
