//! The OpenID Connect provider's rows: browser sessions, authorization codes, consents
//! (`schema/0007_oauth.sql`).
//!
//! Every one-use decision is one conditional write in one batch at the primary: a code is
//! redeemed by the `UPDATE … WHERE used_at IS NULL` that also records the session its exchange
//! starts, and that session's rows are inserted in the same batch only if that update is the
//! one that happened. So two instances exchanging one code at once start at most one session,
//! and the loser reads which session to revoke.

use super::store::Columns;
use super::{map_err, Batch, Db};
use edge_idp_actors::store::{NewSession, StoreResult};
use libsql::Value;
use uuid::Uuid;

/// A live browser session (single sign-on at the hosted pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    /// The session id (the ID token's `sid`).
    pub id: Uuid,
    /// Who signed in.
    pub user_id: Uuid,
    /// Their email (shown on the consent page).
    pub email: String,
    /// How (`pwd`, `otp`).
    pub amr: Vec<String>,
    /// When, Unix seconds.
    pub auth_time: i64,
    /// Hard end (`SESSION_MAX_TTL` after sign-in).
    pub expires_at: i64,
}

/// What a user has let a client have (`GET /auth/consents`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The client.
    pub client_id: String,
    /// Its registered name.
    pub client_name: String,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// When last granted, Unix seconds.
    pub granted_at: i64,
}

/// An authorization code as stored: everything the authorization request decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI it was sent to (the exchange must name the same).
    pub redirect_uri: String,
    /// The user.
    pub user_id: Uuid,
    /// The browser session it came from.
    pub browser_session_id: Uuid,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The request's nonce, for the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// When the user authenticated.
    pub auth_time: i64,
    /// How.
    pub amr: Vec<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A refresh token as introspection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenInfo {
    /// Its session (family).
    pub session_id: Uuid,
    /// The user.
    pub user_id: Uuid,
    /// The client its session belongs to (`None`: the first-party API).
    pub client_id: Option<String>,
    /// Granted scopes.
    pub scope: Option<String>,
    /// Issued at.
    pub issued_at: i64,
    /// Expires at (the token's, never past the session's end).
    pub expires_at: i64,
    /// Unused, unexpired, in a live session.
    pub active: bool,
}

/// A code as the exchange found it.
#[derive(Debug)]
pub enum CodeState {
    /// Unused and unexpired.
    Fresh(CodeGrant),
    /// Used before: by the session its first exchange started (revoke it).
    Used(Option<Uuid>),
    /// Unknown or expired.
    Invalid,
}

const CODE_COLUMNS: &str = "client_id, redirect_uri, user_id, browser_session_id, scope, nonce, \
                            code_challenge, auth_time, amr, expires_at, used_at, session_id";

fn amr_list(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn blob(b: &[u8]) -> Value {
    Value::Blob(b.to_vec())
}

fn row_values(r: &libsql::Row) -> StoreResult<Vec<Value>> {
    (0..r.column_count())
        .map(|i| r.get_value(i).map_err(map_err))
        .collect()
}

impl Db {
    /// Records a browser session under the SHA-256 of its cookie.
    pub async fn insert_browser_session(
        &self,
        token_hash: [u8; 32],
        s: BrowserSession,
        now: i64,
    ) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "INSERT INTO browser_sessions (id, token_hash, user_id, amr, auth_time, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            vec![
                s.id.to_string().into(),
                blob(&token_hash),
                s.user_id.to_string().into(),
                s.amr.join(",").into(),
                s.auth_time.into(),
                now.into(),
                s.expires_at.into(),
            ],
        );
        self.write_batch(b).await.map(drop)
    }

    /// The live browser session of a cookie, if any.
    pub async fn browser_session(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> StoreResult<Option<BrowserSession>> {
        self.run(move |c| async move {
            let mut rows = c
                .query(
                    "SELECT b.id, b.user_id, b.amr, b.auth_time, b.expires_at, u.email \
                     FROM browser_sessions b JOIN users u ON u.id = b.user_id \
                     WHERE b.token_hash = ?1 AND b.revoked_at IS NULL AND b.expires_at > ?2",
                    libsql::params![token_hash.to_vec(), now],
                )
                .await
                .map_err(map_err)?;
            let Some(r) = rows.next().await.map_err(map_err)? else {
                return Ok(None);
            };
            let v = row_values(&r)?;
            Ok(Some(BrowserSession {
                id: v.uuid(0)?,
                user_id: v.uuid(1)?,
                email: v.text(5)?,
                amr: amr_list(&v.text(2)?),
                auth_time: v.int(3)?,
                expires_at: v.int(4)?,
            }))
        })
        .await
    }

    /// Ends `user_id`'s browser session `id` and every session (refresh-token family) its
    /// authorizations started; the ids of those that were live.
    pub async fn end_browser_session_of(
        &self,
        id: Uuid,
        user_id: Uuid,
        now: i64,
    ) -> StoreResult<Vec<Uuid>> {
        let (id, user_id) = (id.to_string(), user_id.to_string());
        let mut b = Batch::default();
        b.execute(
            "UPDATE browser_sessions SET revoked_at = ?2 \
             WHERE id = ?1 AND user_id = ?3 AND revoked_at IS NULL",
            vec![id.clone().into(), now.into(), user_id.clone().into()],
        );
        let ended = b.query(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = 'logout' \
             WHERE browser_session_id = ?1 AND user_id = ?3 AND revoked_at IS NULL RETURNING id",
            vec![id.into(), now.into(), user_id.into()],
        );
        let done = self.write_batch(b).await?;
        done.rows(ended).iter().map(|r| r.uuid(0)).collect()
    }

    /// Ends every browser session of a user ("log out everywhere", a new password).
    pub async fn end_user_browser_sessions(&self, user_id: Uuid, now: i64) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "UPDATE browser_sessions SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
            vec![user_id.to_string().into(), now.into()],
        );
        self.write_batch(b).await.map(drop)
    }

    /// Stores an authorization code under its SHA-256.
    pub async fn insert_code(
        &self,
        code_hash: [u8; 32],
        g: CodeGrant,
        now: i64,
    ) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "INSERT INTO oauth_codes (code_hash, client_id, redirect_uri, user_id, browser_session_id, scope, \
             nonce, code_challenge, auth_time, amr, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            vec![
                blob(&code_hash),
                g.client_id.into(),
                g.redirect_uri.into(),
                g.user_id.to_string().into(),
                g.browser_session_id.to_string().into(),
                g.scope.into(),
                g.nonce.into(),
                g.code_challenge.into(),
                g.auth_time.into(),
                g.amr.join(",").into(),
                now.into(),
                g.expires_at.into(),
            ],
        );
        self.write_batch(b).await.map(drop)
    }

    /// A code as it is now (read at the primary's view; the redemption decides).
    pub async fn code(&self, code_hash: [u8; 32], now: i64) -> StoreResult<CodeState> {
        self.run(move |c| async move {
            let sql = format!("SELECT {CODE_COLUMNS} FROM oauth_codes WHERE code_hash = ?1");
            let mut rows = c
                .query(&sql, libsql::params![code_hash.to_vec()])
                .await
                .map_err(map_err)?;
            let Some(r) = rows.next().await.map_err(map_err)? else {
                return Ok(CodeState::Invalid);
            };
            let v = row_values(&r)?;
            if v.opt_int(10)?.is_some() {
                return Ok(CodeState::Used(v.opt_uuid(11)?));
            }
            if v.int(9)? <= now {
                return Ok(CodeState::Invalid);
            }
            Ok(CodeState::Fresh(CodeGrant {
                client_id: v.text(0)?,
                redirect_uri: v.text(1)?,
                user_id: v.uuid(2)?,
                browser_session_id: v.uuid(3)?,
                scope: v.text(4)?,
                nonce: v.opt_text(5)?,
                code_challenge: v.opt_text(6)?,
                auth_time: v.int(7)?,
                amr: amr_list(&v.text(8)?),
                expires_at: v.int(9)?,
            }))
        })
        .await
    }

    /// Redeems a code and starts the session `s` its exchange issues, in one batch: the code is
    /// marked used (if it still is unused, unexpired, and the browser session it came from has
    /// not ended meanwhile: a reset, a password change or "log out everywhere" must not leave a
    /// code that starts a session after it) and names `s`, and `s` is inserted only if that
    /// happened. `Ok(None)` when this redemption won; otherwise what the winner left: the
    /// session to revoke.
    pub async fn redeem_code(
        &self,
        code_hash: [u8; 32],
        s: NewSession,
        now: i64,
    ) -> StoreResult<Option<CodeState>> {
        let sid = s.id.to_string();
        let grant = s
            .grant
            .clone()
            .unwrap_or_else(|| edge_idp_actors::store::Grant {
                client_id: String::new(),
                scope: String::new(),
                browser_session_id: None,
            });
        let mut b = Batch::default();
        let redeemed = b.execute(
            "UPDATE oauth_codes SET used_at = ?2, session_id = ?3 \
             WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2 \
             AND EXISTS (SELECT 1 FROM browser_sessions b \
                         WHERE b.id = oauth_codes.browser_session_id AND b.revoked_at IS NULL \
                         AND b.expires_at > ?2)",
            vec![blob(&code_hash), now.into(), sid.clone().into()],
        );
        b.execute(
            "INSERT INTO sessions (id, user_id, active_org_id, amr, user_agent, ip, created_at, last_used_at, expires_at, \
             client_id, scope, browser_session_id) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11 \
             WHERE EXISTS (SELECT 1 FROM oauth_codes WHERE code_hash = ?12 AND session_id = ?1)",
            vec![
                sid.clone().into(),
                s.user_id.to_string().into(),
                s.active_org_id.to_string().into(),
                s.amr.join(",").into(),
                s.user_agent.into(),
                s.ip.into(),
                s.created_at.into(),
                s.expires_at.into(),
                grant.client_id.into(),
                grant.scope.into(),
                grant.browser_session_id.map(|id| id.to_string()).into(),
                blob(&code_hash),
            ],
        );
        b.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at, expires_at) \
             SELECT ?1, ?2, 0, ?3, ?4 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?2)",
            vec![
                blob(&s.token_hash),
                sid.into(),
                s.created_at.into(),
                s.token_expires_at.into(),
            ],
        );
        let state = b.query(
            "SELECT used_at, session_id FROM oauth_codes WHERE code_hash = ?1",
            vec![blob(&code_hash)],
        );
        let done = self.write_batch(b).await?;
        if done.changed(redeemed) == 1 {
            return Ok(None);
        }
        Ok(Some(match done.first(state) {
            Some(r) if r.opt_int(0)?.is_some() => CodeState::Used(r.opt_uuid(1)?),
            _ => CodeState::Invalid,
        }))
    }

    /// A refresh token's state, by its hash.
    pub async fn refresh_token_info(
        &self,
        token_hash: [u8; 32],
        now: i64,
    ) -> StoreResult<Option<RefreshTokenInfo>> {
        self.run(move |c| async move {
            let mut rows = c
                .query(
                    "SELECT r.session_id, s.user_id, s.client_id, s.scope, r.issued_at, \
                     MIN(r.expires_at, s.expires_at), \
                     r.used_at IS NULL AND r.expires_at > ?2 AND s.revoked_at IS NULL AND s.expires_at > ?2 \
                     FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = ?1",
                    libsql::params![token_hash.to_vec(), now],
                )
                .await
                .map_err(map_err)?;
            let Some(r) = rows.next().await.map_err(map_err)? else {
                return Ok(None);
            };
            let v = row_values(&r)?;
            Ok(Some(RefreshTokenInfo {
                session_id: v.uuid(0)?,
                user_id: v.uuid(1)?,
                client_id: v.opt_text(2)?,
                scope: v.opt_text(3)?,
                issued_at: v.int(4)?,
                expires_at: v.int(5)?,
                active: v.int(6)? != 0,
            }))
        })
        .await
    }

    /// The scopes `user_id` granted `client_id`, space-separated.
    pub async fn consent(&self, user_id: Uuid, client_id: String) -> StoreResult<Option<String>> {
        self.run(move |c| async move {
            let mut rows = c
                .query(
                    "SELECT scope FROM oauth_consents WHERE user_id = ?1 AND client_id = ?2",
                    libsql::params![user_id.to_string(), client_id],
                )
                .await
                .map_err(map_err)?;
            match rows.next().await.map_err(map_err)? {
                Some(r) => Ok(Some(r.get::<String>(0).map_err(map_err)?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// Records the scopes `user_id` has granted `client_id` (the whole set, replacing).
    pub async fn set_consent(
        &self,
        user_id: Uuid,
        client_id: String,
        scope: String,
        now: i64,
    ) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "INSERT INTO oauth_consents (user_id, client_id, scope, granted_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at",
            vec![
                user_id.to_string().into(),
                client_id.into(),
                scope.into(),
                now.into(),
            ],
        );
        self.write_batch(b).await.map(drop)
    }

    /// The clients `user_id` has granted scopes to, newest grant first.
    pub async fn consents_of(&self, user_id: Uuid) -> StoreResult<Vec<Consent>> {
        self.run(move |c| async move {
            let mut rows = c
                .query(
                    "SELECT g.client_id, c.name, g.scope, g.granted_at \
                     FROM oauth_consents g JOIN oauth_clients c ON c.client_id = g.client_id \
                     WHERE g.user_id = ?1 ORDER BY g.granted_at DESC, g.client_id",
                    libsql::params![user_id.to_string()],
                )
                .await
                .map_err(map_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await.map_err(map_err)? {
                let v = row_values(&r)?;
                out.push(Consent {
                    client_id: v.text(0)?,
                    client_name: v.text(1)?,
                    scope: v.text(2)?,
                    granted_at: v.int(3)?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Withdraws what `user_id` granted `client_id` and ends every session the client holds
    /// for that user, in one batch; `None` when there was no grant (then nothing changes), else
    /// the ids of the sessions ended.
    pub async fn withdraw_consent(
        &self,
        user_id: Uuid,
        client_id: String,
        now: i64,
    ) -> StoreResult<Option<Vec<Uuid>>> {
        let user = user_id.to_string();
        let mut b = Batch::default();
        // The sessions first, while the grant that conditions them is still there.
        let ended = b.query(
            "UPDATE sessions SET revoked_at = ?3, revoked_reason = 'consent_withdrawn' \
             WHERE user_id = ?1 AND client_id = ?2 AND revoked_at IS NULL \
             AND EXISTS (SELECT 1 FROM oauth_consents WHERE user_id = ?1 AND client_id = ?2) \
             RETURNING id",
            vec![user.clone().into(), client_id.clone().into(), now.into()],
        );
        let deleted = b.query(
            "DELETE FROM oauth_consents WHERE user_id = ?1 AND client_id = ?2 RETURNING client_id",
            vec![user.into(), client_id.into()],
        );
        let done = self.write_batch(b).await?;
        if done.rows(deleted).is_empty() {
            return Ok(None);
        }
        let ids = done
            .rows(ended)
            .iter()
            .map(|r| r.uuid(0))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(ids))
    }
}
