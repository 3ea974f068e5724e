//! Password hashing (Argon2id) and the password policy.
//!
//! A hash costs ~20 ms and 19 MiB, so an unbounded number in flight would turn a login flood
//! into memory exhaustion. Hashes run on the blocking pool behind a semaphore sized to the cores;
//! a request that cannot get a slot within the ask timeout is shed with 503 rather than queued
//! forever. Unknown emails are verified against a dummy hash of the same cost, so the answer and
//! its timing do not reveal whether an account exists.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use edge_idp_actors::{DomainError, SecretString};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Why a password is refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Fewer than 8 characters.
    #[error("must be at least 8 characters")]
    TooShort,
    /// More than 128 characters.
    #[error("must be at most 128 characters")]
    TooLong,
    /// On the common-passwords list.
    #[error("is too common")]
    Common,
}

/// Applies the password policy of API.md: 8 to 128 characters, and not on the common-passwords
/// list (zxcvbn's frequency list of leaked passwords, matched as a whole).
pub fn check_policy(password: &str) -> Result<(), PolicyError> {
    let n = password.chars().count();
    if n < 8 {
        return Err(PolicyError::TooShort);
    }
    if n > 128 {
        return Err(PolicyError::TooLong);
    }
    use zxcvbn::feedback::Warning;
    let common = zxcvbn::zxcvbn(password, &[])
        .feedback()
        .and_then(|f| f.warning())
        .is_some_and(|w| {
            matches!(
                w,
                Warning::ThisIsATop10Password
                    | Warning::ThisIsATop100Password
                    | Warning::ThisIsACommonPassword
            )
        });
    if common {
        return Err(PolicyError::Common);
    }
    Ok(())
}

/// Outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whether the password matched.
    pub ok: bool,
    /// A hash with the current costs, when the stored one used other costs.
    pub rehash: Option<String>,
}

/// Argon2id with the configured cost, bounded concurrency and a dummy hash.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    slots: Arc<Semaphore>,
    wait: Duration,
    dummy: Arc<str>,
    /// Time spent waiting for a slot, and hashes computing or waiting.
    observe: (prometheus::Histogram, prometheus::IntGauge),
}

fn hasher(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, DomainError> {
    let salt_bytes = edge_idp_actors::crypto::random_bytes::<16>()
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| DomainError::Internal(e.to_string()))?;
    hasher(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DomainError::Internal(format!("argon2: {e}")))
}

impl Passwords {
    /// Builds the hasher and computes the dummy hash (one hash, on the blocking pool).
    pub async fn new(
        params: Params,
        concurrency: usize,
        wait: Duration,
        observe: (prometheus::Histogram, prometheus::IntGauge),
    ) -> Result<Self, DomainError> {
        let p = params.clone();
        let dummy = tokio::task::spawn_blocking(move || {
            hash_blocking(&p, "edge-idp dummy password for unknown accounts")
        })
        .await
        .map_err(|e| DomainError::Internal(e.to_string()))??;
        Ok(Self {
            params,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            wait,
            dummy: dummy.into(),
            observe,
        })
    }

    async fn on_slot<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DomainError> {
        let (wait_hist, queue) = &self.observe;
        queue.inc();
        let started = std::time::Instant::now();
        let permit = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await;
        wait_hist.observe(started.elapsed().as_secs_f64());
        let permit = match permit {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                queue.dec();
                return Err(DomainError::Unavailable("password hashing closed".into()));
            }
            Err(_) => {
                queue.dec();
                return Err(DomainError::Unavailable(
                    "password hashing saturated".into(),
                ));
            }
        };
        let queue = queue.clone();
        let r = tokio::task::spawn_blocking(move || {
            let r = f();
            drop(permit);
            queue.dec();
            r
        })
        .await
        .map_err(|e| DomainError::Internal(format!("hash task: {e}")))?;
        Ok(r)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: SecretString) -> Result<String, DomainError> {
        let params = self.params.clone();
        self.on_slot(move || hash_blocking(&params, password.expose()))
            .await?
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no account,
    /// which always answers `ok: false` after the same work.
    pub async fn verify(
        &self,
        password: SecretString,
        phc: Option<String>,
    ) -> Result<Verified, DomainError> {
        let params = self.params.clone();
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        self.on_slot(move || {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| DomainError::Internal(format!("stored hash unreadable: {e}")))?;
            let ok = hasher(&params)
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok()
                && known;
            let current = Params::try_from(&parsed).map(|p| {
                p.m_cost() == params.m_cost()
                    && p.t_cost() == params.t_cost()
                    && p.p_cost() == params.p_cost()
            });
            let outdated = parsed.algorithm != argon2::ARGON2ID_IDENT || !current.unwrap_or(false);
            let rehash = if ok && outdated {
                Some(hash_blocking(&params, password.expose())?)
            } else {
                None
            };
            Ok(Verified { ok, rehash })
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe() -> (prometheus::Histogram, prometheus::IntGauge) {
        (
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("w", "w")).unwrap(),
            prometheus::IntGauge::new("q", "q").unwrap(),
        )
    }

    #[test]
    fn policy_refuses_short_long_and_common_passwords() {
        assert_eq!(check_policy("short"), Err(PolicyError::TooShort));
        assert_eq!(check_policy(&"x".repeat(129)), Err(PolicyError::TooLong));
        assert_eq!(check_policy("password"), Err(PolicyError::Common));
        assert_eq!(check_policy("iloveyou"), Err(PolicyError::Common));
        assert_eq!(check_policy("qwertyuiop"), Err(PolicyError::Common));
        assert!(check_policy("correct horse battery staple").is_ok());
        assert!(check_policy("Tr0ub4dour&3-unique").is_ok());
        assert!(
            check_policy(&"é".repeat(128)).is_ok(),
            "characters, not bytes"
        );
    }

    #[tokio::test]
    async fn verify_accepts_the_right_password_and_upgrades_old_costs() {
        let weak = Params::new(64, 1, 1, None).unwrap();
        let p_old = Passwords::new(weak, 2, Duration::from_secs(5), observe())
            .await
            .unwrap();
        let phc = p_old
            .hash(SecretString::new("right password".into()))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let v = p_old
            .verify(
                SecretString::new("right password".into()),
                Some(phc.clone()),
            )
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                rehash: None
            }
        );
        assert!(
            !p_old
                .verify(
                    SecretString::new("wrong password".into()),
                    Some(phc.clone())
                )
                .await
                .unwrap()
                .ok
        );
        assert!(
            !p_old
                .verify(SecretString::new("right password".into()), None)
                .await
                .unwrap()
                .ok,
            "dummy never matches"
        );

        let p_new = Passwords::new(
            Params::new(128, 2, 1, None).unwrap(),
            2,
            Duration::from_secs(5),
            observe(),
        )
        .await
        .unwrap();
        let v = p_new
            .verify(SecretString::new("right password".into()), Some(phc))
            .await
            .unwrap();
        assert!(v.ok);
        assert!(v.rehash.unwrap().contains("m=128,t=2,p=1"));
    }
}
