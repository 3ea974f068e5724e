//! What the actors need from storage, as traits the binary's libSQL adapter implements.
//!
//! Keeping SQL out of this crate lets the actors be read as pure ordering logic, and lets the
//! storage guarantees that must hold across processes (a refresh token rotated once, unique
//! emails, one first signing key) be stated here, on the method that provides them.

use crate::error::StoreError;
use std::future::Future;
use uuid::Uuid;

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Roles in an organization, most powerful first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Full control, including removing other owners.
    Owner,
    /// Manages members.
    Admin,
    /// Belongs, nothing more.
    Member,
}

impl Role {
    /// The stored and serialized spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A new account with its personal organization, written in one transaction.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// User id (UUID v7).
    pub id: Uuid,
    /// Normalised (trimmed, lower-cased) email.
    pub email: String,
    /// Display name, if given.
    pub name: Option<String>,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Personal organization id.
    pub org_id: Uuid,
    /// Personal organization name.
    pub org_name: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// An account as login needs it.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// User id.
    pub id: Uuid,
    /// Normalised email.
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Argon2id PHC string. Not a secret in itself, but never returned.
    pub password_hash: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Whether TOTP is on.
    pub mfa_enabled: bool,
    /// The personal organization created at signup.
    pub default_org_id: Uuid,
    /// Whether `email` was proven by a link sent to it.
    pub email_verified: bool,
}

/// A membership: the organization a token is issued for, and the role in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Organization id.
    pub org_id: Uuid,
    /// Organization name.
    pub org_name: String,
    /// Role of the user there.
    pub role: Role,
}

/// A new session (token family) with its first refresh token.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Session id = family id = the `sid` claim.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Organization the session works in.
    pub active_org_id: Uuid,
    /// Authentication methods, e.g. `["pwd"]`.
    pub amr: Vec<String>,
    /// `User-Agent` of the login.
    pub user_agent: Option<String>,
    /// Client IP of the login.
    pub ip: Option<String>,
    /// Now.
    pub created_at: i64,
    /// Hard end of the session (`SESSION_MAX_TTL`).
    pub expires_at: i64,
    /// SHA-256 of the first refresh token.
    pub token_hash: [u8; 32],
    /// Expiry of the first refresh token.
    pub token_expires_at: i64,
    /// For a session started by the OAuth token endpoint: its client and grant.
    pub grant: Option<Grant>,
}

/// What an OAuth client was granted in a session: the session's refresh tokens rotate only for
/// this client, and the scope travels with every rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The client the session belongs to.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The browser session (single sign-on) the authorization came from.
    pub browser_session_id: Option<Uuid>,
}

/// A refresh token row joined with its session, as rotation reads it.
#[derive(Debug, Clone)]
pub struct RefreshView {
    /// Family.
    pub session_id: Uuid,
    /// Owner of the family.
    pub user_id: Uuid,
    /// Position in the family, 0 for the token issued at login.
    pub generation: i64,
    /// Expiry of this token.
    pub expires_at: i64,
    /// When it was rotated, if it was.
    pub used_at: Option<i64>,
    /// The successor sealed for grace replay, while the window lasts.
    pub successor_sealed: Option<Vec<u8>>,
    /// Whether the successor has itself been rotated already.
    pub successor_used: bool,
    /// Expiry of the successor.
    pub successor_expires_at: Option<i64>,
    /// Why the session was revoked, if it was (`logout`, `refresh_token_reused`, …).
    pub session_revoked: Option<String>,
    /// Hard end of the session.
    pub session_expires_at: i64,
}

impl RefreshView {
    /// Whether presenting this token at `now` rotates it: unused, unexpired, in a live session.
    pub fn rotatable(&self, now: i64) -> bool {
        self.used_at.is_none()
            && now < self.expires_at
            && self.session_revoked.is_none()
            && now < self.session_expires_at
    }
}

/// A refresh token presented for rotation, with the successor that replaces it if it is
/// [rotatable](RefreshView::rotatable).
#[derive(Debug, Clone)]
pub struct Presentation {
    /// Hash of the presented token.
    pub token_hash: [u8; 32],
    /// Hash of the successor.
    pub successor_hash: [u8; 32],
    /// The successor sealed for grace replay; `None` when the grace window is 0.
    pub successor_sealed: Option<Vec<u8>>,
    /// Lifetime of the successor (`REFRESH_TOKEN_TTL`), cut at the session's hard end.
    pub token_ttl: i64,
    /// Now.
    pub now: i64,
    /// The OAuth client presenting the token, `None` for the first-party API: a token rotates
    /// only for the client its session belongs to (part of the conditional write).
    pub client_id: Option<String>,
}

/// What the store found for a presentation, and whether it rotated.
#[derive(Debug, Clone)]
pub struct Presented {
    /// The token and its session as they were before this presentation, read under the write
    /// lock that the rotation (if any) committed under.
    pub view: RefreshView,
    /// Expiry of the successor when this presentation rotated the token; `None` when it
    /// changed nothing.
    pub rotated: Option<i64>,
    /// Who the session's access token is for (read in the same transaction); `None` when the
    /// session is revoked or the user belongs to no organization.
    pub principal: Option<Principal>,
}

/// Who a session's access token is for.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `sub`.
    pub user_id: Uuid,
    /// `email`.
    pub email: String,
    /// `org_id` and `role`.
    pub membership: Membership,
    /// `amr`.
    pub amr: Vec<String>,
    /// `auth_time`: when the user signed in to start the session (Unix seconds).
    pub auth_time: i64,
    /// The OAuth grant of the session, if an OAuth client started it.
    pub grant: Option<Grant>,
}

/// A signing key as stored: the private part sealed.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// PKCS#8 DER of the private key, sealed under the signing-keys sealer with the kid as AAD.
    pub private_sealed: Vec<u8>,
    /// When it was created.
    pub created_at: i64,
    /// When it starts signing.
    pub activates_at: i64,
    /// When it leaves JWKS, if decided.
    pub retires_at: Option<i64>,
}

/// Counts of what a prune pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Sealed successors erased because their grace window ended.
    pub successors_erased: u64,
    /// Expired refresh-token rows deleted.
    pub tokens_deleted: u64,
    /// Expired or long-revoked sessions deleted.
    pub sessions_deleted: u64,
}

/// Accounts and memberships.
pub trait UserStore: Clone + Send + Sync + 'static {
    /// Creates the user, the personal organization and the owner membership atomically.
    /// A taken email is `Conflict("email")`, also when another process wins the race.
    fn create_user(&self, new: NewUser) -> impl Future<Output = StoreResult<()>> + Send;
    /// Looks an account up by normalised email.
    fn user_by_email(
        &self,
        email: &str,
    ) -> impl Future<Output = StoreResult<Option<UserRecord>>> + Send;
    /// The user's membership in `org_id` (any string: an unknown id is simply no membership).
    fn membership(
        &self,
        user_id: Uuid,
        org_id: &str,
    ) -> impl Future<Output = StoreResult<Option<Membership>>> + Send;
    /// Replaces the password hash if it is still `old_hash` (`false` otherwise: a concurrent
    /// change won).
    fn replace_password(
        &self,
        user_id: Uuid,
        old_hash: String,
        new_hash: String,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Bookkeeping after a right password; replaces the hash only if it is still `old_hash`
    /// (a concurrent password change wins).
    fn record_login_success(
        &self,
        user_id: Uuid,
        now: i64,
        rehash: Option<(String, String)>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Sessions and refresh-token families.
pub trait SessionStore: Clone + Send + Sync + 'static {
    /// Inserts the session and its first token in one transaction.
    fn start_session(&self, s: NewSession) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads the presented token and its session and, if it is rotatable, rotates it, all in one
    /// immediate transaction: exactly one presentation of a token rotates it, across processes.
    /// `None` for an unknown token.
    fn present(
        &self,
        p: Presentation,
    ) -> impl Future<Output = StoreResult<Option<Presented>>> + Send;
    /// The session a token belongs to, used or not (logout accepts any token of the family).
    fn session_of_token(
        &self,
        token_hash: [u8; 32],
    ) -> impl Future<Output = StoreResult<Option<(Uuid, Uuid)>>> + Send;
    /// Revokes one session; `false` if it was unknown or already revoked.
    fn revoke_session(
        &self,
        session_id: Uuid,
        now: i64,
        reason: &'static str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Revokes every live session of a user but `except`; returns the sessions revoked.
    fn revoke_user_sessions(
        &self,
        user_id: Uuid,
        except: Option<Uuid>,
        now: i64,
        reason: &'static str,
    ) -> impl Future<Output = StoreResult<Vec<Uuid>>> + Send;
    /// Moves a live session to another organization (switch-org).
    fn set_active_org(
        &self,
        session_id: Uuid,
        org_id: Uuid,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The active organization of the session if it exists, is not revoked and has not
    /// reached its hard end; `None` otherwise.
    fn session_org(
        &self,
        session_id: Uuid,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<Uuid>>> + Send;
    /// Erases sealed successors older than `grace` and deletes what has expired.
    fn prune(&self, now: i64, grace: i64) -> impl Future<Output = StoreResult<Pruned>> + Send;
}

/// Signing keys.
pub trait KeyStore: Clone + Send + Sync + 'static {
    /// Every stored key.
    fn keys(&self) -> impl Future<Output = StoreResult<Vec<StoredKey>>> + Send;
    /// Inserts `key` only if no key exists yet; `false` when another instance was first.
    fn insert_first_key(&self, key: StoredKey) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Inserts a rotated `key` unless a key activating after `newest_seen` exists already (another
    /// instance rotated first: `false`), and sets `retires_at` on every other key without one.
    fn insert_rotated_key(
        &self,
        key: StoredKey,
        newest_seen: i64,
        retire_others_at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Inserts `key` unless a key with its kid exists.
    fn insert_key(&self, key: StoredKey) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Whether a user's TOTP secret awaits confirmation or is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaStatus {
    /// Enrolled, not yet confirmed by a code.
    Pending,
    /// Confirmed: login requires a second factor.
    Enabled,
}

/// A user's TOTP state.
#[derive(Debug, Clone)]
pub struct MfaRecord {
    /// The secret, sealed (user id as associated data).
    pub secret_sealed: Vec<u8>,
    /// Pending or enabled.
    pub status: MfaStatus,
    /// Highest accepted time step.
    pub last_step: Option<i64>,
}

/// A login challenge (the `mfa_token`), joined with its user.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The user who passed the password check.
    pub user_id: Uuid,
    /// Their normalised email (the per-account rate-limit key).
    pub email: String,
    /// Their default organization.
    pub default_org_id: Uuid,
    /// The organization requested at login, if any.
    pub org_id: Option<String>,
    /// Expiry.
    pub expires_at: i64,
    /// Wrong codes so far.
    pub attempts: i64,
    /// Whether it was used.
    pub used: bool,
}

/// TOTP secrets, recovery codes and login challenges.
pub trait MfaStore: Clone + Send + Sync + 'static {
    /// The user's TOTP state.
    fn mfa(&self, user_id: Uuid) -> impl Future<Output = StoreResult<Option<MfaRecord>>> + Send;
    /// Stores a pending secret, replacing a pending one; `false` (nothing written) when MFA is
    /// already enabled.
    fn set_pending_mfa(
        &self,
        user_id: Uuid,
        sealed: Vec<u8>,
        key_version: i64,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Turns the pending secret `sealed` on, accepting `step`, and replaces the recovery codes;
    /// `false` when that secret is no longer the pending one (an enrollment replaced it since it
    /// was read) or the step was already used.
    fn enable_mfa(
        &self,
        user_id: Uuid,
        sealed: Vec<u8>,
        step: i64,
        recovery_hashes: Vec<[u8; 32]>,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Accepts `step` only if it is above every step accepted before (replay protection that
    /// holds across processes).
    fn accept_totp_step(
        &self,
        user_id: Uuid,
        step: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Uses a recovery code once; `false` if unknown or used.
    fn use_recovery_code(
        &self,
        user_id: Uuid,
        hash: [u8; 32],
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Removes the secret and the recovery codes.
    fn disable_mfa(&self, user_id: Uuid) -> impl Future<Output = StoreResult<()>> + Send;
    /// Creates a login challenge.
    fn create_challenge(
        &self,
        hash: [u8; 32],
        user_id: Uuid,
        org_id: Option<String>,
        now: i64,
        expires_at: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads a challenge.
    fn challenge(
        &self,
        hash: [u8; 32],
    ) -> impl Future<Output = StoreResult<Option<Challenge>>> + Send;
    /// Counts an attempt against an unused, unexpired challenge *before* its code is checked,
    /// in the one conditional write that refuses it once `max_attempts` were counted: `false`
    /// when refused (used, burned, expired or unknown). Concurrent guesses are therefore
    /// counted one by one, and at most `max_attempts` are ever evaluated.
    fn claim_challenge_attempt(
        &self,
        hash: [u8; 32],
        now: i64,
        max_attempts: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Uses the challenge once: `false` if it was used, burned (`max_attempts`) or expired.
    fn consume_challenge(
        &self,
        hash: [u8; 32],
        now: i64,
        max_attempts: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Everything the actors need, as one bound.
pub trait Store: UserStore + SessionStore + KeyStore + MfaStore {}
impl<T: UserStore + SessionStore + KeyStore + MfaStore> Store for T {}
