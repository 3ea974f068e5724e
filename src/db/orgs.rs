//! Organizations, memberships and session listings: reads and writes that no actor orders.
//!
//! Membership changes are ordered by the database itself: each is one statement or one
//! immediate transaction, so "an organization never loses its last owner" holds across
//! processes sharing the database.
//!
//! Invitations are the only way into someone else's organization. Whether one is still usable
//! is decided by the conditional `UPDATE` that uses it (accept, decline, revoke), never by an
//! earlier read, so an invitation is used at most once across processes; an accept whose
//! membership insert fails rolls the `UPDATE` back and leaves the invitation unused.

use super::batch::Batch;
use super::store::{first_row, opt_uuid, role, uuid, Columns};
use super::{map_err, Db};
use edge_idp_actors::store::{Membership, Role, StoreResult, UserRecord};
use edge_idp_actors::StoreError;
use libsql::{params, Connection, Value};
use uuid::Uuid;

/// Outcome of removing a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Removed.
    Removed,
    /// The user is not a member.
    NotMember,
    /// The user is the organization's only owner.
    LastOwner,
}

/// An invitation to join an organization, as it is created.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// Invitation id (UUID v7).
    pub id: Uuid,
    /// The organization to join.
    pub org_id: Uuid,
    /// The normalised email it is bound to.
    pub email: String,
    /// The role it grants: admin or member.
    pub role: Role,
    /// Unix seconds from which it can no longer be accepted.
    pub expires_at: i64,
}

/// A pending invitation as its invitee sees it.
#[derive(Debug, Clone)]
pub struct PendingInvitation {
    /// Invitation id.
    pub id: Uuid,
    /// The organization to join.
    pub org_id: Uuid,
    /// Its display name.
    pub org_name: String,
    /// The role it grants.
    pub role: Role,
    /// Unix seconds from which it can no longer be accepted.
    pub expires_at: i64,
}

/// Outcome of accepting an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acceptance {
    /// The user is now a member of `org_id` with `role`.
    Accepted {
        /// The organization joined.
        org_id: Uuid,
        /// The role granted.
        role: Role,
    },
    /// No pending, unexpired invitation with that id for that email (unknown, expired,
    /// revoked, used, declined, or another email's).
    NotPending,
    /// The user is already a member there; the invitation stays unused.
    AlreadyMember,
}

/// The conditions under which an invitation can still be used, `?1` its id, `?2` the email
/// (or the organization, for a revocation) and `?3` now.
macro_rules! pending {
    () => {
        "accepted_at IS NULL AND declined_at IS NULL AND revoked_at IS NULL AND expires_at > ?3"
    };
}
const PENDING: &str = pending!();

/// An account as `GET /auth/me` shows it: no password hash.
#[derive(Debug, Clone)]
pub struct Profile {
    /// User id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Signup time, Unix seconds.
    pub created_at: i64,
    /// Whether MFA is on.
    pub mfa_enabled: bool,
    /// Whether the address was proven by a mailed link.
    pub email_verified: bool,
    /// The personal organization.
    pub default_org_id: Uuid,
    /// Every membership, oldest organization first.
    pub memberships: Vec<Membership>,
}

/// A session as `GET /auth/sessions` lists it.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Session id.
    pub id: Uuid,
    /// Login time.
    pub created_at: i64,
    /// Last refresh.
    pub last_used_at: i64,
    /// `User-Agent` of the login.
    pub user_agent: Option<String>,
    /// IP of the login.
    pub ip: Option<String>,
}

async fn memberships_on(c: &Connection, user_id: Uuid) -> StoreResult<Vec<Membership>> {
    let mut rows = c
        .query(
            "SELECT o.id, o.name, m.role FROM memberships m JOIN organizations o ON o.id = m.org_id \
             WHERE m.user_id = ?1 ORDER BY o.created_at, o.id",
            [user_id.to_string()],
        )
        .await
        .map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await.map_err(map_err)? {
        out.push(Membership {
            org_id: uuid(&r, 0)?,
            org_name: r.get(1).map_err(map_err)?,
            role: role(&r.get::<String>(2).map_err(map_err)?)?,
        });
    }
    Ok(out)
}

impl Db {
    /// An account by id.
    pub async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        self.user_where("id = ?1", id.to_string()).await
    }

    /// Every membership of a user, oldest organization first.
    pub async fn memberships_of(&self, user_id: Uuid) -> StoreResult<Vec<Membership>> {
        self.run(move |c| async move { memberships_on(&c, user_id).await })
            .await
    }

    /// The account and its memberships, read together.
    pub async fn profile(&self, user_id: Uuid) -> StoreResult<Option<Profile>> {
        self.run(move |c| async move {
            let Some(r) = first_row(
                &c,
                "SELECT email, name, created_at, mfa_enabled, default_org_id, email_verified_at FROM users WHERE id = ?1",
                [user_id.to_string()],
            )
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(Profile {
                id: user_id,
                email: r.get(0).map_err(map_err)?,
                name: r.get(1).map_err(map_err)?,
                created_at: r.get(2).map_err(map_err)?,
                mfa_enabled: r.get::<i64>(3).map_err(map_err)? != 0,
                default_org_id: uuid(&r, 4)?,
                email_verified: r.get::<Option<i64>>(5).map_err(map_err)?.is_some(),
                memberships: memberships_on(&c, user_id).await?,
            }))
        })
        .await
    }

    /// Creates an organization owned by `owner`.
    pub async fn create_org(
        &self,
        org_id: Uuid,
        name: String,
        owner: Uuid,
        now: i64,
    ) -> StoreResult<()> {
        let mut b = Batch::default();
        b.execute(
            "INSERT INTO organizations (id, name, created_at) VALUES (?1, ?2, ?3)",
            vec![org_id.to_string().into(), name.into(), now.into()],
        );
        b.execute(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?1, ?2, 'owner', ?3)",
            vec![org_id.to_string().into(), owner.to_string().into(), now.into()],
        );
        self.write_batch(b).await.map(drop)
    }

    /// Stores an invitation, unless its email belongs to a member of its organization already
    /// (`false`). The account table is read only through that membership check, which costs
    /// the same for an address without an account.
    pub async fn create_invitation(
        &self,
        inv: Invitation,
        invited_by: Uuid,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            let n = c
                .execute(
                    "INSERT INTO org_invitations (id, org_id, email, role, invited_by, created_at, expires_at) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE NOT EXISTS (\
                       SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id \
                       WHERE m.org_id = ?2 AND u.email = ?3)",
                    params![
                        inv.id.to_string(),
                        inv.org_id.to_string(),
                        inv.email,
                        inv.role.as_str(),
                        invited_by.to_string(),
                        now,
                        inv.expires_at
                    ],
                )
                .await
                .map_err(map_err)?;
            Ok(n == 1)
        })
        .await
    }

    /// The pending, unexpired invitations for a normalised email, oldest first.
    pub async fn invitations_for(
        &self,
        email: String,
        now: i64,
    ) -> StoreResult<Vec<PendingInvitation>> {
        self.run(move |c| async move {
            let mut rows = c
                .query(
                    "SELECT i.id, i.org_id, o.name, i.role, i.expires_at \
                     FROM org_invitations i JOIN organizations o ON o.id = i.org_id \
                     WHERE i.email = ?1 AND i.accepted_at IS NULL AND i.declined_at IS NULL \
                       AND i.revoked_at IS NULL AND i.expires_at > ?2 \
                     ORDER BY i.created_at, i.id",
                    params![email, now],
                )
                .await
                .map_err(map_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await.map_err(map_err)? {
                out.push(PendingInvitation {
                    id: uuid(&r, 0)?,
                    org_id: uuid(&r, 1)?,
                    org_name: r.get(2).map_err(map_err)?,
                    role: role(&r.get::<String>(3).map_err(map_err)?)?,
                    expires_at: r.get(4).map_err(map_err)?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Uses invitation `id`, bound to `email`, to make `user_id` a member, in one batch: the
    /// conditional `UPDATE` that marks it accepted decides, and the membership is inserted only
    /// if that statement changed the row (`changes()`). A membership that exists already
    /// fails the insert, which rolls both back: the invitation stays unused.
    pub async fn accept_invitation(
        &self,
        id: Uuid,
        email: String,
        user_id: Uuid,
        now: i64,
    ) -> StoreResult<Acceptance> {
        let id: Value = id.to_string().into();
        let mut b = Batch::default();
        let accepted = b.query(
            concat!(
                "UPDATE org_invitations SET accepted_at = ?3 WHERE id = ?1 AND email = ?2 AND ",
                pending!(),
                " RETURNING org_id, role"
            ),
            vec![id.clone(), email.into(), now.into()],
        );
        b.execute(
            "INSERT INTO memberships (org_id, user_id, role, created_at) \
             SELECT org_id, ?2, role, ?3 FROM org_invitations WHERE id = ?1 AND changes() = 1",
            vec![id, user_id.to_string().into(), now.into()],
        );
        let done = match self.write_batch(b).await {
            Err(StoreError::Conflict(_)) => return Ok(Acceptance::AlreadyMember),
            other => other?,
        };
        let Some(r) = done.first(accepted) else {
            return Ok(Acceptance::NotPending);
        };
        Ok(Acceptance::Accepted {
            org_id: r.uuid(0)?,
            role: role(&r.text(1)?)?,
        })
    }

    /// Declines invitation `id`, bound to `email`; `false` if it is not pending.
    pub async fn decline_invitation(&self, id: Uuid, email: String, now: i64) -> StoreResult<bool> {
        self.write(move |c| async move {
            let sql = format!(
                "UPDATE org_invitations SET declined_at = ?3 WHERE id = ?1 AND email = ?2 AND {PENDING}"
            );
            let n = c
                .execute(&sql, params![id.to_string(), email, now])
                .await
                .map_err(map_err)?;
            Ok(n == 1)
        })
        .await
    }

    /// Revokes invitation `id` of `org_id`; `false` if it is not a pending invitation of that
    /// organization.
    pub async fn revoke_invitation(&self, org_id: Uuid, id: Uuid, now: i64) -> StoreResult<bool> {
        self.write(move |c| async move {
            let sql = format!(
                "UPDATE org_invitations SET revoked_at = ?3 WHERE id = ?1 AND org_id = ?2 AND {PENDING}"
            );
            let n = c
                .execute(&sql, params![id.to_string(), org_id.to_string(), now])
                .await
                .map_err(map_err)?;
            Ok(n == 1)
        })
        .await
    }

    /// Removes a member unless they are the last owner: one batch that reads the member's role
    /// and deletes under the same condition.
    pub async fn remove_member(&self, org_id: Uuid, user_id: Uuid) -> StoreResult<Removal> {
        let (org, user): (Value, Value) = (org_id.to_string().into(), user_id.to_string().into());
        let mut b = Batch::default();
        let member = b.query(
            "SELECT role FROM memberships WHERE org_id = ?1 AND user_id = ?2",
            vec![org.clone(), user.clone()],
        );
        let removed = b.execute(
            "DELETE FROM memberships WHERE org_id = ?1 AND user_id = ?2 \
             AND (role <> 'owner' OR (SELECT COUNT(*) FROM memberships WHERE org_id = ?1 AND role = 'owner') > 1)",
            vec![org, user],
        );
        let done = self.write_batch(b).await?;
        Ok(match (done.first(member), done.changed(removed)) {
            (None, _) => Removal::NotMember,
            (Some(_), 0) => Removal::LastOwner,
            (Some(_), _) => Removal::Removed,
        })
    }

    /// The user's live sessions (unrevoked, before their hard end, with an unused unexpired
    /// refresh token), oldest first.
    pub async fn sessions_of(&self, user_id: Uuid, now: i64) -> StoreResult<Vec<SessionRow>> {
        self.run(move |c| async move {
            let mut rows = c
                .query(
                    "SELECT s.id, s.created_at, s.last_used_at, s.user_agent, s.ip FROM sessions s \
                     WHERE s.user_id = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 \
                       AND EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.id AND r.used_at IS NULL AND r.expires_at > ?2) \
                     ORDER BY s.created_at, s.id",
                    params![user_id.to_string(), now],
                )
                .await
                .map_err(map_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await.map_err(map_err)? {
                out.push(SessionRow {
                    id: uuid(&r, 0)?,
                    created_at: r.get(1).map_err(map_err)?,
                    last_used_at: r.get(2).map_err(map_err)?,
                    user_agent: r.get(3).map_err(map_err)?,
                    ip: r.get(4).map_err(map_err)?,
                });
            }
            Ok(out)
        })
        .await
    }

    /// The owner of a session, if it exists.
    pub async fn session_owner(&self, session_id: Uuid) -> StoreResult<Option<Uuid>> {
        self.run(move |c| async move {
            let r = first_row(
                &c,
                "SELECT user_id FROM sessions WHERE id = ?1",
                [session_id.to_string()],
            )
            .await?;
            match r {
                Some(r) => opt_uuid(&r, 0),
                None => Ok(None),
            }
        })
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use edge_idp_actors::store::{NewUser, UserStore};

    /// A migrated database in a temporary folder.
    pub(crate) async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_local(&dir.path().join("t.db"), 1024)
            .await
            .unwrap();
        crate::db::migrate(&db).await.unwrap();
        (dir, db)
    }

    /// A user and its personal organization.
    pub(crate) async fn user(db: &Db, email: &str) -> (Uuid, Uuid) {
        let (id, org_id) = (Uuid::now_v7(), Uuid::now_v7());
        db.create_user(NewUser {
            id,
            email: email.to_owned(),
            name: None,
            password_hash: "not a hash".to_owned(),
            org_id,
            org_name: format!("{email}'s"),
            created_at: 0,
        })
        .await
        .unwrap();
        (id, org_id)
    }

    const INVITEE: &str = "invitee@example.com";

    fn invite(org_id: Uuid, expires_at: i64) -> Invitation {
        Invitation {
            id: Uuid::now_v7(),
            org_id,
            email: INVITEE.to_owned(),
            role: Role::Member,
            expires_at,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_invitation_is_used_once_by_its_email_before_it_expires() {
        let (_dir, db) = db().await;
        let (owner, org) = user(&db, "owner@example.com").await;
        let (invitee, _) = user(&db, INVITEE).await;
        let accept = |id: Uuid, email: &str, user: Uuid, now: i64| {
            let (db, email) = (db.clone(), email.to_owned());
            async move { db.accept_invitation(id, email, user, now).await.unwrap() }
        };

        // A current member's email is not invited.
        let own = Invitation {
            email: "owner@example.com".to_owned(),
            ..invite(org, 1000)
        };
        assert!(!db.create_invitation(own, owner, 10).await.unwrap());

        // Expired at `expires_at`: neither listed nor accepted.
        let late = invite(org, 100);
        assert!(db.create_invitation(late.clone(), owner, 10).await.unwrap());
        assert_eq!(
            db.invitations_for(INVITEE.into(), 99).await.unwrap().len(),
            1
        );
        assert!(db
            .invitations_for(INVITEE.into(), 100)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            accept(late.id, INVITEE, invitee, 100).await,
            Acceptance::NotPending
        );

        // Only its email uses it, and only once.
        let (a, b) = (invite(org, 1000), invite(org, 1000));
        assert!(db.create_invitation(a.clone(), owner, 20).await.unwrap());
        assert!(db.create_invitation(b.clone(), owner, 20).await.unwrap());
        assert_eq!(
            accept(a.id, "owner@example.com", owner, 21).await,
            Acceptance::NotPending
        );
        assert_eq!(
            accept(a.id, INVITEE, invitee, 21).await,
            Acceptance::Accepted {
                org_id: org,
                role: Role::Member
            }
        );
        assert_eq!(
            accept(a.id, INVITEE, invitee, 22).await,
            Acceptance::NotPending
        );

        // Already a member: the second invitation is rolled back to pending.
        assert_eq!(
            accept(b.id, INVITEE, invitee, 23).await,
            Acceptance::AlreadyMember
        );
        // (`late` expires only at 100, so it is still pending beside `b`.)
        let pending = db.invitations_for(INVITEE.into(), 23).await.unwrap();
        let ids: Vec<Uuid> = pending.iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids.contains(&b.id) && ids.contains(&late.id));

        // Declined, then nothing more.
        assert!(!db
            .decline_invitation(b.id, "owner@example.com".into(), 24)
            .await
            .unwrap());
        assert!(db
            .decline_invitation(b.id, INVITEE.into(), 24)
            .await
            .unwrap());
        assert!(!db
            .decline_invitation(b.id, INVITEE.into(), 25)
            .await
            .unwrap());
        assert!(!db.revoke_invitation(org, b.id, 25).await.unwrap());

        // Revoked only by its own organization, then nothing more.
        let (_, other_org) = user(&db, "other@example.com").await;
        let c = Invitation {
            email: "third@example.com".to_owned(),
            ..invite(org, 1000)
        };
        assert!(db.create_invitation(c.clone(), owner, 30).await.unwrap());
        assert!(!db.revoke_invitation(other_org, c.id, 31).await.unwrap());
        assert!(db.revoke_invitation(org, c.id, 31).await.unwrap());
        assert!(!db.revoke_invitation(org, c.id, 32).await.unwrap());
        assert_eq!(
            accept(c.id, "third@example.com", invitee, 32).await,
            Acceptance::NotPending
        );
        assert!(db
            .invitations_for("third@example.com".into(), 32)
            .await
            .unwrap()
            .is_empty());
        // Only `late` is left for the invitee, and it lapses at 100.
        let left = db.invitations_for(INVITEE.into(), 32).await.unwrap();
        assert_eq!(left.iter().map(|p| p.id).collect::<Vec<_>>(), vec![late.id]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_accepts_use_an_invitation_once() {
        let (_dir, db) = db().await;
        let (owner, org) = user(&db, "owner@example.com").await;
        let (invitee, _) = user(&db, INVITEE).await;
        let inv = invite(org, 1000);
        let id = inv.id;
        assert!(db.create_invitation(inv, owner, 10).await.unwrap());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.accept_invitation(id, INVITEE.into(), invitee, 11)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut accepted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Acceptance::Accepted { .. } => accepted += 1,
                other => assert_eq!(other, Acceptance::NotPending),
            }
        }
        assert_eq!(accepted, 1);
    }
}
