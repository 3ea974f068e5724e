//! Organizations, memberships and session listings: reads and writes that no actor orders.
//!
//! Membership changes are ordered by the database itself: each is one statement or one
//! immediate transaction, so "an organization never loses its last owner" holds across
//! processes sharing the database.

use super::store::{first_row, opt_uuid, role, uuid};
use super::{is_unique_violation, map_err, Db};
use edge_idp_actors::store::{Membership, Role, StoreResult, UserRecord};
use libsql::{params, Connection, TransactionBehavior};
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
                "SELECT email, name, created_at, mfa_enabled, default_org_id FROM users WHERE id = ?1",
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
        self.write(move |c| async move {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).await.map_err(map_err)?;
            tx.execute("INSERT INTO organizations (id, name, created_at) VALUES (?1, ?2, ?3)", params![org_id.to_string(), name, now])
                .await
                .map_err(map_err)?;
            tx.execute(
                "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?1, ?2, 'owner', ?3)",
                params![org_id.to_string(), owner.to_string(), now],
            )
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)
        })
        .await
    }

    /// Adds a member; `false` if they already are one.
    pub async fn add_member(
        &self,
        org_id: Uuid,
        user_id: Uuid,
        role: Role,
        now: i64,
    ) -> StoreResult<bool> {
        self.write(move |c| async move {
            match c
                .execute(
                    "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![org_id.to_string(), user_id.to_string(), role.as_str(), now],
                )
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if is_unique_violation(&e) => Ok(false),
                Err(e) => Err(map_err(e)),
            }
        })
        .await
    }

    /// Removes a member unless they are the last owner.
    pub async fn remove_member(&self, org_id: Uuid, user_id: Uuid) -> StoreResult<Removal> {
        self.write(move |c| async move {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .await
                .map_err(map_err)?;
            let (org, user) = (org_id.to_string(), user_id.to_string());
            let Some(r) = first_row(
                &tx,
                "SELECT role FROM memberships WHERE org_id = ?1 AND user_id = ?2",
                params![org.clone(), user.clone()],
            )
            .await?
            else {
                tx.rollback().await.map_err(map_err)?;
                return Ok(Removal::NotMember);
            };
            if role(&r.get::<String>(0).map_err(map_err)?)? == Role::Owner {
                let n: i64 = first_row(
                    &tx,
                    "SELECT COUNT(*) FROM memberships WHERE org_id = ?1 AND role = 'owner'",
                    [org.clone()],
                )
                .await?
                .map(|r| r.get(0))
                .transpose()
                .map_err(map_err)?
                .unwrap_or(0);
                if n <= 1 {
                    tx.rollback().await.map_err(map_err)?;
                    return Ok(Removal::LastOwner);
                }
            }
            tx.execute(
                "DELETE FROM memberships WHERE org_id = ?1 AND user_id = ?2",
                params![org, user],
            )
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            Ok(Removal::Removed)
        })
        .await
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
