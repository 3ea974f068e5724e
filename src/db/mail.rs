//! Mailed links and the mail outbox (`schema/0009_email.sql`).
//!
//! Every decision that must hold across instances is one conditional write at the primary: a
//! link is used once (`used_at IS NULL AND expires_at > now`); one sender holds the outbox's
//! lease (`holder = me OR expires_at <= now`); an attempt at a message is claimed once
//! (`attempts = seen AND next_attempt_at <= now`). A message is queued in the same batch as the
//! change that causes it, so the change and its mail are written together or not at all.

use super::store::Columns;
use super::{Batch, Db};
use edge_idp_actors::store::StoreResult;
use libsql::Value;
use uuid::Uuid;

/// What a mailed link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Proves the address.
    Verify,
    /// Sets a new password.
    Reset,
    /// Makes `email` the account's address.
    Change,
}

impl LinkKind {
    fn as_str(self) -> &'static str {
        match self {
            LinkKind::Verify => "verify",
            LinkKind::Reset => "reset",
            LinkKind::Change => "change",
        }
    }
}

/// A link to store (only its token's hash).
#[derive(Debug, Clone)]
pub struct NewLink {
    /// SHA-256 of the token.
    pub hash: [u8; 32],
    /// What it does.
    pub kind: LinkKind,
    /// Whose account.
    pub user_id: Uuid,
    /// The address it is sent to.
    pub email: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A message to queue: its sealed body and what the outbox shows in clear.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Row id (the message's `Message-ID`).
    pub id: Uuid,
    /// `verify_email`, `password_reset`, …
    pub kind: &'static str,
    /// The recipient.
    pub recipient: String,
    /// The rendered message, sealed.
    pub sealed: Vec<u8>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A message the sender may try now.
#[derive(Debug, Clone)]
pub struct DueMail {
    /// Row id.
    pub id: Uuid,
    /// Kind.
    pub kind: String,
    /// The sealed message.
    pub sealed: Vec<u8>,
    /// Attempts so far (the claim is conditioned on it).
    pub attempts: i64,
}

/// What using an email-change link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// The account's address is now `new_email`.
    Changed {
        /// The account.
        user_id: Uuid,
        /// Its address before.
        old_email: String,
        /// Its address now.
        new_email: String,
    },
    /// The link is live but another account has the address now; nothing changed.
    Taken,
    /// Unknown, used or expired.
    Invalid,
}

/// The outbox at a glance, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxState {
    /// Neither delivered nor abandoned.
    pub queued: i64,
    /// `created_at` of the oldest of them.
    pub oldest: Option<i64>,
    /// Of them, due now.
    pub due: i64,
}

/// A random value that marks the rows one batch used (`email_tokens.used_by`).
fn use_mark() -> StoreResult<Value> {
    edge_idp_actors::crypto::random_bytes::<16>()
        .map(|b| Value::Blob(b.to_vec()))
        .map_err(|e| edge_idp_actors::StoreError::Other(e.to_string()))
}

/// Adds the insert of `m` to a batch; with `if_used` (a link's hash and the batch's mark), only
/// if that batch used the link (its `used_by` carries the mark): the notice of a change goes
/// with it.
fn queue(b: &mut Batch, m: Outgoing, if_used: Option<(Value, Value)>) {
    let mut params = vec![
        m.id.to_string().into(),
        m.kind.into(),
        m.recipient.into(),
        Value::Blob(m.sealed),
        m.created_at.into(),
    ];
    let sql = match if_used {
        None => {
            "INSERT INTO mail_outbox (id, kind, recipient, sealed, created_at, next_attempt_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)"
        }
        Some((hash, mark)) => {
            params.extend([hash, mark]);
            "INSERT INTO mail_outbox (id, kind, recipient, sealed, created_at, next_attempt_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?5 \
             WHERE EXISTS (SELECT 1 FROM email_tokens WHERE token_hash = ?6 AND used_by = ?7)"
        }
    };
    b.execute(sql, params);
}

/// Adds the insert of `l` to a batch.
fn insert_link(b: &mut Batch, l: NewLink) {
    b.execute(
        "INSERT INTO email_tokens (token_hash, kind, user_id, email, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        vec![
            Value::Blob(l.hash.to_vec()),
            l.kind.as_str().into(),
            l.user_id.to_string().into(),
            l.email.into(),
            l.created_at.into(),
            l.expires_at.into(),
        ],
    );
}

impl Db {
    /// Stores a link and queues the messages it goes with (the one carrying it first), in
    /// one write.
    pub async fn send_link(&self, link: NewLink, mails: Vec<Outgoing>) -> StoreResult<()> {
        let mut b = Batch::default();
        insert_link(&mut b, link);
        for m in mails {
            queue(&mut b, m, None);
        }
        self.write_batch(b).await.map(drop)
    }

    /// Creates an account (as `UserStore::create_user`) with its verification link and the
    /// message that carries it, in one write.
    pub async fn create_user_with_link(
        &self,
        u: edge_idp_actors::store::NewUser,
        link: NewLink,
        mail: Outgoing,
    ) -> StoreResult<()> {
        let mut b = super::store::signup_batch(u);
        insert_link(&mut b, link);
        queue(&mut b, mail, None);
        match self.write_batch(b).await {
            // The ids and the token are new: the one unique value that can be taken is the
            // email.
            Err(edge_idp_actors::StoreError::Conflict(_)) => {
                Err(edge_idp_actors::StoreError::Conflict("email"))
            }
            other => other.map(drop),
        }
    }

    /// Queues a message on its own (a notice).
    pub async fn queue_mail(&self, mail: Outgoing) -> StoreResult<()> {
        let mut b = Batch::default();
        queue(&mut b, mail, None);
        self.write_batch(b).await.map(drop)
    }

    /// The live link of `kind` with this hash: its user and address. Reads only, fresh from
    /// the primary (an embedded replica is synced first: a link mailed a moment ago is there).
    pub async fn live_link(
        &self,
        hash: [u8; 32],
        kind: LinkKind,
        now: i64,
    ) -> StoreResult<Option<(Uuid, String)>> {
        self.sync_replica().await?;
        self.run(move |c| async move {
            let Some(r) = super::store::first_row(
                &c,
                "SELECT user_id, email FROM email_tokens \
                 WHERE token_hash = ?1 AND kind = ?2 AND used_at IS NULL AND expires_at > ?3",
                libsql::params![hash.to_vec(), kind.as_str(), now],
            )
            .await?
            else {
                return Ok(None);
            };
            Ok(Some((
                super::store::uuid(&r, 0)?,
                r.get(1).map_err(super::map_err)?,
            )))
        })
        .await
    }

    /// Uses a verification link: the account's address is verified if it is still the one the
    /// link was sent to. The user and its address. `None`: the link is unknown, used, expired,
    /// or the address changed since.
    pub async fn use_verify_link(
        &self,
        hash: [u8; 32],
        now: i64,
    ) -> StoreResult<Option<(Uuid, String)>> {
        let (h, mark) = (Value::Blob(hash.to_vec()), use_mark()?);
        let mut b = Batch::default();
        let used = b.query(
            "UPDATE email_tokens SET used_at = ?2, used_by = ?3 \
             WHERE token_hash = ?1 AND kind = 'verify' AND used_at IS NULL AND expires_at > ?2 \
             AND email = (SELECT u.email FROM users u WHERE u.id = email_tokens.user_id) \
             RETURNING user_id, email",
            vec![h.clone(), now.into(), mark.clone()],
        );
        b.execute(
            "UPDATE users SET email_verified_at = ?2, updated_at = ?2 \
             WHERE email_verified_at IS NULL AND id = \
             (SELECT user_id FROM email_tokens WHERE token_hash = ?1 AND used_by = ?3)",
            vec![h, now.into(), mark],
        );
        let done = self.write_batch(b).await?;
        match done.first(used) {
            Some(v) => Ok(Some((v.uuid(0)?, v.text(1)?))),
            None => Ok(None),
        }
    }

    /// Uses an email-change link: the account's address becomes the one the link was sent to
    /// (verified), unless another account has it by now; the user's other change links end,
    /// and `notice` (to the old address) is queued, all in one write.
    pub async fn use_change_link(
        &self,
        hash: [u8; 32],
        now: i64,
        notice: Outgoing,
    ) -> StoreResult<ChangeOutcome> {
        let (h, mark) = (Value::Blob(hash.to_vec()), use_mark()?);
        let mut b = Batch::default();
        let live = b.query(
            "SELECT u.email FROM email_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = ?1 AND t.kind = 'change' AND t.used_at IS NULL AND t.expires_at > ?2",
            vec![h.clone(), now.into()],
        );
        let used = b.query(
            "UPDATE email_tokens SET used_at = ?2, used_by = ?3 \
             WHERE token_hash = ?1 AND kind = 'change' AND used_at IS NULL AND expires_at > ?2 \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.email = email_tokens.email) \
             RETURNING user_id, email",
            vec![h.clone(), now.into(), mark.clone()],
        );
        // Each later statement acts only if this batch used the link (`used_by = ?3`).
        b.execute(
            "UPDATE users SET email = (SELECT email FROM email_tokens WHERE token_hash = ?1), \
             email_verified_at = ?2, updated_at = ?2 \
             WHERE id = (SELECT user_id FROM email_tokens WHERE token_hash = ?1 AND used_by = ?3)",
            vec![h.clone(), now.into(), mark.clone()],
        );
        b.execute(
            "UPDATE email_tokens SET used_at = ?2 WHERE kind = 'change' AND used_at IS NULL \
             AND user_id = (SELECT user_id FROM email_tokens WHERE token_hash = ?1 AND used_by = ?3)",
            vec![h.clone(), now.into(), mark.clone()],
        );
        queue(&mut b, notice, Some((h, mark)));
        let done = match self.write_batch(b).await {
            // Another account took the address in between (the unique index decided).
            Err(edge_idp_actors::StoreError::Conflict(_)) => return Ok(ChangeOutcome::Taken),
            other => other?,
        };
        Ok(match (done.first(used), done.first(live)) {
            (Some(v), Some(old)) => ChangeOutcome::Changed {
                user_id: v.uuid(0)?,
                old_email: old.text(0)?,
                new_email: v.text(1)?,
            },
            (None, Some(_)) => ChangeOutcome::Taken,
            _ => ChangeOutcome::Invalid,
        })
    }

    /// Uses a reset link: sets `new_hash` as the password of the link's user if the link is
    /// live, is `user_id`'s, and was sent to the account's address; clears the failed-login
    /// count, ends the user's other reset and email-change links (a change asked with the old
    /// password must not outlive it), and queues `notice`. If the reset is what first proves
    /// the address, the account was set up by whoever created it, not necessarily by the
    /// address's owner: its passkeys and second factor go, so that none of them outlives the
    /// reset. The address is then marked verified. All in one write; false when the link did
    /// not qualify.
    pub async fn use_reset_link(
        &self,
        hash: [u8; 32],
        user_id: Uuid,
        new_hash: String,
        now: i64,
        notice: Outgoing,
    ) -> StoreResult<bool> {
        let (h, mark) = (Value::Blob(hash.to_vec()), use_mark()?);
        let uid = user_id.to_string();
        let mut b = Batch::default();
        let used = b.execute(
            "UPDATE email_tokens SET used_at = ?2, used_by = ?4 \
             WHERE token_hash = ?1 AND kind = 'reset' AND user_id = ?3 AND used_at IS NULL \
             AND expires_at > ?2 \
             AND email = (SELECT u.email FROM users u WHERE u.id = ?3)",
            vec![h.clone(), now.into(), uid.clone().into(), mark.clone()],
        );
        // Each later statement acts only if this batch used the link (`used_by = ?4`).
        for sql in [
            "DELETE FROM passkeys WHERE user_id = ?3 \
             AND EXISTS (SELECT 1 FROM email_tokens WHERE token_hash = ?1 AND used_by = ?4) \
             AND (SELECT email_verified_at FROM users WHERE id = ?3) IS NULL",
            "DELETE FROM mfa_recovery_codes WHERE user_id = ?3 \
             AND EXISTS (SELECT 1 FROM email_tokens WHERE token_hash = ?1 AND used_by = ?4) \
             AND (SELECT email_verified_at FROM users WHERE id = ?3) IS NULL",
            "DELETE FROM mfa_secrets WHERE user_id = ?3 \
             AND EXISTS (SELECT 1 FROM email_tokens WHERE token_hash = ?1 AND used_by = ?4) \
             AND (SELECT email_verified_at FROM users WHERE id = ?3) IS NULL",
            "UPDATE users SET mfa_enabled = 0 WHERE id = ?3 \
             AND EXISTS (SELECT 1 FROM email_tokens WHERE token_hash = ?1 AND used_by = ?4) \
             AND email_verified_at IS NULL",
        ] {
            b.execute(
                sql,
                vec![h.clone(), now.into(), uid.clone().into(), mark.clone()],
            );
        }
        b.execute(
            "UPDATE users SET password_hash = ?5, updated_at = ?2, failed_logins = 0, \
             email_verified_at = COALESCE(email_verified_at, ?2) WHERE id = ?3 \
             AND EXISTS (SELECT 1 FROM email_tokens WHERE token_hash = ?1 AND used_by = ?4)",
            vec![
                h.clone(),
                now.into(),
                uid.clone().into(),
                mark.clone(),
                new_hash.into(),
            ],
        );
        b.execute(
            "UPDATE email_tokens SET used_at = ?2 WHERE user_id = ?3 \
             AND kind IN ('reset', 'change') AND used_at IS NULL \
             AND EXISTS (SELECT 1 FROM email_tokens WHERE token_hash = ?1 AND used_by = ?4)",
            vec![h.clone(), now.into(), uid.into(), mark.clone()],
        );
        queue(&mut b, notice, Some((h, mark)));
        let done = self.write_batch(b).await?;
        Ok(done.changed(used) > 0)
    }

    /// Ends `user_id`'s pending reset and email-change links (its password changed: a reset
    /// link mailed before, or a change asked with the old password, must not outlive it).
    pub async fn end_password_links(&self, user_id: Uuid, now: i64) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "UPDATE email_tokens SET used_at = ?2 WHERE user_id = ?1 \
             AND kind IN ('reset', 'change') AND used_at IS NULL",
            vec![user_id.to_string().into(), now.into()],
        );
        self.write_batch(b).await.map(drop)
    }

    /// Records a sign-in of `user_id` from `device`: whether the device is new to an account
    /// that had signed in from another before (the case a notice is for).
    pub async fn remember_device(
        &self,
        user_id: Uuid,
        device: [u8; 32],
        now: i64,
    ) -> StoreResult<bool> {
        let (uid, dev) = (user_id.to_string(), Value::Blob(device.to_vec()));
        let mut b = Batch::default();
        let before = b.query(
            "SELECT COUNT(*) FROM known_devices WHERE user_id = ?1",
            vec![uid.clone().into()],
        );
        let added = b.execute(
            "INSERT OR IGNORE INTO known_devices (user_id, device_hash, first_seen, last_seen) \
             VALUES (?1, ?2, ?3, ?3)",
            vec![uid.clone().into(), dev.clone(), now.into()],
        );
        b.execute(
            "UPDATE known_devices SET last_seen = ?3 WHERE user_id = ?1 AND device_hash = ?2",
            vec![uid.into(), dev, now.into()],
        );
        let done = self.write_batch(b).await?;
        let others = done
            .first(before)
            .map(|v| v.int(0))
            .transpose()?
            .unwrap_or(0);
        Ok(others > 0 && done.changed(added) > 0)
    }

    /// Takes or renews lease `name` for `holder` until `until`: true when `holder` has it.
    pub async fn take_lease(
        &self,
        name: &'static str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> StoreResult<bool> {
        let mut b = Batch::default();
        let i = b.query(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3 \
             RETURNING holder",
            vec![name.into(), holder.into(), now.into(), until.into()],
        );
        let done = self.write_batch(b).await?;
        Ok(done.first(i).is_some())
    }

    /// Gives lease `name` up if `holder` has it (a stopping instance), so another takes over
    /// at once.
    pub async fn release_lease(&self, name: &'static str, holder: &str) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
            vec![name.into(), holder.into()],
        );
        self.write_batch(b).await.map(drop)
    }

    /// Counts of the outbox (read where reads go: a replica may be a moment behind).
    pub async fn outbox_state(&self, now: i64) -> StoreResult<OutboxState> {
        self.run(move |c| async move {
            let Some(r) = super::store::first_row(
                &c,
                "SELECT COUNT(*), MIN(created_at), COALESCE(SUM(next_attempt_at <= ?1), 0) \
                 FROM mail_outbox WHERE sent_at IS NULL AND failed_at IS NULL",
                [now],
            )
            .await?
            else {
                return Ok(OutboxState::default());
            };
            Ok(OutboxState {
                queued: r.get(0).map_err(super::map_err)?,
                oldest: r.get(1).map_err(super::map_err)?,
                due: r.get(2).map_err(super::map_err)?,
            })
        })
        .await
    }

    /// Up to `limit` messages due now, oldest first, read at the primary.
    pub async fn due_mail(&self, now: i64, limit: i64) -> StoreResult<Vec<DueMail>> {
        let mut b = Batch::default();
        let i = b.query(
            "SELECT id, kind, sealed, attempts FROM mail_outbox \
             WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?1 \
             ORDER BY next_attempt_at, created_at, id LIMIT ?2",
            vec![now.into(), limit.into()],
        );
        let done = self.write_batch(b).await?;
        done.rows(i)
            .iter()
            .map(|v| {
                Ok(DueMail {
                    id: v.uuid(0)?,
                    kind: v.text(1)?,
                    sealed: v.opt_blob(2)?.unwrap_or_default(),
                    attempts: v.int(3)?,
                })
            })
            .collect()
    }

    /// Claims the next attempt at `id`: counts it and puts the message off until `retry_at`,
    /// so that a crash while sending leads to one retry then, not to a resend at once. True
    /// when this caller has the attempt.
    pub async fn claim_mail(
        &self,
        id: Uuid,
        attempts: i64,
        now: i64,
        retry_at: i64,
    ) -> StoreResult<bool> {
        let mut b = Batch::default();
        let i = b.execute(
            "UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = ?4 \
             WHERE id = ?1 AND attempts = ?2 AND next_attempt_at <= ?3 \
             AND sent_at IS NULL AND failed_at IS NULL",
            vec![
                id.to_string().into(),
                attempts.into(),
                now.into(),
                retry_at.into(),
            ],
        );
        Ok(self.write_batch(b).await?.changed(i) > 0)
    }

    /// Marks `id` delivered and forgets its body.
    pub async fn mail_sent(&self, id: Uuid, now: i64) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "UPDATE mail_outbox SET sent_at = ?2, sealed = NULL, last_error = NULL WHERE id = ?1",
            vec![id.to_string().into(), now.into()],
        );
        self.write_batch(b).await.map(drop)
    }

    /// Records a failed attempt at `id`; `abandon` gives the message up (and forgets its body).
    pub async fn mail_failed(
        &self,
        id: Uuid,
        error: String,
        now: i64,
        abandon: bool,
    ) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "UPDATE mail_outbox SET last_error = ?2, \
             failed_at = CASE WHEN ?4 THEN ?3 ELSE NULL END, \
             sealed = CASE WHEN ?4 THEN NULL ELSE sealed END \
             WHERE id = ?1 AND sent_at IS NULL",
            vec![
                id.to_string().into(),
                error.into(),
                now.into(),
                i64::from(abandon).into(),
            ],
        );
        self.write_batch(b).await.map(drop)
    }
}
