//! The algorithm: GCRA (the generic cell-rate algorithm) and its types, the quotas, policies and
//! decisions both backends share. Nothing here stores state or knows of a backend.

use edge_idp_actors::crypto::sha256;
use std::str::FromStr;

/// `count/seconds`: a burst of `count`, then on average `count` per `seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Burst size and requests per period.
    pub count: u32,
    /// Period, seconds.
    pub period_secs: u32,
}

impl FromStr for Quota {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (c, p) = s
            .trim()
            .split_once('/')
            .ok_or("expected count/seconds, e.g. 10/60")?;
        let count: u32 = c
            .trim()
            .parse()
            .map_err(|_| "count must be a positive integer")?;
        let period_secs: u32 = p
            .trim()
            .parse()
            .map_err(|_| "seconds must be a positive integer")?;
        if count == 0 || period_secs == 0 {
            return Err("count and seconds must be positive".into());
        }
        Ok(Quota { count, period_secs })
    }
}

impl Quota {
    pub(super) fn period_ms(self) -> i64 {
        i64::from(self.period_secs) * 1000
    }
    /// Milliseconds between two admissions at the sustained rate.
    pub(super) fn interval_ms(self) -> i64 {
        (self.period_ms() / i64::from(self.count)).max(1)
    }
}

/// The policies of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// `/auth/login` and `/auth/mfa/verify` per client IP.
    LoginIp,
    /// `/auth/login` and `/auth/mfa/verify` per account (normalised email).
    LoginAccount,
    /// `/auth/signup` per client IP.
    SignupIp,
    /// `/auth/refresh` per client IP.
    RefreshIp,
    /// `POST /orgs/{org_id}/invitations` per inviting user (its user id).
    InviteUser,
    /// Mail a client can cause (`/auth/password/forgot`) per client IP.
    EmailIp,
    /// Mail a client can cause per address (`/auth/password/forgot` per normalised email,
    /// verification resends per the caller's address).
    EmailAccount,
}

impl Policy {
    /// The limit a route applies (`login`, `signup`, `refresh`), for metrics.
    pub fn group(self) -> &'static str {
        match self {
            Policy::LoginIp | Policy::LoginAccount => "login",
            Policy::SignupIp => "signup",
            Policy::RefreshIp => "refresh",
            Policy::InviteUser => "invite",
            Policy::EmailIp | Policy::EmailAccount => "email",
        }
    }

    /// Stable name for metrics and keys.
    pub fn name(self) -> &'static str {
        match self {
            Policy::LoginIp => "login_ip",
            Policy::LoginAccount => "login_account",
            Policy::SignupIp => "signup_ip",
            Policy::RefreshIp => "refresh_ip",
            Policy::InviteUser => "invite_user",
            Policy::EmailIp => "email_ip",
            Policy::EmailAccount => "email_account",
        }
    }
}

/// The answer for one request, for the `RateLimit-*` and `Retry-After` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota's count.
    pub limit: u32,
    /// Requests left in the current burst.
    pub remaining: u32,
    /// Whole seconds until the limit admits again (refused), or until the burst is whole again
    /// (admitted); at least 1 when refused.
    pub reset_secs: u64,
}

/// The per-account key: a hash of the normalised email, so that neither the key nor its
/// presence reveals whether an account exists, and no email sits in the limiter's store.
pub fn account_key(normalised_email: &str) -> String {
    let h = sha256(normalised_email.as_bytes());
    h[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The most restrictive of several decisions (admitted only if every one admits).
pub(super) fn combine(ds: impl Iterator<Item = Decision>) -> Decision {
    ds.reduce(most_restrictive).unwrap_or(Decision {
        allowed: true,
        limit: 0,
        remaining: 0,
        reset_secs: 0,
    })
}

fn most_restrictive(a: Decision, b: Decision) -> Decision {
    match (a.allowed, b.allowed) {
        (true, false) => b,
        (false, true) => a,
        _ if b.remaining < a.remaining
            || (b.remaining == a.remaining && b.reset_secs > a.reset_secs) =>
        {
            b
        }
        _ => a,
    }
}

/// One GCRA step: the decision and the TAT to store if the request is admitted.
pub(super) fn gcra(q: Quota, tat: i64, now: i64) -> (Decision, i64) {
    let t = q.interval_ms();
    let period = q.period_ms();
    let base = tat.max(now);
    let new_tat = base + t;
    let ceil_secs = |ms: i64| ((ms.max(0) + 999) / 1000) as u64;
    if new_tat - now > period {
        // Admitted again once new_tat - now <= period, i.e. at new_tat - period.
        let wait = new_tat - period - now;
        let d = Decision {
            allowed: false,
            limit: q.count,
            remaining: 0,
            reset_secs: ceil_secs(wait).max(1),
        };
        return (d, tat);
    }
    let remaining = ((period - (new_tat - now)) / t) as u32;
    let d = Decision {
        allowed: true,
        limit: q.count,
        remaining,
        reset_secs: ceil_secs(new_tat - now),
    };
    (d, new_tat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_parsing() {
        assert_eq!(
            "10/60".parse::<Quota>().unwrap(),
            Quota {
                count: 10,
                period_secs: 60
            }
        );
        assert!("10".parse::<Quota>().is_err());
        assert!("0/60".parse::<Quota>().is_err());
        assert!("a/b".parse::<Quota>().is_err());
    }

    #[test]
    fn account_keys_do_not_contain_the_email() {
        let k = account_key("alice@example.com");
        assert!(!k.contains("alice"));
        assert_eq!(k, account_key("alice@example.com"));
    }
}
