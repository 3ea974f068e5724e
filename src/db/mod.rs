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
//!
//! libSQL prepares a statement on every `execute` and `query`, and SQLite's parser and query
//! planner were most of SQLite's CPU in a rotation (170 µs of it; 67 µs with the statements
//! prepared once). A pooled [`Conn`] keeps the statements of the hot paths' batches prepared
//! (see [`batch`]) for as long as the connection lives;
//! SQLite re-prepares one itself if the schema changes under it.
//!
//! Remote mode (`DATABASE_URL=libsql://…`, `http(s)://…`) speaks Hrana over HTTP to a libSQL
//! server (sqld, Turso). There nothing runs SQLite in this process, so operations run on the
//! runtime like any network call, not on the blocking pool, and nothing is prepared ahead (a
//! remote "prepare" is a round trip). Writes of more than one statement go to the primary as one
//! request ([`batch`]), never as a transaction held open across requests.

mod batch;
mod clients;
mod guards;
mod mail;
mod migrate;
mod oauth;
mod orgs;
mod passkeys;
mod store;

pub use batch::{Batch, Outcome};
pub use clients::ClientRecord;
pub use guards::{Attempt, Failure};
pub use mail::{ChangeOutcome, DueMail, LinkKind, NewLink, OutboxState, Outgoing};
pub use migrate::{migrate, MigrateError, MIGRATIONS};
pub use oauth::{BrowserSession, CodeGrant, CodeState, Consent, RefreshTokenInfo};
pub use orgs::{Acceptance, Invitation, PendingInvitation, Profile, Removal, SessionRow};
pub use passkeys::{Ceremony, CeremonyKind, PasskeyRow};

use edge_idp_actors::StoreError;
use libsql::{Connection, Database, Statement};
use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long SQLite waits for another writer (this process or another) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Write batches this process has in flight at a primary at once. The primary runs write
/// transactions one at a time; more in flight from one instance only contend for its lock
/// (each refused `BEGIN IMMEDIATE` is a retry), and with 16 rotations at once some waited out
/// the 5 s bound (`docs/benchmarks.md`, 2026-12-05). A few overlap the round trips.
const PRIMARY_WRITERS: usize = 4;

/// How long past [`BUSY_TIMEOUT`] a local operation may take before its caller is answered
/// 503: long enough that a busy database is reported by SQLite itself.
const LOCAL_GRACE: Duration = Duration::from_secs(1);
/// Idle connections kept for reuse. With the page cache per connection (`DB_CACHE_KIB`), this
/// bounds what storage holds in memory: SQLite fills a connection's cache as the database
/// grows, so a server's memory rises with its first traffic and stays under this product (the
/// soak in docs/reliability.md); the operating system's page cache serves what does not fit.
const MAX_IDLE: usize = 16;
/// How long a remote connection may wait in the pool: well under the 10 s after which a
/// primary expires its idle stream.
const REMOTE_IDLE_MAX: Duration = Duration::from_secs(5);

/// A shared libSQL database with a small connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

/// A pooled connection and the statements prepared on it. Derefs to the libSQL connection.
#[derive(Clone)]
pub struct Conn {
    conn: Connection,
    prepared: Arc<Mutex<HashMap<&'static str, Arc<Statement>>>>,
}

impl Deref for Conn {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Conn {
    /// `sql` prepared on this connection, once.
    pub(super) async fn prepared(&self, sql: &'static str) -> Result<Arc<Statement>, StoreError> {
        let hit = self
            .prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned();
        if let Some(s) = hit {
            return Ok(s);
        }
        let s = Arc::new(self.conn.prepare(sql).await.map_err(map_err)?);
        self.prepared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql, s.clone());
        Ok(s)
    }

    /// Begins an immediate transaction on this connection itself, so that every statement sent
    /// on it (prepared ones included) runs inside. End it with [`Conn::commit`]; a connection
    /// left inside a transaction is rolled back when its operation ends.
    pub async fn begin_immediate(&self) -> Result<(), StoreError> {
        self.conn
            .execute("BEGIN IMMEDIATE", ())
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    /// Commits the transaction of [`Conn::begin_immediate`].
    pub async fn commit(&self) -> Result<(), StoreError> {
        self.conn
            .execute("COMMIT", ())
            .await
            .map(|_| ())
            .map_err(map_err)
    }
}

/// Where a pool's statements run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// SQLite in this process, on a local file.
    Local,
    /// Every statement at a remote primary over Hrana.
    Remote,
    /// An embedded replica: reads from its local file, writes (and whole write transactions)
    /// at the primary, the file synced from it.
    Replica,
}

struct Inner {
    db: Database,
    /// Where statements run.
    mode: Mode,
    /// Idle connections, each with when it was put back; the most recent last.
    idle: Mutex<Vec<(Conn, std::time::Instant)>>,
    /// `PRAGMA cache_size` of every connection, as a negative KiB count.
    cache_pragma: String,
    /// This process's writers, one at a time, first come first served.
    writers: Arc<tokio::sync::Mutex<()>>,
    /// The primary that [`Db::write_batch`] sends batches to, in remote and replica modes.
    primary: Option<batch::Primary>,
    /// This process's batches in flight at the primary, at most [`PRIMARY_WRITERS`].
    primary_writers: Arc<tokio::sync::Semaphore>,
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
        let pragmas = format!(
            "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-{cache_kib};"
        );
        let this = Self::with(db, Mode::Local, pragmas, None);
        // WAL is a property of the file: readers never block the writer, and a crash loses no
        // committed transaction. synchronous=NORMAL (set per connection) keeps commits durable
        // across process crashes; see docs/design.md for the trade-off.
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

    /// A pool over `db`; every new connection first runs `cache_pragma`.
    fn with(
        db: Database,
        mode: Mode,
        cache_pragma: String,
        primary: Option<batch::Primary>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                mode,
                idle: Mutex::new(Vec::new()),
                cache_pragma,
                writers: Arc::new(tokio::sync::Mutex::new(())),
                primary,
                primary_writers: Arc::new(tokio::sync::Semaphore::new(PRIMARY_WRITERS)),
            }),
        }
    }

    /// Opens an embedded replica: the local file at `path`, kept in sync with the primary at
    /// `url` every `interval` (and at once after this process's own writes, which it reads back
    /// at once). Reads are served from the file and may be up to `interval` old for writes made
    /// by other instances; writes and whole write transactions run at the primary, so the
    /// one-use decisions are the primary's.
    pub async fn open_replica(
        path: &Path,
        url: &str,
        token: &str,
        interval: Duration,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Other(format!("{}: {e}", dir.display())))?;
        }
        let build = libsql::Builder::new_remote_replica(path, url.to_owned(), token.to_owned())
            .read_your_writes(true)
            .sync_interval(interval)
            .build();
        let db = match tokio::time::timeout(Duration::from_secs(10), build).await {
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "the primary at {} did not answer the replica within 10 s (check DATABASE_SYNC_URL and DATABASE_AUTH_TOKEN)",
                    redact_url(url)
                )))
            }
            Ok(db) => db.map_err(map_err)?,
        };
        match tokio::time::timeout(Duration::from_secs(10), db.sync()).await {
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "the replica's first sync with {} did not finish within 10 s (check DATABASE_AUTH_TOKEN)",
                    redact_url(url)
                )))
            }
            Ok(r) => {
                r.map_err(map_err)?;
            }
        }
        // A replica's connections take no PRAGMA with arguments (libSQL sends them to the
        // primary, which refuses them): SQLite's defaults for the local file, so
        // `DB_CACHE_KIB` does not apply.
        let primary = batch::Primary::new(url, token)?;
        Ok(Self::with(db, Mode::Replica, String::new(), Some(primary)))
    }

    /// Pulls the primary's latest writes into an embedded replica now; `false` (and nothing
    /// done) in the other modes. For a read that found nothing where another instance may just
    /// have written.
    pub async fn sync_replica(&self) -> Result<bool, StoreError> {
        if self.inner.mode != Mode::Replica {
            return Ok(false);
        }
        match tokio::time::timeout(BUSY_TIMEOUT, self.inner.db.sync()).await {
            Err(_) => Err(StoreError::Unavailable(
                "the replica's sync with the primary timed out".into(),
            )),
            Ok(r) => r.map(|_| true).map_err(map_err),
        }
    }

    /// Connects to a remote libSQL primary (sqld, Turso) at `url` with `token`, and checks that
    /// it answers and accepts the token for writes within `timeout`: a refused token or an
    /// unreachable server stops the start with one clear line instead of failing requests.
    pub async fn open_remote(
        url: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let db = libsql::Builder::new_remote(url.to_owned(), token.to_owned())
            .build()
            .await
            .map_err(map_err)?;
        let primary = batch::Primary::new(url, token)?;
        let this = Self::with(
            db,
            Mode::Remote,
            "PRAGMA foreign_keys=ON;".to_owned(),
            Some(primary),
        );
        let probe = this.run(|c| async move {
            // A write: a read-only token passes a SELECT but not this.
            c.execute("CREATE TABLE IF NOT EXISTS edge_idp_probe (x INTEGER)", ())
                .await
                .map_err(map_err)?;
            Ok(())
        });
        match tokio::time::timeout(timeout, probe).await {
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database at {} did not answer within {} s",
                redact_url(url),
                timeout.as_secs()
            ))),
            Ok(Err(e)) => {
                let text = e.to_string();
                let lower = text.to_ascii_lowercase();
                if ["401", "403", "unauthorized", "forbidden", "auth"]
                    .iter()
                    .any(|w| lower.contains(w))
                {
                    Err(StoreError::Other(format!(
                        "the database at {} refused DATABASE_AUTH_TOKEN (missing, expired, read-only or signed by another key): {text}",
                        redact_url(url)
                    )))
                } else {
                    Err(e)
                }
            }
            Ok(Ok(())) => Ok(this),
        }
    }

    async fn checkout(&self) -> Result<Conn, StoreError> {
        let idle = {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
            match idle.pop() {
                // A primary ends a Hrana stream idle for 10 s (`STREAM_EXPIRED`), and the next
                // statement on it fails: a remote connection idle that long is not reused, nor
                // any put back before it.
                Some((_, since))
                    if self.inner.mode == Mode::Remote && since.elapsed() > REMOTE_IDLE_MAX =>
                {
                    idle.clear();
                    None
                }
                other => other.map(|(c, _)| c),
            }
        };
        if let Some(c) = idle {
            return Ok(c);
        }
        let c = self.inner.db.connect().map_err(map_err)?;
        c.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
        if !self.inner.cache_pragma.is_empty() {
            c.execute_batch(&self.inner.cache_pragma)
                .await
                .map_err(map_err)?;
        }
        Ok(Conn {
            conn: c,
            prepared: Arc::default(),
        })
    }

    fn checkin(&self, c: Conn) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((c, std::time::Instant::now()));
        }
    }

    /// Runs `op`, which only reads, with a pooled connection on the blocking pool. A connection
    /// left inside a transaction (an error between BEGIN and COMMIT) is rolled back and
    /// discarded.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
        T: Send + 'static,
    {
        self.exec(None, op).await
    }

    /// Runs `op`, which writes, as [`Db::run`] does, after this process's earlier writers. The
    /// wait for them is bounded like SQLite's own wait for the lock, and answered the same way.
    pub async fn write<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
        T: Send + 'static,
    {
        let turn = tokio::time::timeout(BUSY_TIMEOUT, self.inner.writers.clone().lock_owned())
            .await
            .map_err(|_| StoreError::Unavailable("database is busy: writers queued".into()))?;
        self.exec(Some(turn), op).await
    }

    /// Runs `batch` as one write transaction (see [`batch`]): on a local file after this
    /// process's earlier writers, at a primary as one request. The primary orders the writers
    /// of every instance itself and a batch holds its write lock only while the primary runs
    /// it; this process keeps at most [`PRIMARY_WRITERS`] in flight there, so that its own
    /// writers do not crowd each other out of the lock. On an embedded replica the replica is
    /// synced after the batch, so that this instance reads what it wrote.
    pub async fn write_batch(&self, batch: batch::Batch) -> Result<batch::Outcome, StoreError> {
        let Some(primary) = &self.inner.primary else {
            return self
                .write(|c| async move { batch.run_local(&c).await })
                .await;
        };
        let turn = tokio::time::timeout(
            BUSY_TIMEOUT,
            self.inner.primary_writers.clone().acquire_owned(),
        )
        .await
        .map_err(|_| StoreError::Unavailable("database is busy: writers queued".into()))?
        .map_err(|_| StoreError::Unavailable("database closed".into()))?;
        // A task, so that a batch sent runs to its answer even if the caller stops waiting.
        let primary = primary.clone();
        let outcome = tokio::spawn(async move {
            let _turn = turn;
            primary.run(batch, BUSY_TIMEOUT).await
        })
        .await
        .map_err(|e| StoreError::Other(format!("storage task failed: {e}")))??;
        if self.inner.mode == Mode::Replica {
            // Committed already: a failed sync delays this instance's view, it undoes nothing.
            if let Err(e) = self.sync_replica().await {
                tracing::warn!(error = %e, "replica sync after a write failed");
            }
        }
        Ok(outcome)
    }

    async fn exec<T, F, Fut>(
        &self,
        turn: Option<tokio::sync::OwnedMutexGuard<()>>,
        op: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
        T: Send + 'static,
    {
        let this = self.clone();
        if self.inner.mode == Mode::Remote {
            // Network I/O: a task on the runtime, not the blocking pool; a task still, so that
            // an operation (a transaction holding the primary's write lock) runs to its end
            // even if the caller stops waiting.
            let task = tokio::spawn(async move {
                let _turn = turn;
                let conn = this.checkout().await?;
                let result = op(conn.clone()).await;
                // A connection whose operation failed is not reused: its Hrana stream may be
                // left interrupted or expired by the server. Nor are the idle ones: a failure
                // is most often the primary restarting or going away, which ends their
                // streams too, and the next operation would fail on them in turn.
                if result.is_ok() && conn.is_autocommit() {
                    this.checkin(conn);
                } else {
                    if !conn.is_autocommit() {
                        let _ = conn.execute("ROLLBACK", ()).await;
                    }
                    this.inner
                        .idle
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                }
                result
            });
            // Bounded like the local busy wait: a primary that does not answer is an outage,
            // answered 503 at once, never a hang.
            return match tokio::time::timeout(BUSY_TIMEOUT, task).await {
                Err(_) => Err(StoreError::Unavailable(
                    "the database primary did not answer in time".into(),
                )),
                Ok(joined) => {
                    joined.map_err(|e| StoreError::Other(format!("storage task failed: {e}")))?
                }
            };
        }
        let rt = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || {
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
        });
        // SQLite bounds its wait for the lock (`BUSY_TIMEOUT`); this bounds everything else an
        // operation can wait on (a stalled disk), a little later so that a busy database is
        // answered by SQLite's own error. The operation still runs to its end.
        match tokio::time::timeout(BUSY_TIMEOUT + LOCAL_GRACE, task).await {
            Err(_) => Err(StoreError::Unavailable(
                "the database did not answer in time".into(),
            )),
            Ok(joined) => {
                joined.map_err(|e| StoreError::Other(format!("storage task failed: {e}")))?
            }
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|c| async move {
            store::first_row(&c, "SELECT 1", ()).await?;
            Ok(())
        })
        .await
    }
}

/// Whether `c` runs SQLite in this process. libSQL does not say so directly; a local
/// connection is the one that supports reserved bytes (remote ones answer "not supported").
fn is_local(c: &Connection) -> bool {
    c.get_reserved_bytes().is_ok()
}

/// `url` without credentials, for messages.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        None => url.to_owned(),
    }
}

/// Maps a libSQL error to the storage error the actors understand.
pub fn map_err(e: libsql::Error) -> StoreError {
    match &e {
        libsql::Error::SqliteFailure(code, _) if is_busy(*code) || is_full(*code) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => classify(e.to_string()),
    }
}

/// The storage error for a database error's text (libSQL's, or a primary's in a batch).
fn classify(text: String) -> StoreError {
    // A libSQL server interrupts a statement now and then while other connections change the
    // schema or contend for its write lock (seen when instances start together): the
    // statement did nothing, and a retry succeeds. A primary that cannot be reached, or that
    // timed a transaction out, is an outage too: nothing was committed.
    if [
        "database is locked",
        "database is busy",
        "database or disk is full",
        "SQLITE_BUSY",
        "SQLITE_INTERRUPT",
        "SQLite error: interrupted",
        "TRANSACTION_TIMEOUT",
        "STREAM_EXPIRED",
        "http error",
    ]
    .iter()
    .any(|w| text.contains(w))
    {
        StoreError::Unavailable(text)
    } else {
        StoreError::Other(text)
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

#[cfg(test)]
mod tests {
    use super::store::Columns;
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_local(&dir.path().join("t.db"), 1024)
            .await
            .unwrap();
        db.write(|c| async move {
            c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE);")
                .await
                .map_err(map_err)?;
            Ok(())
        })
        .await
        .unwrap();
        (dir, db)
    }

    const INSERT: &str = "INSERT INTO t (k, v) VALUES (?1, ?2)";
    const READ: &str = "SELECT v FROM t WHERE k = ?1";

    /// Runs `batch` and reads the first column of the first row of each statement in `reads`.
    async fn texts(
        db: &Db,
        batch: Batch,
        reads: &[usize],
    ) -> Result<Vec<Option<String>>, StoreError> {
        let done = db.write_batch(batch).await?;
        reads
            .iter()
            .map(|&i| done.first(i).map(|r| r.text(0)).transpose())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_prepares_each_statement_once_and_each_use_reads_its_own_row() {
        let (_dir, db) = db().await;
        let other = db.inner.db.connect().unwrap();
        let mut b = Batch::default();
        for (k, v) in [(1, "one"), (2, "two")] {
            b.execute(INSERT, vec![k.into(), v.into()]);
        }
        let reads: Vec<usize> = [2, 1, 3].map(|k| b.query(READ, vec![k.into()])).to_vec();
        let rows = texts(&db, b, &reads).await.unwrap();
        assert_eq!(rows, [Some("two".to_owned()), Some("one".to_owned()), None]);
        let prepared: Vec<usize> = db
            .inner
            .idle
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.prepared.lock().unwrap().len())
            .collect();
        assert_eq!(
            prepared,
            [2],
            "one statement per SQL text, on the one connection"
        );
        // A statement left unreset would still hold its read of the database, and a checkpoint
        // from another connection could not take the whole log.
        let mut r = other
            .query("PRAGMA wal_checkpoint(TRUNCATE)", ())
            .await
            .unwrap();
        let busy: i64 = r.next().await.unwrap().unwrap().get(0).unwrap();
        assert_eq!(busy, 0, "a batch's read still holds the database");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_is_rolled_back_whole_and_its_statements_stay_usable() {
        let (_dir, db) = db().await;
        let mut b = Batch::default();
        b.execute(INSERT, vec![1.into(), "one".into()]);
        db.write_batch(b).await.unwrap();
        let mut b = Batch::default();
        b.execute(INSERT, vec![2.into(), "two".into()]);
        b.execute(INSERT, vec![3.into(), "one".into()]);
        assert!(
            matches!(db.write_batch(b).await, Err(StoreError::Conflict("unique"))),
            "the unique index refuses a second 'one'"
        );
        db.write(|c| async move {
            c.execute_batch("ALTER TABLE t ADD COLUMN w TEXT")
                .await
                .map_err(map_err)?;
            Ok(())
        })
        .await
        .unwrap();
        let mut b = Batch::default();
        b.execute(INSERT, vec![3.into(), "three".into()]);
        let reads: Vec<usize> = [1, 2, 3].map(|k| b.query(READ, vec![k.into()])).to_vec();
        let rows = texts(&db, b, &reads).await.unwrap();
        // 2 went with the batch that failed after it.
        assert_eq!(
            rows,
            [Some("one".to_owned()), None, Some("three".to_owned())]
        );
    }
}
