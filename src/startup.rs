//! Building and running the application: the same path for `main` and for tests (port 0).
//!
//! [`Application::build`] opens the database and migrates it, loads or creates the signing keys
//! (refusing to start if the master key cannot open them), starts the supervision tree and
//! binds the listener. [`Application::run_until_stopped`] serves until SIGTERM, SIGINT or
//! [`Stopper::stop`], then drains requests, stops the actors and closes the database.

use crate::app::{App, Parts, SharedApp};
use crate::config::{ClientsAction, DatabaseLocation, KeysAction, Settings};
use crate::db::{migrate, Db, MigrateError};
use crate::http;
use crate::security::passwords::Passwords;
use crate::security::ratelimit::{RateLimiter, RedisBackend};
use crate::security::tokens::TokenIssuer;
use arc_swap::ArcSwap;
use edge_idp_actors::keys::{self, KeyError, KeyManagerArgs, RotationPolicy};
use edge_idp_actors::limiter::LimiterArgs;
use edge_idp_actors::mfa::MfaConfig;
use edge_idp_actors::refresh::{Families, RefreshPolicy};
use edge_idp_actors::{Clock, Handles, KeyHandle, RootArgs, RootSupervisor, StoreError};
use ractor::{Actor, ActorRef};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a Redis marked down is probed.
const LIMITER_PROBE_EVERY: Duration = Duration::from_millis(500);

/// How often expired rows and ended grace windows are cleaned up.
const PRUNE_EVERY: Duration = Duration::from_secs(5);

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error("database: {0}")]
    Database(#[from] StoreError),
    /// Migrations failed or the database is too new.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// Signing keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The listener could not bind.
    #[error("LISTEN_ADDR: {0}")]
    Bind(#[source] std::io::Error),
    /// A command of the operator's was refused; the text says why.
    #[error("{0}")]
    Command(String),
    /// A part of the application (named) could not start.
    #[error("start-up: {what}")]
    Startup {
        /// Which part.
        what: &'static str,
        /// Why.
        #[source]
        source: crate::app::error::Cause,
    },
}

/// Asks a running application to stop; cheap to clone.
#[derive(Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    /// Begins graceful shutdown.
    pub fn stop(&self) {
        // send_replace, not send: the value must stick even before anyone subscribed.
        self.0.send_replace(true);
    }
}

/// A built, bound application.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    /// The internal `/metrics` listener, when `METRICS_LISTEN_ADDR` is set.
    metrics_listener: Option<TcpListener>,
    state: SharedApp,
    root: ActorRef<()>,
    root_join: JoinHandle<()>,
    stop: watch::Sender<bool>,
    audit_writer: JoinHandle<()>,
}

impl Application {
    /// Builds with the system clock.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with_clock(settings, Clock::system()).await
    }

    /// Builds with the given clock (tests drive a manual one).
    pub async fn build_with_clock(settings: Settings, clock: Clock) -> Result<Self, StartError> {
        Self::build_on(settings, clock, None).await
    }

    /// Builds serving on `listener` when given (bound already, so that an issuer can name its
    /// port before the server starts), else on `LISTEN_ADDR`.
    pub async fn build_on(
        settings: Settings,
        clock: Clock,
        listener: Option<TcpListener>,
    ) -> Result<Self, StartError> {
        let db = open_db(&settings).await?;
        retry_transient(
            || migrate(&db),
            |e| {
                matches!(
                    e,
                    MigrateError::Store(StoreError::Unavailable(_))
                        | MigrateError::Failed {
                            source: StoreError::Unavailable(_),
                            ..
                        }
                )
            },
        )
        .await?;

        let key_sealer = settings.master_key.sealer(b"signing-keys");
        let key_set = retry_transient(
            || keys::bootstrap(&db, &key_sealer, settings.key_import.as_ref(), &clock),
            |e| matches!(e, KeyError::Store(StoreError::Unavailable(_))),
        )
        .await?;
        let keys: KeyHandle = Arc::new(ArcSwap::from_pointee(key_set));

        let actors = Handles::new();
        let (stop, _) = watch::channel(false);
        let (audit, audit_writer) = crate::ops::audit::Audit::spawn(db.clone(), clock.clone());
        let on_rotate: keys::OnRotate = {
            let audit = audit.clone();
            Arc::new(move |kid: &str| {
                audit.record(crate::ops::audit::AuditEvent {
                    kind: "key_rotation",
                    detail: Some(kid.to_owned()),
                    ..Default::default()
                })
            })
        };
        let policy = RefreshPolicy {
            token_ttl: settings.refresh_token_ttl,
            session_max_ttl: settings.session_max_ttl,
            grace: settings.refresh_grace,
        };
        let redis = match &settings.redis {
            Some((url, prefix, timeout)) => Some(
                RedisBackend::new(url, prefix, *timeout).map_err(|e| StartError::Startup {
                    what: "REDIS_URL",
                    source: e.into(),
                })?,
            ),
            None => None,
        };
        let limiter = RateLimiter::new(
            &settings.limits,
            clock.clone(),
            redis,
            settings.memory_max_keys,
        );
        let (probe, health) = limiter.health();
        let root_args = RootArgs {
            keys: KeyManagerArgs {
                store: db.clone(),
                sealer: key_sealer,
                handle: keys.clone(),
                clock: clock.clone(),
                rotation: rotation_policy(&settings),
                on_rotate: Some(on_rotate),
            },
            limiter: LimiterArgs {
                probe,
                health,
                every: LIMITER_PROBE_EVERY,
            },
            handles: actors.clone(),
        };
        let (root, root_join) = Actor::spawn(None, RootSupervisor::<Db>::default(), root_args)
            .await
            .map_err(|e| StartError::Startup {
                what: "the supervision tree",
                // ractor's spawn error is not `Sync`; its text is all it carries.
                source: e.to_string().into(),
            })?;

        let metrics = Arc::new(crate::ops::metrics::Metrics::new());
        let passwords = Passwords::new(
            settings.argon2.clone(),
            settings.hash_concurrency,
            settings.hash_queue,
            settings.hash_max_wait,
            settings.ask_timeout,
            crate::security::passwords::IDLE_RELEASE,
            metrics.hashing.clone(),
        )
        .await
        .map_err(|e| StartError::Startup {
            what: "password hashing",
            source: Box::new(e),
        })?;
        let tokens = TokenIssuer::new(
            keys.clone(),
            settings.issuer.clone(),
            settings.audience.clone(),
            settings.access_token_ttl,
            clock.clone(),
        );
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(settings.listen_addr)
                .await
                .map_err(StartError::Bind)?,
        };
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let metrics_listener = match settings.metrics.listen_addr {
            Some(a) => Some(TcpListener::bind(a).await.map_err(StartError::Bind)?),
            None => None,
        };
        let revocations = crate::security::revocation::Revocations::new(settings.access_token_ttl);
        let families = Families {
            store: db.clone(),
            sealer: settings.master_key.sealer(b"refresh-successor"),
            policy,
            clock: clock.clone(),
        };
        let mfa = MfaConfig {
            sealer: settings.master_key.sealer(b"totp-secrets"),
            recovery: settings.master_key.keyed_hash(b"recovery-codes"),
            issuer: settings.mfa_issuer.clone(),
        };
        let webauthn = match &settings.webauthn {
            Some(rp) => Some(
                crate::app::passkeys::relying_party(rp, &settings.product_name).map_err(|e| {
                    StartError::Startup {
                        what: "WEBAUTHN_RP_ID",
                        source: Box::new(e),
                    }
                })?,
            ),
            None => {
                tracing::warn!(issuer = %settings.issuer, "passkeys are off: the issuer's host is not a domain and WEBAUTHN_RP_ID is unset");
                None
            }
        };
        let development = settings.app_env == crate::config::AppEnv::Development;
        let delivery = crate::mail::Delivery::new(
            settings.mail.smtp_url.as_ref().map(|u| u.expose()),
            settings.mail.dir.clone(),
            development,
        )
        .map_err(|e| StartError::Startup {
            what: "SMTP_URL",
            source: Box::new(e),
        })?;
        match (&settings.mail.smtp_url, development) {
            (Some(_), _) => {}
            (None, true) => {
                tracing::info!(dir = %settings.mail.dir.display(), "no SMTP_URL: mail is written as files and its links logged")
            }
            (None, false) => {
                tracing::warn!(dir = %settings.mail.dir.display(), "no SMTP_URL: mail is only written as files; set SMTP_URL to deliver it")
            }
        }
        let state = Arc::new(App::new(Parts {
            delivery,
            settings,
            db,
            actors,
            keys,
            families,
            mfa,
            passwords,
            tokens,
            limiter,
            revocations,
            clock,
            audit,
            metrics,
            webauthn,
        }));
        Ok(Self {
            listener,
            addr,
            metrics_listener,
            state,
            root,
            root_join,
            stop,
            audit_writer,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The internal metrics listener's address, when `METRICS_LISTEN_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// A handle that stops the application.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stop.clone())
    }

    /// The audit trail (tests flush it before reading rows).
    pub fn audit(&self) -> crate::ops::audit::Audit {
        self.state.audit.clone()
    }

    /// The rate limiter (tests read its backend and counters).
    pub fn limiter(&self) -> RateLimiter {
        self.state.limiter()
    }

    /// The actor handles (tests use them to inject faults and read restart counts).
    pub fn actors(&self) -> Arc<Handles> {
        self.state.actors()
    }

    /// Serves until a signal or [`Stopper::stop`], then shuts down in order.
    pub async fn run_until_stopped(self) -> Result<(), StartError> {
        let Self {
            listener,
            addr,
            metrics_listener,
            state,
            root,
            root_join,
            stop,
            audit_writer,
        } = self;
        let mut stopped = stop.subscribe();
        let janitor = tokio::spawn(prune_loop(state.clone(), stop.subscribe()));
        let mail_sender = tokio::spawn(mail_loop(state.clone(), stop.subscribe()));
        tracing::info!(addr = %addr, "listening");
        let internal = metrics_listener.map(|l| {
            if let Ok(a) = l.local_addr() {
                tracing::info!(addr = %a, "metrics listening");
            }
            let mut stopped = stop.subscribe();
            let limits = state.settings.edge;
            tokio::spawn(http::server::serve(
                l,
                http::metrics_routes(state.clone()),
                4,
                limits,
                state.metrics.clone(),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            ))
        });
        let shutdown = async move {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => {}
                _ = terminate_signal() => tracing::info!("shutdown signal received"),
            }
        };
        http::server::serve(
            listener,
            http::routes(state.clone()),
            state.settings.max_in_flight,
            state.settings.edge,
            state.metrics.clone(),
            shutdown,
        )
        .await;
        stop.send_replace(true);
        let _ = janitor.await;
        let _ = mail_sender.await;
        if let Some(internal) = internal {
            let _ = internal.await;
        }
        root.stop(Some("shutdown".into()));
        let _ = tokio::time::timeout(Duration::from_secs(10), root_join).await;
        // The last audit handles go with the state; the writer then stores what is queued.
        drop(state);
        let _ = tokio::time::timeout(Duration::from_secs(10), audit_writer).await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The key rotation schedule from the settings: new keys are published for the JWKS `max-age`
/// before they sign, and old keys stay published for an access-token lifetime plus a minute of
/// clock skew after they stop signing.
pub fn rotation_policy(settings: &Settings) -> RotationPolicy {
    RotationPolicy {
        period: settings.key_rotation,
        prepublish: crate::http::discovery::JWKS_MAX_AGE as i64,
        retire_after: settings.access_token_ttl + 60,
        check_every: settings.key_check_interval,
    }
}

/// Runs a start-up step again while it fails transiently (`transient`): instances starting
/// together on one primary contend for its write lock and may be interrupted by it. Gives up
/// after about ten seconds with the last error.
async fn retry_transient<T, E, F, Fut>(mut step: F, transient: impl Fn(&E) -> bool) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut wait = Duration::from_millis(20);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match step().await {
            Err(e) if transient(&e) && tokio::time::Instant::now() + wait < deadline => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// How long the start waits for a remote primary to answer before it gives up with a clear
/// message.
const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The database of the settings: a local file, or a remote primary.
async fn open_db(settings: &Settings) -> Result<Db, StartError> {
    Ok(match &settings.database {
        DatabaseLocation::File(path) => Db::open_local(path, settings.db_cache_kib).await?,
        DatabaseLocation::Remote { url, token } => {
            Db::open_remote(url, token, REMOTE_CONNECT_TIMEOUT).await?
        }
        DatabaseLocation::Replica {
            path,
            sync_url,
            token,
            interval,
        } => Db::open_replica(path, sync_url, token, *interval).await?,
    })
}

/// `edge-idp keys list|rotate`: works on the configured database directly; running instances
/// pick a rotation up at their next key check.
pub async fn keys_command(settings: Settings, action: KeysAction) -> Result<String, StartError> {
    let db = open_db(&settings).await?;
    migrate(&db).await?;
    let clock = Clock::system();
    let sealer = settings.master_key.sealer(b"signing-keys");
    let set = keys::bootstrap(&db, &sealer, settings.key_import.as_ref(), &clock).await?;
    let now = clock.now();
    match action {
        KeysAction::Rotate => {
            let newest = set.newest().activates_at;
            let (audit, writer) = crate::ops::audit::Audit::spawn(db.clone(), clock.clone());
            let on_rotate: keys::OnRotate = Arc::new(move |kid: &str| {
                audit.record(crate::ops::audit::AuditEvent {
                    kind: "key_rotation",
                    detail: Some(format!("{kid} (edge-idp keys rotate)")),
                    ..Default::default()
                })
            });
            let rotated = keys::rotate(
                &db,
                &sealer,
                &rotation_policy(&settings),
                newest,
                now,
                Some(&on_rotate),
            )
            .await;
            drop(on_rotate);
            let _ = writer.await;
            match rotated? {
                Some(kid) => Ok(format!(
                    "rotated: {kid} is published now and signs from {}",
                    crate::http::reply::rfc3339(now + rotation_policy(&settings).prepublish)
                )),
                None => Ok("another instance rotated at the same moment; nothing to do".into()),
            }
        }
        KeysAction::List => {
            let signing = set.signing_key(now).kid.clone();
            let mut out = format!(
                "{:<45} {:<13} {:<22} {}\n",
                "kid", "state", "signs from", "retires"
            );
            for k in &set.published {
                let state = if k.kid == signing {
                    "signing"
                } else if k.activates_at > now {
                    "pre-published"
                } else {
                    "verifying"
                };
                let retires = k
                    .retires_at
                    .map(crate::http::reply::rfc3339)
                    .unwrap_or_else(|| "-".into());
                out.push_str(&format!(
                    "{:<45} {:<13} {:<22} {}\n",
                    k.kid,
                    state,
                    crate::http::reply::rfc3339(k.activates_at),
                    retires
                ));
            }
            Ok(out)
        }
    }
}

/// `edge-idp clients create|list|delete|rotate-secret`: the client registry on the configured
/// database; running instances read it per request.
pub async fn clients_command(
    settings: Settings,
    action: ClientsAction,
) -> Result<String, StartError> {
    use crate::app::clients::{ClientRegistry, NewClient};
    use crate::app::AppError;
    let db = open_db(&settings).await?;
    migrate(&db).await?;
    let clock = Clock::system();
    let (audit, writer) = crate::ops::audit::Audit::spawn(db.clone(), clock.clone());
    let registry = ClientRegistry::new(db, clock, audit);
    let refused = |e: AppError| match e {
        AppError::InvalidClient(why) => StartError::Command(why),
        AppError::NotFound => StartError::Command("no client with that client_id".into()),
        other => StartError::Command(crate::ops::telemetry::chain(&other)),
    };
    let secret_json = |id: &str, secret: Option<&str>| {
        format!(
            "{}\n",
            serde_json::json!({"client_id": id, "client_secret": secret})
        )
    };
    let out = match action {
        ClientsAction::Create(c) => {
            let json = c.json;
            let r = registry
                .create(NewClient {
                    name: c.name,
                    redirect_uris: c.redirect_uris,
                    post_logout_redirect_uris: c.post_logout_redirect_uris,
                    public: c.public,
                    grants: c.grants,
                    scopes: c.scopes,
                    first_party: c.first_party,
                    require_pkce: c.require_pkce,
                })
                .await
                .map_err(refused)?;
            let id = &r.client.client_id;
            match (json, &r.secret) {
                (true, s) => secret_json(id, s.as_ref().map(|s| s.expose())),
                (false, Some(s)) => format!(
                    "client_id:     {id}\nclient_secret: {}\n(the secret is shown this once; only its hash is kept)\n",
                    s.expose()
                ),
                (false, None) => format!("client_id: {id} (public: no secret, PKCE required)\n"),
            }
        }
        ClientsAction::List { json } => {
            let clients = registry.list().await.map_err(refused)?;
            if json {
                let list: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "client_id": c.client_id,
                            "name": c.name,
                            "public": c.secret_hash.is_none(),
                            "redirect_uris": c.redirect_uris,
                            "post_logout_redirect_uris": c.post_logout_redirect_uris,
                            "grant_types": c.grant_types,
                            "scopes": c.scopes,
                            "first_party": c.first_party,
                            "require_pkce": c.require_pkce,
                            "created_at": crate::http::reply::rfc3339(c.created_at),
                        })
                    })
                    .collect();
                format!("{}\n", serde_json::Value::Array(list))
            } else {
                let mut out = format!(
                    "{:<24} {:<12} {:<30} {}\n",
                    "client_id", "type", "name", "redirect URIs"
                );
                for c in &clients {
                    let kind = if c.secret_hash.is_some() {
                        "confidential"
                    } else {
                        "public"
                    };
                    out.push_str(&format!(
                        "{:<24} {:<12} {:<30} {}\n",
                        c.client_id,
                        kind,
                        c.name,
                        c.redirect_uris.join(" ")
                    ));
                }
                out
            }
        }
        ClientsAction::Delete { client_id } => {
            registry.delete(&client_id).await.map_err(refused)?;
            format!("deleted: {client_id}\n")
        }
        ClientsAction::RotateSecret { client_id, json } => {
            let secret = registry.rotate_secret(&client_id).await.map_err(refused)?;
            if json {
                secret_json(&client_id, Some(secret.expose()))
            } else {
                format!(
                    "client_secret: {}\n(the old secret no longer works; this one is shown once)\n",
                    secret.expose()
                )
            }
        }
    };
    drop(registry);
    let _ = writer.await;
    Ok(out)
}

async fn terminate_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The outbox sender: a pass when mail is queued here, else every `MAIL_POLL_MS`; at the
/// stop, the lease is given up so another instance takes over at once.
async fn mail_loop(state: SharedApp, mut stop: watch::Receiver<bool>) {
    let every = state.settings.mail.poll;
    loop {
        tokio::select! {
            _ = state.deliver_mail() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        tokio::select! {
            _ = state.mail_wait(every) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    state.release_mail_lease().await;
}

async fn prune_loop(state: SharedApp, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        state.prune().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_idp_actors::ActorKind;

    /// An application on a temporary folder, built (database, keys, supervision tree) but not
    /// serving.
    async fn built(dir: &std::path::Path) -> Application {
        let argv = [
            "edge-idp",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen-addr",
            "127.0.0.1:0",
            "--mfa-encryption-key",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
            "--argon2-memory-kib",
            "1024",
            "--argon2-iterations",
            "1",
        ];
        let config = crate::cli::Cli::parse_args_only(argv).unwrap().config;
        let (key, _) = config.resolve_master_key().unwrap();
        Application::build(config.validate(key).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_child_that_panics_is_restarted_counted_and_reachable_again() {
        let dir = tempfile::tempdir().unwrap();
        let app = built(dir.path()).await;
        let actors = app.actors();
        for kind in ActorKind::ALL {
            assert_eq!(actors.running(kind), 1, "{kind:?} runs");
            actors.inject_panic(kind);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while actors.restarts(kind) < 1 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{kind:?} was not restarted"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // The new incarnation is the one the handles reach.
            actors.ping(kind, Duration::from_secs(5)).await.unwrap();
            assert_eq!(actors.running(kind), 1, "{kind:?} runs again");
        }
    }
}
