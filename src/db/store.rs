//! The actors' storage traits on libSQL.
//!
//! The cross-process guarantees live in the SQL here: the unique index on `users.email`, the
//! conditional `UPDATE … WHERE used_at IS NULL` of a rotation inside an immediate transaction,
//! and `insert_first_key`'s check-then-insert under the write lock.

use super::{is_unique_violation, map_err, Conn, Db};
use edge_idp_actors::store::{
    Challenge, KeyStore, Membership, MfaRecord, MfaStatus, MfaStore, NewSession, NewUser,
    Presentation, Presented, Principal, Pruned, RefreshView, Role, SessionStore, StoreResult,
    StoredKey, UserRecord, UserStore,
};
use edge_idp_actors::StoreError;
use libsql::{params, Connection, Row, TransactionBehavior, Value};
use uuid::Uuid;

/// How long revoked and expired rows are kept before pruning (for audit and reuse detection).
const KEEP_AFTER_END: i64 = 7 * 24 * 3600;
/// Rows deleted per prune statement, so a prune never holds the write lock for long.
const PRUNE_BATCH: i64 = 5_000;

impl Db {
    /// One account selected by `condition` on `value` (`"email = ?1"`, `"id = ?1"`).
    pub(super) async fn user_where(
        &self,
        condition: &'static str,
        value: String,
    ) -> StoreResult<Option<UserRecord>> {
        self.run(move |c| async move {
            let sql = format!("SELECT id, email, name, password_hash, created_at, mfa_enabled, default_org_id FROM users WHERE {condition}");
            let Some(r) = first_row(&c, &sql, [value]).await? else {
                return Ok(None);
            };
            Ok(Some(UserRecord {
                id: uuid(&r, 0)?,
                email: r.get(1).map_err(map_err)?,
                name: r.get(2).map_err(map_err)?,
                password_hash: r.get(3).map_err(map_err)?,
                created_at: r.get(4).map_err(map_err)?,
                mfa_enabled: r.get::<i64>(5).map_err(map_err)? != 0,
                default_org_id: uuid(&r, 6)?,
            }))
        })
        .await
    }
}

pub(super) fn uuid(row: &Row, i: i32) -> Result<Uuid, StoreError> {
    let s: String = row.get(i).map_err(map_err)?;
    Uuid::parse_str(&s).map_err(|e| StoreError::Other(format!("corrupt id {s:?}: {e}")))
}

pub(super) fn opt_uuid(row: &Row, i: i32) -> Result<Option<Uuid>, StoreError> {
    let s: Option<String> = row.get(i).map_err(map_err)?;
    s.map(|s| Uuid::parse_str(&s).map_err(|e| StoreError::Other(format!("corrupt id {s:?}: {e}"))))
        .transpose()
}

pub(super) fn role(s: &str) -> Result<Role, StoreError> {
    Role::parse(s).ok_or_else(|| StoreError::Other(format!("corrupt role {s:?}")))
}

pub(super) async fn first_row(
    c: &Connection,
    sql: &str,
    p: impl libsql::params::IntoParams,
) -> Result<Option<Row>, StoreError> {
    let mut rows = c.query(sql, p).await.map_err(map_err)?;
    let first = rows.next().await.map_err(map_err)?;
    // Over Hrana (remote mode) an unfinished cursor is interrupted by the stream's next
    // statement, which then fails with SQLITE_INTERRUPT: read to the end there. Not on a local
    // connection, whose row reads its columns from the statement that reading on would reset.
    if !super::is_local(c) {
        while rows.next().await.map_err(map_err)?.is_some() {}
    }
    Ok(first)
}

/// Who session `sid`'s next access token is for: its active organization while the user is a
/// member there, else the default one. Read on `c` (inside the caller's transaction, if any).
async fn principal_on(c: &Conn, sid: String) -> StoreResult<Option<Principal>> {
    c.cached_row(
        "SELECT u.id, u.email, s.amr, ma.org_id, oa.name, ma.role, md.org_id, od.name, md.role, \
         s.created_at FROM sessions s JOIN users u ON u.id = s.user_id \
         LEFT JOIN memberships ma ON ma.org_id = s.active_org_id AND ma.user_id = u.id \
         LEFT JOIN organizations oa ON oa.id = ma.org_id \
         LEFT JOIN memberships md ON md.org_id = u.default_org_id AND md.user_id = u.id \
         LEFT JOIN organizations od ON od.id = md.org_id \
         WHERE s.id = ?1",
        [sid],
        principal,
    )
    .await
    .map(Option::flatten)
}

/// A row of `principal_on`'s query; none if the user is a member of neither organization.
fn principal(r: &Row) -> StoreResult<Option<Principal>> {
    let membership = match (opt_uuid(r, 3)?, opt_uuid(r, 6)?) {
        (Some(org_id), _) => Membership {
            org_id,
            org_name: r.get(4).map_err(map_err)?,
            role: role(&r.get::<String>(5).map_err(map_err)?)?,
        },
        (None, Some(org_id)) => Membership {
            org_id,
            org_name: r.get(7).map_err(map_err)?,
            role: role(&r.get::<String>(8).map_err(map_err)?)?,
        },
        (None, None) => return Ok(None),
    };
    let amr: String = r.get(2).map_err(map_err)?;
    Ok(Some(Principal {
        user_id: uuid(r, 0)?,
        email: r.get(1).map_err(map_err)?,
        membership,
        amr: amr
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        auth_time: r.get(9).map_err(map_err)?,
    }))
}

fn blob(b: &[u8]) -> Value {
    Value::Blob(b.to_vec())
}

impl UserStore for Db {
    async fn create_user(&self, u: NewUser) -> StoreResult<()> {
        self.write(move |c| async move {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).await.map_err(map_err)?;
            let (id, org) = (u.id.to_string(), u.org_id.to_string());
            tx.execute("INSERT INTO organizations (id, name, created_at) VALUES (?1, ?2, ?3)", params![org.clone(), u.org_name, u.created_at])
                .await
                .map_err(map_err)?;
            match tx
                .execute(
                    "INSERT INTO users (id, email, name, password_hash, created_at, updated_at, default_org_id) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                    params![id.clone(), u.email, u.name, u.password_hash, u.created_at, org.clone()],
                )
                .await
            {
                Err(e) if is_unique_violation(&e) => {
                    tx.rollback().await.map_err(map_err)?;
                    return Err(StoreError::Conflict("email"));
                }
                other => other.map_err(map_err)?,
            };
            tx.execute("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?1, ?2, 'owner', ?3)", params![org, id, u.created_at])
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let email = email.to_owned();
        // The login's read decides whether a second factor is asked for and which password
        // hash is checked: on a replica it is made fresh from the primary first, so MFA turned
        // on (or a password changed) on another instance a moment ago is never skipped.
        self.sync_replica().await?;
        self.user_where("email = ?1", email).await
    }

    async fn membership(&self, user_id: Uuid, org_id: &str) -> StoreResult<Option<Membership>> {
        let org_id = org_id.to_owned();
        self.run(move |c| async move {
            let Some(r) = first_row(
                &c,
                "SELECT m.org_id, o.name, m.role FROM memberships m JOIN organizations o ON o.id = m.org_id WHERE m.user_id = ?1 AND m.org_id = ?2",
                params![user_id.to_string(), org_id],
            )
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(Membership { org_id: uuid(&r, 0)?, org_name: r.get(1).map_err(map_err)?, role: role(&r.get::<String>(2).map_err(map_err)?)? }))
        })
        .await
    }

    async fn replace_password(
        &self,
        user_id: Uuid,
        old_hash: String,
        new_hash: String,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            let n = c
                .execute(
                    "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE id = ?1 AND password_hash = ?2",
                    params![user_id.to_string(), old_hash, new_hash, now],
                )
                .await
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_login_success(
        &self,
        user_id: Uuid,
        now: i64,
        rehash: Option<(String, String)>,
    ) -> StoreResult<()> {
        self.write(move |c| async move {
            let id = user_id.to_string();
            c.cached_execute("UPDATE users SET failed_logins = 0, last_login_at = ?2 WHERE id = ?1", params![id.clone(), now]).await?;
            if let Some((old, new)) = rehash {
                c.execute(
                    "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE id = ?1 AND password_hash = ?2",
                    params![id, old, new, now],
                )
                .await
                .map_err(map_err)?;
            }
            Ok(())
        })
        .await
    }
}

impl SessionStore for Db {
    async fn start_session(&self, s: NewSession) -> StoreResult<()> {
        self.write(move |c| async move {
            c.begin_immediate().await?;
            c.cached_execute(
                "INSERT INTO sessions (id, user_id, active_org_id, amr, user_agent, ip, created_at, last_used_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                params![s.id.to_string(), s.user_id.to_string(), s.active_org_id.to_string(), s.amr.join(","), s.user_agent, s.ip, s.created_at, s.expires_at],
            )
            .await?;
            c.cached_execute(
                "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at, expires_at) VALUES (?1, ?2, 0, ?3, ?4)",
                params![blob(&s.token_hash), s.id.to_string(), s.created_at, s.token_expires_at],
            )
            .await?;
            c.commit().await
        })
        .await
    }

    async fn present(&self, p: Presentation) -> StoreResult<Option<Presented>> {
        self.write(move |c| async move {
            // Immediate: the write lock is taken before the read, so what is read is what the
            // rotation replaces, in this process and in any other sharing the file.
            c.begin_immediate().await?;
            // The statements are the connection's prepared ones; they run inside the
            // transaction, which is the connection's own.
            let Some(view) = c.cached_row(
                "SELECT r.session_id, s.user_id, r.generation, r.expires_at, r.used_at, r.successor_sealed, \
                        n.used_at IS NOT NULL, n.expires_at, CASE WHEN s.revoked_at IS NULL THEN NULL ELSE COALESCE(s.revoked_reason, 'revoked') END, s.expires_at \
                 FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
                 LEFT JOIN refresh_tokens n ON n.token_hash = r.successor_hash \
                 WHERE r.token_hash = ?1",
                [blob(&p.token_hash)],
                |r| {
                    Ok(RefreshView {
                        session_id: uuid(r, 0)?,
                        user_id: uuid(r, 1)?,
                        generation: r.get(2).map_err(map_err)?,
                        expires_at: r.get(3).map_err(map_err)?,
                        used_at: r.get(4).map_err(map_err)?,
                        successor_sealed: r.get(5).map_err(map_err)?,
                        successor_used: r.get::<i64>(6).map_err(map_err)? != 0,
                        successor_expires_at: r.get(7).map_err(map_err)?,
                        session_revoked: r.get(8).map_err(map_err)?,
                        session_expires_at: r.get(9).map_err(map_err)?,
                    })
                },
            )
            .await?
            else {
                c.commit().await?;
                return Ok(None);
            };
            let sid = view.session_id.to_string();
            let mut rotated = None;
            if view.rotatable(p.now) {
                let expires_at = (p.now + p.token_ttl).min(view.session_expires_at);
                let sealed = p.successor_sealed.map(Value::Blob).unwrap_or(Value::Null);
                // Conditional even under the write lock: the row decides, not what was read.
                let changed = c
                    .cached_execute(
                        "UPDATE refresh_tokens SET used_at = ?2, successor_hash = ?3, successor_sealed = ?4 \
                         WHERE token_hash = ?1 AND used_at IS NULL",
                        params![blob(&p.token_hash), p.now, blob(&p.successor_hash), sealed],
                    )
                    .await?;
                if changed != 1 {
                    return Err(StoreError::Other("refresh token changed under the write lock".into()));
                }
                c.cached_execute(
                    "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![blob(&p.successor_hash), sid.clone(), view.generation + 1, p.now, expires_at],
                )
                .await?;
                // The presented token's own predecessor can no longer be replayed: erase its copy.
                c.cached_execute("UPDATE refresh_tokens SET successor_sealed = NULL WHERE successor_hash = ?1 AND successor_sealed IS NOT NULL", [blob(&p.token_hash)])
                    .await?;
                c.cached_execute("UPDATE sessions SET last_used_at = ?2 WHERE id = ?1", params![sid.clone(), p.now]).await?;
                rotated = Some(expires_at);
            }
            let principal = if view.session_revoked.is_none() {
                principal_on(&c, sid).await?
            } else {
                None
            };
            c.commit().await?;
            Ok(Some(Presented { view, rotated, principal }))
        })
        .await
    }

    async fn session_of_token(&self, token_hash: [u8; 32]) -> StoreResult<Option<(Uuid, Uuid)>> {
        self.run(move |c| async move {
            let r = first_row(
                &c,
                "SELECT r.session_id, s.user_id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = ?1",
                [blob(&token_hash)],
            )
            .await?;
            r.map(|r| Ok((uuid(&r, 0)?, uuid(&r, 1)?))).transpose()
        })
        .await
    }

    async fn revoke_session(
        &self,
        session_id: Uuid,
        now: i64,
        reason: &'static str,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).await.map_err(map_err)?;
            let sid = session_id.to_string();
            let n = tx
                .execute("UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL", params![sid.clone(), now, reason])
                .await
                .map_err(map_err)?;
            tx.execute("UPDATE refresh_tokens SET successor_sealed = NULL WHERE session_id = ?1 AND successor_sealed IS NOT NULL", [sid])
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        except: Option<Uuid>,
        now: i64,
        reason: &'static str,
    ) -> StoreResult<Vec<Uuid>> {
        self.write(move |c| async move {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).await.map_err(map_err)?;
            let uid = user_id.to_string();
            let keep = except.map(|e| e.to_string()).unwrap_or_default();
            let mut rows = tx
                .query(
                    "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE user_id = ?1 AND revoked_at IS NULL AND id <> ?4 RETURNING id",
                    params![uid.clone(), now, reason, keep.clone()],
                )
                .await
                .map_err(map_err)?;
            let mut ids = Vec::new();
            while let Some(r) = rows.next().await.map_err(map_err)? {
                ids.push(uuid(&r, 0)?);
            }
            drop(rows);
            tx.execute(
                "UPDATE refresh_tokens SET successor_sealed = NULL WHERE successor_sealed IS NOT NULL \
                 AND session_id IN (SELECT id FROM sessions WHERE user_id = ?1 AND id <> ?2)",
                params![uid, keep],
            )
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            Ok(ids)
        })
        .await
    }

    async fn set_active_org(&self, session_id: Uuid, org_id: Uuid) -> StoreResult<bool> {
        self.write(move |c| async move {
            let n = c
                .execute(
                    "UPDATE sessions SET active_org_id = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    params![session_id.to_string(), org_id.to_string()],
                )
                .await
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn session_org(&self, session_id: Uuid, now: i64) -> StoreResult<Option<Uuid>> {
        let read = || {
            self.run(move |c| async move {
                let r = first_row(
                    &c,
                    "SELECT active_org_id FROM sessions WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?2",
                    params![session_id.to_string(), now],
                )
                .await?;
                r.map(|r| uuid(&r, 0)).transpose()
            })
        };
        // A session started on another instance may not have reached this replica yet.
        match read().await? {
            None if self.sync_replica().await? => read().await,
            found => Ok(found),
        }
    }

    async fn prune(&self, now: i64, grace: i64) -> StoreResult<Pruned> {
        self.write(move |c| async move {
            let successors_erased = c
                .execute("UPDATE refresh_tokens SET successor_sealed = NULL WHERE successor_sealed IS NOT NULL AND used_at <= ?1", [now - grace])
                .await
                .map_err(map_err)?;
            let tokens_deleted = c
                .execute(
                    "DELETE FROM refresh_tokens WHERE rowid IN (SELECT rowid FROM refresh_tokens WHERE expires_at <= ?1 LIMIT ?2)",
                    params![now - KEEP_AFTER_END, PRUNE_BATCH],
                )
                .await
                .map_err(map_err)?;
            let sessions_deleted = c
                .execute(
                    "DELETE FROM sessions WHERE rowid IN (SELECT rowid FROM sessions WHERE expires_at <= ?1 OR revoked_at <= ?1 LIMIT ?2)",
                    params![now - KEEP_AFTER_END, PRUNE_BATCH],
                )
                .await
                .map_err(map_err)?;
            c.execute("DELETE FROM mfa_challenges WHERE rowid IN (SELECT rowid FROM mfa_challenges WHERE expires_at <= ?1 LIMIT ?2)", params![now, PRUNE_BATCH])
                .await
                .map_err(map_err)?;
            // Invitations end at `expires_at` whatever happened to them (accepted, declined,
            // revoked or not); what was done with them is in the audit trail.
            c.execute("DELETE FROM org_invitations WHERE rowid IN (SELECT rowid FROM org_invitations WHERE expires_at <= ?1 LIMIT ?2)", params![now, PRUNE_BATCH])
                .await
                .map_err(map_err)?;
            Ok(Pruned { successors_erased, tokens_deleted, sessions_deleted })
        })
        .await
    }
}

fn stored_key(r: &Row) -> Result<StoredKey, StoreError> {
    Ok(StoredKey {
        kid: r.get(0).map_err(map_err)?,
        private_sealed: r.get(1).map_err(map_err)?,
        created_at: r.get(2).map_err(map_err)?,
        activates_at: r.get(3).map_err(map_err)?,
        retires_at: r.get(4).map_err(map_err)?,
    })
}

impl KeyStore for Db {
    async fn keys(&self) -> StoreResult<Vec<StoredKey>> {
        self.run(|c| async move {
            let mut rows = c
                .query("SELECT kid, private_sealed, created_at, activates_at, retires_at FROM signing_keys ORDER BY activates_at", ())
                .await
                .map_err(map_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await.map_err(map_err)? {
                out.push(stored_key(&r)?);
            }
            Ok(out)
        })
        .await
    }

    async fn insert_first_key(&self, k: StoredKey) -> StoreResult<bool> {
        self.write(move |c| async move {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).await.map_err(map_err)?;
            if first_row(&tx, "SELECT 1 FROM signing_keys LIMIT 1", ()).await?.is_some() {
                tx.rollback().await.map_err(map_err)?;
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO signing_keys (kid, private_sealed, created_at, activates_at, retires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k.kid, blob(&k.private_sealed), k.created_at, k.activates_at, k.retires_at],
            )
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            Ok(true)
        })
        .await
    }

    async fn insert_rotated_key(
        &self,
        k: StoredKey,
        newest_seen: i64,
        retire_others_at: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).await.map_err(map_err)?;
            if first_row(&tx, "SELECT 1 FROM signing_keys WHERE activates_at > ?1", [newest_seen]).await?.is_some() {
                tx.rollback().await.map_err(map_err)?;
                return Ok(false);
            }
            tx.execute(
                "UPDATE signing_keys SET retires_at = ?1 WHERE retires_at IS NULL OR retires_at > ?1",
                [retire_others_at],
            )
            .await
            .map_err(map_err)?;
            tx.execute(
                "INSERT INTO signing_keys (kid, private_sealed, created_at, activates_at, retires_at) VALUES (?1, ?2, ?3, ?4, NULL)",
                params![k.kid, blob(&k.private_sealed), k.created_at, k.activates_at],
            )
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            Ok(true)
        })
        .await
    }

    async fn insert_key(&self, k: StoredKey) -> StoreResult<()> {
        self.write(move |c| async move {
            c.execute(
                "INSERT OR IGNORE INTO signing_keys (kid, private_sealed, created_at, activates_at, retires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k.kid, blob(&k.private_sealed), k.created_at, k.activates_at, k.retires_at],
            )
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }
}

impl MfaStore for Db {
    async fn mfa(&self, user_id: Uuid) -> StoreResult<Option<MfaRecord>> {
        self.run(move |c| async move {
            let Some(r) = first_row(
                &c,
                "SELECT secret_sealed, status, last_step FROM mfa_secrets WHERE user_id = ?1",
                [user_id.to_string()],
            )
            .await?
            else {
                return Ok(None);
            };
            let status = match r.get::<String>(1).map_err(map_err)?.as_str() {
                "enabled" => MfaStatus::Enabled,
                _ => MfaStatus::Pending,
            };
            Ok(Some(MfaRecord {
                secret_sealed: r.get(0).map_err(map_err)?,
                status,
                last_step: r.get(2).map_err(map_err)?,
            }))
        })
        .await
    }

    async fn set_pending_mfa(
        &self,
        user_id: Uuid,
        sealed: Vec<u8>,
        key_version: i64,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            let n = c
                .execute(
                    "INSERT INTO mfa_secrets (user_id, secret_sealed, key_version, status, created_at) VALUES (?1, ?2, ?3, 'pending', ?4) \
                     ON CONFLICT (user_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, key_version = excluded.key_version, \
                     created_at = excluded.created_at, last_step = NULL WHERE mfa_secrets.status = 'pending'",
                    params![user_id.to_string(), Value::Blob(sealed), key_version, now],
                )
                .await
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn enable_mfa(
        &self,
        user_id: Uuid,
        step: i64,
        recovery_hashes: Vec<[u8; 32]>,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).await.map_err(map_err)?;
            let uid = user_id.to_string();
            let n = tx
                .execute(
                    "UPDATE mfa_secrets SET status = 'enabled', enabled_at = ?3, last_step = ?2 \
                     WHERE user_id = ?1 AND status = 'pending' AND (last_step IS NULL OR last_step < ?2)",
                    params![uid.clone(), step, now],
                )
                .await
                .map_err(map_err)?;
            if n == 0 {
                tx.rollback().await.map_err(map_err)?;
                return Ok(false);
            }
            tx.execute("DELETE FROM mfa_recovery_codes WHERE user_id = ?1", [uid.clone()]).await.map_err(map_err)?;
            for h in recovery_hashes {
                tx.execute("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES (?1, ?2)", params![uid.clone(), blob(&h)]).await.map_err(map_err)?;
            }
            tx.execute("UPDATE users SET mfa_enabled = 1, updated_at = ?2 WHERE id = ?1", params![uid, now]).await.map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            Ok(true)
        })
        .await
    }

    async fn accept_totp_step(&self, user_id: Uuid, step: i64) -> StoreResult<bool> {
        self.write(move |c| async move {
            let n = c
                .execute(
                    "UPDATE mfa_secrets SET last_step = ?2 WHERE user_id = ?1 AND status = 'enabled' AND (last_step IS NULL OR last_step < ?2)",
                    params![user_id.to_string(), step],
                )
                .await
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn use_recovery_code(
        &self,
        user_id: Uuid,
        hash: [u8; 32],
        now: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            let n = c
                .execute(
                    "UPDATE mfa_recovery_codes SET used_at = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_at IS NULL",
                    params![user_id.to_string(), blob(&hash), now],
                )
                .await
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn disable_mfa(&self, user_id: Uuid) -> StoreResult<()> {
        self.write(move |c| async move {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .await
                .map_err(map_err)?;
            let uid = user_id.to_string();
            tx.execute("DELETE FROM mfa_secrets WHERE user_id = ?1", [uid.clone()])
                .await
                .map_err(map_err)?;
            tx.execute(
                "DELETE FROM mfa_recovery_codes WHERE user_id = ?1",
                [uid.clone()],
            )
            .await
            .map_err(map_err)?;
            tx.execute(
                "DELETE FROM mfa_challenges WHERE user_id = ?1",
                [uid.clone()],
            )
            .await
            .map_err(map_err)?;
            tx.execute("UPDATE users SET mfa_enabled = 0 WHERE id = ?1", [uid])
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)
        })
        .await
    }

    async fn create_challenge(
        &self,
        hash: [u8; 32],
        user_id: Uuid,
        org_id: Option<String>,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        self.write(move |c| async move {
            c.execute(
                "INSERT INTO mfa_challenges (token_hash, user_id, org_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![blob(&hash), user_id.to_string(), org_id, now, expires_at],
            )
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn challenge(&self, hash: [u8; 32]) -> StoreResult<Option<Challenge>> {
        let read = || {
            self.run(move |c| async move {
            let Some(r) = first_row(
                &c,
                "SELECT ch.user_id, u.email, u.default_org_id, ch.org_id, ch.expires_at, ch.attempts, ch.used_at IS NOT NULL \
                 FROM mfa_challenges ch JOIN users u ON u.id = ch.user_id WHERE ch.token_hash = ?1",
                [blob(&hash)],
            )
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(Challenge {
                user_id: uuid(&r, 0)?,
                email: r.get(1).map_err(map_err)?,
                default_org_id: uuid(&r, 2)?,
                org_id: r.get(3).map_err(map_err)?,
                expires_at: r.get(4).map_err(map_err)?,
                attempts: r.get(5).map_err(map_err)?,
                used: r.get::<i64>(6).map_err(map_err)? != 0,
            }))
        })
        };
        // A login on another instance may have made the challenge after this replica's sync.
        match read().await? {
            None if self.sync_replica().await? => read().await,
            found => Ok(found),
        }
    }

    async fn claim_challenge_attempt(
        &self,
        hash: [u8; 32],
        now: i64,
        max_attempts: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            let n = c
                .execute(
                    "UPDATE mfa_challenges SET attempts = attempts + 1 \
                     WHERE token_hash = ?1 AND used_at IS NULL AND attempts < ?3 AND expires_at > ?2",
                    params![blob(&hash), now, max_attempts],
                )
                .await
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }

    async fn consume_challenge(
        &self,
        hash: [u8; 32],
        now: i64,
        max_attempts: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            let n = c
                .execute(
                    "UPDATE mfa_challenges SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND attempts <= ?3 AND expires_at > ?2",
                    params![blob(&hash), now, max_attempts],
                )
                .await
                .map_err(map_err)?;
            Ok(n > 0)
        })
        .await
    }
}
