//! The audit trail: a structured `audit` log event and a row in `audit_events` for every
//! security-relevant action (signup, logins, MFA changes, refresh-token reuse, logout, password
//! change, membership changes, key rotation).
//!
//! Rows are written off the request path: [`Audit::record`] queues the event on a bounded
//! channel and a writer task inserts queued events in batches, one transaction each (the
//! pattern kanidm uses for side-effect writes). A full queue (10 000 events behind) drops the
//! row, counts it and logs a warning; the log event is always emitted. Events carry ids, the
//! client IP and the request id, never a secret.

use crate::db::{map_err, Batch, Db};
use edge_idp_actors::Clock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

const QUEUE: usize = 10_000;
const BATCH: usize = 256;

/// One audited action.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    /// What happened (`signup`, `login`, `login_failed`, …).
    pub kind: &'static str,
    /// Who did it (or whose account it concerns).
    pub user_id: Option<Uuid>,
    /// The session involved.
    pub session_id: Option<Uuid>,
    /// The organization involved.
    pub org_id: Option<Uuid>,
    /// The other party (the member added or removed).
    pub subject_id: Option<Uuid>,
    /// Client IP.
    pub ip: Option<String>,
    /// `X-Request-Id` of the request.
    pub request_id: Option<String>,
    /// A short non-secret detail (a role, a kid, a count).
    pub detail: Option<String>,
}

enum Item {
    Event(i64, AuditEvent),
    Flush(oneshot::Sender<()>),
}

/// Records audit events. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Item>,
    dropped: Arc<AtomicU64>,
    clock: Clock,
}

impl Audit {
    /// Starts the writer. It ends once every [`Audit`] handle is dropped and the queue is
    /// written, so awaiting it at shutdown stores every event recorded before.
    pub fn spawn(db: Db, clock: Clock) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
        let writer = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(i) => batch.push(i),
                        Err(_) => break,
                    }
                }
                write(&db, batch).await;
            }
        });
        (
            Self {
                tx,
                dropped: Arc::default(),
                clock,
            },
            writer,
        )
    }

    /// Emits the `audit` log event and queues the row.
    pub fn record(&self, e: AuditEvent) {
        tracing::info!(
            target: "audit",
            event = e.kind,
            user_id = e.user_id.map(|u| u.to_string()),
            session_id = e.session_id.map(|u| u.to_string()),
            org_id = e.org_id.map(|u| u.to_string()),
            subject_id = e.subject_id.map(|u| u.to_string()),
            ip = e.ip.as_deref(),
            request_id = e.request_id.as_deref(),
            detail = e.detail.as_deref(),
            "audit"
        );
        if self.tx.try_send(Item::Event(self.clock.now(), e)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                dropped = n,
                "audit queue full; row not stored (the log event above was emitted)"
            );
        }
    }

    /// Waits until every event recorded before this call is stored.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Item::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Rows dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write(db: &Db, batch: Vec<Item>) {
    let mut events = Vec::new();
    let mut waiters = Vec::new();
    for i in batch {
        match i {
            Item::Event(at, e) => events.push((at, e)),
            Item::Flush(w) => waiters.push(w),
        }
    }
    if !events.is_empty() {
        let n = events.len();
        let mut b = Batch::default();
        for (at, e) in events {
            let id = |u: Option<Uuid>| u.map(|u| u.to_string()).into();
            b.execute(
                "INSERT INTO audit_events (at, kind, user_id, session_id, org_id, subject_id, ip, request_id, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                vec![at.into(), e.kind.into(), id(e.user_id), id(e.session_id), id(e.org_id), id(e.subject_id), e.ip.into(), e.request_id.into(), e.detail.into()],
            );
        }
        let r = db.write_batch(b).await;
        if let Err(e) = r {
            tracing::error!(error = %e, events = n, "audit rows could not be stored");
        }
    }
    for w in waiters {
        let _ = w.send(());
    }
}

/// Deletes audit rows older than `retention_secs`.
pub async fn prune(
    db: &Db,
    now: i64,
    retention_secs: i64,
) -> Result<u64, edge_idp_actors::StoreError> {
    db.write(move |c| async move {
        c.execute(
            "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < ?1 LIMIT 5000)",
            [now - retention_secs],
        )
        .await
        .map_err(map_err)
    })
    .await
}
