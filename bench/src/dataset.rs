//! The large data set: a million accounts and ten million refresh-token rows, as a deployment
//! holds after months, written straight into the server's database so the figures can be
//! compared with an empty database's.
//!
//! Every row is well-formed (UUID-shaped ids, a real Argon2id PHC hash, one session per account,
//! every token but the newest of each session used, nothing expired), so the server's indexes
//! and queries see the shape of real data. The scenarios use their own accounts; the seeded rows
//! are there to make every lookup search the big tables.

use libsql::Builder;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Inserts `users` accounts (each with its personal organization, membership and one session)
/// and `tokens` refresh-token rows spread evenly over those sessions, in one transaction, then
/// checkpoints the WAL so the measured runs do not pay for it.
pub async fn seed(db: &Path, users: u64, tokens: u64, phc: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let e = |e: libsql::Error| e.to_string();
    let database = Builder::new_local(db).build().await.map_err(e)?;
    let conn = database.connect().map_err(e)?;
    conn.query("PRAGMA busy_timeout = 30000", ())
        .await
        .map_err(e)?;
    // A big page cache: random 32-byte keys land all over the token index.
    conn.query("PRAGMA cache_size = -1000000", ())
        .await
        .map_err(e)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires = now + 14 * 86_400;
    let users = users.max(1);
    let per_session = tokens.div_ceil(users).max(1);
    let rows = |n: u64| {
        format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})")
    };
    let user_id = "printf('aaaaaaaa-0000-7000-8000-%012x', x)";
    let org_id = "printf('bbbbbbbb-0000-7000-8000-%012x', x)";
    let session_id = "printf('cccccccc-0000-7000-8000-%012x', x)";
    let tx = conn
        .transaction_with_behavior(libsql::TransactionBehavior::Immediate)
        .await
        .map_err(e)?;
    let statements = [
        format!(
            "{} INSERT INTO users (id, email, password_hash, created_at, updated_at, default_org_id) \
             SELECT {user_id}, printf('seed-%d@bench.example', x), ?1, {now}, {now}, {org_id} FROM c",
            rows(users)
        ),
        format!(
            "{} INSERT INTO organizations (id, name, created_at) SELECT {org_id}, 'Personal', {now} FROM c",
            rows(users)
        ),
        format!(
            "{} INSERT INTO memberships (org_id, user_id, role, created_at) \
             SELECT {org_id}, {user_id}, 'owner', {now} FROM c",
            rows(users)
        ),
        format!(
            "{} INSERT INTO sessions (id, user_id, active_org_id, amr, user_agent, ip, created_at, \
             last_used_at, expires_at) SELECT {session_id}, {user_id}, {org_id}, '[\"pwd\"]', \
             'seed', '127.0.0.1', {now}, {now}, {expires} FROM c",
            rows(users)
        ),
        // Token k belongs to session (k mod users) + 1, generation k div users.
        format!(
            "WITH RECURSIVE t(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM t WHERE k < {last}) \
             INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at, expires_at, used_at) \
             SELECT randomblob(32), printf('cccccccc-0000-7000-8000-%012x', (k % {users}) + 1), \
             k / {users}, {now}, {expires}, \
             CASE WHEN k / {users} < {per_session} - 1 THEN {now} END FROM t",
            last = tokens.saturating_sub(1)
        ),
    ];
    for (i, sql) in statements.iter().enumerate() {
        let params: Vec<libsql::Value> = if i == 0 { vec![phc.into()] } else { vec![] };
        tx.execute(sql, params).await.map_err(e)?;
        eprintln!(
            "  dataset: step {} of {} done at {:.0?}",
            i + 1,
            statements.len(),
            started.elapsed()
        );
    }
    tx.commit().await.map_err(e)?;
    conn.query("PRAGMA wal_checkpoint(TRUNCATE)", ())
        .await
        .map_err(e)?;
    Ok(started.elapsed())
}
