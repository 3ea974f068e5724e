//! Black-box tests over HTTP: one binary (each extra test binary costs a link on two cores).

// The workspace denies these outside tests; this whole crate is tests, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod account;
mod audit;
mod browser;
mod clients;
mod conformance;
mod crash;
mod deploy;
mod discovery;
mod edge;
mod email;
mod faults;
mod fuzz_corpus;
mod general;
mod helpers;
mod keys;
mod login;
mod logout;
mod metrics;
mod mfa;
mod multiprocess;
mod oidc;
mod openapi;
mod orgs;
mod passkeys;
mod ratelimit;
mod refresh;
mod remote;
mod resilience;
mod security;
mod signup;
mod sqld;
mod storage_faults;
