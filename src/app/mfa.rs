//! The second factor: TOTP enrollment and confirmation, the login challenge, disabling.
//!
//! Every check of a second factor counts against two caps before it is made: the account's
//! cross-endpoint cap (`MFA_FAILURE_LIMIT`, [`App::guarded`]) and, at login, the challenge's own
//! attempts; both are conditional writes, so they hold across instances.

use super::{App, AppError, Caller, Client, Metered, Tokens};
use crate::db::Attempt;
use crate::ops::audit::AuditEvent;
use crate::security::ratelimit::{Decision, Policy};
use edge_idp_actors::crypto::sha256;
use edge_idp_actors::mfa::{Enrollment, Mfa, MAX_ATTEMPTS};
use edge_idp_actors::store::MfaStore;
use edge_idp_actors::SecretString;
use uuid::Uuid;

/// The longest code accepted (a recovery code is shorter; anything longer is malformed).
pub const MAX_CODE_CHARS: usize = 64;

/// A passed second factor: who, in which organization, how.
pub(super) struct SecondFactorOk {
    pub user_id: Uuid,
    pub email: String,
    pub membership: edge_idp_actors::store::Membership,
    pub amr: Vec<String>,
}

impl App {
    fn totp(&self) -> Mfa<'_, crate::db::Db> {
        Mfa {
            store: &self.db,
            config: &self.mfa,
            clock: &self.clock,
        }
    }

    /// Step-up: enrollment and confirmation change how the account is protected, so they need
    /// a sign-in from the last `STEP_UP_MAX_AGE_SECS`, not merely a valid access token (which
    /// a refresh keeps minting for up to 90 days). A stolen token cannot enroll the thief's
    /// authenticator and keep the recovery codes.
    fn require_recent_sign_in(&self, caller: &Caller) -> Result<(), AppError> {
        self.require_sign_in_since(caller.claims.auth_time)
    }

    /// [`Self::require_recent_sign_in`] for a sign-in at `auth_time` (a token's, or a browser
    /// session's).
    pub(super) fn require_sign_in_since(&self, auth_time: i64) -> Result<(), AppError> {
        let max_age = self.settings.guards.step_up_max_age;
        if self.clock.now() - auth_time > max_age {
            return Err(AppError::StepUpRequired(max_age));
        }
        Ok(())
    }

    /// Runs one second-factor check of `user_id` under the cross-endpoint cap: the attempt is
    /// counted before the check (refused with a rate limit once the window's cap is reached),
    /// a right answer clears the count, and the wrong answer that reaches the cap writes an
    /// `mfa_locked` audit event.
    pub(super) async fn guarded<T>(
        &self,
        client: &Client,
        user_id: Uuid,
        check: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        let cap = self.settings.guards.mfa_failures;
        let now = self.clock.now();
        let attempt = match self.db.claim_mfa_attempt(user_id, now, cap).await? {
            Attempt::Counted(n) => n,
            Attempt::Refused(wait) => {
                self.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    detail: Some("second-factor attempt refused: too many wrong answers".into()),
                    ..client.event("mfa_attempt_refused")
                });
                return Err(AppError::RateLimited(Decision {
                    allowed: false,
                    limit: cap.count,
                    remaining: 0,
                    reset_secs: wait.max(1) as u64,
                }));
            }
        };
        match check.await {
            Ok(v) => {
                self.db.clear_mfa_failures(user_id).await?;
                Ok(v)
            }
            Err(AppError::InvalidMfaCode) => {
                self.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    ..client.event("mfa_failed")
                });
                if attempt >= i64::from(cap.count) {
                    self.audit.record(AuditEvent {
                        user_id: Some(user_id),
                        detail: Some(format!(
                            "{attempt} wrong second-factor answers; refused for {} s",
                            cap.period_secs
                        )),
                        ..client.event("mfa_locked")
                    });
                }
                Err(AppError::InvalidMfaCode)
            }
            Err(e) => Err(e),
        }
    }

    /// A fresh TOTP secret for the caller, pending until confirmed.
    pub async fn mfa_enroll(&self, caller: &Caller) -> Result<Enrollment, AppError> {
        self.require_recent_sign_in(caller)?;
        let id = caller.user_id;
        let enrollment = self.totp().enroll(id, &caller.claims.email).await?;
        self.audit.record(AuditEvent {
            user_id: Some(id),
            ..caller.client.event("mfa_enroll")
        });
        Ok(enrollment)
    }

    /// A valid code turns MFA on; the recovery codes, shown once. Every other session and
    /// pending `mfa_token` of the user ends.
    pub async fn mfa_confirm(
        &self,
        caller: &Caller,
        code: SecretString,
    ) -> Result<Metered<Vec<SecretString>>, AppError> {
        self.require_recent_sign_in(caller)?;
        self.change_second_factor(caller, "mfa_enabled", async {
            Ok(self.totp().confirm(caller.user_id, &code).await?)
        })
        .await
    }

    /// A valid TOTP or recovery code turns MFA off. The code is the step-up: it proves the
    /// second factor, which a stolen access token alone does not.
    pub async fn mfa_disable(
        &self,
        caller: &Caller,
        code: SecretString,
    ) -> Result<Metered<()>, AppError> {
        let m = self
            .change_second_factor(caller, "mfa_disabled", async {
                Ok(self.totp().disable(caller.user_id, &code).await?)
            })
            .await?;
        if m.outcome.is_ok() {
            self.notify_user(crate::mail::Letter::MfaDisabled, caller.user_id)
                .await;
        }
        Ok(m)
    }

    /// Turns the caller's second factor on or off (`change`): counted against the login limits
    /// (it checks a second factor), then under the second-factor cap; afterwards ends the
    /// user's other sessions and pending `mfa_token`s and records `event` (also the revocation
    /// reason).
    async fn change_second_factor<T>(
        &self,
        caller: &Caller,
        event: &'static str,
        change: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<Metered<T>, AppError> {
        let decision = self
            .login_limits(&caller.client, &caller.claims.email)
            .await?;
        let outcome = async {
            let id = caller.user_id;
            let out = self.guarded(&caller.client, id, change).await?;
            self.profiles.forget([id]);
            let ended = self
                .end_other_sessions(id, Some(caller.session_id), event)
                .await?;
            self.end_pending_challenges(id).await?;
            self.audit.record(AuditEvent {
                user_id: Some(id),
                detail: Some(format!("{ended} other sessions revoked")),
                ..caller.client.event(event)
            });
            Ok(out)
        }
        .await;
        Ok(Metered { decision, outcome })
    }

    /// The second step of a login with MFA: the challenge and a TOTP or recovery code.
    ///
    /// Every call counts against the login limit of its client IP before the token is looked
    /// up (so unknown and forged tokens are counted too), and against its account's once it
    /// resolves. The attempt is then counted against the challenge in the conditional write
    /// that refuses a burned one, before the code is checked. The decision returned is the
    /// account's where it was checked (the tighter one), else the IP's.
    pub async fn mfa_verify(
        &self,
        client: &Client,
        mfa_token: SecretString,
        code: SecretString,
    ) -> Result<Metered<Tokens>, AppError> {
        let mut decision = self
            .limited(&[(Policy::LoginIp, &client.rate_key())])
            .await?;
        let outcome = match self
            .verify_challenge(client, mfa_token, code, &mut decision)
            .await
        {
            Ok(passed) => {
                self.start_session(
                    client,
                    passed.user_id,
                    passed.email,
                    passed.membership,
                    passed.amr,
                )
                .await
            }
            Err(e) => Err(e),
        };
        Ok(Metered { decision, outcome })
    }

    /// The live MFA challenge an `mfa_token` names (unused, not burned, unexpired), and its
    /// hash; else [`AppError::InvalidMfaToken`].
    pub(super) async fn live_challenge(
        &self,
        mfa_token: &SecretString,
    ) -> Result<(edge_idp_actors::store::Challenge, [u8; 32]), AppError> {
        if !super::sessions::token_shaped(mfa_token.expose()) {
            return Err(AppError::InvalidMfaToken);
        }
        let hash = sha256(mfa_token.expose().as_bytes());
        let now = self.clock.now();
        let ch = self
            .db
            .challenge(hash)
            .await?
            .filter(|ch| !ch.used && ch.attempts < MAX_ATTEMPTS && now < ch.expires_at)
            .ok_or(AppError::InvalidMfaToken)?;
        Ok((ch, hash))
    }

    /// The second factor's check every sign-in shares (the JSON API and the hosted pages): the
    /// challenge, the account's limit, the failure cap, the code, the challenge consumed.
    pub(super) async fn verify_challenge(
        &self,
        client: &Client,
        mfa_token: SecretString,
        code: SecretString,
        decision: &mut Decision,
    ) -> Result<SecondFactorOk, AppError> {
        let (ch, hash) = self.live_challenge(&mfa_token).await?;
        let now = self.clock.now();
        // Counted against the challenge's account; a refusal here changes nothing further.
        self.account_limited(&ch.email, decision).await?;
        // The user's cap first, then the challenge's: a refusal from the cap leaves the
        // challenge's attempts untouched.
        self.guarded(client, ch.user_id, async {
            if !self
                .db
                .claim_challenge_attempt(hash, now, MAX_ATTEMPTS)
                .await?
            {
                return Err(AppError::InvalidMfaToken);
            }
            Ok(self.totp().check(ch.user_id, &code).await?)
        })
        .await?;
        if !self.db.consume_challenge(hash, now, MAX_ATTEMPTS).await? {
            return Err(AppError::InvalidMfaToken);
        }
        let membership = self
            .membership_for_login(ch.user_id, ch.org_id.as_deref(), ch.default_org_id)
            .await?;
        Ok(SecondFactorOk {
            user_id: ch.user_id,
            email: ch.email,
            membership,
            amr: vec!["pwd".to_owned(), "otp".to_owned()],
        })
    }
}
