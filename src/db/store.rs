//! The actors' storage traits on libSQL.
//!
//! The cross-process guarantees live in the SQL here: the unique index on `users.email`, the
//! conditional `UPDATE … WHERE used_at IS NULL` of a rotation inside an immediate transaction,
//! and `insert_first_key`'s check-then-insert under the write lock.

use super::batch::Batch;
use super::{map_err, Db};
use edge_idp_actors::store::{
    Challenge, Grant, KeyStore, Membership, MfaRecord, MfaStatus, MfaStore, NewSession, NewUser,
    Presentation, Presented, Principal, Pruned, RefreshView, Role, SessionStore, StoreResult,
    StoredKey, UserRecord, UserStore,
};
use edge_idp_actors::StoreError;
use libsql::{params, Connection, Row, Value};
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
            let sql = format!("SELECT id, email, name, password_hash, created_at, mfa_enabled, default_org_id, email_verified_at FROM users WHERE {condition}");
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
                email_verified: r.get::<Option<i64>>(7).map_err(map_err)?.is_some(),
            }))
        })
        .await
    }
}

/// The account, its personal organization and the owner membership, as one batch (signup).
pub(super) fn signup_batch(u: NewUser) -> Batch {
    let (id, org) = (u.id.to_string(), u.org_id.to_string());
    let mut b = Batch::default();
    b.execute(
        "INSERT INTO organizations (id, name, created_at) VALUES (?1, ?2, ?3)",
        vec![org.clone().into(), u.org_name.into(), u.created_at.into()],
    );
    b.execute(
        "INSERT INTO users (id, email, name, password_hash, created_at, updated_at, default_org_id) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
        vec![id.clone().into(), u.email.into(), u.name.into(), u.password_hash.into(), u.created_at.into(), org.clone().into()],
    );
    b.execute(
        "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?1, ?2, 'owner', ?3)",
        vec![org.into(), id.into(), u.created_at.into()],
    );
    b
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

/// Who the session of refresh token `?1` issues its next access token for, unless the session
/// is revoked: its active organization while the user is a member there, else the default one.
const PRINCIPAL_OF_TOKEN: &str = "SELECT u.id, u.email, s.amr, ma.org_id, oa.name, ma.role, md.org_id, od.name, md.role, \
     s.created_at, s.client_id, s.scope, s.browser_session_id FROM sessions s JOIN users u ON u.id = s.user_id \
     LEFT JOIN memberships ma ON ma.org_id = s.active_org_id AND ma.user_id = u.id \
     LEFT JOIN organizations oa ON oa.id = ma.org_id \
     LEFT JOIN memberships md ON md.org_id = u.default_org_id AND md.user_id = u.id \
     LEFT JOIN organizations od ON od.id = md.org_id \
     WHERE s.id = (SELECT session_id FROM refresh_tokens WHERE token_hash = ?1) AND s.revoked_at IS NULL";

/// A row of [`PRINCIPAL_OF_TOKEN`]; none if the user is a member of neither organization.
fn principal(r: &[Value]) -> StoreResult<Option<Principal>> {
    let membership = match (r.opt_uuid(3)?, r.opt_uuid(6)?) {
        (Some(org_id), _) => Membership {
            org_id,
            org_name: r.text(4)?,
            role: role(&r.text(5)?)?,
        },
        (None, Some(org_id)) => Membership {
            org_id,
            org_name: r.text(7)?,
            role: role(&r.text(8)?)?,
        },
        (None, None) => return Ok(None),
    };
    Ok(Some(Principal {
        user_id: r.uuid(0)?,
        email: r.text(1)?,
        membership,
        amr: r
            .text(2)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        auth_time: r.int(9)?,
        grant: match r.opt_text(10)? {
            Some(client_id) => Some(Grant {
                client_id,
                scope: r.opt_text(11)?.unwrap_or_default(),
                browser_session_id: r.opt_uuid(12)?,
            }),
            None => None,
        },
    }))
}

/// The columns of a batch's row, typed. A value of another type than asked is an error (a
/// corrupt row), never a panic.
pub(super) trait Columns {
    /// Column `i`.
    fn value(&self, i: usize) -> StoreResult<&Value>;

    fn int(&self, i: usize) -> StoreResult<i64> {
        self.opt_int(i)?.ok_or_else(|| corrupt(i, "NULL"))
    }

    fn opt_int(&self, i: usize) -> StoreResult<Option<i64>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Integer(n) => Ok(Some(*n)),
            other => Err(corrupt(i, other)),
        }
    }

    fn text(&self, i: usize) -> StoreResult<String> {
        self.opt_text(i)?.ok_or_else(|| corrupt(i, "NULL"))
    }

    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            other => Err(corrupt(i, other)),
        }
    }

    fn opt_blob(&self, i: usize) -> StoreResult<Option<Vec<u8>>> {
        match self.value(i)? {
            Value::Null => Ok(None),
            Value::Blob(b) => Ok(Some(b.clone())),
            other => Err(corrupt(i, other)),
        }
    }

    fn uuid(&self, i: usize) -> StoreResult<Uuid> {
        self.opt_uuid(i)?.ok_or_else(|| corrupt(i, "NULL"))
    }

    fn opt_uuid(&self, i: usize) -> StoreResult<Option<Uuid>> {
        self.opt_text(i)?
            .map(|s| {
                Uuid::parse_str(&s).map_err(|e| StoreError::Other(format!("corrupt id {s:?}: {e}")))
            })
            .transpose()
    }
}

impl Columns for [Value] {
    fn value(&self, i: usize) -> StoreResult<&Value> {
        self.get(i)
            .ok_or_else(|| StoreError::Other(format!("no column {i} in a row")))
    }
}

fn corrupt(i: usize, found: impl std::fmt::Debug) -> StoreError {
    StoreError::Other(format!("unexpected {found:?} in column {i}"))
}

fn blob(b: &[u8]) -> Value {
    Value::Blob(b.to_vec())
}

impl UserStore for Db {
    async fn create_user(&self, u: NewUser) -> StoreResult<()> {
        match self.write_batch(signup_batch(u)).await {
            // The ids are new: the one unique value that can be taken is the email.
            Err(StoreError::Conflict(_)) => Err(StoreError::Conflict("email")),
            other => other.map(drop),
        }
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
        let id = user_id.to_string();
        let mut b = Batch::default();
        b.execute(
            "UPDATE users SET failed_logins = 0, last_login_at = ?2 WHERE id = ?1",
            vec![id.clone().into(), now.into()],
        );
        if let Some((old, new)) = rehash {
            b.execute(
                "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE id = ?1 AND password_hash = ?2",
                vec![id.into(), old.into(), new.into(), now.into()],
            );
        }
        self.write_batch(b).await.map(drop)
    }
}

impl SessionStore for Db {
    async fn start_session(&self, s: NewSession) -> StoreResult<()> {
        let sid = s.id.to_string();
        let mut b = Batch::default();
        b.execute(
            "INSERT INTO sessions (id, user_id, active_org_id, amr, user_agent, ip, created_at, last_used_at, expires_at, \
             client_id, scope, browser_session_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11)",
            vec![
                sid.clone().into(),
                s.user_id.to_string().into(),
                s.active_org_id.to_string().into(),
                s.amr.join(",").into(),
                s.user_agent.into(),
                s.ip.into(),
                s.created_at.into(),
                s.expires_at.into(),
                s.grant.as_ref().map(|g| g.client_id.clone()).into(),
                s.grant.as_ref().map(|g| g.scope.clone()).into(),
                s.grant
                    .as_ref()
                    .and_then(|g| g.browser_session_id)
                    .map(|id| id.to_string())
                    .into(),
            ],
        );
        b.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at, expires_at) VALUES (?1, ?2, 0, ?3, ?4)",
            vec![blob(&s.token_hash), sid.into(), s.created_at.into(), s.token_expires_at.into()],
        );
        self.write_batch(b).await.map(drop)
    }

    /// One batch (see [`super::batch`]): the conditional `UPDATE` is the decision (the token is
    /// unused, unexpired, in a live session), and every later write is conditioned on the
    /// successor hash it wrote, which is new and random; then the token and its principal are
    /// read as the batch left them.
    async fn present(&self, p: Presentation) -> StoreResult<Option<Presented>> {
        let (token, successor) = (blob(&p.token_hash), blob(&p.successor_hash));
        let sealed = p.successor_sealed.map(Value::Blob).unwrap_or(Value::Null);
        let mut b = Batch::default();
        b.execute(
            "UPDATE refresh_tokens SET used_at = ?2, successor_hash = ?3, successor_sealed = ?4 \
             WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.session_id AND s.revoked_at IS NULL AND s.expires_at > ?2 \
             AND s.client_id IS ?5)",
            vec![token.clone(), p.now.into(), successor.clone(), sealed, p.client_id.into()],
        );
        b.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at, expires_at) \
             SELECT ?2, r.session_id, r.generation + 1, ?3, MIN(?3 + ?4, s.expires_at) \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             WHERE r.token_hash = ?1 AND r.successor_hash = ?2",
            vec![token.clone(), successor.clone(), p.now.into(), p.token_ttl.into()],
        );
        // The presented token's own predecessor can no longer be replayed: erase its copy.
        b.execute(
            "UPDATE refresh_tokens SET successor_sealed = NULL \
             WHERE successor_hash = ?1 AND successor_sealed IS NOT NULL \
             AND EXISTS (SELECT 1 FROM refresh_tokens WHERE token_hash = ?2)",
            vec![token.clone(), successor.clone()],
        );
        b.execute(
            "UPDATE sessions SET last_used_at = ?2 WHERE id = (SELECT session_id FROM refresh_tokens WHERE token_hash = ?1)",
            vec![successor.clone(), p.now.into()],
        );
        let view = b.query(
            "SELECT r.session_id, s.user_id, r.generation, r.expires_at, r.used_at, r.successor_sealed, \
                    n.used_at IS NOT NULL, n.expires_at, \
                    CASE WHEN s.revoked_at IS NULL THEN NULL ELSE COALESCE(s.revoked_reason, 'revoked') END, \
                    s.expires_at, r.successor_hash IS NOT NULL AND r.successor_hash = ?2 \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             LEFT JOIN refresh_tokens n ON n.token_hash = r.successor_hash \
             WHERE r.token_hash = ?1",
            vec![token.clone(), successor],
        );
        let principal_at = b.query(PRINCIPAL_OF_TOKEN, vec![token]);
        let done = self.write_batch(b).await?;
        let Some(r) = done.first(view) else {
            return Ok(None);
        };
        let rotated_now = r.int(10)? != 0;
        let mut view = RefreshView {
            session_id: r.uuid(0)?,
            user_id: r.uuid(1)?,
            generation: r.int(2)?,
            expires_at: r.int(3)?,
            used_at: r.opt_int(4)?,
            successor_sealed: r.opt_blob(5)?,
            successor_used: r.int(6)? != 0,
            successor_expires_at: r.opt_int(7)?,
            session_revoked: r.opt_text(8)?,
            session_expires_at: r.int(9)?,
        };
        let rotated = if rotated_now {
            let expires_at = view.successor_expires_at;
            // The token as this presentation found it, before its own rotation.
            view.used_at = None;
            view.successor_sealed = None;
            view.successor_used = false;
            view.successor_expires_at = None;
            Some(
                expires_at
                    .ok_or_else(|| StoreError::Other("a rotation wrote no successor".into()))?,
            )
        } else {
            None
        };
        let principal = match done.first(principal_at) {
            Some(r) => principal(r)?,
            None => None,
        };
        Ok(Some(Presented {
            view,
            rotated,
            principal,
        }))
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
        let sid = session_id.to_string();
        let mut b = Batch::default();
        let revoked = b.execute(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
            vec![sid.clone().into(), now.into(), reason.into()],
        );
        b.execute(
            "UPDATE refresh_tokens SET successor_sealed = NULL WHERE session_id = ?1 AND successor_sealed IS NOT NULL",
            vec![sid.into()],
        );
        Ok(self.write_batch(b).await?.changed(revoked) > 0)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        except: Option<Uuid>,
        now: i64,
        reason: &'static str,
    ) -> StoreResult<Vec<Uuid>> {
        let uid = user_id.to_string();
        let keep = except.map(|e| e.to_string()).unwrap_or_default();
        let mut b = Batch::default();
        let revoked = b.query(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE user_id = ?1 AND revoked_at IS NULL AND id <> ?4 RETURNING id",
            vec![uid.clone().into(), now.into(), reason.into(), keep.clone().into()],
        );
        b.execute(
            "UPDATE refresh_tokens SET successor_sealed = NULL WHERE successor_sealed IS NOT NULL \
             AND session_id IN (SELECT id FROM sessions WHERE user_id = ?1 AND id <> ?2)",
            vec![uid.into(), keep.into()],
        );
        let done = self.write_batch(b).await?;
        done.rows(revoked).iter().map(|r| r.uuid(0)).collect()
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
            // A used code is kept a while past its expiry, so that its reuse is still caught
            // (and revokes what it issued) after the 60 s in which it could be redeemed.
            c.execute("DELETE FROM oauth_codes WHERE rowid IN (SELECT rowid FROM oauth_codes WHERE expires_at <= ?1 LIMIT ?2)", params![now - KEEP_AFTER_END, PRUNE_BATCH])
                .await
                .map_err(map_err)?;
            c.execute("DELETE FROM webauthn_ceremonies WHERE rowid IN (SELECT rowid FROM webauthn_ceremonies WHERE expires_at <= ?1 LIMIT ?2)", params![now, PRUNE_BATCH])
                .await
                .map_err(map_err)?;
            c.execute("DELETE FROM browser_sessions WHERE rowid IN (SELECT rowid FROM browser_sessions WHERE expires_at <= ?1 OR revoked_at <= ?1 LIMIT ?2)", params![now - KEEP_AFTER_END, PRUNE_BATCH])
                .await
                .map_err(map_err)?;
            c.execute("DELETE FROM email_tokens WHERE rowid IN (SELECT rowid FROM email_tokens WHERE expires_at <= ?1 LIMIT ?2)", params![now - KEEP_AFTER_END, PRUNE_BATCH])
                .await
                .map_err(map_err)?;
            // Sent and abandoned mail is kept a week (its sealed body is emptied already), for
            // the operators' questions ("was it sent?") and the outbox metrics.
            c.execute("DELETE FROM mail_outbox WHERE rowid IN (SELECT rowid FROM mail_outbox WHERE sent_at <= ?1 OR failed_at <= ?1 LIMIT ?2)", params![now - KEEP_AFTER_END, PRUNE_BATCH])
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
        let mut b = Batch::default();
        let inserted = b.execute(
            "INSERT INTO signing_keys (kid, private_sealed, created_at, activates_at, retires_at) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
            vec![
                k.kid.into(),
                blob(&k.private_sealed),
                k.created_at.into(),
                k.activates_at.into(),
                k.retires_at.into(),
            ],
        );
        Ok(self.write_batch(b).await?.changed(inserted) == 1)
    }

    async fn insert_rotated_key(
        &self,
        k: StoredKey,
        newest_seen: i64,
        retire_others_at: i64,
    ) -> StoreResult<bool> {
        let mut b = Batch::default();
        // Inserted only if no instance rotated since `newest_seen`; the others retire only if
        // this key went in (its kid is new).
        let inserted = b.execute(
            "INSERT INTO signing_keys (kid, private_sealed, created_at, activates_at, retires_at) \
             SELECT ?1, ?2, ?3, ?4, NULL WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE activates_at > ?5)",
            vec![k.kid.clone().into(), blob(&k.private_sealed), k.created_at.into(), k.activates_at.into(), newest_seen.into()],
        );
        b.execute(
            "UPDATE signing_keys SET retires_at = ?1 WHERE kid <> ?2 AND (retires_at IS NULL OR retires_at > ?1) \
             AND EXISTS (SELECT 1 FROM signing_keys WHERE kid = ?2)",
            vec![retire_others_at.into(), k.kid.into()],
        );
        Ok(self.write_batch(b).await?.changed(inserted) == 1)
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

    /// One batch: the conditional `UPDATE` of the pending secret decides (the confirming step
    /// is newer than any seen); the recovery codes and the account's flag change only while
    /// the account is flagged off and its secret on, which only that `UPDATE` can have made so
    /// (every writer changes the two together).
    async fn enable_mfa(
        &self,
        user_id: Uuid,
        sealed: Vec<u8>,
        step: i64,
        recovery_hashes: Vec<[u8; 32]>,
        now: i64,
    ) -> StoreResult<bool> {
        macro_rules! enabling {
            () => {
                "EXISTS (SELECT 1 FROM users WHERE id = ?1 AND mfa_enabled = 0) \
                 AND EXISTS (SELECT 1 FROM mfa_secrets WHERE user_id = ?1 AND status = 'enabled')"
            };
        }
        let uid: Value = user_id.to_string().into();
        let mut b = Batch::default();
        b.execute(
            "UPDATE mfa_secrets SET status = 'enabled', enabled_at = ?3, last_step = ?2 \
             WHERE user_id = ?1 AND status = 'pending' AND secret_sealed = ?4 \
             AND (last_step IS NULL OR last_step < ?2)",
            vec![uid.clone(), step.into(), now.into(), Value::Blob(sealed)],
        );
        b.execute(
            concat!(
                "DELETE FROM mfa_recovery_codes WHERE user_id = ?1 AND ",
                enabling!()
            ),
            vec![uid.clone()],
        );
        for h in recovery_hashes {
            b.execute(
                concat!(
                    "INSERT INTO mfa_recovery_codes (user_id, code_hash) SELECT ?1, ?2 WHERE ",
                    enabling!()
                ),
                vec![uid.clone(), blob(&h)],
            );
        }
        let flagged = b.execute(
            "UPDATE users SET mfa_enabled = 1, updated_at = ?2 WHERE id = ?1 AND mfa_enabled = 0 \
             AND EXISTS (SELECT 1 FROM mfa_secrets WHERE user_id = ?1 AND status = 'enabled')",
            vec![uid, now.into()],
        );
        Ok(self.write_batch(b).await?.changed(flagged) == 1)
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
        let uid: Value = user_id.to_string().into();
        let mut b = Batch::default();
        b.execute(
            "DELETE FROM mfa_secrets WHERE user_id = ?1",
            vec![uid.clone()],
        );
        b.execute(
            "DELETE FROM mfa_recovery_codes WHERE user_id = ?1",
            vec![uid.clone()],
        );
        b.execute(
            "DELETE FROM mfa_challenges WHERE user_id = ?1",
            vec![uid.clone()],
        );
        b.execute("UPDATE users SET mfa_enabled = 0 WHERE id = ?1", vec![uid]);
        self.write_batch(b).await.map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::orgs::tests::{db, user};
    use edge_idp_actors::crypto::MasterKey;
    use edge_idp_actors::refresh::{
        token_hash, Families, Issued, RefreshPolicy, Rotated, StartSession,
    };
    use edge_idp_actors::{Clock, DomainError};

    /// Refresh families on a real database with a manual clock: 60 s tokens, a 600 s session,
    /// `grace` seconds of grace.
    async fn families(grace: i64) -> (tempfile::TempDir, Families<Db>, Uuid, Uuid) {
        let (dir, db) = db().await;
        let (user_id, org_id) = user(&db, "fam@example.com").await;
        let families = Families {
            store: db,
            sealer: MasterKey::generate().unwrap().sealer(b"refresh-successor"),
            policy: RefreshPolicy {
                token_ttl: 60,
                session_max_ttl: 600,
                grace,
            },
            clock: Clock::manual(1_000_000),
        };
        (dir, families, user_id, org_id)
    }

    async fn start(f: &Families<Db>, user_id: Uuid, org_id: Uuid) -> Issued {
        f.start(StartSession {
            user_id,
            org_id,
            amr: vec!["pwd".into()],
            user_agent: None,
            ip: None,
            grant: None,
        })
        .await
        .unwrap()
    }

    fn present(t: &Issued) -> [u8; 32] {
        token_hash(t.refresh_token.expose())
    }

    fn issued(r: Result<Rotated, DomainError>) -> Issued {
        match r {
            Ok(Rotated::Issued(i, _)) => i,
            other => panic!("expected a successor, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_family_rotates_replays_inside_the_grace_window_and_is_revoked_on_reuse_after_it() {
        let (_dir, f, user_id, org_id) = families(10).await;
        let t0 = start(&f, user_id, org_id).await;
        let t1 = issued(f.rotate(present(&t0)).await);
        assert!(!t1.replayed);
        assert_eq!(t1.session_id, t0.session_id, "the same family");
        f.clock.advance(9);
        let again = issued(f.rotate(present(&t0)).await);
        assert!(again.replayed);
        assert_eq!(again.refresh_token.expose(), t1.refresh_token.expose());
        f.clock.advance(1);
        match f.rotate(present(&t0)).await {
            Ok(Rotated::Reused { session_id, .. }) => assert_eq!(session_id, t0.session_id),
            other => panic!("expected reuse, got {other:?}"),
        }
        // The family is revoked: its newest token is refused too.
        assert_eq!(
            f.rotate(present(&t1)).await.err(),
            Some(DomainError::InvalidRefreshToken)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn strict_mode_has_no_replay_and_a_rotated_successor_ends_the_grace_of_its_predecessor() {
        let (_dir, strict, user_id, org_id) = families(0).await;
        let t0 = start(&strict, user_id, org_id).await;
        issued(strict.rotate(present(&t0)).await);
        assert!(matches!(
            strict.rotate(present(&t0)).await,
            Ok(Rotated::Reused { .. })
        ));

        let (_dir, f, user_id, org_id) = families(10).await;
        let t0 = start(&f, user_id, org_id).await;
        let t1 = issued(f.rotate(present(&t0)).await);
        issued(f.rotate(present(&t1)).await);
        assert!(
            matches!(f.rotate(present(&t0)).await, Ok(Rotated::Reused { .. })),
            "inside the window, but its successor moved on: reuse"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn expired_unknown_and_out_of_session_tokens_are_invalid() {
        let (_dir, f, user_id, org_id) = families(10).await;
        assert_eq!(
            f.rotate([7; 32]).await.err(),
            Some(DomainError::InvalidRefreshToken),
            "unknown"
        );
        let t0 = start(&f, user_id, org_id).await;
        f.clock.advance(60);
        assert_eq!(
            f.rotate(present(&t0)).await.err(),
            Some(DomainError::InvalidRefreshToken),
            "expired after its 60 s"
        );
        // Rotating every 50 s keeps a chain alive only until the session's 600 s end.
        let mut t = start(&f, user_id, org_id).await;
        for _ in 0..11 {
            f.clock.advance(50);
            t = issued(f.rotate(present(&t)).await);
            assert!(t.expires_at <= 1_000_000 + 60 + 600);
        }
        f.clock.advance(50);
        assert_eq!(
            f.rotate(present(&t)).await.err(),
            Some(DomainError::InvalidRefreshToken),
            "past the session's end"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mfa_is_turned_on_only_with_the_secret_that_was_confirmed() {
        let (_dir, db) = db().await;
        let (id, _) = user(&db, "ada@example.com").await;
        // A confirmation read secret A; an enrollment replaced it with B before its write.
        assert!(db.set_pending_mfa(id, b"A".to_vec(), 1, 0).await.unwrap());
        assert!(db.set_pending_mfa(id, b"B".to_vec(), 1, 1).await.unwrap());
        let stale = db.enable_mfa(id, b"A".to_vec(), 10, vec![[1; 32]], 2);
        assert!(
            !stale.await.unwrap(),
            "enabled a secret that was no longer pending"
        );
        let rec = db.mfa(id).await.unwrap().unwrap();
        assert_eq!(rec.status, MfaStatus::Pending);
        assert_eq!(rec.secret_sealed, b"B");
        assert!(db
            .enable_mfa(id, b"B".to_vec(), 10, vec![[1; 32]], 3)
            .await
            .unwrap());
        let rec = db.mfa(id).await.unwrap().unwrap();
        assert_eq!(rec.status, MfaStatus::Enabled);
    }
}
