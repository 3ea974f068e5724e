//! The fuzz targets' committed inputs (`fuzz/corpus/<target>/`, plus any crash saved under
//! `fuzz/regressions/<target>/`), replayed through the same entry points on every `cargo test`:
//! a crash the fuzzer once found stays fixed. See `fuzz/README.md` for running the fuzzer.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            out.push((path, data));
        }
    }
    assert!(
        !out.is_empty(),
        "no committed inputs for fuzz target {target}"
    );
    out
}

fn issuer() -> edge_idp::security::tokens::TokenIssuer {
    edge_idp::fuzzing::issuer_with_key(
        include_bytes!("../../fuzz/keys/fuzz-signing-key.der"),
        1_800_000_000,
    )
}

#[test]
fn request_body_inputs_are_refused_with_4xx_or_parsed() {
    for (_, data) in inputs("request_bodies") {
        edge_idp::fuzzing::request_bodies(&data);
    }
}

#[test]
fn bearer_inputs_replay_and_the_valid_seeds_verify() {
    let issuer = issuer();
    let mut valid = 0;
    for (path, data) in inputs("bearer") {
        edge_idp::fuzzing::bearer_value(&issuer, &data);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let value = String::from_utf8(data).unwrap_or_default();
        let token = edge_idp::http::bearer::bearer_token(&value).unwrap_or(&value);
        let verified = issuer.verify(token).is_some();
        // The hand-written seeds are named for what they are: `valid-*` must verify (or the
        // target would be fuzzing nothing but refusals), the others must not. Inputs the fuzzer
        // added are named by their SHA-1 and may be either.
        let generated = name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit());
        if !generated {
            assert_eq!(verified, name.starts_with("valid-"), "{name}");
        }
        valid += usize::from(verified);
    }
    assert!(valid >= 2);
}

#[test]
fn client_ip_inputs_replay() {
    for (_, data) in inputs("client_ip") {
        edge_idp::fuzzing::client_ip_header(&data);
    }
}

#[test]
fn opaque_token_inputs_replay() {
    for (_, data) in inputs("opaque_tokens") {
        edge_idp::fuzzing::opaque_tokens(&data);
    }
}
