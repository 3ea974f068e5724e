//! edge-idp: an identity provider that other services trust.
//!
//! # Layout
//! The root keeps only wiring; each folder is one layer or one concern.
//! - [`cli`]: the command line and what the binary does with it ([`cli::run`]).
//! - [`config`]: environment and flags, validated into [`config::Settings`].
//! - [`startup`]: [`startup::Application`]: build (migrate, keys, actors, bind), run, shut down.
//! - [`http`]: the JSON API: route table, handlers (parse → call [`app`] → render), problem
//!   responses, the server edge.
//! - [`app`]: the application layer: every flow (signup, login, MFA, sessions, account,
//!   organizations), the only layer that touches storage or asks actors.
//! - [`mail`]: what each mail says (templates) and how it leaves (SMTP through lettre, or
//!   `.eml` files in development); the outbox that feeds it is `app::email`.
//! - [`db`]: libSQL pool, migrations (`schema/`), one-request batches, the storage traits on SQL.
//! - [`security`]: [`security::passwords`] (Argon2id on its own bounded threads; the password
//!   policy), [`security::tokens`] (RS256 access tokens signed from the key snapshot),
//!   [`security::revocation`] (revoked sessions, answered from caches on the Bearer path),
//!   [`security::ratelimit`] (GCRA limits, in process or shared through Redis).
//! - [`ops`]: [`ops::metrics`] (the Prometheus registry behind `GET /metrics`), [`ops::audit`]
//!   (the audit trail, written in batches), [`ops::telemetry`] (logging), [`ops::healthcheck`]
//!   (the `healthcheck` subcommand the container runs).
//! - [`fuzzing`]: the parsers the fuzz targets (`fuzz/`) drive, replayed over their corpus by
//!   `cargo test`.
//!
//! The actors (KeyManager, RateLimiter) and the domain services (refresh families, MFA) live
//! in the `edge-idp-actors` crate. The login path, route to row: `http::ROUTES` →
//! `http::auth::login` (parse) → `app::login` (`App::login`: limits, lockout) →
//! `db::store` (`user_by_email`) → `security::passwords::Passwords::verify` →
//! `record_login_success` → `refresh::Families::start` (`sessions`, `refresh_tokens` rows, one
//! batch) → `security::tokens::TokenIssuer::issue`.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod fuzzing;
pub mod http;
pub mod mail;
pub mod ops;
pub mod security;
pub mod startup;
