//! Configuration: every variable of API.md from the environment, each overridable by a CLI flag
//! of the same name in kebab-case.
//!
//! Parsing is where bad settings are caught: an invalid value stops the start with one line that
//! names the variable, and `APP_ENV=production` refuses the settings that are only acceptable on
//! a laptop. Everything downstream receives already-validated [`Settings`].

// One direction only: configuration parses into the rate limiter's types (`Quota`, `Limits`);
// `security::ratelimit` imports nothing from this module.
pub use crate::security::ratelimit::Limits;
use crate::security::ratelimit::Quota;
use clap::{Args, Subcommand, ValueEnum};
use edge_idp_actors::crypto::{b64url, random_bytes, MasterKey};
use edge_idp_actors::fs::write_private;
use edge_idp_actors::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Client registry operations (`edge-idp clients <create|list|delete|rotate-secret>`), defined
/// here for the same reason as [`KeysAction`].
#[derive(Debug, Clone, Subcommand)]
pub enum ClientsAction {
    /// Registers a client; prints its client_id and, for a confidential client, its secret
    /// (once: only its hash is stored).
    Create(CreateClient),
    /// Lists the registered clients.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Removes a client.
    Delete {
        /// The client to remove.
        client_id: String,
    },
    /// Replaces a confidential client's secret; prints the new one (once). The old one stops
    /// working at once.
    RotateSecret {
        /// The client.
        client_id: String,
        /// `{"client_id","client_secret"}` instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `edge-idp clients create`.
#[derive(Debug, Clone, Args)]
pub struct CreateClient {
    /// Display name (shown on the consent page), 1 to 100 characters.
    #[arg(long)]
    pub name: String,
    /// A redirect URI, matched exactly; repeat for several.
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// A post-logout redirect URI, matched exactly; repeat for several.
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (browser or native app): no secret, PKCE required.
    #[arg(long)]
    pub public: bool,
    /// Grant types, comma-separated: authorization_code, refresh_token, client_credentials
    /// (default: authorization_code,refresh_token).
    #[arg(long = "grant", value_delimiter = ',')]
    pub grants: Vec<String>,
    /// Scopes it may ask for, comma-separated (default: openid,profile,email,offline_access).
    #[arg(long = "scope", value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Trusted by the operator: users are not asked for consent.
    #[arg(long)]
    pub first_party: bool,
    /// PKCE required even though the client has a secret.
    #[arg(long)]
    pub require_pkce: bool,
    /// `{"client_id","client_secret"}` instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Key operations (`edge-idp keys <list|rotate>`). Defined here rather than in `cli` because
/// `startup::keys_command` takes it: `cli` depends on config and startup, neither depends on `cli`.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum KeysAction {
    /// Lists the signing keys and their state.
    List,
    /// Adds a new key now; it is published at once and signs after the pre-publish window.
    Rotate,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// JSON lines, one event per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Deployment mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AppEnv {
    /// Laptop defaults: generated secrets under `DATA_DIR`.
    Development,
    /// Refuses unsafe settings.
    Production,
}

/// Raw settings as given by environment and flags.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Bind address.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000")]
    pub listen_addr: SocketAddr,
    /// Where development mode keeps what it generates (the MFA key, the default database).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// libSQL database; default `file:<DATA_DIR>/edge-idp.db`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Auth token for a remote libSQL database.
    #[arg(long, env = "DATABASE_AUTH_TOKEN", hide_env_values = true)]
    pub database_auth_token: Option<String>,
    /// Primary URL for an embedded replica.
    #[arg(long, env = "DATABASE_SYNC_URL")]
    pub database_sync_url: Option<String>,
    /// Redis-compatible rate-limit backend.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// `iss` claim and base of discovery URLs.
    #[arg(long, env = "ISSUER", default_value = "http://localhost:8000")]
    pub issuer: String,
    /// `aud` claim; default the issuer.
    #[arg(long, env = "AUDIENCE")]
    pub audience: Option<String>,
    /// Access-token lifetime, seconds.
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value_t = 900, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub access_token_ttl: u32,
    /// Refresh-token lifetime from its issue, seconds.
    #[arg(long, env = "REFRESH_TOKEN_TTL", default_value_t = 1_209_600, value_parser = clap::value_parser!(u32).range(1..))]
    pub refresh_token_ttl: u32,
    /// Hard limit on a session's life, seconds.
    #[arg(long, env = "SESSION_MAX_TTL", default_value_t = 7_776_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub session_max_ttl: u32,
    /// Grace replay window after a rotation, seconds (0 = strict).
    #[arg(long, env = "REFRESH_REUSE_GRACE_SECS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=300))]
    pub refresh_reuse_grace_secs: u32,
    /// 32 bytes URL-safe base64; generated into DATA_DIR in development mode.
    #[arg(long, env = "MFA_ENCRYPTION_KEY", hide_env_values = true)]
    pub mfa_encryption_key: Option<String>,
    /// Issuer name shown by authenticator apps in `otpauth://` URIs.
    #[arg(long, env = "MFA_ISSUER", default_value = "edge-idp")]
    pub mfa_issuer: String,
    /// Require PKCE (S256) from every OAuth client, confidential ones too.
    #[arg(long, env = "REQUIRE_PKCE", default_value_t = false, action = clap::ArgAction::Set)]
    pub require_pkce: bool,
    /// The name the hosted sign-in pages show.
    #[arg(long, env = "PRODUCT_NAME", default_value = "edge-idp")]
    pub product_name: String,
    /// SMTP server mail is sent through, in lettre's URL form: `smtps://user:pass@host`,
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtp://127.0.0.1:2525` (a local
    /// relay). Unset: mail is written as `.eml` files under `DATA_DIR/mail/` and its links are
    /// logged (development).
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,
    /// The `From` of every mail, e.g. `Example <no-reply@example.com>`; default
    /// `PRODUCT_NAME <no-reply@ISSUER's host>`.
    #[arg(long, env = "MAIL_FROM")]
    pub mail_from: Option<String>,
    /// How often each instance looks for mail waiting in the outbox, milliseconds (mail this
    /// instance queues is sent at once; this bounds how soon mail another instance queued, or
    /// a retry, goes out).
    #[arg(long, env = "MAIL_POLL_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub mail_poll_ms: u64,
    /// Mail a notice when an account signs in from a device (`User-Agent`) it has not signed
    /// in from before.
    #[arg(long, env = "NEW_SIGN_IN_NOTICE", default_value_t = false, action = clap::ArgAction::Set)]
    pub new_sign_in_notice: bool,
    /// Refuse sign-in (after the right password) to accounts whose address is not verified.
    #[arg(long, env = "REQUIRE_VERIFIED_EMAIL", default_value_t = false, action = clap::ArgAction::Set)]
    pub require_verified_email: bool,
    /// WebAuthn relying-party id of passkeys (a domain); default the issuer's host.
    #[arg(long, env = "WEBAUTHN_RP_ID")]
    pub webauthn_rp_id: Option<String>,
    /// Origins passkey ceremonies may come from, comma-separated; default the issuer's origin.
    #[arg(long, env = "WEBAUTHN_ORIGINS", value_delimiter = ',')]
    pub webauthn_origins: Vec<String>,
    /// Operator-supplied RSA private key (PEM) to import as the signing key.
    #[arg(long, env = "PRIVATE_KEY_PATH", requires = "public_key_path")]
    pub private_key_path: Option<PathBuf>,
    /// The matching public key (PEM).
    #[arg(long, env = "PUBLIC_KEY_PATH", requires = "private_key_path")]
    pub public_key_path: Option<PathBuf>,
    /// Signing-key rotation period in days (0 = off).
    #[arg(long, env = "KEY_ROTATION_DAYS", default_value_t = 30)]
    pub key_rotation_days: u32,
    /// How often each instance reloads signing keys and checks whether a rotation is due.
    #[arg(long, env = "KEY_CHECK_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=240))]
    pub key_check_interval_secs: u64,
    /// Argon2id memory cost, KiB.
    #[arg(long, env = "ARGON2_MEMORY_KIB", default_value_t = 19_456, value_parser = clap::value_parser!(u32).range(8..=4_194_304))]
    pub argon2_memory_kib: u32,
    /// Argon2id iterations.
    #[arg(long, env = "ARGON2_ITERATIONS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub argon2_iterations: u32,
    /// Argon2id parallelism.
    #[arg(long, env = "ARGON2_PARALLELISM", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub argon2_parallelism: u32,
    /// Trusted header holding the client IP (e.g. `Fly-Client-IP`).
    #[arg(long, env = "CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// `count/seconds` for login and MFA verify, per IP and per account.
    #[arg(long, env = "RATE_LIMIT_LOGIN", default_value = "10/60")]
    pub rate_limit_login: Quota,
    /// `count/seconds` for signup per IP.
    #[arg(long, env = "RATE_LIMIT_SIGNUP", default_value = "10/3600")]
    pub rate_limit_signup: Quota,
    /// `count/seconds` for refresh per IP.
    #[arg(long, env = "RATE_LIMIT_REFRESH", default_value = "60/60")]
    pub rate_limit_refresh: Quota,
    /// `count/seconds` for organization invitations per inviting user.
    #[arg(long, env = "RATE_LIMIT_INVITE", default_value = "30/3600")]
    pub rate_limit_invite: Quota,
    /// `count/seconds` for mail a client can cause: `/auth/password/forgot` per client IP and
    /// per address, verification resends per user.
    #[arg(long, env = "RATE_LIMIT_EMAIL", default_value = "5/3600")]
    pub rate_limit_email: Quota,
    /// Namespace of the rate-limit keys in Redis (`{<prefix>}:rl:…`, a Cluster hash tag).
    #[arg(long, env = "RATE_LIMIT_REDIS_PREFIX", default_value = "edge-idp")]
    pub rate_limit_redis_prefix: String,
    /// Per-call Redis timeout, milliseconds; past it the check is answered from memory.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub redis_timeout_ms: u64,
    /// Most keys the in-process rate limiter holds.
    #[arg(long, env = "RATE_LIMIT_MEMORY_MAX_KEYS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_memory_max_keys: u64,
    /// Days audit rows are kept.
    #[arg(long, env = "AUDIT_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub audit_retention_days: u32,
    /// `json` or `pretty`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// `development` or `production`.
    #[arg(long, env = "APP_ENV", value_enum, default_value = "development")]
    pub app_env: AppEnv,
    /// Requests handled at once; beyond it new requests get 503 at once.
    #[arg(long, env = "MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
    /// Password hashes computed at once; default the number of cores.
    #[arg(long, env = "HASH_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub hash_concurrency: Option<u32>,
    /// Requests that may wait for a hashing slot whatever their expected wait; more are
    /// answered 503 at once. A hard bound beside `HASH_MAX_WAIT_MS`.
    #[arg(long, env = "HASH_QUEUE", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub hash_queue: u32,
    /// Longest expected wait for a hashing slot, milliseconds: a request that could not start
    /// hashing within it (judged from the measured hash duration) is answered 503 at once.
    #[arg(long, env = "HASH_MAX_WAIT_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub hash_max_wait_ms: u64,
    /// SQLite page cache per pooled connection, KiB. The pool keeps up to 16 connections, so
    /// the storage part of the server's memory is at most 16 times this.
    #[arg(long, env = "DB_CACHE_KIB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub db_cache_kib: u32,
    /// How often an embedded replica syncs from the primary, seconds (fractions allowed,
    /// 0.01 to 60).
    #[arg(long, env = "DATABASE_SYNC_INTERVAL", default_value_t = 1.0)]
    pub database_sync_interval: f64,
    /// How long a request waits for an actor or a hashing slot, milliseconds.
    #[arg(long, env = "ACTOR_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub actor_timeout_ms: u64,
    /// Open connections at once; beyond it new connections wait in the listen backlog.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a connection may take to send a request's headers, counted from when the server
    /// starts waiting for them: this also bounds how long a keep-alive connection may sit idle.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take to send its body.
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub body_read_timeout_secs: u64,
    /// With a comma-list `CLIENT_IP_HEADER` (`X-Forwarded-For`), which entry from the right is
    /// the client: the one the N-th trusted proxy appended.
    #[arg(long, env = "TRUSTED_PROXY_HOPS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub trusted_proxy_hops: u32,
    /// `count/seconds`: wrong second-factor answers of one user, across every endpoint that
    /// checks one, before further attempts are refused until the window passes.
    #[arg(long, env = "MFA_FAILURE_LIMIT", default_value = "10/900")]
    pub mfa_failure_limit: Quota,
    /// Consecutive wrong passwords for one account before it is locked for a while.
    #[arg(long, env = "LOCKOUT_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub lockout_threshold: u32,
    /// The first lock's length, seconds; each further failure doubles it.
    #[arg(long, env = "LOCKOUT_BASE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lockout_base_secs: u64,
    /// The longest lock, seconds.
    #[arg(long, env = "LOCKOUT_MAX_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lockout_max_secs: u64,
    /// Seconds after a login during which its tokens may enroll and confirm MFA without
    /// signing in again (step-up).
    #[arg(long, env = "STEP_UP_MAX_AGE_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub step_up_max_age_secs: u64,
    /// A separate, internal listener for `/metrics`; when set, the public listener no longer
    /// serves it.
    #[arg(long, env = "METRICS_LISTEN_ADDR")]
    pub metrics_listen_addr: Option<SocketAddr>,
    /// A bearer token `/metrics` requires on the public listener.
    #[arg(long, env = "METRICS_TOKEN")]
    pub metrics_token: Option<String>,
}

/// A setting that cannot be used, with the variable it came from.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A local libSQL file.
    File(PathBuf),
    /// An embedded replica: a local file synced from a remote primary.
    Replica {
        /// The local file.
        path: PathBuf,
        /// `DATABASE_SYNC_URL`: the primary.
        sync_url: String,
        /// `DATABASE_AUTH_TOKEN`.
        token: String,
        /// `DATABASE_SYNC_INTERVAL`: how often the file is synced.
        interval: Duration,
    },
    /// A remote libSQL primary (sqld, Turso): every statement goes to it.
    Remote {
        /// `libsql://`, `https://` or `http://`.
        url: String,
        /// `DATABASE_AUTH_TOKEN` (empty for a server without authentication).
        token: String,
    },
}

/// Validated settings, in the units the code uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bind address.
    pub listen_addr: SocketAddr,
    /// Development-mode data folder.
    pub data_dir: PathBuf,
    /// Database.
    pub database: DatabaseLocation,
    /// SQLite page cache per pooled connection, KiB.
    pub db_cache_kib: u32,
    /// `iss`, without a trailing slash.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Seconds.
    pub access_token_ttl: i64,
    /// Seconds.
    pub refresh_token_ttl: i64,
    /// Seconds.
    pub session_max_ttl: i64,
    /// Seconds.
    pub refresh_grace: i64,
    /// The master key (explicit, or generated in development mode).
    pub master_key: MasterKey,
    /// Issuer name in `otpauth://` URIs.
    pub mfa_issuer: String,
    /// Signing-key rotation period, seconds (`None`: off).
    pub key_rotation: Option<i64>,
    /// How often keys are reloaded and rotation checked.
    pub key_check_interval: Duration,
    /// Key import paths.
    pub key_import: Option<edge_idp_actors::keys::KeyImport>,
    /// Argon2id cost.
    pub argon2: argon2::Params,
    /// Rate limits.
    pub limits: Limits,
    /// Redis for shared rate limits: `(url, key prefix, per-call timeout)`.
    pub redis: Option<(String, String, Duration)>,
    /// Most keys the in-process limiter holds.
    pub memory_max_keys: u64,
    /// Audit rows are kept this long, seconds.
    pub audit_retention: i64,
    /// PKCE for every OAuth client (`REQUIRE_PKCE`).
    pub require_pkce: bool,
    /// Shown on the hosted pages (`PRODUCT_NAME`).
    pub product_name: String,
    /// How mail is delivered.
    pub mail: MailSettings,
    /// Sign-in needs a verified address (`REQUIRE_VERIFIED_EMAIL`).
    pub require_verified_email: bool,
    /// The passkeys' relying party (`None`: the issuer's host is an IP address and
    /// `WEBAUTHN_RP_ID` is unset, so passkeys are off).
    pub webauthn: Option<RelyingParty>,
    /// Requests handled at once.
    pub max_in_flight: usize,
    /// Hashes at once.
    pub hash_concurrency: usize,
    /// Requests that may wait for a hash slot, at most.
    pub hash_queue: usize,
    /// Longest expected wait for a hash slot a request is admitted with.
    pub hash_max_wait: Duration,
    /// Actor and hashing-slot wait.
    pub ask_timeout: Duration,
    /// Mode.
    pub app_env: AppEnv,
    /// What the server edge bounds.
    pub edge: EdgeLimits,
    /// How client IPs are read and keyed.
    pub client_ip: ClientIpPolicy,
    /// Brute-force guards beyond the rate limits.
    pub guards: Guards,
    /// Where and how `/metrics` is served.
    pub metrics: MetricsAccess,
}

/// How mail leaves the outbox.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `SMTP_URL` (it may hold the server's password); `None`: files under `dir`.
    pub smtp_url: Option<SecretString>,
    /// Where mail is written without `SMTP_URL`: `DATA_DIR/mail`.
    pub dir: PathBuf,
    /// The `From` mailbox, checked.
    pub from: String,
    /// How often the outbox is looked at.
    pub poll: Duration,
    /// Notices of sign-ins from new devices (`NEW_SIGN_IN_NOTICE`).
    pub new_sign_in_notice: bool,
}

/// The mail settings: `SMTP_URL` parsed by lettre itself (a URL it cannot use is refused at
/// start, naming the variable); production refuses an unencrypted `smtp://` to anything but
/// loopback, since the server's password and every link would cross the network in clear.
fn mail_settings(c: &Config, issuer: &str, product: &str) -> Result<MailSettings, ConfigError> {
    let smtp_url = match c
        .smtp_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        None => None,
        Some(u) => {
            let parsed = url::Url::parse(u)
                .ok()
                .filter(|p| {
                    matches!(p.scheme(), "smtp" | "smtps")
                        && p.host_str().is_some_and(|h| !h.is_empty())
                })
                .ok_or_else(|| bad("SMTP_URL", "must be smtp://… or smtps://… with a host"))?;
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(u)
                .map_err(|e| bad("SMTP_URL", format!("cannot be used: {e}")))?;
            let encrypted = parsed.scheme() == "smtps"
                || parsed
                    .query_pairs()
                    .any(|(k, v)| k == "tls" && v == "required");
            // `smtp` is not a scheme the URL standard knows, so its host stays text.
            let loopback = parsed.host_str().is_some_and(|h| {
                h == "localhost"
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|a| a.is_loopback())
            });
            if c.app_env == AppEnv::Production && !encrypted && !loopback {
                return Err(bad(
                    "SMTP_URL",
                    "an unencrypted smtp:// server is refused when APP_ENV=production, except on loopback; use smtps:// or ?tls=required",
                ));
            }
            Some(SecretString::new(u.to_owned()))
        }
    };
    let from = match c.mail_from.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => f.to_owned(),
        _ => {
            let host = url::Url::parse(issuer)
                .ok()
                .and_then(|u| u.domain().map(str::to_owned))
                .unwrap_or_else(|| "localhost".to_owned());
            format!("\"{}\" <no-reply@{host}>", product.replace(['"', '\\'], ""))
        }
    };
    from.parse::<lettre::message::Mailbox>()
        .map_err(|e| bad("MAIL_FROM", format!("is not a mailbox: {e}")))?;
    Ok(MailSettings {
        smtp_url,
        dir: c.data_dir.join("mail"),
        from,
        poll: Duration::from_millis(c.mail_poll_ms),
        new_sign_in_notice: c.new_sign_in_notice,
    })
}

/// The WebAuthn relying party passkeys are bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingParty {
    /// The RP id: a domain, the issuer's host or one of its parents.
    pub id: String,
    /// Origins whose ceremonies are accepted (the issuer's first).
    pub origins: Vec<url::Url>,
}

/// The relying party of `issuer`, with the `WEBAUTHN_*` overrides. WebAuthn has no RP id for
/// an IP address, so an issuer on one leaves passkeys off unless `WEBAUTHN_RP_ID` names a domain.
fn relying_party(
    issuer: &str,
    rp_id: Option<&str>,
    origins: &[String],
) -> Result<Option<RelyingParty>, ConfigError> {
    let issuer_url =
        url::Url::parse(issuer).map_err(|_| bad("ISSUER", "must be an absolute http(s) URL"))?;
    let mut allowed = vec![url::Url::parse(&issuer_url.origin().ascii_serialization())
        .map_err(|_| bad("ISSUER", "has no origin"))?];
    for o in origins.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        let u = url::Url::parse(o)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .filter(|u| u.path() == "/" && u.query().is_none() && u.fragment().is_none())
            .ok_or_else(|| {
                bad(
                    "WEBAUTHN_ORIGINS",
                    format!("{o} is not an origin (scheme://host[:port])"),
                )
            })?;
        if !allowed.contains(&u) {
            allowed.push(u);
        }
    }
    let id = match rp_id.map(str::trim) {
        Some(id) => {
            if id.is_empty() || id.contains(['/', ':']) || id.parse::<std::net::IpAddr>().is_ok() {
                return Err(bad("WEBAUTHN_RP_ID", "must be a domain name"));
            }
            id.to_ascii_lowercase()
        }
        None => match issuer_url.domain() {
            Some(d) => d.to_ascii_lowercase(),
            None => return Ok(None),
        },
    };
    // Every origin must be the RP id or a subdomain of it (WebAuthn §5.1.3 step 8).
    for o in &allowed {
        let fits = o
            .domain()
            .is_some_and(|d| d == id || d.ends_with(&format!(".{id}")));
        if !fits {
            return Err(bad(
                "WEBAUTHN_RP_ID",
                format!("{id} is not the host, nor a parent domain of it, of the origin {o}"),
            ));
        }
    }
    Ok(Some(RelyingParty {
        id,
        origins: allowed,
    }))
}

/// Bounds of the server edge against slow and numerous clients.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Open connections at once.
    pub max_connections: usize,
    /// Time to send request headers; also the idle keep-alive bound.
    pub header_read_timeout: Duration,
    /// Time to send a request body.
    pub body_read_timeout: Duration,
}

/// How the client IP is taken from a trusted header.
#[derive(Debug, Clone)]
pub struct ClientIpPolicy {
    /// The header, if any.
    pub header: Option<http::HeaderName>,
    /// Which entry of a comma list, counted from the right (1 = the right-most).
    pub trusted_hops: usize,
}

/// Account lockout after consecutive wrong passwords.
#[derive(Debug, Clone, Copy)]
pub struct Lockout {
    /// Failures before the first lock.
    pub threshold: u32,
    /// The first lock, seconds; doubled by each further failure (the schedule is the SQL of
    /// `Db::record_password_failure`).
    pub base_secs: i64,
    /// The longest lock, seconds.
    pub max_secs: i64,
}

/// Guards of the password and second-factor checks.
#[derive(Debug, Clone, Copy)]
pub struct Guards {
    /// Wrong second-factor answers per user and window.
    pub mfa_failures: Quota,
    /// Consecutive-failure lockout.
    pub lockout: Lockout,
    /// How recent a login must be for MFA enrollment without another sign-in, seconds.
    pub step_up_max_age: i64,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone)]
pub struct MetricsAccess {
    /// A separate listener that serves `/metrics` (and nothing else).
    pub listen_addr: Option<SocketAddr>,
    /// A bearer token the public listener requires.
    pub token: Option<String>,
}

/// The OWASP Argon2id floor that production refuses to go below.
const MIN_ARGON2: (u32, u32) = (19_456, 2);

impl Config {
    /// Checks the settings and resolves defaults; `master_key` is resolved by the caller
    /// (development mode may generate it on disk).
    pub fn validate(&self, master_key: MasterKey) -> Result<Settings, ConfigError> {
        let issuer = self.issuer.trim_end_matches('/').to_owned();
        let is_http = issuer.starts_with("http://");
        if !(is_http || issuer.starts_with("https://"))
            || issuer.len() < 10
            || issuer.contains(char::is_whitespace)
        {
            return Err(bad("ISSUER", "must be an absolute http(s) URL"));
        }
        let production = self.app_env == AppEnv::Production;
        if production && is_http {
            return Err(bad("ISSUER", "must be https:// when APP_ENV=production"));
        }
        if production
            && (self.argon2_memory_kib < MIN_ARGON2.0 || self.argon2_iterations < MIN_ARGON2.1)
        {
            return Err(bad(
                "ARGON2_MEMORY_KIB",
                format!("Argon2id costs below {} KiB / {} iterations are refused when APP_ENV=production", MIN_ARGON2.0, MIN_ARGON2.1),
            ));
        }
        let database = match self.database_url.as_deref() {
            None => DatabaseLocation::File(self.data_dir.join("edge-idp.db")),
            Some(url)
                if url.starts_with("libsql://")
                    || url.starts_with("https://")
                    || url.starts_with("http://") =>
            {
                if production && url.starts_with("http://") {
                    let host = url["http://".len()..]
                        .split(['/', ':'])
                        .next()
                        .unwrap_or("");
                    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                        return Err(bad(
                            "DATABASE_URL",
                            "a plain http:// primary is refused when APP_ENV=production, except on loopback; use libsql:// or https://",
                        ));
                    }
                }
                DatabaseLocation::Remote {
                    url: url.trim().to_owned(),
                    token: self
                        .database_auth_token
                        .as_deref()
                        .unwrap_or("")
                        .trim()
                        .to_owned(),
                }
            }
            Some(url) => {
                let path = url.strip_prefix("file:").unwrap_or(url);
                if path.is_empty() {
                    return Err(bad("DATABASE_URL", "empty file path"));
                }
                DatabaseLocation::File(PathBuf::from(path))
            }
        };
        let database = match (&self.database_sync_url, database) {
            (None, d) => d,
            (Some(sync), DatabaseLocation::File(path)) => {
                let sync = sync.trim();
                if !(sync.starts_with("libsql://")
                    || sync.starts_with("https://")
                    || sync.starts_with("http://"))
                {
                    return Err(bad(
                        "DATABASE_SYNC_URL",
                        "must be the primary's libsql://, https:// or http:// URL",
                    ));
                }
                DatabaseLocation::Replica {
                    path,
                    sync_url: sync.to_owned(),
                    token: self
                        .database_auth_token
                        .as_deref()
                        .unwrap_or("")
                        .trim()
                        .to_owned(),
                    interval: if (0.01..=60.0).contains(&self.database_sync_interval) {
                        Duration::from_secs_f64(self.database_sync_interval)
                    } else {
                        return Err(bad(
                            "DATABASE_SYNC_INTERVAL",
                            "must be between 0.01 and 60 seconds",
                        ));
                    },
                }
            }
            (Some(_), DatabaseLocation::Remote { .. } | DatabaseLocation::Replica { .. }) => {
                return Err(bad(
                    "DATABASE_SYNC_URL",
                    "an embedded replica needs DATABASE_URL to be a local file",
                ));
            }
        };
        let argon2 = argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .map_err(|e| bad("ARGON2_MEMORY_KIB", e.to_string()))?;
        let client_ip_header = match &self.client_ip_header {
            None => None,
            Some(h) => Some(
                http::HeaderName::try_from(h.trim())
                    .map_err(|_| bad("CLIENT_IP_HEADER", "not a valid header name"))?,
            ),
        };
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let webauthn = relying_party(
            &issuer,
            self.webauthn_rp_id.as_deref(),
            &self.webauthn_origins,
        )?;
        let product_name = {
            let n = self.product_name.trim();
            if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
                return Err(bad("PRODUCT_NAME", "must be 1 to 64 characters"));
            }
            n.to_owned()
        };
        let mail = mail_settings(self, &issuer, &product_name)?;
        Ok(Settings {
            listen_addr: self.listen_addr,
            mail,
            require_verified_email: self.require_verified_email,
            data_dir: self.data_dir.clone(),
            database,
            audience: self.audience.clone().unwrap_or_else(|| issuer.clone()),
            issuer,
            access_token_ttl: self.access_token_ttl.into(),
            refresh_token_ttl: self.refresh_token_ttl.into(),
            session_max_ttl: self.session_max_ttl.into(),
            refresh_grace: self.refresh_reuse_grace_secs.into(),
            master_key,
            key_rotation: (self.key_rotation_days > 0)
                .then(|| i64::from(self.key_rotation_days) * 86_400),
            key_check_interval: Duration::from_secs(self.key_check_interval_secs),
            require_pkce: self.require_pkce,
            webauthn,
            product_name,
            mfa_issuer: {
                let i = self.mfa_issuer.trim();
                if i.is_empty()
                    || i.len() > 64
                    || i.contains(':')
                    || i.chars().any(char::is_control)
                {
                    return Err(bad("MFA_ISSUER", "must be 1 to 64 characters without ':'"));
                }
                i.to_owned()
            },
            key_import: match (&self.private_key_path, &self.public_key_path) {
                (Some(p), Some(q)) => Some(edge_idp_actors::keys::KeyImport {
                    private_path: p.clone(),
                    public_path: q.clone(),
                }),
                _ => None,
            },
            argon2,
            redis: match &self.redis_url {
                None => None,
                Some(url) => {
                    redis::Client::open(url.as_str())
                        .map_err(|e| bad("REDIS_URL", e.to_string()))?;
                    let prefix = self.rate_limit_redis_prefix.trim();
                    if prefix.is_empty()
                        || prefix.len() > 64
                        || prefix.contains(char::is_whitespace)
                    {
                        return Err(bad(
                            "RATE_LIMIT_REDIS_PREFIX",
                            "must be 1 to 64 characters without spaces",
                        ));
                    }
                    Some((
                        url.clone(),
                        prefix.to_owned(),
                        Duration::from_millis(self.redis_timeout_ms),
                    ))
                }
            },
            memory_max_keys: self.rate_limit_memory_max_keys,
            audit_retention: i64::from(self.audit_retention_days) * 86_400,
            limits: Limits {
                login: self.rate_limit_login,
                signup: self.rate_limit_signup,
                refresh: self.rate_limit_refresh,
                invite: self.rate_limit_invite,
                email: self.rate_limit_email,
            },
            max_in_flight: self.max_in_flight as usize,
            hash_concurrency: self.hash_concurrency.map(|n| n as usize).unwrap_or(cores),
            hash_queue: self.hash_queue as usize,
            hash_max_wait: Duration::from_millis(self.hash_max_wait_ms),
            ask_timeout: Duration::from_millis(self.actor_timeout_ms),
            db_cache_kib: self.db_cache_kib,
            app_env: self.app_env,
            edge: EdgeLimits {
                max_connections: self.max_connections as usize,
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
                body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            },
            client_ip: ClientIpPolicy {
                header: client_ip_header,
                trusted_hops: self.trusted_proxy_hops as usize,
            },
            guards: Guards {
                mfa_failures: self.mfa_failure_limit,
                lockout: Lockout {
                    threshold: self.lockout_threshold,
                    base_secs: self.lockout_base_secs as i64,
                    max_secs: self.lockout_max_secs.max(self.lockout_base_secs) as i64,
                },
                step_up_max_age: self.step_up_max_age_secs as i64,
            },
            metrics: MetricsAccess {
                listen_addr: self.metrics_listen_addr,
                token: match self.metrics_token.as_deref().map(str::trim) {
                    None => None,
                    Some(t) if t.len() >= 16 && !t.contains(char::is_whitespace) => {
                        Some(t.to_owned())
                    }
                    Some(_) => {
                        return Err(bad(
                            "METRICS_TOKEN",
                            "must be at least 16 characters without spaces",
                        ))
                    }
                },
            },
        })
    }

    /// The master key: `MFA_ENCRYPTION_KEY`, or in development mode the key generated once
    /// into `DATA_DIR/mfa_encryption.key` (created with mode 0600, atomically, so instances
    /// sharing the folder agree on it).
    pub fn resolve_master_key(&self) -> Result<(MasterKey, bool), ConfigError> {
        if let Some(k) = &self.mfa_encryption_key {
            return MasterKey::parse(k)
                .map(|k| (k, false))
                .map_err(|e| bad("MFA_ENCRYPTION_KEY", e.to_string()));
        }
        if self.app_env == AppEnv::Production {
            return Err(bad(
                "MFA_ENCRYPTION_KEY",
                "required when APP_ENV=production",
            ));
        }
        let path = self.data_dir.join("mfa_encryption.key");
        let io = |e: std::io::Error| bad("DATA_DIR", format!("{}: {e}", path.display()));
        std::fs::create_dir_all(&self.data_dir).map_err(io)?;
        if !path.exists() {
            let key =
                MasterKey::generate().map_err(|e| bad("MFA_ENCRYPTION_KEY", e.to_string()))?;
            // A name no other process uses (instances in containers sharing the folder may all
            // be pid 1), because write_private refuses to overwrite.
            let nonce =
                random_bytes::<8>().map_err(|e| bad("MFA_ENCRYPTION_KEY", e.to_string()))?;
            let tmp = self.data_dir.join(format!(
                ".mfa_encryption.key.{}.{}",
                std::process::id(),
                b64url(&nonce)
            ));
            write_private(&tmp, key.encode().as_bytes()).map_err(io)?;
            // hard_link refuses to overwrite: if another instance won the race, its key stays.
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => return Ok((key, true)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
        }
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(io)?);
        MasterKey::parse(&text).map(|k| (k, false)).map_err(|e| {
            bad(
                "MFA_ENCRYPTION_KEY",
                format!("{} is unusable: {e}", path.display()),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["edge-idp"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").config
    }

    #[test]
    fn the_passkeys_relying_party_comes_from_the_issuer_or_its_overrides() {
        let key = MasterKey::generate().unwrap();
        let rp = |args: &[&str]| parse(args).validate(key.clone()).map(|s| s.webauthn);
        let got = rp(&["--issuer", "https://id.example.com:8443/"])
            .unwrap()
            .unwrap();
        assert_eq!(got.id, "id.example.com");
        assert_eq!(got.origins[0].as_str(), "https://id.example.com:8443/");
        assert_eq!(
            rp(&["--issuer", "http://127.0.0.1:8000"]).unwrap(),
            None,
            "no RP id for an IP"
        );
        let got = rp(&[
            "--issuer",
            "https://id.example.com",
            "--webauthn-rp-id",
            "example.com",
            "--webauthn-origins",
            "https://app.example.com,https://example.com",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(got.id, "example.com");
        assert_eq!(got.origins.len(), 3);
        let bad = |args: &[&str]| rp(args).unwrap_err().var;
        assert_eq!(
            bad(&[
                "--issuer",
                "https://id.example.com",
                "--webauthn-rp-id",
                "other.com"
            ]),
            "WEBAUTHN_RP_ID"
        );
        assert_eq!(
            bad(&[
                "--issuer",
                "https://id.example.com",
                "--webauthn-rp-id",
                "10.0.0.1"
            ]),
            "WEBAUTHN_RP_ID"
        );
        assert_eq!(
            bad(&[
                "--issuer",
                "https://id.example.com",
                "--webauthn-origins",
                "https://evil.com"
            ]),
            "WEBAUTHN_RP_ID"
        );
        assert_eq!(
            bad(&[
                "--issuer",
                "https://id.example.com",
                "--webauthn-origins",
                "https://id.example.com/path"
            ]),
            "WEBAUTHN_ORIGINS"
        );
    }

    #[test]
    fn smtp_url_is_parsed_by_lettre_and_production_refuses_plain_smtp_off_loopback() {
        let key = MasterKey::generate().unwrap();
        let mail = |env: &str, url: &str| {
            parse(&[
                "--app-env",
                env,
                "--issuer",
                "https://idp.example.com",
                "--smtp-url",
                url,
            ])
            .validate(key.clone())
            .map(|s| s.mail)
        };
        for ok in [
            "smtps://user:pass@mail.example.com",
            "smtp://user:pass@mail.example.com:587?tls=required",
            "smtp://127.0.0.1:2525",
            "smtp://localhost:25",
            "smtp://[::1]:25",
        ] {
            let m = mail("production", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(m.smtp_url.unwrap().expose(), ok);
            assert_eq!(m.from, "\"edge-idp\" <no-reply@idp.example.com>");
        }
        for plain in [
            "smtp://mail.example.com:25",
            "smtp://user:pass@mail.example.com:587?tls=opportunistic",
        ] {
            assert_eq!(mail("production", plain).unwrap_err().var, "SMTP_URL");
            assert!(mail("development", plain).is_ok(), "{plain}");
        }
        for bad in [
            "http://mail.example.com",
            "smtp://",
            "mail.example.com",
            "smtp://h?tls=maybe",
        ] {
            assert_eq!(
                mail("development", bad).unwrap_err().var,
                "SMTP_URL",
                "{bad}"
            );
        }
        let err = parse(&["--mail-from", "not a mailbox"])
            .validate(key.clone())
            .unwrap_err();
        assert_eq!(err.var, "MAIL_FROM");
        let s = parse(&[]).validate(key).unwrap();
        assert!(s.mail.smtp_url.is_none(), "development default: files");
        assert!(s.mail.dir.ends_with("mail"));
    }

    #[test]
    fn production_refuses_http_issuer_and_weak_argon2() {
        let key = MasterKey::generate().unwrap();
        let c = parse(&[
            "--app-env",
            "production",
            "--issuer",
            "http://idp.example.com",
        ]);
        assert_eq!(c.validate(key.clone()).unwrap_err().var, "ISSUER");
        let c = parse(&[
            "--app-env",
            "production",
            "--issuer",
            "https://idp.example.com",
            "--argon2-memory-kib",
            "1024",
        ]);
        assert_eq!(
            c.validate(key.clone()).unwrap_err().var,
            "ARGON2_MEMORY_KIB"
        );
        let c = parse(&[
            "--app-env",
            "production",
            "--issuer",
            "https://idp.example.com",
        ]);
        assert!(c.validate(key).is_ok());
        assert_eq!(
            c.resolve_master_key().unwrap_err().var,
            "MFA_ENCRYPTION_KEY"
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let err = Cli::try_parse_from(["edge-idp", "--access-token-ttl", "abc"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ACCESS_TOKEN_TTL"), "{err}");
        let err = Cli::try_parse_from(["edge-idp", "--rate-limit-login", "10"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RATE_LIMIT_LOGIN"), "{err}");
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = parse(&[]).validate(MasterKey::generate().unwrap()).unwrap();
        assert_eq!(s.issuer, "http://localhost:8000");
        assert_eq!(s.audience, s.issuer);
        assert_eq!(
            (
                s.access_token_ttl,
                s.refresh_token_ttl,
                s.session_max_ttl,
                s.refresh_grace
            ),
            (900, 1_209_600, 7_776_000, 10)
        );
        assert_eq!(
            s.database,
            DatabaseLocation::File(PathBuf::from("data/edge-idp.db"))
        );
        assert_eq!((s.limits.login.count, s.limits.login.period_secs), (10, 60));
    }
}
