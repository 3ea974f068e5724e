//! Email: proving an address, resetting a forgotten password, and the outbox that sends the
//! mail of every flow.
//!
//! - **Links** are a random 256-bit token in `<ISSUER>/<page>?token=<token>`; the database keeps
//!   only its SHA-256 (`email_tokens`). Each is used by one conditional write at the primary
//!   (`db::mail`), and counts only while the account's address is still the one it was sent to.
//!   Verification links live [`VERIFY_TTL`], reset links [`RESET_TTL`].
//! - **The outbox**: a flow queues its mail in the same write as its change (signup and its
//!   verification mail, a reset and its notice), so the two are stored together or not at all,
//!   and never waits for the mail server. The body is sealed (AES-256-GCM, a key derived from
//!   the master key for this purpose, the row id as associated data) because it carries a
//!   token, and emptied once sent.
//! - **The sender** ([`App::deliver_mail`], run by `startup`): one instance at a time sends,
//!   the holder of the `mail_sender` lease. It claims each attempt before sending (a
//!   conditional write that also puts the message off by the backoff), marks it sent after;
//!   a failure is retried with a doubling backoff up to [`MAX_ATTEMPTS`], and a refusal the
//!   server calls permanent is not retried. Delivery is at least once: a crash between the
//!   server's acceptance and the row's update sends that message again after the backoff
//!   (with the same `Message-ID`). Nothing is ever lost by an outage: mail waits.
//! - **No oracle**: `forgot_password` answers the same, after the same work, for any address;
//!   what differs (looking the account up, writing the link) runs after the answer.

use super::{App, AppError, Caller, Client, Metered};
use crate::db::{ChangeOutcome, LinkKind, NewLink, Outgoing};
use crate::mail::{Letter, MailError, Rendered};
use crate::ops::audit::AuditEvent;
use crate::security::passwords::{check_policy, context_words};
use crate::security::ratelimit::{account_key, Policy};
use edge_idp_actors::crypto::{sha256, Sealer};
use edge_idp_actors::mfa::new_challenge_token;
use edge_idp_actors::SecretString;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::Notify;
use uuid::Uuid;

/// How long a verification link works, seconds.
pub const VERIFY_TTL: i64 = 24 * 3600;
/// How long a password-reset link works, seconds.
pub const RESET_TTL: i64 = 30 * 60;
/// Attempts at one message before it is given up: with the backoff, the last is just over 24
/// hours after the first, so an outage of a day loses nothing.
pub const MAX_ATTEMPTS: i64 = 31;
/// The sender's lease: how long it holds without renewing, seconds.
const LEASE_SECS: i64 = 60;
/// The lease's name in the `leases` table.
const LEASE: &str = "mail_sender";
/// Messages one pass sends at most before it renews the lease and looks again.
const PASS: i64 = 20;

/// Seconds before the next attempt after `attempts` failed ones: 30 s doubling, at most an hour.
pub fn backoff(attempts: i64) -> i64 {
    (30_i64 << attempts.clamp(0, 7)).min(3600)
}

/// The hosted pages the links open.
pub const VERIFY_PAGE: &str = "/email/verify";
/// See [`VERIFY_PAGE`].
pub const RESET_PAGE: &str = "/password/reset";

/// The mail side of the application: how messages are sealed, where they go, and the wake-up
/// of this instance's sender.
pub struct Mailer {
    delivery: crate::mail::Delivery,
    sealer: Sealer,
    wake: Notify,
    /// This instance's name as a lease holder.
    holder: String,
    /// The issuer's host: the domain of every `Message-ID`.
    host: String,
}

impl Mailer {
    /// A mailer delivering through `delivery`, sealing with `sealer`, for `issuer`.
    pub fn new(delivery: crate::mail::Delivery, sealer: Sealer, issuer: &str) -> Self {
        Self {
            delivery,
            sealer,
            wake: Notify::new(),
            holder: Uuid::now_v7().to_string(),
            host: url::Url::parse(issuer)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| "localhost".into()),
        }
    }
}

/// An address proven by its link.
pub struct VerifiedEmail {
    /// The account.
    pub user_id: Uuid,
    /// The address.
    pub email: String,
}

impl App {
    /// `<ISSUER><page>?token=<token>`.
    fn link(&self, page: &str, token: &SecretString) -> String {
        format!("{}{page}?token={}", self.settings.issuer, token.expose())
    }

    /// `letter` for `to`, rendered and sealed into an outbox row.
    fn outgoing(&self, letter: &Letter, to: &str) -> Result<Outgoing, AppError> {
        let rendered = letter
            .render(&self.settings.product_name, to)
            .map_err(|e| AppError::internal(e.to_string()))?;
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(&rendered).map_err(|e| AppError::internal(e.to_string()))?,
        );
        let id = Uuid::now_v7();
        let sealed = self
            .mailer
            .sealer
            .seal(&json, id.as_bytes())
            .map_err(|e| AppError::internal(e.to_string()))?;
        Ok(Outgoing {
            id,
            kind: letter.kind(),
            recipient: to.to_owned(),
            sealed,
            created_at: self.clock.now(),
        })
    }

    /// A new link of `kind` for `user_id` at `email`, and the message carrying it.
    fn new_link(
        &self,
        kind: LinkKind,
        user_id: Uuid,
        email: &str,
    ) -> Result<(NewLink, Outgoing), AppError> {
        let (token, hash) = new_challenge_token()?;
        let (ttl, letter) = match kind {
            LinkKind::Verify => (
                VERIFY_TTL,
                Letter::Verify {
                    link: self.link(VERIFY_PAGE, &token),
                    hours: VERIFY_TTL / 3600,
                },
            ),
            LinkKind::Change => (
                VERIFY_TTL,
                Letter::ConfirmChange {
                    link: self.link(VERIFY_PAGE, &token),
                    hours: VERIFY_TTL / 3600,
                },
            ),
            LinkKind::Reset => (
                RESET_TTL,
                Letter::Reset {
                    link: self.link(RESET_PAGE, &token),
                    minutes: RESET_TTL / 60,
                },
            ),
        };
        let now = self.clock.now();
        let link = NewLink {
            hash,
            kind,
            user_id,
            email: email.to_owned(),
            created_at: now,
            expires_at: now + ttl,
        };
        Ok((link, self.outgoing(&letter, email)?))
    }

    /// The verification link and message of a new account (signup stores them with it).
    pub(super) fn verification(
        &self,
        user_id: Uuid,
        email: &str,
    ) -> Result<(NewLink, Outgoing), AppError> {
        self.new_link(LinkKind::Verify, user_id, email)
    }

    /// Tells this instance's sender that mail was queued.
    pub(super) fn mail_queued(&self) {
        self.mailer.wake.notify_one();
    }

    /// Queues a notice to `to` on its own; a failure to queue it is logged, never the
    /// caller's error (the change it reports is done).
    pub(super) async fn notify(&self, letter: Letter, to: &str) {
        let queued = match self.outgoing(&letter, to) {
            Ok(m) => self.db.queue_mail(m).await.map_err(AppError::from),
            Err(e) => Err(e),
        };
        match queued {
            Ok(()) => self.mail_queued(),
            Err(e) => tracing::warn!(kind = letter.kind(), error = %e, "notice not queued"),
        }
    }

    /// Queues a notice to `user_id`'s current address (read now: a token's `email` claim may
    /// predate an address change).
    pub(super) async fn notify_user(&self, letter: Letter, user_id: Uuid) {
        match self.db.profile(user_id).await {
            Ok(Some(p)) => self.notify(letter, &p.email).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(kind = letter.kind(), error = %e, "notice not queued"),
        }
    }

    /// With `NEW_SIGN_IN_NOTICE`, remembers the device of a sign-in and mails a notice when the
    /// account had signed in before but never from it. Never fails the sign-in.
    pub(super) async fn signed_in_from(&self, client: &Client, user_id: Uuid) {
        if !self.settings.mail.new_sign_in_notice {
            return;
        }
        let device = client.user_agent.clone().unwrap_or_default();
        let hash = sha256(device.as_bytes());
        match self
            .db
            .remember_device(user_id, hash, self.clock.now())
            .await
        {
            Ok(true) => {
                let letter = Letter::NewSignIn {
                    device: if device.is_empty() {
                        "an unnamed browser or app".into()
                    } else {
                        device.chars().take(200).collect()
                    },
                    ip: client.ip.to_string(),
                };
                self.notify_user(letter, user_id).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "sign-in device not recorded"),
        }
    }

    /// `POST /auth/email/verify` and the hosted page: uses a verification link, or an
    /// email-change link (the account's address becomes the new one, proven; `email_taken`
    /// when another account has it by now).
    pub async fn verify_email(
        &self,
        client: &Client,
        token: &SecretString,
    ) -> Result<VerifiedEmail, AppError> {
        self.link_limited(client).await?;
        if !super::sessions::token_shaped(token.expose()) {
            return Err(AppError::InvalidEmailToken);
        }
        let hash = sha256(token.expose().as_bytes());
        let now = self.clock.now();
        let Some((user_id, email)) = self.db.use_verify_link(hash, now).await? else {
            return self.change_email(client, hash, now).await;
        };
        self.profiles.forget([user_id]);
        self.audit.record(AuditEvent {
            user_id: Some(user_id),
            ..client.event("email_verified")
        });
        Ok(VerifiedEmail { user_id, email })
    }

    /// The email-change half of [`App::verify_email`].
    async fn change_email(
        &self,
        client: &Client,
        hash: [u8; 32],
        now: i64,
    ) -> Result<VerifiedEmail, AppError> {
        // The notice to the old address is queued by the write that makes the change (a change
        // made with a stolen session must not go untold), so it is rendered first, from the
        // link and the account as they are now.
        let live = match self.db.live_link(hash, LinkKind::Change, now).await? {
            Some((user_id, new_email)) => self
                .db
                .profile(user_id)
                .await?
                .map(|p| (Letter::EmailChanged { new_email }, p.email)),
            None => None,
        };
        let Some((letter, old_email)) = live else {
            self.audit.record(client.event("email_verify_failed"));
            return Err(AppError::InvalidEmailToken);
        };
        let notice = self.outgoing(&letter, &old_email)?;
        match self.db.use_change_link(hash, now, notice).await? {
            ChangeOutcome::Changed {
                user_id,
                old_email,
                new_email,
            } => {
                self.profiles.forget([user_id]);
                self.mail_queued();
                self.audit.record(AuditEvent {
                    user_id: Some(user_id),
                    detail: Some(format!("from {old_email}")),
                    ..client.event("email_changed")
                });
                Ok(VerifiedEmail {
                    user_id,
                    email: new_email,
                })
            }
            ChangeOutcome::Taken => {
                self.audit.record(AuditEvent {
                    detail: Some("address taken meanwhile".into()),
                    ..client.event("email_change_failed")
                });
                Err(AppError::EmailTaken)
            }
            ChangeOutcome::Invalid => {
                self.audit.record(client.event("email_verify_failed"));
                Err(AppError::InvalidEmailToken)
            }
        }
    }

    /// `POST /auth/email`: asks to change the caller's address to `new_email`. The current
    /// password is checked (under the login limits); a link goes to the new address, which
    /// must confirm, and a notice to the old one. The address the link went to.
    pub async fn request_email_change(
        &self,
        caller: &Caller,
        new_email: String,
        password: SecretString,
    ) -> Result<Metered<String>, AppError> {
        use edge_idp_actors::store::UserStore;
        let user = self
            .db
            .user_by_id(caller.user_id)
            .await?
            .ok_or(AppError::InvalidToken)?;
        let mut decision = self.login_limits(&caller.client, &user.email).await?;
        let outcome = async {
            if password.expose().chars().count() > super::login::MAX_PASSWORD_CHARS {
                return Err(AppError::InvalidCredentials);
            }
            let verified = self
                .passwords
                .verify(password, Some(user.password_hash.clone()))
                .await?;
            if !verified.ok {
                self.audit.record(AuditEvent {
                    user_id: Some(user.id),
                    detail: Some("wrong password".into()),
                    ..caller.client.event("email_change_failed")
                });
                return Err(AppError::InvalidCredentials);
            }
            decision = self
                .limited(&[(Policy::EmailAccount, &account_key(&new_email))])
                .await?;
            if new_email == user.email || self.db.user_by_email(&new_email).await?.is_some() {
                return Err(AppError::EmailTaken);
            }
            let (link, confirm) = self.new_link(LinkKind::Change, user.id, &new_email)?;
            let notice = self.outgoing(
                &Letter::EmailChangeRequested {
                    new_email: new_email.clone(),
                },
                &user.email,
            )?;
            self.db.send_link(link, vec![confirm, notice]).await?;
            self.mail_queued();
            self.audit.record(AuditEvent {
                user_id: Some(user.id),
                session_id: Some(caller.session_id),
                ..caller.client.event("email_change_requested")
            });
            Ok(new_email)
        }
        .await;
        Ok(Metered { decision, outcome })
    }

    /// `POST /auth/email/verify/resend`: a new verification link to the caller's address,
    /// limited per address. The address it went to.
    pub async fn resend_verification(&self, caller: &Caller) -> Result<Metered<String>, AppError> {
        let profile = self
            .db
            .profile(caller.user_id)
            .await?
            .ok_or(AppError::InvalidToken)?;
        if profile.email_verified {
            return Err(AppError::EmailAlreadyVerified);
        }
        let decision = self
            .limited(&[(Policy::EmailAccount, &account_key(&profile.email))])
            .await?;
        let outcome = async {
            let (link, mail) = self.new_link(LinkKind::Verify, caller.user_id, &profile.email)?;
            self.db.send_link(link, vec![mail]).await?;
            self.mail_queued();
            self.audit.record(AuditEvent {
                user_id: Some(caller.user_id),
                session_id: Some(caller.session_id),
                ..caller.client.event("verification_sent")
            });
            Ok(profile.email.clone())
        }
        .await;
        Ok(Metered { decision, outcome })
    }

    /// `POST /auth/password/forgot` and its page: the same answer for every address. After the
    /// limits (per client IP and per address, known or not), the rest runs on its own task:
    /// for a known address a reset link is stored and mailed; for an unknown one nothing is.
    pub async fn forgot_password(
        self: &Arc<Self>,
        client: &Client,
        email: String,
    ) -> Result<Metered<()>, AppError> {
        let decision = self
            .limited(&[
                (Policy::EmailIp, &client.rate_key()),
                (Policy::EmailAccount, &account_key(&email)),
            ])
            .await?;
        let app = self.clone();
        let client = client.clone();
        tokio::spawn(async move {
            if let Err(e) = app.send_reset_link(&client, &email).await {
                tracing::warn!(error = %e, "password reset link not queued");
            }
        });
        Ok(Metered {
            decision,
            outcome: Ok(()),
        })
    }

    async fn send_reset_link(&self, client: &Client, email: &str) -> Result<(), AppError> {
        use edge_idp_actors::store::UserStore;
        let Some(user) = self.db.user_by_email(email).await? else {
            self.audit.record(AuditEvent {
                detail: Some("unknown address".into()),
                ..client.event("password_reset_requested")
            });
            return Ok(());
        };
        let (link, mail) = self.new_link(LinkKind::Reset, user.id, &user.email)?;
        self.db.send_link(link, vec![mail]).await?;
        self.mail_queued();
        self.audit.record(AuditEvent {
            user_id: Some(user.id),
            ..client.event("password_reset_requested")
        });
        Ok(())
    }

    /// Every use of a mailed link (and a look at one) counts against the login limit of the
    /// client IP, as a guess at a password would: tokens cannot be guessed, but each try is a
    /// request to the primary.
    async fn link_limited(&self, client: &Client) -> Result<(), AppError> {
        self.limited(&[(Policy::LoginIp, &client.rate_key())])
            .await
            .map(drop)
    }

    /// Whether `token` is a live reset link (the hosted page asks before it shows its form).
    pub async fn reset_link_live(
        &self,
        client: &Client,
        token: &SecretString,
    ) -> Result<bool, AppError> {
        self.link_limited(client).await?;
        if !super::sessions::token_shaped(token.expose()) {
            return Ok(false);
        }
        let hash = sha256(token.expose().as_bytes());
        Ok(self
            .db
            .live_link(hash, LinkKind::Reset, self.clock.now())
            .await?
            .is_some())
    }

    /// `POST /auth/password/reset` and its page: a new password through a reset link. The
    /// policy is checked before the link is used (a refused password leaves it working); then
    /// one write sets the password, proves the address, ends the other reset links and queues
    /// a notice; then every session of the user ends. A second factor is untouched: the next
    /// sign-in still asks for it.
    pub async fn reset_password(
        &self,
        client: &Client,
        token: &SecretString,
        new_password: SecretString,
    ) -> Result<(), AppError> {
        self.link_limited(client).await?;
        if !super::sessions::token_shaped(token.expose()) {
            return Err(AppError::InvalidEmailToken);
        }
        let hash = sha256(token.expose().as_bytes());
        let Some((user_id, email)) = self
            .db
            .live_link(hash, LinkKind::Reset, self.clock.now())
            .await?
        else {
            self.audit.record(client.event("password_reset_failed"));
            return Err(AppError::InvalidEmailToken);
        };
        check_policy(
            new_password.expose(),
            &context_words(&self.settings.mfa_issuer, &email),
        )
        .map_err(|e| AppError::WeakPassword(e.to_string()))?;
        let new_hash = self.passwords.hash(new_password).await?;
        let notice = self.outgoing(&Letter::PasswordChanged { how: "reset" }, &email)?;
        let reset = self
            .db
            .use_reset_link(hash, user_id, new_hash, self.clock.now(), notice)
            .await?;
        if !reset {
            // Used by a racing request, or the address changed, in between.
            self.audit.record(client.event("password_reset_failed"));
            return Err(AppError::InvalidEmailToken);
        }
        self.mail_queued();
        let ended = self
            .end_other_sessions(user_id, None, "password_reset")
            .await?;
        self.end_pending_challenges(user_id).await?;
        self.db
            .clear_password_failures(sha256(email.as_bytes()))
            .await?;
        self.profiles.forget([user_id]);
        self.audit.record(AuditEvent {
            user_id: Some(user_id),
            detail: Some(format!("{ended} sessions revoked")),
            ..client.event("password_reset")
        });
        Ok(())
    }

    /// One pass of the outbox sender: if mail is due and this instance holds (or takes) the
    /// lease, sends up to a pass's worth. Updates the outbox gauges either way. The number
    /// delivered.
    pub async fn deliver_mail(&self) -> usize {
        match self.deliver_due().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "mail outbox pass failed; will retry");
                0
            }
        }
    }

    async fn deliver_due(&self) -> Result<usize, AppError> {
        let now = self.clock.now();
        let state = self.db.outbox_state(now).await?;
        self.metrics.mail.queued.set(state.queued);
        self.metrics
            .mail
            .oldest_age
            .set(state.oldest.map_or(0, |t| (now - t).max(0)));
        if state.due == 0 {
            return Ok(0);
        }
        let holder = &self.mailer.holder;
        if !self
            .db
            .take_lease(LEASE, holder, now, now + LEASE_SECS)
            .await?
        {
            return Ok(0);
        }
        let mut delivered = 0;
        for m in self.db.due_mail(now, PASS).await? {
            let now = self.clock.now();
            // Renewed per message: a slow server must not let the lease lapse mid-pass.
            if !self
                .db
                .take_lease(LEASE, holder, now, now + LEASE_SECS)
                .await?
            {
                break;
            }
            let retry_at = now + backoff(m.attempts);
            if !self.db.claim_mail(m.id, m.attempts, now, retry_at).await? {
                continue;
            }
            let outcome = match self.mailer.sealer.open(&m.sealed, m.id.as_bytes()) {
                Ok(json) => match serde_json::from_slice::<Rendered>(&json) {
                    Ok(r) => {
                        let date = UNIX_EPOCH + Duration::from_secs(now.max(0) as u64);
                        // Bounded as a whole (lettre's timeout is per socket operation), well
                        // inside the backoff and the lease, so no other attempt can overlap.
                        let send = self.mailer.delivery.deliver(
                            m.id,
                            &self.settings.mail.from,
                            &self.mailer.host,
                            date,
                            &r,
                        );
                        match tokio::time::timeout(crate::mail::SMTP_TIMEOUT, send).await {
                            Ok(sent) => sent,
                            Err(_) => Err(MailError::Transient(
                                "the mail server did not finish in time".into(),
                            )),
                        }
                    }
                    Err(e) => Err(MailError::Build(format!("stored message: {e}"))),
                },
                Err(e) => Err(MailError::Build(format!("stored message: {e}"))),
            };
            let now = self.clock.now();
            match outcome {
                Ok(()) => {
                    self.db.mail_sent(m.id, now).await?;
                    self.metrics
                        .mail
                        .delivered
                        .with_label_values(&[&m.kind])
                        .inc();
                    delivered += 1;
                }
                Err(e) => {
                    let abandon = e.is_permanent() || m.attempts + 1 >= MAX_ATTEMPTS;
                    tracing::warn!(id = %m.id, kind = %m.kind, attempt = m.attempts + 1, abandon, error = %e, "mail not delivered");
                    self.metrics
                        .mail
                        .failed
                        .with_label_values(&[if abandon { "abandoned" } else { "retry" }])
                        .inc();
                    self.db
                        .mail_failed(m.id, e.to_string(), now, abandon)
                        .await?;
                    if !abandon {
                        // The server is likely down for the rest too: wait for the next pass.
                        break;
                    }
                }
            }
        }
        Ok(delivered)
    }

    /// Deletes development mail files a week old (the outbox keeps its rows as long).
    pub(super) async fn prune_mail_files(&self) {
        let week = Duration::from_secs(7 * 24 * 3600);
        match self.mailer.delivery.prune_files(week).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "pruned old mail files"),
            Err(e) => tracing::warn!(error = %e, "mail file prune failed; will retry"),
        }
    }

    /// Waits until mail is queued on this instance or `every` passes.
    pub async fn mail_wait(&self, every: Duration) {
        let _ = tokio::time::timeout(every, self.mailer.wake.notified()).await;
    }

    /// Gives up the sender's lease (a stopping instance), so another instance sends at once.
    pub async fn release_mail_lease(&self) {
        if let Err(e) = self.db.release_lease(LEASE, &self.mailer.holder).await {
            tracing::debug!(error = %e, "mail lease not released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempts_span_a_day_of_outage() {
        let span: i64 = (0..MAX_ATTEMPTS - 1).map(backoff).sum();
        assert!((24 * 3600..30 * 3600).contains(&span), "{span} s");
    }

    #[test]
    fn backoff_doubles_from_thirty_seconds_to_an_hour() {
        assert_eq!(
            (0..10).map(backoff).collect::<Vec<_>>(),
            [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
        );
    }
}
