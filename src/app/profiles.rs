//! The `/auth/me` profile, kept in memory for a moment.
//!
//! Every page of every product behind this service may ask `/auth/me`, and the answer changes
//! only when the account's MFA or memberships change. Reading the account and its memberships
//! each time put a database round trip on the busiest authenticated call. So the profile is
//! cached per user for [`LIVE_TTL`]: this instance's own writes drop the entry before they
//! answer, and a change made by another instance sharing the database shows within `LIVE_TTL`,
//! the same bound as a revocation. The cache holds no password hash.

use crate::db::{Db, Profile};
use crate::security::revocation::LIVE_TTL;
use edge_idp_actors::StoreError;
use moka::sync::Cache;
use std::sync::Arc;
use uuid::Uuid;

const MAX_ENTRIES: u64 = 100_000;

/// Profiles by user id.
#[derive(Clone)]
pub struct Profiles {
    cache: Cache<Uuid, Arc<Profile>>,
}

impl Default for Profiles {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(LIVE_TTL)
                .build(),
        }
    }
}

impl Profiles {
    /// The user's profile, read from the database at most once per [`LIVE_TTL`]; `None` for an
    /// unknown user.
    pub async fn get(&self, db: &Db, user_id: Uuid) -> Result<Option<Arc<Profile>>, StoreError> {
        if let Some(p) = self.cache.get(&user_id) {
            return Ok(Some(p));
        }
        let Some(p) = db.profile(user_id).await? else {
            return Ok(None);
        };
        let p = Arc::new(p);
        self.cache.insert(user_id, p.clone());
        Ok(Some(p))
    }

    /// Drops what is known of these users, after a write that changes their profile.
    pub fn forget(&self, users: impl IntoIterator<Item = Uuid>) {
        for u in users {
            self.cache.invalidate(&u);
        }
    }
}
