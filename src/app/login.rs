//! Login: the password step, then tokens, or a challenge for the second factor.
//!
//! The path, route to row: the handler parses `{email, password, org_id}` → [`App::login`]
//! checks the login limits (per IP and per account) and the account's lockout → reads the
//! account (`db::store`, `user_by_email`) → verifies the password on the hashing threads
//! (`passwords`, a dummy hash for unknown emails) → records the outcome (`record_login_success`,
//! which also stores a hash upgraded to the current Argon2 costs) → either stores an MFA
//! challenge, or starts a session (`sessions` and `refresh_tokens` rows, one batch) and signs
//! the access token (`tokens`).

use super::{App, AppError, Client, Metered, Tokens};
use crate::ops::audit::AuditEvent;
use crate::security::ratelimit::Decision;
use edge_idp_actors::crypto::sha256;
use edge_idp_actors::mfa::{new_challenge_token, CHALLENGE_TTL};
use edge_idp_actors::refresh::StartSession;
use edge_idp_actors::store::{Membership, MfaStore, Principal, UserRecord, UserStore};
use edge_idp_actors::SecretString;
use uuid::Uuid;

/// A parsed login request.
pub struct Login {
    /// Normalised email.
    pub email: String,
    /// The password as typed.
    pub password: SecretString,
    /// Organization to log into; the personal one when absent.
    pub org_id: Option<String>,
}

/// What a right password leads to.
pub enum LoginOutcome {
    /// MFA is off: a session and its tokens.
    Tokens(Tokens),
    /// MFA is on: a single-use challenge for the second factor, no tokens yet.
    MfaRequired {
        /// The `mfa_token`.
        token: SecretString,
        /// Seconds until it expires.
        expires_in: i64,
        /// The account has a passkey, which may answer instead of a TOTP code.
        passkey: bool,
    },
}

/// A right password, recorded.
pub(super) struct PasswordOk {
    /// The account.
    pub user: UserRecord,
    /// The organization it signs in to.
    pub membership: Membership,
    /// Whether that organization was asked for (else it is the default one).
    pub org_requested: bool,
}

/// The longest password any account can have (the policy's maximum): anything longer is
/// refused before it is hashed.
pub const MAX_PASSWORD_CHARS: usize = 128;

impl App {
    /// The password step of a login.
    pub async fn login(
        &self,
        client: &Client,
        req: Login,
    ) -> Result<Metered<LoginOutcome>, AppError> {
        let decision = match self.login_limits(client, &req.email).await {
            Ok(d) => d,
            Err(e) => {
                self.metrics.login("rate_limited");
                return Err(e);
            }
        };
        let outcome = match self.check_password(client, req, decision).await {
            Ok(ok) => self.after_password(client, ok).await,
            Err(e) => Err(e),
        };
        self.metrics.login(match &outcome {
            Ok(LoginOutcome::MfaRequired { .. }) => "mfa_required",
            Ok(LoginOutcome::Tokens(_)) => "success",
            Err(AppError::InvalidCredentials) => "invalid_credentials",
            Err(AppError::NotAMember) => "not_a_member",
            Err(AppError::EmailNotVerified) => "email_not_verified",
            Err(_) => "error",
        });
        Ok(Metered { decision, outcome })
    }

    /// The password check every sign-in shares (the JSON login and the hosted sign-in page):
    /// lockout, the hash verified on the hashing threads (a dummy one for unknown emails, so
    /// that timing tells nothing), failures counted and audited, a success recorded.
    pub(super) async fn check_password(
        &self,
        client: &Client,
        req: Login,
        decision: Decision,
    ) -> Result<PasswordOk, AppError> {
        // The lockout is kept per account key, for unknown emails as for known ones, so that
        // neither the lock nor the write a failure takes tells them apart.
        let lock_key = sha256(req.email.as_bytes());
        let now = self.clock.now();
        let counted = self.db.lockout(lock_key).await?;
        if let Some(until) = counted.map(|f| f.locked_until).filter(|&t| t > now) {
            return Err(AppError::RateLimited(Decision {
                allowed: false,
                limit: decision.limit,
                remaining: 0,
                reset_secs: (until - now).max(1) as u64,
            }));
        }
        if req.password.expose().chars().count() > MAX_PASSWORD_CHARS {
            return Err(AppError::InvalidCredentials);
        }
        let user = self.db.user_by_email(&req.email).await?;
        let verified = self
            .passwords
            .verify(req.password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        let user = match user {
            Some(u) if verified.ok => u,
            other => {
                let failure = self
                    .db
                    .record_password_failure(lock_key, now, self.settings.guards.lockout)
                    .await?;
                let user_id = other.as_ref().map(|u| u.id);
                let why = if user_id.is_some() {
                    "wrong password"
                } else {
                    "unknown account"
                };
                self.audit.record(AuditEvent {
                    user_id,
                    detail: Some(why.into()),
                    ..client.event("login_failed")
                });
                if failure.locked_until > now {
                    self.audit.record(AuditEvent {
                        user_id,
                        detail: Some(format!(
                            "{} consecutive failures; locked for {} s",
                            failure.failures,
                            failure.locked_until - now
                        )),
                        ..client.event("account_locked")
                    });
                }
                return Err(AppError::InvalidCredentials);
            }
        };
        if counted.is_some() {
            self.db.clear_password_failures(lock_key).await?;
        }
        // Told only to whoever knows the password: the account exists, its address is not
        // proven yet.
        if self.settings.require_verified_email && !user.email_verified {
            self.audit.record(AuditEvent {
                user_id: Some(user.id),
                detail: Some("email not verified".into()),
                ..client.event("login_refused")
            });
            return Err(AppError::EmailNotVerified);
        }
        let membership = self
            .membership_for_login(user.id, req.org_id.as_deref(), user.default_org_id)
            .await?;
        // A hash made with outdated Argon2 costs is replaced, if it is still the one we read.
        let rehash = verified.rehash.map(|new| (user.password_hash.clone(), new));
        self.db
            .record_login_success(user.id, self.clock.now(), rehash)
            .await?;
        Ok(PasswordOk {
            user,
            membership,
            org_requested: req.org_id.is_some(),
        })
    }

    /// A right password: tokens, or a challenge for the second factor.
    async fn after_password(
        &self,
        client: &Client,
        ok: PasswordOk,
    ) -> Result<LoginOutcome, AppError> {
        let PasswordOk {
            user,
            membership,
            org_requested,
        } = ok;
        if user.mfa_enabled {
            // The password was right; the second factor decides. The requested organization
            // travels with the challenge.
            let org = org_requested.then(|| membership.org_id.to_string());
            let token = self.mfa_challenge(client, user.id, org).await?;
            return Ok(LoginOutcome::MfaRequired {
                token,
                expires_in: CHALLENGE_TTL,
                passkey: self.has_passkey(user.id).await?,
            });
        }
        let tokens = self
            .start_session(client, user.id, user.email, membership, vec!["pwd".into()])
            .await?;
        Ok(LoginOutcome::Tokens(tokens))
    }

    /// Stores a single-use challenge for the second factor of `user_id`; its token.
    pub(super) async fn mfa_challenge(
        &self,
        client: &Client,
        user_id: Uuid,
        org: Option<String>,
    ) -> Result<SecretString, AppError> {
        let (token, hash) = new_challenge_token()?;
        let now = self.clock.now();
        self.db
            .create_challenge(hash, user_id, org, now, now + CHALLENGE_TTL)
            .await?;
        self.audit.record(AuditEvent {
            user_id: Some(user_id),
            ..client.event("mfa_challenge")
        });
        Ok(token)
    }

    /// The membership a login works in: the requested organization's, or the default one's.
    pub(super) async fn membership_for_login(
        &self,
        user_id: Uuid,
        requested: Option<&str>,
        default_org: Uuid,
    ) -> Result<Membership, AppError> {
        match requested {
            Some(org) => self
                .db
                .membership(user_id, org.trim())
                .await?
                .ok_or(AppError::NotAMember),
            None => self
                .db
                .membership(user_id, &default_org.to_string())
                .await?
                .ok_or_else(|| {
                    AppError::internal(format!(
                        "user {user_id} has no membership in its default organization"
                    ))
                }),
        }
    }

    /// Starts a session (a refresh-token family) and signs its first access token.
    pub(super) async fn start_session(
        &self,
        client: &Client,
        user_id: Uuid,
        email: String,
        membership: Membership,
        amr: Vec<String>,
    ) -> Result<Tokens, AppError> {
        let start = StartSession {
            user_id,
            org_id: membership.org_id,
            amr: amr.clone(),
            user_agent: client.user_agent.clone(),
            ip: Some(client.ip.to_string()),
            grant: None,
        };
        let issued = self.families.start(start).await?;
        let principal = Principal {
            user_id,
            email,
            membership,
            amr,
            auth_time: self.clock.now(),
            grant: None,
        };
        let access = self.tokens.issue(&principal, issued.session_id).await?;
        self.audit.record(AuditEvent {
            user_id: Some(user_id),
            session_id: Some(issued.session_id),
            org_id: Some(principal.membership.org_id),
            detail: Some(format!("amr={}", principal.amr.join("+"))),
            ..client.event("login")
        });
        self.signed_in_from(client, user_id).await;
        Ok(self.tokens_for(access, Some(issued)))
    }

    /// The token response of an access token and, at a session's start or rotation, its
    /// refresh token.
    pub(super) fn tokens_for(
        &self,
        access_token: String,
        refresh: Option<edge_idp_actors::refresh::Issued>,
    ) -> Tokens {
        let now = self.clock.now();
        Tokens {
            access_token,
            expires_in: self.tokens.ttl(),
            refresh: refresh.map(|r| (r.refresh_token, (r.expires_at - now).max(0))),
        }
    }
}
