//! Passkeys (WebAuthn): registration, usernameless sign-in, the second factor after a
//! password, and their management.
//!
//! `webauthn-rs` makes every ceremony check (challenge, origin, RP id hash, signature, user
//! verification, counter); this module decides what the ceremonies are for and keeps their
//! state where any instance can finish what another began: in the database, under the SHA-256
//! of a random `ceremony_id`, five minutes, used once. The finish claims the ceremony before it
//! checks anything (a conditional write at the primary), so an assertion is accepted at most
//! once across instances, and a failed finish burns its ceremony.
//!
//! Passkeys use webauthn-rs's passkey policy: user verification is required at registration
//! and at every sign-in, so a passkey alone is two factors (the device and its PIN or
//! biometric) and every passkey sign-in carries `mfa`. The key kind in `amr` follows the
//! credential's backup eligibility: a passkey that may be synced to other devices is a
//! software key (`swk`), one bound to its device a hardware key (`hwk`).

use super::{App, AppError, Caller, Client, Metered, Tokens};
use crate::db::{Ceremony, CeremonyKind, PasskeyRow};
use crate::ops::audit::AuditEvent;
use crate::security::ratelimit::{Decision, Policy};
use edge_idp_actors::crypto::sha256;
use edge_idp_actors::mfa::{new_challenge_token, MAX_ATTEMPTS};
use edge_idp_actors::store::MfaStore;
use edge_idp_actors::{SecretString, StoreError};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, Credential, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    Webauthn, WebauthnError,
};

/// How long a begun ceremony can be finished, seconds.
pub const CEREMONY_TTL: i64 = 300;

/// The longest passkey name.
pub const MAX_NAME_CHARS: usize = 64;

/// A begun ceremony: the handle its finish names, and the options for the browser.
pub struct Begun {
    /// The `ceremony_id` (only its hash is stored).
    pub ceremony_id: SecretString,
    /// `publicKey` in WebAuthn's JSON form (`PublicKeyCredential.parse…OptionsFromJSON`).
    pub public_key: serde_json::Value,
}

/// Whose passkeys a management call is about: the signed-in user, from a Bearer token or the
/// hosted pages' browser session.
pub struct Owner<'a> {
    /// The user.
    pub user_id: Uuid,
    /// Their email (the per-account rate-limit key, the WebAuthn user name).
    pub email: &'a str,
    /// When they signed in (the step-up check).
    pub auth_time: i64,
    /// Where the request came from.
    pub client: &'a Client,
}

impl<'a> From<&'a Caller> for Owner<'a> {
    fn from(c: &'a Caller) -> Self {
        Self {
            user_id: c.user_id,
            email: &c.claims.email,
            auth_time: c.claims.auth_time,
            client: &c.client,
        }
    }
}

/// A passed passkey assertion: who, in which organization, how.
pub(super) struct PasskeyOk {
    pub user_id: Uuid,
    pub email: String,
    pub membership: edge_idp_actors::store::Membership,
    pub amr: Vec<String>,
}

/// The passkeys' relying party, built from the validated settings.
pub fn relying_party(
    rp: &crate::config::RelyingParty,
    product_name: &str,
) -> Result<Webauthn, WebauthnError> {
    let first = rp.origins.first().ok_or(WebauthnError::Configuration)?;
    let mut b = webauthn_rs::WebauthnBuilder::new(&rp.id, first)?
        .rp_name(product_name)
        .timeout(std::time::Duration::from_secs(CEREMONY_TTL as u64));
    for o in &rp.origins[1..] {
        b = b.append_allowed_origin(o);
    }
    b.build()
}

fn state_json<T: serde::Serialize>(state: &T) -> Result<String, AppError> {
    serde_json::to_string(state).map_err(|e| AppError::internal(format!("ceremony state: {e}")))
}

fn state_of<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, AppError> {
    serde_json::from_str(json).map_err(|e| AppError::internal(format!("ceremony state: {e}")))
}

fn options_json<T: serde::Serialize>(options: &T) -> Result<serde_json::Value, AppError> {
    serde_json::to_value(options).map_err(|e| AppError::internal(format!("WebAuthn options: {e}")))
}

fn passkey_of(row: &PasskeyRow) -> Result<Passkey, AppError> {
    state_of(&row.credential)
}

/// The key kind of `amr` (RFC 8176): synced passkeys are software keys.
fn key_kind(row: &PasskeyRow) -> &'static str {
    if row.backup_eligible {
        "swk"
    } else {
        "hwk"
    }
}

impl App {
    fn webauthn(&self) -> Result<&Webauthn, AppError> {
        self.webauthn.as_deref().ok_or(AppError::NotFound)
    }

    /// Stores `state` as a new ceremony of `kind`; its id.
    async fn store_ceremony(
        &self,
        kind: CeremonyKind,
        user_id: Option<Uuid>,
        mfa_token_hash: Option<[u8; 32]>,
        state: String,
    ) -> Result<SecretString, AppError> {
        let (id, hash) = new_challenge_token()?;
        let now = self.clock.now();
        self.db
            .insert_ceremony(
                hash,
                Ceremony {
                    kind,
                    user_id,
                    mfa_token_hash,
                    state,
                },
                now,
                now + CEREMONY_TTL,
            )
            .await?;
        Ok(id)
    }

    /// Claims the ceremony `ceremony_id` names if it is of `kind`: unknown, used, expired and
    /// other kinds of ceremonies are [`AppError::NotFound`]. The claim burns it either way.
    async fn claim_ceremony(
        &self,
        ceremony_id: &SecretString,
        kinds: &[CeremonyKind],
    ) -> Result<Ceremony, AppError> {
        if !super::sessions::token_shaped(ceremony_id.expose()) {
            return Err(AppError::NotFound);
        }
        let hash = sha256(ceremony_id.expose().as_bytes());
        self.db
            .claim_ceremony(hash, self.clock.now())
            .await?
            .filter(|c| kinds.contains(&c.kind))
            .ok_or(AppError::NotFound)
    }

    /// Records a failed ceremony (`passkey_failed`) and answers `invalid_passkey`.
    fn passkey_failed(&self, client: &Client, user_id: Option<Uuid>, why: String) -> AppError {
        self.audit.record(AuditEvent {
            user_id,
            detail: Some(why),
            ..client.event("passkey_failed")
        });
        AppError::InvalidPasskey
    }

    /// Begins adding a passkey to the caller's account: a sign-in within the step-up window is
    /// required (as for TOTP enrollment), and the caller's passkeys are excluded.
    pub async fn passkey_register_begin(
        &self,
        caller: &Owner<'_>,
    ) -> Result<Metered<Begun>, AppError> {
        let webauthn = self.webauthn()?;
        let decision = self.login_limits(caller.client, caller.email).await?;
        let outcome = async {
            self.require_sign_in_since(caller.auth_time)?;
            let existing = self.db.passkeys_of(caller.user_id).await?;
            let exclude = existing
                .iter()
                .map(|p| p.credential_id.clone().into())
                .collect::<Vec<_>>();
            let email = caller.email;
            let (options, state) = webauthn
                .start_passkey_registration(caller.user_id, email, email, Some(exclude))
                .map_err(|e| AppError::internal(format!("WebAuthn registration options: {e}")))?;
            let mut public_key = options_json(&options.public_key)?;
            // Ask for a discoverable credential where the authenticator can make one, so the
            // passkey also signs in without a username; one that cannot still registers (the
            // state does not require it).
            if let Some(sel) = public_key.get_mut("authenticatorSelection") {
                sel["residentKey"] = "preferred".into();
                sel["requireResidentKey"] = false.into();
            }
            let ceremony_id = self
                .store_ceremony(
                    CeremonyKind::Register,
                    Some(caller.user_id),
                    None,
                    state_json(&state)?,
                )
                .await?;
            Ok(Begun {
                ceremony_id,
                public_key,
            })
        }
        .await;
        Ok(Metered { decision, outcome })
    }

    /// Finishes adding a passkey: the ceremony must be the caller's, the credential must pass
    /// webauthn-rs's checks and be new to every account.
    pub async fn passkey_register_finish(
        &self,
        caller: &Owner<'_>,
        ceremony_id: SecretString,
        credential: RegisterPublicKeyCredential,
        name: Option<String>,
    ) -> Result<Metered<PasskeyRow>, AppError> {
        let webauthn = self.webauthn()?;
        let decision = self.login_limits(caller.client, caller.email).await?;
        let outcome = async {
            let ceremony = self
                .claim_ceremony(&ceremony_id, &[CeremonyKind::Register])
                .await?;
            if ceremony.user_id != Some(caller.user_id) {
                return Err(AppError::NotFound);
            }
            let state: PasskeyRegistration = state_of(&ceremony.state)?;
            let passkey = webauthn
                .finish_passkey_registration(&credential, &state)
                .map_err(|e| {
                    self.passkey_failed(
                        caller.client,
                        Some(caller.user_id),
                        format!("registration refused: {e}"),
                    )
                })?;
            let cred = Credential::from(passkey.clone());
            let now = self.clock.now();
            let row = PasskeyRow {
                id: Uuid::now_v7(),
                user_id: caller.user_id,
                credential_id: cred.cred_id.to_vec(),
                credential: state_json(&passkey)?,
                name: name.unwrap_or_else(|| "Passkey".to_owned()),
                sign_count: i64::from(cred.counter),
                backup_eligible: cred.backup_eligible,
                backup_state: cred.backup_state,
                transports: cred
                    .transports
                    .iter()
                    .flatten()
                    .filter_map(|t| serde_json::to_value(t).ok())
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                created_at: now,
                last_used_at: None,
            };
            match self.db.insert_passkey(row.clone()).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => return Err(AppError::PasskeyExists),
                Err(e) => return Err(e.into()),
            }
            self.audit.record(AuditEvent {
                user_id: Some(caller.user_id),
                subject_id: Some(row.id),
                detail: Some(format!("kind={}", key_kind(&row))),
                ..caller.client.event("passkey_registered")
            });
            self.notify_user(
                crate::mail::Letter::PasskeyAdded {
                    name: row.name.clone(),
                },
                caller.user_id,
            )
            .await;
            Ok(row)
        }
        .await;
        Ok(Metered { decision, outcome })
    }

    /// Begins a passkey sign-in: usernameless without `mfa_token` (any discoverable passkey of
    /// this relying party may answer), or the second factor of the login that `mfa_token`
    /// stands for (that user's passkeys only). Counted against the login limit of the client
    /// IP, and with an `mfa_token` against its account's.
    pub async fn passkey_login_begin(
        &self,
        client: &Client,
        mfa_token: Option<SecretString>,
    ) -> Result<Metered<Begun>, AppError> {
        let webauthn = self.webauthn()?;
        let mut decision = self
            .limited(&[(Policy::LoginIp, &client.rate_key())])
            .await?;
        let outcome = async {
            let Some(mfa_token) = mfa_token else {
                let (options, state) =
                    webauthn.start_discoverable_authentication().map_err(|e| {
                        AppError::internal(format!("WebAuthn authentication options: {e}"))
                    })?;
                let ceremony_id = self
                    .store_ceremony(CeremonyKind::Login, None, None, state_json(&state)?)
                    .await?;
                return Ok(Begun {
                    ceremony_id,
                    public_key: options_json(&options.public_key)?,
                });
            };
            let (ch, hash) = self.live_challenge(&mfa_token).await?;
            self.account_limited(&ch.email, &mut decision).await?;
            let passkeys = self
                .db
                .passkeys_of(ch.user_id)
                .await?
                .iter()
                .map(passkey_of)
                .collect::<Result<Vec<_>, _>>()?;
            if passkeys.is_empty() {
                return Err(AppError::NotFound);
            }
            let (options, state) = webauthn
                .start_passkey_authentication(&passkeys)
                .map_err(|e| AppError::internal(format!("WebAuthn authentication options: {e}")))?;
            let ceremony_id = self
                .store_ceremony(
                    CeremonyKind::SecondFactor,
                    Some(ch.user_id),
                    Some(hash),
                    state_json(&state)?,
                )
                .await?;
            Ok(Begun {
                ceremony_id,
                public_key: options_json(&options.public_key)?,
            })
        }
        .await;
        Ok(Metered { decision, outcome })
    }

    /// Finishes a passkey sign-in of the JSON API: the token response.
    pub async fn passkey_login_finish(
        &self,
        client: &Client,
        ceremony_id: SecretString,
        credential: PublicKeyCredential,
    ) -> Result<Metered<Tokens>, AppError> {
        let mut decision = self
            .limited(&[(Policy::LoginIp, &client.rate_key())])
            .await?;
        let outcome = match self
            .passkey_assertion(client, ceremony_id, credential, &mut decision)
            .await
        {
            Ok(ok) => {
                self.start_session(client, ok.user_id, ok.email, ok.membership, ok.amr)
                    .await
            }
            Err(e) => Err(e),
        };
        Ok(Metered { decision, outcome })
    }

    /// The assertion check every passkey sign-in shares (the JSON API and the hosted pages):
    /// the ceremony claimed, the credential found and checked by webauthn-rs, the counter moved
    /// forward at the primary, and for a second factor the `mfa_token` consumed under the
    /// second-factor caps.
    pub(super) async fn passkey_assertion(
        &self,
        client: &Client,
        ceremony_id: SecretString,
        credential: PublicKeyCredential,
        decision: &mut Decision,
    ) -> Result<PasskeyOk, AppError> {
        let webauthn = self.webauthn()?;
        let ceremony = self
            .claim_ceremony(
                &ceremony_id,
                &[CeremonyKind::Login, CeremonyKind::SecondFactor],
            )
            .await?;
        let row = self
            .db
            .passkey_by_credential(credential.raw_id.to_vec())
            .await?
            .filter(|row| ceremony.user_id.is_none_or(|u| u == row.user_id))
            .ok_or_else(|| {
                self.passkey_failed(client, ceremony.user_id, "unknown credential".into())
            })?;
        // A discoverable credential names its user; it must be the credential's owner.
        if let Some(handle) = credential.get_user_unique_id() {
            if handle != row.user_id.as_bytes() {
                return Err(self.passkey_failed(
                    client,
                    Some(row.user_id),
                    "user handle is not the credential's owner".into(),
                ));
            }
        }
        let user = self
            .db
            .user_by_id(row.user_id)
            .await?
            .ok_or(AppError::InvalidPasskey)?;
        self.account_limited(&user.email, decision).await?;
        let passkey = passkey_of(&row)?;
        let check = || -> Result<Result<AuthenticationResult, WebauthnError>, AppError> {
            Ok(match ceremony.kind {
                CeremonyKind::SecondFactor => {
                    let state: PasskeyAuthentication = state_of(&ceremony.state)?;
                    webauthn.finish_passkey_authentication(&credential, &state)
                }
                _ => {
                    let state: DiscoverableAuthentication = state_of(&ceremony.state)?;
                    let key = DiscoverableKey::from(&passkey);
                    webauthn.finish_discoverable_authentication(&credential, state, &[key])
                }
            })
        };
        let result = match check()? {
            Ok(r) => r,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                return Err(self.passkey_failed(
                    client,
                    Some(row.user_id),
                    format!("sign counter did not move forward from {}: possibly a cloned authenticator", row.sign_count),
                ));
            }
            Err(e) => {
                return Err(self.passkey_failed(
                    client,
                    Some(row.user_id),
                    format!("assertion refused: {e}"),
                ))
            }
        };
        let mut passkey = passkey;
        passkey.update_credential(&result);
        let moved = self
            .db
            .record_passkey_use(
                row.id,
                i64::from(result.counter()),
                state_json(&passkey)?,
                result.backup_state(),
                self.clock.now(),
            )
            .await?;
        if !moved {
            return Err(self.passkey_failed(
                client,
                Some(row.user_id),
                format!("sign counter {} was overtaken by a concurrent sign-in: possibly a cloned authenticator", result.counter()),
            ));
        }
        // As after a right password: told only to whoever proved the passkey.
        if self.settings.require_verified_email && !user.email_verified {
            self.audit.record(AuditEvent {
                user_id: Some(user.id),
                detail: Some("email not verified".into()),
                ..client.event("login_refused")
            });
            return Err(AppError::EmailNotVerified);
        }
        let kind = key_kind(&row).to_owned();
        let (org, amr) = match (ceremony.kind, ceremony.mfa_token_hash) {
            (CeremonyKind::SecondFactor, Some(hash)) => {
                let org = self.consume_for_passkey(client, row.user_id, hash).await?;
                (org, vec!["pwd".to_owned(), kind, "mfa".to_owned()])
            }
            _ => {
                let mut amr = vec![kind];
                if result.user_verified() {
                    amr.push("mfa".to_owned());
                }
                (None, amr)
            }
        };
        let membership = self
            .membership_for_login(user.id, org.as_deref(), user.default_org_id)
            .await?;
        self.audit.record(AuditEvent {
            user_id: Some(user.id),
            subject_id: Some(row.id),
            detail: Some(format!("amr={}", amr.join("+"))),
            ..client.event("passkey_login")
        });
        Ok(PasskeyOk {
            user_id: user.id,
            email: user.email,
            membership,
            amr,
        })
    }

    /// Consumes the `mfa_token` a passkey answered as the second factor, counted like a code
    /// against the user's cap and the challenge's attempts; the organization it carries.
    async fn consume_for_passkey(
        &self,
        client: &Client,
        user_id: Uuid,
        hash: [u8; 32],
    ) -> Result<Option<String>, AppError> {
        let now = self.clock.now();
        self.guarded(client, user_id, async {
            if !self
                .db
                .claim_challenge_attempt(hash, now, MAX_ATTEMPTS)
                .await?
            {
                return Err(AppError::InvalidMfaToken);
            }
            Ok(())
        })
        .await?;
        let ch = self
            .db
            .challenge(hash)
            .await?
            .ok_or(AppError::InvalidMfaToken)?;
        if !self.db.consume_challenge(hash, now, MAX_ATTEMPTS).await? {
            return Err(AppError::InvalidMfaToken);
        }
        Ok(ch.org_id)
    }

    /// Whether passkeys are on (the relying party has a domain).
    pub fn passkeys_enabled(&self) -> bool {
        self.webauthn.is_some()
    }

    /// Whether `user_id` can sign in with a passkey here.
    pub(super) async fn has_passkey(&self, user_id: Uuid) -> Result<bool, AppError> {
        Ok(self.webauthn.is_some() && !self.db.passkeys_of(user_id).await?.is_empty())
    }

    /// The caller's passkeys.
    pub async fn passkeys(&self, caller: &Owner<'_>) -> Result<Vec<PasskeyRow>, AppError> {
        Ok(self.db.passkeys_of(caller.user_id).await?)
    }

    /// Renames one of the caller's passkeys; another user's is [`AppError::NotFound`].
    pub async fn rename_passkey(
        &self,
        caller: &Owner<'_>,
        id: &str,
        name: String,
    ) -> Result<PasskeyRow, AppError> {
        let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
        self.db
            .rename_passkey(caller.user_id, id, name)
            .await?
            .ok_or(AppError::NotFound)
    }

    /// Deletes one of the caller's passkeys (a sign-in within the step-up window is required,
    /// as for adding one); another user's is [`AppError::NotFound`].
    pub async fn delete_passkey(&self, caller: &Owner<'_>, id: &str) -> Result<(), AppError> {
        let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
        self.require_sign_in_since(caller.auth_time)?;
        if !self.db.delete_passkey(caller.user_id, id).await? {
            return Err(AppError::NotFound);
        }
        self.audit.record(AuditEvent {
            user_id: Some(caller.user_id),
            subject_id: Some(id),
            ..caller.client.event("passkey_deleted")
        });
        Ok(())
    }
}
