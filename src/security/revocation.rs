//! Which sessions are revoked, answered without the database on the hot path.
//!
//! Every Bearer request must refuse a token whose session was revoked (logout, session delete,
//! password change, refresh-token reuse). Reading `sessions` each time would put a database
//! round trip on every authenticated call, so two bounded caches sit in front of it:
//!
//! - `revoked`: sessions known revoked. Writes on this instance insert here *before* they
//!   answer, so this instance refuses at once. Entries outlive any access token they could
//!   concern (`ACCESS_TOKEN_TTL` plus a minute).
//! - `live`: sessions seen live in the database, with their active organization, kept for
//!   [`LIVE_TTL`] only. A revocation made by another instance sharing the database is therefore
//!   seen here within `LIVE_TTL` (2 s, inside the 5 s of API.md). `/auth/me` answers the active
//!   organization from here too, so it reads nothing from the database for it.
//!
//! `revoked` is consulted first, so a stale `live` entry can never hide a local revocation.

use crate::db::Db;
use edge_idp_actors::store::SessionStore;
use edge_idp_actors::StoreError;
use moka::sync::Cache;
use std::time::Duration;
use uuid::Uuid;

/// How long a "live" answer from the database is trusted: the bound on how late a revocation by
/// another instance is noticed.
pub const LIVE_TTL: Duration = Duration::from_secs(2);
const MAX_ENTRIES: u64 = 1_000_000;

/// The two caches.
#[derive(Clone)]
pub struct Revocations {
    revoked: Cache<Uuid, ()>,
    live: Cache<Uuid, Uuid>,
}

impl Revocations {
    /// Caches sized for `access_token_ttl`.
    pub fn new(access_token_ttl: i64) -> Self {
        let keep = Duration::from_secs(access_token_ttl.max(0) as u64 + 60);
        Self {
            revoked: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(keep)
                .build(),
            live: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(LIVE_TTL)
                .build(),
        }
    }

    /// Records revocations made by this instance.
    pub fn revoke(&self, sessions: impl IntoIterator<Item = Uuid>) {
        for s in sessions {
            self.revoked.insert(s, ());
            self.live.invalidate(&s);
        }
    }

    /// Records a switch of organization made by this instance.
    pub fn switched(&self, session: Uuid, org_id: Uuid) {
        if self.live.contains_key(&session) {
            self.live.insert(session, org_id);
        }
    }

    /// The active organization of the session if it may still be used, `None` if it may not;
    /// reads the database at most once per [`LIVE_TTL`] per live session.
    pub async fn live_org(
        &self,
        db: &Db,
        session: Uuid,
        now: i64,
    ) -> Result<Option<Uuid>, StoreError> {
        if self.revoked.contains_key(&session) {
            return Ok(None);
        }
        if let Some(org) = self.live.get(&session) {
            return Ok(Some(org));
        }
        let org = db.session_org(session, now).await?;
        match org {
            Some(org) => self.live.insert(session, org),
            None => self.revoked.insert(session, ()),
        }
        Ok(org)
    }
}
