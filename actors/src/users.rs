//! The Users actor: account writes in order.
//!
//! Signup and login bookkeeping for one account are serialised through one shard (chosen by the
//! normalised email). Wrong passwords are counted by the lockout in the database, per account
//! key, for unknown emails as for known ones. Uniqueness of
//! emails across processes is the database's job (a unique index); the actor only turns the
//! conflict into [`DomainError::EmailTaken`]. Password hashes arrive computed: Argon2 runs on
//! the blocking pool before the message is sent, never inside the actor.

use crate::error::{DomainError, StoreError};
use crate::mfa::{Enrollment, Mfa, MfaConfig};
use crate::secret::SecretString;
use crate::store::{MfaStore, NewUser, UserStore};
use crate::Clock;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

/// Reply channel of a Users request.
pub type Reply<T> = RpcReplyPort<Result<T, DomainError>>;

/// Messages of the Users actor.
pub enum UsersMsg {
    /// Creates the account, its personal organization and the owner membership.
    Signup(NewUser, Reply<()>),
    /// A right password; optionally replaces the hash computed with outdated Argon2 costs
    /// (`(old, new)`: replaced only if the stored hash is still `old`).
    LoginSucceeded(Uuid, Option<(String, String)>, Reply<()>),
    /// Replaces the password hash `(user_id, old, new)` if it is still `old`.
    ChangePassword(Uuid, String, String, Reply<bool>),
    /// Starts TOTP enrollment: `(user_id, email)`.
    MfaEnroll(Uuid, String, Reply<Enrollment>),
    /// Confirms enrollment with a TOTP code; answers the recovery codes.
    MfaConfirm(Uuid, SecretString, Reply<Vec<SecretString>>),
    /// Checks a second factor (TOTP or recovery code).
    MfaCheck(Uuid, SecretString, Reply<()>),
    /// Turns MFA off after a valid code.
    MfaDisable(Uuid, SecretString, Reply<()>),
    /// Test hook: a panic or a stall, to exercise supervision and timeouts.
    Fault(crate::Fault),
}

impl UsersMsg {
    /// Whether the caller stopped waiting (its ask timed out) before the message was handled:
    /// such a request is dropped, not carried out behind the back of a client told 503.
    fn abandoned(&self) -> bool {
        match self {
            UsersMsg::Signup(_, r) => r.is_closed(),
            UsersMsg::LoginSucceeded(_, _, r) => r.is_closed(),
            UsersMsg::ChangePassword(_, _, _, r) => r.is_closed(),
            UsersMsg::MfaEnroll(_, _, r) => r.is_closed(),
            UsersMsg::MfaConfirm(_, _, r) => r.is_closed(),
            UsersMsg::MfaCheck(_, _, r) => r.is_closed(),
            UsersMsg::MfaDisable(_, _, r) => r.is_closed(),
            UsersMsg::Fault(_) => false,
        }
    }
}

/// Start-up arguments of a Users shard.
#[derive(Clone)]
pub struct UsersArgs<S> {
    /// Account storage.
    pub store: S,
    /// Now.
    pub clock: Clock,
    /// TOTP sealing and issuer name.
    pub mfa: MfaConfig,
}

impl<S> UsersArgs<S> {
    fn mfa(&self) -> Mfa<'_, S> {
        Mfa {
            store: &self.store,
            config: &self.mfa,
            clock: &self.clock,
        }
    }
}

/// One shard of account writes.
pub struct Users<S>(std::marker::PhantomData<S>);

impl<S> Default for Users<S> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<S: UserStore + MfaStore> Actor for Users<S> {
    type Msg = UsersMsg;
    type State = UsersArgs<S>;
    type Arguments = UsersArgs<S>;

    async fn pre_start(
        &self,
        _me: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _me: ActorRef<Self::Msg>,
        msg: Self::Msg,
        st: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if msg.abandoned() {
            tracing::debug!("request abandoned by its caller before its turn; dropped");
            return Ok(());
        }
        match msg {
            UsersMsg::Signup(new, reply) => {
                let r = st.store.create_user(new).await.map_err(|e| match e {
                    StoreError::Conflict("email") => DomainError::EmailTaken,
                    other => other.into(),
                });
                let _ = reply.send(r);
            }
            UsersMsg::LoginSucceeded(user_id, rehash, reply) => {
                let r = st
                    .store
                    .record_login_success(user_id, st.clock.now(), rehash)
                    .await;
                let _ = reply.send(r.map_err(Into::into));
            }
            UsersMsg::ChangePassword(user_id, old, new, reply) => {
                let r = st
                    .store
                    .replace_password(user_id, old, new, st.clock.now())
                    .await;
                let _ = reply.send(r.map_err(Into::into));
            }
            UsersMsg::MfaEnroll(user_id, email, reply) => {
                let _ = reply.send(st.mfa().enroll(user_id, &email).await);
            }
            UsersMsg::MfaConfirm(user_id, code, reply) => {
                let _ = reply.send(st.mfa().confirm(user_id, &code).await);
            }
            UsersMsg::MfaCheck(user_id, code, reply) => {
                let _ = reply.send(st.mfa().check(user_id, &code).await);
            }
            UsersMsg::MfaDisable(user_id, code, reply) => {
                let _ = reply.send(st.mfa().disable(user_id, &code).await);
            }
            UsersMsg::Fault(f) => f.strike("Users").await,
        }
        Ok(())
    }
}
