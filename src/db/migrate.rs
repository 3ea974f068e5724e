//! Versioned migrations, compiled into the binary.
//!
//! Each `schema/NNNN_name.sql` is applied once, in order, inside its own immediate transaction,
//! and recorded in `schema_migrations`. Two instances starting together serialise on the write
//! lock and the second finds the work done. A database that has a version this binary does not
//! know came from a newer release: starting on it could corrupt data, so we refuse.

use super::store::first_row;
use super::{map_err, Db};
use edge_idp_actors::StoreError;
use libsql::TransactionBehavior;

/// `(version, name, sql)` of every migration, in order. A unit test checks this list against
/// the files in `schema/`.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../schema/0001_init.sql")),
    (2, "mfa", include_str!("../../schema/0002_mfa.sql")),
    (3, "audit", include_str!("../../schema/0003_audit.sql")),
    (
        4,
        "security",
        include_str!("../../schema/0004_security.sql"),
    ),
    (
        5,
        "invitations",
        include_str!("../../schema/0005_invitations.sql"),
    ),
    (6, "clients", include_str!("../../schema/0006_clients.sql")),
    (7, "oauth", include_str!("../../schema/0007_oauth.sql")),
    (
        8,
        "passkeys",
        include_str!("../../schema/0008_passkeys.sql"),
    ),
    (9, "email", include_str!("../../schema/0009_email.sql")),
];

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database was migrated by a newer binary.
    #[error("the database is at schema version {found}, newer than this binary's {known}; refusing to start (upgrade edge-idp or use another DATABASE_URL)")]
    TooNew {
        /// Version in the database.
        found: i64,
        /// Highest version this binary knows.
        known: i64,
    },
    /// A migration failed.
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        /// Its version.
        version: i64,
        /// Its name.
        name: &'static str,
        /// The cause.
        source: StoreError,
    },
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Brings the schema up to date; returns the versions applied now.
pub async fn migrate(db: &Db) -> Result<Vec<i64>, MigrateError> {
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    let found = db
        .write(|c| async move {
            c.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
                (),
            )
            .await
            .map_err(map_err)?;
            let row = first_row(&c, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", ()).await?;
            Ok(row.map(|r| r.get::<i64>(0).unwrap_or(0)).unwrap_or(0))
        })
        .await?;
    if found > known {
        return Err(MigrateError::TooNew { found, known });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        let did = db
            .write(move |c| async move {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .await
                    .map_err(map_err)?;
                let done = first_row(
                    &tx,
                    "SELECT 1 FROM schema_migrations WHERE version = ?1",
                    [version],
                )
                .await?;
                if done.is_some() {
                    tx.rollback().await.map_err(map_err)?;
                    return Ok(false);
                }
                tx.execute_batch(sql).await.map_err(map_err)?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    libsql::params![version, name, now],
                )
                .await
                .map_err(map_err)?;
                tx.commit().await.map_err(map_err)?;
                Ok(true)
            })
            .await
            .map_err(|source| MigrateError::Failed {
                version,
                name,
                source,
            })?;
        if did {
            tracing::info!(version, name, "applied migration");
            applied.push(version);
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, n, _)| format!("{v:04}_{n}.sql"))
            .collect();
        assert_eq!(files, listed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn migrating_twice_is_a_no_op_and_a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_local(&dir.path().join("t.db"), 1024)
            .await
            .unwrap();
        let every: Vec<i64> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert_eq!(migrate(&db).await.unwrap(), every);
        assert!(migrate(&db).await.unwrap().is_empty());
        db.run(|c| async move {
            c.execute(
                "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
                (),
            )
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
        .unwrap();
        let err = migrate(&db).await.unwrap_err();
        assert!(
            matches!(err, MigrateError::TooNew { found: 999, .. }),
            "{err}"
        );
    }
}
