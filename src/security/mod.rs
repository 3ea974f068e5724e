//! Security: password hashing and policy, access tokens, session revocations and rate limits,
//! the checks every request passes through before a handler acts on it.

pub mod passwords;
pub mod ratelimit;
pub mod revocation;
pub mod tokens;
