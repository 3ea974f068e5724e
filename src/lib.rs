//! edge-idp: an identity provider that other services trust.
//!
//! # Layout
//! - [`audit`]: the audit trail (log events and `audit_events` rows, written in batches).
//! - [`config`]: environment and flags, validated into [`config::Settings`].
//! - [`startup`]: [`startup::Application`]: build (migrate, keys, actors, bind), run, shut down.
//! - [`http`]: route table, warp filters, handlers, problem responses, the server edge.
//! - [`db`]: libSQL pool, migrations (`schema/`), and the actors' storage traits on SQL.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics`.
//! - [`passwords`]: Argon2id on the blocking pool, bounded; the password policy.
//! - [`tokens`]: RS256 access tokens signed from the key snapshot.
//! - [`ratelimit`]: GCRA limits on a bounded in-process store.
//! - [`revocation`]: revoked sessions, answered from caches on the Bearer path.
//! - [`profiles`]: the `/auth/me` profile, cached per user briefly.
//! - [`state`], [`telemetry`]: shared handler state; logging.
//! - [`healthcheck`]: the `healthcheck` subcommand the container runs.
//! - [`fuzzing`]: the parsers the fuzz targets (`fuzz/`) drive, replayed over their corpus by `cargo test`.
//!
//! The actors (keys, users, refresh families) live in the `edge-idp-actors` crate; this crate
//! wires them to HTTP and storage. The login path, route to row: `http::ROUTES` →
//! `http::auth::login` → `db::store` (`user_by_email`) → `passwords::Passwords::verify` →
//! `UsersMsg::LoginSucceeded` → `RefreshMsg::Start` (`sessions`, `refresh_tokens` rows) →
//! `tokens::TokenIssuer::issue`.

pub mod audit;
pub mod config;
pub mod db;
pub mod fuzzing;
pub mod healthcheck;
pub mod http;
pub mod metrics;
pub mod passwords;
pub mod profiles;
pub mod ratelimit;
pub mod revocation;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tokens;
