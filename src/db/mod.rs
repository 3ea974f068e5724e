//! libSQL storage: the connection pool, migrations, and the store traits of the actors crate.
//!
//! libSQL's local connections run SQLite synchronously inside their `async fn`s, and a busy
//! database makes SQLite sleep in its busy handler. Run on a runtime worker, that would stall
//! every request on the worker; so each storage operation runs whole (transaction included) on
//! the blocking pool via [`Db::run`], and async tasks only await its result.
//!
//! SQLite admits one writer at a time, and a writer that finds the lock taken sleeps in its busy
//! handler (1, 2, 5, 10 … 100 ms) before it looks again. Under load that sleep, not the work,
//! was the cost of a refresh: sixteen rotations queued on the lock waited tens of milliseconds
//! for a write that takes tens of microseconds. So this process's writers queue first on a fair
//! async gate ([`Db::write`]) and meet SQLite's lock one at a time; the busy handler is left
//! for writers of other processes sharing the file.

mod migrate;
mod orgs;
mod store;

pub use migrate::{migrate, MigrateError, MIGRATIONS};
pub use orgs::{Profile, Removal, SessionRow};

use edge_idp_actors::StoreError;
use libsql::{Connection, Database};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long SQLite waits for another writer (this process or another) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept for reuse. With the page cache per connection (`DB_CACHE_KIB`), this
/// bounds what storage holds in memory: SQLite fills a connection's cache as the database
/// grows, so a server's memory rises with its first traffic and stays under this product (the
/// soak in RELIABILITY.md); the operating system's page cache serves what does not fit.
const MAX_IDLE: usize = 16;

/// A shared libSQL database with a small connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    idle: Mutex<Vec<Connection>>,
    /// `PRAGMA cache_size` of every connection, as a negative KiB count.
    cache_pragma: String,
    /// This process's writers, one at a time, first come first served.
    writers: Arc<tokio::sync::Mutex<()>>,
}

impl Db {
    /// Opens (creating if needed) a local database file with WAL and foreign keys, and
    /// `cache_kib` of page cache per pooled connection.
    pub async fn open_local(path: &Path, cache_kib: u32) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Other(format!("{}: {e}", dir.display())))?;
        }
        let db = libsql::Builder::new_local(path)
            .build()
            .await
            .map_err(map_err)?;
        let this = Self {
            inner: Arc::new(Inner {
                db,
                idle: Mutex::new(Vec::new()),
                cache_pragma: format!(
                    "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-{cache_kib};"
                ),
                writers: Arc::new(tokio::sync::Mutex::new(())),
            }),
        };
        // WAL is a property of the file: readers never block the writer, and a crash loses no
        // committed transaction. synchronous=NORMAL (set per connection) keeps commits durable
        // across process crashes; see the README for the trade-off.
        this.run(|c| async move {
            let mut rows = c
                .query("PRAGMA journal_mode=WAL", ())
                .await
                .map_err(map_err)?;
            while rows.next().await.map_err(map_err)?.is_some() {}
            Ok(())
        })
        .await?;
        Ok(this)
    }

    async fn checkout(&self) -> Result<Connection, StoreError> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        if let Some(c) = idle {
            return Ok(c);
        }
        let c = self.inner.db.connect().map_err(map_err)?;
        c.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
        c.execute_batch(&self.inner.cache_pragma)
            .await
            .map_err(map_err)?;
        Ok(c)
    }

    fn checkin(&self, c: Connection) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Runs `op`, which only reads, with a pooled connection on the blocking pool. A connection
    /// left inside a transaction (an error between BEGIN and COMMIT) is rolled back and
    /// discarded.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
        T: Send + 'static,
    {
        self.exec(None, op).await
    }

    /// Runs `op`, which writes, as [`Db::run`] does, after this process's earlier writers. The
    /// wait for them is bounded like SQLite's own wait for the lock, and answered the same way.
    pub async fn write<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
        T: Send + 'static,
    {
        let turn = tokio::time::timeout(BUSY_TIMEOUT, self.inner.writers.clone().lock_owned())
            .await
            .map_err(|_| StoreError::Unavailable("database is busy: writers queued".into()))?;
        self.exec(Some(turn), op).await
    }

    async fn exec<T, F, Fut>(
        &self,
        turn: Option<tokio::sync::OwnedMutexGuard<()>>,
        op: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
        T: Send + 'static,
    {
        let this = self.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            // The turn ends with the work, even if the caller stopped waiting for it.
            let _turn = turn;
            rt.block_on(async {
                let conn = this.checkout().await?;
                let result = op(conn.clone()).await;
                if conn.is_autocommit() {
                    this.checkin(conn);
                } else {
                    let _ = conn.execute("ROLLBACK", ()).await;
                }
                result
            })
        })
        .await
        .map_err(|e| StoreError::Other(format!("storage task failed: {e}")))?
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| async move {
            let mut rows = c.query("SELECT 1", ()).await.map_err(map_err)?;
            rows.next().await.map_err(map_err)?;
            Ok(())
        })
        .await
    }
}

/// Maps a libSQL error to the storage error the actors understand.
pub fn map_err(e: libsql::Error) -> StoreError {
    let text = e.to_string();
    match &e {
        libsql::Error::SqliteFailure(code, _) if is_busy(*code) || is_full(*code) => {
            StoreError::Unavailable(text)
        }
        _ if text.contains("database is locked")
            || text.contains("database is busy")
            || text.contains("database or disk is full") =>
        {
            StoreError::Unavailable(text)
        }
        _ => StoreError::Other(text),
    }
}

/// A full disk (or a size-limited database) is an outage of storage, not a fault of the request:
/// SQLite rolls the transaction back, so nothing is half-written, and writes work again once
/// space is back.
fn is_full(code: i32) -> bool {
    // SQLITE_FULL = 13.
    code & 0xff == 13
}

fn is_busy(code: i32) -> bool {
    // SQLITE_BUSY = 5, SQLITE_LOCKED = 6, and their extended codes.
    matches!(code & 0xff, 5 | 6)
}

/// Whether `e` is a UNIQUE or PRIMARY KEY violation.
pub(crate) fn is_unique_violation(e: &libsql::Error) -> bool {
    match e {
        libsql::Error::SqliteFailure(code, msg) => {
            *code == 2067 || *code == 1555 || msg.contains("UNIQUE constraint failed")
        }
        other => other.to_string().contains("UNIQUE constraint failed"),
    }
}
