//! `CLIENT_IP_HEADER` values (an address, or the first of a comma list).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| edge_idp::fuzzing::client_ip_header(data));
