//! Who is asking and who is signed in: the inputs every flow receives about the request's
//! origin, whatever the front end.
//!
//! A Bearer token is verified against the key snapshot (signature, `typ`, `iss`, `aud`, `exp`,
//! `nbf`), then its session is checked: a token whose session was revoked (logout, password
//! change, refresh-token reuse) is refused with `session_revoked` before it expires.

use super::{App, AppError};
use crate::security::tokens::AccessClaims;
use std::net::IpAddr;
use std::sync::Arc;
use uuid::Uuid;

/// Who is asking: the client IP (trusted header or peer) and the user agent.
#[derive(Debug, Clone)]
pub struct Client {
    /// Client IP as API.md defines it.
    pub ip: IpAddr,
    /// `User-Agent`, truncated to 512 characters.
    pub user_agent: Option<String>,
    /// `X-Request-Id` (the server edge guarantees a sane one).
    pub request_id: Option<String>,
}

impl Client {
    /// An audit event of `kind` from this client (IP and request id filled in).
    pub fn event(&self, kind: &'static str) -> crate::ops::audit::AuditEvent {
        crate::ops::audit::AuditEvent {
            kind,
            ip: Some(self.ip.to_string()),
            request_id: self.request_id.clone(),
            ..Default::default()
        }
    }
}

impl Client {
    /// The key per-IP rate limits count this client under: an IPv4 address whole, an IPv6
    /// address by its /64, since one subscriber is routinely handed a whole /64 and would
    /// otherwise get 2^64 buckets. An IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn rate_key(&self) -> String {
        ip_rate_key(self.ip)
    }
}

/// See [`Client::rate_key`].
pub fn ip_rate_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `sub`.
    pub user_id: Uuid,
    /// `sid`.
    pub session_id: Uuid,
    /// All claims.
    pub claims: Arc<AccessClaims>,
    /// The session's active organization (as of at most `LIVE_TTL` ago; it may differ from
    /// `org_id` in a token minted before a switch).
    pub active_org_id: Uuid,
    /// Where the request came from.
    pub client: Client,
}

impl App {
    /// The caller a Bearer access token names, if the token verifies and its session is live.
    pub async fn authenticate(&self, token: &str, client: Client) -> Result<Caller, AppError> {
        let claims = self.tokens.verify(token).ok_or(AppError::InvalidToken)?;
        let user_id = Uuid::parse_str(&claims.sub).map_err(|_| AppError::InvalidToken)?;
        let session_id = Uuid::parse_str(&claims.sid).map_err(|_| AppError::InvalidToken)?;
        let active_org_id = self
            .revocations
            .live_org(&self.db, session_id, self.clock.now())
            .await?
            .ok_or(AppError::SessionRevoked)?;
        Ok(Caller {
            user_id,
            session_id,
            claims,
            active_org_id,
            client,
        })
    }
}
