//! Passkeys and their WebAuthn ceremonies (`schema/0008_passkeys.sql`).
//!
//! Two decisions here hold across instances because each is one conditional write at the
//! primary: a ceremony is claimed once (`claim_ceremony`, before anything is checked), and a
//! credential's sign counter only moves forward (`record_passkey_use`), so two assertions
//! racing on two instances cannot both move it to the same place.

use super::store::Columns;
use super::{Batch, Db};
use edge_idp_actors::store::StoreResult;
use edge_idp_actors::StoreError;
use libsql::Value;
use uuid::Uuid;

/// A stored passkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRow {
    /// Our id for it.
    pub id: Uuid,
    /// Its owner.
    pub user_id: Uuid,
    /// The authenticator's credential id.
    pub credential_id: Vec<u8>,
    /// webauthn-rs's stored credential, JSON.
    pub credential: String,
    /// The name its owner gave it.
    pub name: String,
    /// The last sign counter seen.
    pub sign_count: i64,
    /// The credential may be synced to other devices (a software key).
    pub backup_eligible: bool,
    /// It is synced now.
    pub backup_state: bool,
    /// How the browser can reach its authenticator (`usb`, `internal`, `hybrid`, …).
    pub transports: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last sign-in with it.
    pub last_used_at: Option<i64>,
}

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Adding a passkey to `user_id`.
    Register,
    /// A usernameless sign-in: the passkey names the user.
    Login,
    /// The second factor of `user_id` after the password step of an `mfa_token`.
    SecondFactor,
}

impl CeremonyKind {
    fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::Register => "register",
            CeremonyKind::Login => "login",
            CeremonyKind::SecondFactor => "second_factor",
        }
    }

    fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "register" => Ok(CeremonyKind::Register),
            "login" => Ok(CeremonyKind::Login),
            "second_factor" => Ok(CeremonyKind::SecondFactor),
            other => Err(StoreError::Other(format!(
                "corrupt ceremony kind {other:?}"
            ))),
        }
    }
}

/// A begun ceremony as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    /// What it is for.
    pub kind: CeremonyKind,
    /// The user it was begun for (none for a usernameless sign-in).
    pub user_id: Option<Uuid>,
    /// The `mfa_token` hash of a second-factor ceremony.
    pub mfa_token_hash: Option<[u8; 32]>,
    /// webauthn-rs's ceremony state, JSON.
    pub state: String,
}

/// The columns [`passkey_row`] reads, in its order.
macro_rules! passkey_columns {
    () => {
        "id, user_id, credential_id, credential, name, sign_count, backup_eligible, \
         backup_state, transports, created_at, last_used_at"
    };
}

fn passkey_row(v: &[Value]) -> StoreResult<PasskeyRow> {
    Ok(PasskeyRow {
        id: v.uuid(0)?,
        user_id: v.uuid(1)?,
        credential_id: v.opt_blob(2)?.unwrap_or_default(),
        credential: v.text(3)?,
        name: v.text(4)?,
        sign_count: v.int(5)?,
        backup_eligible: v.int(6)? != 0,
        backup_state: v.int(7)? != 0,
        transports: v
            .text(8)?
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: v.int(9)?,
        last_used_at: v.opt_int(10)?,
    })
}

impl Db {
    /// Stores a begun ceremony under the SHA-256 of its id.
    pub async fn insert_ceremony(
        &self,
        id_hash: [u8; 32],
        c: Ceremony,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "INSERT INTO webauthn_ceremonies (id_hash, kind, user_id, mfa_token_hash, state, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            vec![
                Value::Blob(id_hash.to_vec()),
                c.kind.as_str().into(),
                c.user_id.map(|u| u.to_string()).into(),
                c.mfa_token_hash.map(|h| h.to_vec()).into(),
                c.state.into(),
                now.into(),
                expires_at.into(),
            ],
        );
        self.write_batch(b).await.map(drop)
    }

    /// Claims a live, unused ceremony: marks it used and returns it. `None` for an unknown,
    /// used or expired one. Only one claim of a ceremony ever succeeds, on any instance.
    pub async fn claim_ceremony(
        &self,
        id_hash: [u8; 32],
        now: i64,
    ) -> StoreResult<Option<Ceremony>> {
        let mut b = Batch::default();
        let claimed = b.query(
            "UPDATE webauthn_ceremonies SET used_at = ?2 \
             WHERE id_hash = ?1 AND used_at IS NULL AND expires_at > ?2 \
             RETURNING kind, user_id, mfa_token_hash, state",
            vec![Value::Blob(id_hash.to_vec()), now.into()],
        );
        let done = self.write_batch(b).await?;
        let Some(v) = done.first(claimed) else {
            return Ok(None);
        };
        let mfa_token_hash = match v.opt_blob(2)? {
            Some(h) => Some(
                <[u8; 32]>::try_from(h.as_slice())
                    .map_err(|_| StoreError::Other("corrupt mfa_token_hash".into()))?,
            ),
            None => None,
        };
        Ok(Some(Ceremony {
            kind: CeremonyKind::parse(&v.text(0)?)?,
            user_id: v.opt_uuid(1)?,
            mfa_token_hash,
            state: v.text(3)?,
        }))
    }

    /// Stores a new passkey; [`StoreError::Conflict`] when its credential id is registered
    /// already (to this account or another).
    pub async fn insert_passkey(&self, p: PasskeyRow) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "INSERT INTO passkeys (id, user_id, credential_id, credential, name, sign_count, \
             backup_eligible, backup_state, transports, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            vec![
                p.id.to_string().into(),
                p.user_id.to_string().into(),
                Value::Blob(p.credential_id),
                p.credential.into(),
                p.name.into(),
                p.sign_count.into(),
                i64::from(p.backup_eligible).into(),
                i64::from(p.backup_state).into(),
                p.transports.join(",").into(),
                p.created_at.into(),
            ],
        );
        self.write_batch(b).await.map(drop)
    }

    /// A user's passkeys, oldest first.
    pub async fn passkeys_of(&self, user_id: Uuid) -> StoreResult<Vec<PasskeyRow>> {
        let sql = concat!(
            "SELECT ",
            passkey_columns!(),
            " FROM passkeys WHERE user_id = ?1 ORDER BY created_at, id"
        );
        self.select_passkeys(sql, vec![user_id.to_string().into()])
            .await
    }

    /// The passkey with this credential id, whoever owns it.
    pub async fn passkey_by_credential(
        &self,
        credential_id: Vec<u8>,
    ) -> StoreResult<Option<PasskeyRow>> {
        let sql = concat!(
            "SELECT ",
            passkey_columns!(),
            " FROM passkeys WHERE credential_id = ?1"
        );
        Ok(self
            .select_passkeys(sql, vec![Value::Blob(credential_id)])
            .await?
            .pop())
    }

    async fn select_passkeys(
        &self,
        sql: &'static str,
        params: Vec<Value>,
    ) -> StoreResult<Vec<PasskeyRow>> {
        self.run(move |c| async move {
            let mut rows = c.query(sql, params).await.map_err(super::map_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await.map_err(super::map_err)? {
                let v = (0..r.column_count())
                    .map(|i| r.get_value(i).map_err(super::map_err))
                    .collect::<StoreResult<Vec<_>>>()?;
                out.push(passkey_row(&v)?);
            }
            Ok(out)
        })
        .await
    }

    /// Records a sign-in with passkey `id`: its new counter and stored credential, if the
    /// counter moved forward from what is stored (or both are zero: an authenticator without
    /// a counter). `false` when another sign-in got there first with this counter or a higher
    /// one: a counter that went back, the sign of a cloned authenticator.
    pub async fn record_passkey_use(
        &self,
        id: Uuid,
        sign_count: i64,
        credential: String,
        backup_state: bool,
        now: i64,
    ) -> StoreResult<bool> {
        let mut b = Batch::default();
        let updated = b.execute(
            "UPDATE passkeys SET sign_count = ?2, credential = ?3, backup_state = ?4, last_used_at = ?5 \
             WHERE id = ?1 AND (sign_count < ?2 OR (?2 = 0 AND sign_count = 0))",
            vec![
                id.to_string().into(),
                sign_count.into(),
                credential.into(),
                i64::from(backup_state).into(),
                now.into(),
            ],
        );
        let done = self.write_batch(b).await?;
        Ok(done.changed(updated) == 1)
    }

    /// Renames `user_id`'s passkey `id`; the row after, `None` when the user has no such passkey.
    pub async fn rename_passkey(
        &self,
        user_id: Uuid,
        id: Uuid,
        name: String,
    ) -> StoreResult<Option<PasskeyRow>> {
        let mut b = Batch::default();
        let renamed = b.query(
            concat!(
                "UPDATE passkeys SET name = ?3 WHERE id = ?1 AND user_id = ?2 RETURNING ",
                passkey_columns!()
            ),
            vec![
                id.to_string().into(),
                user_id.to_string().into(),
                name.into(),
            ],
        );
        let done = self.write_batch(b).await?;
        done.first(renamed).map(passkey_row).transpose()
    }

    /// Deletes `user_id`'s passkey `id`; `false` when the user has no such passkey.
    pub async fn delete_passkey(&self, user_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let mut b = Batch::default();
        let deleted = b.execute(
            "DELETE FROM passkeys WHERE id = ?1 AND user_id = ?2",
            vec![id.to_string().into(), user_id.to_string().into()],
        );
        let done = self.write_batch(b).await?;
        Ok(done.changed(deleted) == 1)
    }
}
