//! Prometheus metrics, in a registry owned by the application (not a process global, so several
//! instances in one test process keep their own counts).
//!
//! Labels are bounded by construction: routes are the route table's templates, never raw paths
//! with ids; outcomes, policies, backends and actors are fixed sets.

use crate::security::passwords::HashMetrics;
use edge_idp_actors::{ActorKind, Handles};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Mutex;

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    /// Requests by route template, method and status.
    pub http_requests: IntCounterVec,
    /// Latency by route template and method.
    pub http_duration: HistogramVec,
    /// Login outcomes: success, invalid_credentials, mfa_required, rate_limited, error.
    pub logins: IntCounterVec,
    /// Refresh outcomes: rotated, replayed, reused, invalid, rate_limited, error.
    pub refreshes: IntCounterVec,
    /// Rate-limit rejections by policy and backend.
    pub rate_limited: IntCounterVec,
    /// Password hashing: waits for a slot, hashes in flight, memory held.
    pub hashing: HashMetrics,
    /// The mail outbox: messages handed to the server (or written as files), attempts that
    /// failed, messages given up, and what waits now.
    pub mail: MailMetrics,
    actor_restarts: IntCounterVec,
    actors_running: IntGaugeVec,
    backend_switches: IntCounter,
    seen: Mutex<([u64; 4], u64)>,
}

/// The outbox's metrics (see [`Metrics::mail`]).
pub struct MailMetrics {
    /// Delivered, by kind.
    pub delivered: IntCounterVec,
    /// Failed attempts, by outcome (`retry`, `abandoned`).
    pub failed: IntCounterVec,
    /// Undelivered now.
    pub queued: IntGauge,
    /// Age of the oldest undelivered, seconds.
    pub oldest_age: IntGauge,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are fixed and unique in this file, so registration cannot collide.
    let _ = r.register(Box::new(m.clone()));
    m
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("edge_idp".into()), None).unwrap_or_default();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &r,
                IntCounterVec::new(Opts::new(name, help), labels)
                    .unwrap_or_else(|_| unreachable_metric()),
            )
        };
        let http_requests = counter(
            "http_requests_total",
            "HTTP requests by route template, method and status.",
            &["route", "method", "status"],
        );
        let http_duration = register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "HTTP request latency by route template and method.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
                &["route", "method"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
        );
        let logins = counter("logins_total", "Login attempts by outcome.", &["outcome"]);
        let refreshes = counter(
            "refreshes_total",
            "Refresh attempts by outcome.",
            &["outcome"],
        );
        let rate_limited = counter(
            "rate_limit_rejections_total",
            "Requests refused by a rate limit, by policy and backend.",
            &["policy", "backend"],
        );
        let actor_restarts = counter(
            "actor_restarts_total",
            "Actors restarted by their supervisor, by actor.",
            &["actor"],
        );
        let backend_switches = register(
            &r,
            IntCounter::new(
                "rate_limit_backend_switches_total",
                "Switches of the rate-limit backend between Redis and memory.",
            )
            .unwrap_or_else(|_| unreachable_metric()),
        );
        let hash_wait = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "password_hash_wait_seconds",
                    "Time a request waited for a password-hashing slot.",
                )
                .buckets(vec![
                    0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )
            .unwrap_or_else(|_| unreachable_metric()),
        );
        let hash_queue = register(
            &r,
            IntGauge::new(
                "password_hash_queue_depth",
                "Password hashes computing or waiting for a slot.",
            )
            .unwrap_or_else(|_| unreachable_metric()),
        );
        let hash_memory = register(
            &r,
            IntGauge::new(
                "password_hash_memory_bytes",
                "Argon2 working memory the hashing threads hold (given back after idle seconds).",
            )
            .unwrap_or_else(|_| unreachable_metric()),
        );
        let actors_running = register(
            &r,
            IntGaugeVec::new(
                Opts::new("actors_running", "Actors running now, by actor."),
                &["actor"],
            )
            .unwrap_or_else(|_| unreachable_metric()),
        );
        let mail_delivered = counter(
            "mail_delivered_total",
            "Mail handed to the SMTP server (or written as a file in development), by kind.",
            &["kind"],
        );
        let mail_failed = counter(
            "mail_attempts_failed_total",
            "Delivery attempts that failed, by outcome: retry (tried again later) or abandoned.",
            &["outcome"],
        );
        let gauge = |name: &str, help: &str| {
            register(
                &r,
                IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric()),
            )
        };
        let mail_queued = gauge(
            "mail_outbox_queued",
            "Mail in the outbox not yet delivered nor abandoned (as this instance last read it).",
        );
        let mail_oldest = gauge(
            "mail_outbox_oldest_age_seconds",
            "Age of the oldest undelivered mail in the outbox (0 when none waits).",
        );
        let build = register(
            &r,
            IntGaugeVec::new(Opts::new("build_info", "Build information."), &["version"])
                .unwrap_or_else(|_| unreachable_metric()),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Self {
            registry: r,
            http_requests,
            http_duration,
            logins,
            refreshes,
            rate_limited,
            hashing: HashMetrics {
                wait: hash_wait,
                queue: hash_queue,
                memory: hash_memory,
            },
            mail: MailMetrics {
                delivered: mail_delivered,
                failed: mail_failed,
                queued: mail_queued,
                oldest_age: mail_oldest,
            },
            actor_restarts,
            actors_running,
            backend_switches,
            seen: Mutex::new(([0; 4], 0)),
        }
    }

    /// Counts a login outcome.
    pub fn login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    /// Counts a refresh outcome.
    pub fn refresh(&self, outcome: &str) {
        self.refreshes.with_label_values(&[outcome]).inc();
    }

    /// Renders the Prometheus text format, first bringing the counters that live elsewhere
    /// (actor restarts, backend switches) up to date.
    pub fn render(&self, actors: &Handles, backend_switches: u64) -> String {
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            for (i, kind) in ActorKind::ALL.iter().enumerate() {
                let now = actors.restarts(*kind);
                let c = self.actor_restarts.with_label_values(&[kind.name()]);
                c.inc_by(now.saturating_sub(seen.0[i]));
                seen.0[i] = now;
                self.actors_running
                    .with_label_values(&[kind.name()])
                    .set(actors.running(*kind) as i64);
            }
            self.backend_switches
                .inc_by(backend_switches.saturating_sub(seen.1));
            seen.1 = backend_switches;
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Metric definitions above are constants; an invalid one is a programming error caught by
/// the tests on first use.
#[allow(clippy::panic)] // a constant definition that does not build is a bug, not a state.
fn unreachable_metric<T>() -> T {
    panic!("invalid metric definition")
}
