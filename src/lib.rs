//! edge-idp: an identity provider that other services trust.
//!
//! # Layout
//! The root keeps only wiring; each folder holds one concern.
//! - [`cli`]: the command line and what the binary does with it ([`cli::run`]).
//! - [`config`]: environment and flags, validated into [`config::Settings`].
//! - [`startup`]: [`startup::Application`]: build (migrate, keys, actors, bind), run, shut down.
//! - [`http`]: route table, warp filters, handlers, problem responses, the server edge.
//! - [`db`]: libSQL pool, migrations (`schema/`), and the actors' storage traits on SQL.
//! - [`security`]: [`security::passwords`] (Argon2id on its own bounded threads; the password
//!   policy), [`security::tokens`] (RS256 access tokens signed from the key snapshot),
//!   [`security::revocation`] (revoked sessions, answered from caches on the Bearer path),
//!   [`security::ratelimit`] (GCRA limits, in process or shared through Redis).
//! - [`ops`]: [`ops::metrics`] (the Prometheus registry behind `GET /metrics`), [`ops::audit`]
//!   (the audit trail, written in batches), [`ops::telemetry`] (logging), [`ops::healthcheck`]
//!   (the `healthcheck` subcommand the container runs).
//! - [`profiles`]: the `/auth/me` profile, cached per user briefly.
//! - [`state`]: shared handler state.
//! - [`fuzzing`]: the parsers the fuzz targets (`fuzz/`) drive, replayed over their corpus by `cargo test`.
//!
//! The actors (keys, users, refresh families) live in the `edge-idp-actors` crate; this crate
//! wires them to HTTP and storage. The login path, route to row: `http::ROUTES` →
//! `http::auth::login` → `db::store` (`user_by_email`) → `security::passwords::Passwords::verify` →
//! `UsersMsg::LoginSucceeded` → `RefreshMsg::Start` (`sessions`, `refresh_tokens` rows) →
//! `security::tokens::TokenIssuer::issue`.

pub mod cli;
pub mod config;
pub mod db;
pub mod fuzzing;
pub mod http;
pub mod ops;
pub mod profiles;
pub mod security;
pub mod startup;
pub mod state;
