//! Brute-force guards kept in the database, so that they hold for every instance sharing it:
//! the account lockout after consecutive wrong passwords, and the cap on a user's wrong
//! second-factor answers across endpoints.
//!
//! Each decision is one conditional statement at the database (an upsert whose `WHERE` or
//! `CASE` decides), never a read followed by a write, so concurrent attempts cannot slip past
//! a limit between the two.

use super::store::first_row;
use super::{map_err, Db};
use crate::config::Lockout;
use crate::security::ratelimit::Quota;
use edge_idp_actors::store::StoreResult;
use libsql::params;
use uuid::Uuid;

/// How long failures are remembered: a wrong password a day after the last one starts the
/// count again, so a user who mistypes once in a while is never locked for long.
pub const LOCKOUT_MEMORY_SECS: i64 = 86_400;

/// The state of an account key's lockout after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Consecutive failures so far.
    pub failures: i64,
    /// Unix seconds until which the account is locked (in the past: not locked).
    pub locked_until: i64,
}

/// Whether a second-factor attempt may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted: this is the n-th attempt of the window.
    Counted(i64),
    /// Refused: the cap is reached; seconds until the window passes.
    Refused(i64),
}

impl Db {
    /// The account key's counted failures, if any are counted.
    pub async fn lockout(&self, account_key: [u8; 32]) -> StoreResult<Option<Failure>> {
        self.run(move |c| async move {
            let row = first_row(
                &c,
                "SELECT failures, locked_until FROM login_lockouts WHERE account_key = ?1",
                params![account_key.to_vec()],
            )
            .await?;
            row.map(|r| {
                Ok(Failure {
                    failures: r.get(0).map_err(map_err)?,
                    locked_until: r.get(1).map_err(map_err)?,
                })
            })
            .transpose()
        })
        .await
    }

    /// Counts a wrong password for the account key (known and unknown emails alike, so the write
    /// is no oracle) and locks it from the `threshold`-th consecutive failure: `base` seconds,
    /// doubled by each further failure, at most `max`.
    pub async fn record_password_failure(
        &self,
        account_key: [u8; 32],
        now: i64,
        policy: Lockout,
    ) -> StoreResult<Failure> {
        self.write(move |c| async move {
            let row = first_row(
                &c,
                "INSERT INTO login_lockouts (account_key, failures, last_failed_at, locked_until)
                 VALUES (?1, 1, ?2, CASE WHEN ?3 <= 1 THEN ?2 + MIN(?5, ?4) ELSE 0 END)
                 ON CONFLICT(account_key) DO UPDATE SET
                   failures = CASE WHEN last_failed_at <= ?2 - ?6 THEN 1 ELSE failures + 1 END,
                   last_failed_at = ?2,
                   locked_until = CASE
                     WHEN (CASE WHEN last_failed_at <= ?2 - ?6 THEN 1 ELSE failures + 1 END) >= ?3
                     THEN ?2 + MIN(?5, ?4 << MIN((CASE WHEN last_failed_at <= ?2 - ?6 THEN 1 ELSE failures + 1 END) - ?3, 40))
                     ELSE locked_until END
                 RETURNING failures, locked_until",
                params![
                    account_key.to_vec(),
                    now,
                    i64::from(policy.threshold),
                    policy.base_secs,
                    policy.max_secs,
                    LOCKOUT_MEMORY_SECS
                ],
            )
            .await?
            .ok_or_else(|| edge_idp_actors::StoreError::Other("lockout upsert returned no row".into()))?;
            Ok(Failure {
                failures: row.get(0).map_err(map_err)?,
                locked_until: row.get(1).map_err(map_err)?,
            })
        })
        .await
    }

    /// Forgets the account key's failures (a successful sign-in).
    pub async fn clear_password_failures(&self, account_key: [u8; 32]) -> StoreResult<()> {
        self.write(move |c| async move {
            c.execute(
                "DELETE FROM login_lockouts WHERE account_key = ?1",
                params![account_key.to_vec()],
            )
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    /// Counts a second-factor attempt of `user_id` before its code is checked, unless `cap`
    /// attempts were already counted in the current window (which starts at its first attempt
    /// and lasts the quota's period). A correct answer then clears the count
    /// ([`Db::clear_mfa_failures`]), so what stays counted is wrong answers.
    pub async fn claim_mfa_attempt(
        &self,
        user_id: Uuid,
        now: i64,
        cap: Quota,
    ) -> StoreResult<Attempt> {
        let window = i64::from(cap.period_secs);
        let max = i64::from(cap.count);
        self.write(move |c| async move {
            let id = user_id.to_string();
            let claimed = first_row(
                &c,
                "INSERT INTO mfa_failures (user_id, attempts, window_start) VALUES (?1, 1, ?2)
                 ON CONFLICT(user_id) DO UPDATE SET
                   attempts = CASE WHEN window_start <= ?2 - ?3 THEN 1 ELSE attempts + 1 END,
                   window_start = CASE WHEN window_start <= ?2 - ?3 THEN ?2 ELSE window_start END
                 WHERE window_start <= ?2 - ?3 OR attempts < ?4
                 RETURNING attempts",
                params![id.clone(), now, window, max],
            )
            .await?;
            if let Some(r) = claimed {
                return Ok(Attempt::Counted(r.get(0).map_err(map_err)?));
            }
            let start: i64 = first_row(
                &c,
                "SELECT window_start FROM mfa_failures WHERE user_id = ?1",
                params![id],
            )
            .await?
            .map(|r| r.get(0).map_err(map_err))
            .transpose()?
            .unwrap_or(now);
            Ok(Attempt::Refused((start + window - now).max(1)))
        })
        .await
    }

    /// Forgets `user_id`'s counted second-factor attempts (a correct answer).
    pub async fn clear_mfa_failures(&self, user_id: Uuid) -> StoreResult<()> {
        self.write(move |c| async move {
            c.execute(
                "DELETE FROM mfa_failures WHERE user_id = ?1",
                params![user_id.to_string()],
            )
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }
}

impl Db {
    /// Deletes every pending login challenge (`mfa_token`) of `user_id`: after a password
    /// change or a change of second factor, a challenge begun before it must not finish.
    pub async fn revoke_challenges(&self, user_id: Uuid) -> StoreResult<()> {
        self.write(move |c| async move {
            c.execute(
                "DELETE FROM mfa_challenges WHERE user_id = ?1",
                params![user_id.to_string()],
            )
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }
}
