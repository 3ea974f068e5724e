//! The browser session of the hosted pages: the sign-in that single sign-on rests on.
//!
//! Signing in on the hosted page is the JSON login's password step and second factor
//! ([`App::check_password`], [`App::verify_challenge`]: the same limits per IP and account,
//! lockout, timing equalisation, audit events and metrics), ending in a browser session
//! instead of a refresh-token family. The session is a cookie of 256 random bits, stored as
//! its SHA-256, bounded by `SESSION_MAX_TTL`; a second client is then signed in without a
//! password. Ended by RP-initiated logout, by "log out everywhere" and a password change.
//! A passkey signs in too ([`App::sign_in_passkey`], the JSON API's assertion check).

use crate::app::login::{Login, PasswordOk};
use crate::app::{App, AppError, Client, Metered};
use crate::db::BrowserSession;
use crate::ops::audit::AuditEvent;
use edge_idp_actors::crypto::{b64url, random_bytes, sha256};
use edge_idp_actors::SecretString;
use uuid::Uuid;

/// What the sign-up page leads to.
pub enum SignedUp {
    /// Signed up and signed in: the cookie to set and its session.
    Session {
        /// The cookie's value.
        cookie: SecretString,
        /// The session.
        session: BrowserSession,
    },
    /// Signed up; sign-in waits until the link mailed to `email` is used.
    VerifyFirst {
        /// The address the link went to.
        email: String,
    },
}

/// What a right password on the sign-in page leads to.
pub enum SignIn {
    /// Signed in: the cookie to set and its session.
    Session {
        /// The cookie's value.
        cookie: SecretString,
        /// The session.
        session: BrowserSession,
    },
    /// The second factor is on: its page, with this challenge.
    SecondFactor {
        /// The single-use challenge (`mfa_token`).
        mfa_token: SecretString,
        /// The account has a passkey, which the page offers beside the code.
        passkey: bool,
    },
}

/// Whether a cookie value has the shape of one we issue (43 base64url characters).
fn cookie_shaped(v: &str) -> bool {
    crate::app::sessions::token_shaped(v)
}

impl App {
    /// The live browser session of a cookie, if any.
    pub async fn browser_session(
        &self,
        cookie: &SecretString,
    ) -> Result<Option<BrowserSession>, AppError> {
        if !cookie_shaped(cookie.expose()) {
            return Ok(None);
        }
        Ok(self
            .db
            .browser_session(sha256(cookie.expose().as_bytes()), self.clock.now())
            .await?)
    }

    /// The sign-up page: the account as `/auth/signup` makes it (same policy, limit and
    /// verification mail), then a browser session, unless sign-in waits for the address to be
    /// verified (`REQUIRE_VERIFIED_EMAIL`).
    pub async fn sign_up(
        &self,
        client: &Client,
        req: crate::app::signup::Signup,
    ) -> Result<Metered<SignedUp>, AppError> {
        let m = self.signup(client, req).await?;
        let outcome = match m.outcome {
            Ok(u) if self.settings.require_verified_email => {
                Ok(SignedUp::VerifyFirst { email: u.email })
            }
            Ok(u) => self
                .start_browser_session(client, u.user_id, u.email, vec!["pwd".into()])
                .await
                .map(|(cookie, session)| SignedUp::Session { cookie, session }),
            Err(e) => Err(e),
        };
        Ok(Metered {
            decision: m.decision,
            outcome,
        })
    }

    /// The password step on the sign-in page.
    pub async fn sign_in(&self, client: &Client, req: Login) -> Result<Metered<SignIn>, AppError> {
        let decision = match self.login_limits(client, &req.email).await {
            Ok(d) => d,
            Err(e) => {
                self.metrics.login("rate_limited");
                return Err(e);
            }
        };
        let outcome = match self.check_password(client, req, decision).await {
            Ok(ok) => self.after_sign_in_password(client, ok).await,
            Err(e) => Err(e),
        };
        self.metrics.login(match &outcome {
            Ok(SignIn::SecondFactor { .. }) => "mfa_required",
            Ok(SignIn::Session { .. }) => "success",
            Err(AppError::InvalidCredentials) => "invalid_credentials",
            Err(_) => "error",
        });
        Ok(Metered { decision, outcome })
    }

    async fn after_sign_in_password(
        &self,
        client: &Client,
        ok: PasswordOk,
    ) -> Result<SignIn, AppError> {
        if ok.user.mfa_enabled {
            let mfa_token = self.mfa_challenge(client, ok.user.id, None).await?;
            return Ok(SignIn::SecondFactor {
                mfa_token,
                passkey: self.has_passkey(ok.user.id).await?,
            });
        }
        let (cookie, session) = self
            .start_browser_session(client, ok.user.id, ok.user.email, vec!["pwd".into()])
            .await?;
        Ok(SignIn::Session { cookie, session })
    }

    /// The second factor on its page: a browser session when it is right.
    pub async fn sign_in_second_factor(
        &self,
        client: &Client,
        mfa_token: SecretString,
        code: SecretString,
    ) -> Result<Metered<(SecretString, BrowserSession)>, AppError> {
        let mut decision = self
            .limited(&[(
                crate::security::ratelimit::Policy::LoginIp,
                &client.rate_key(),
            )])
            .await?;
        let outcome = match self
            .verify_challenge(client, mfa_token, code, &mut decision)
            .await
        {
            Ok(passed) => {
                self.start_browser_session(client, passed.user_id, passed.email, passed.amr)
                    .await
            }
            Err(e) => Err(e),
        };
        Ok(Metered { decision, outcome })
    }

    /// A passkey on the sign-in or second-factor page (`app::passkeys`): a browser session
    /// when its assertion passes.
    pub async fn sign_in_passkey(
        &self,
        client: &Client,
        ceremony_id: SecretString,
        credential: webauthn_rs::prelude::PublicKeyCredential,
    ) -> Result<Metered<(SecretString, BrowserSession)>, AppError> {
        let mut decision = self
            .limited(&[(
                crate::security::ratelimit::Policy::LoginIp,
                &client.rate_key(),
            )])
            .await?;
        let outcome = match self
            .passkey_assertion(client, ceremony_id, credential, &mut decision)
            .await
        {
            Ok(ok) => {
                self.start_browser_session(client, ok.user_id, ok.email, ok.amr)
                    .await
            }
            Err(e) => Err(e),
        };
        Ok(Metered { decision, outcome })
    }

    async fn start_browser_session(
        &self,
        client: &Client,
        user_id: Uuid,
        email: String,
        amr: Vec<String>,
    ) -> Result<(SecretString, BrowserSession), AppError> {
        let raw = random_bytes::<32>().map_err(|e| AppError::internal(e.to_string()))?;
        let cookie = SecretString::new(b64url(&raw));
        let now = self.clock.now();
        let session = BrowserSession {
            id: Uuid::now_v7(),
            user_id,
            email,
            amr,
            auth_time: now,
            expires_at: now + self.settings.session_max_ttl,
        };
        self.db
            .insert_browser_session(sha256(cookie.expose().as_bytes()), session.clone(), now)
            .await?;
        self.audit.record(AuditEvent {
            user_id: Some(user_id),
            detail: Some(format!("browser session; amr={}", session.amr.join("+"))),
            ..client.event("login")
        });
        self.signed_in_from(client, user_id).await;
        Ok((cookie, session))
    }
}
