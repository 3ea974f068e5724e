//! Every JSON request body of the API: a refusal is a 4xx problem, never a panic or a 5xx.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_idp::fuzzing::request_bodies(data));
