//! The OAuth client registry: what an operator registers (`edge-idp clients …`) so that an
//! application can sign its users in through edge-idp.
//!
//! A confidential client gets a secret of 256 random bits, shown once and stored as its SHA-256
//! (a secret this long needs no slow hash: it cannot be guessed, only stolen). A public client
//! (a browser or native app, which cannot keep a secret) has none and must use PKCE. Redirect
//! URIs are registered whole and will be matched exactly (RFC 9700 §2.1): `https`, `http` on a
//! loopback host only, or a private-use scheme with a dot for native apps (RFC 8252 §7.1); never
//! a fragment.

use super::AppError;
use crate::db::{ClientRecord, Db};
use crate::ops::audit::{Audit, AuditEvent};
use edge_idp_actors::crypto::{b64url, random_bytes, sha256};
use edge_idp_actors::{Clock, SecretString};

/// Grant types a client may be registered for.
pub const GRANTS: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];

/// Scopes a client may ask for when none are given at registration.
pub const DEFAULT_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// What an operator asks to register.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    /// Display name, 1 to 100 characters.
    pub name: String,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// No secret; PKCE required.
    pub public: bool,
    /// Grant types; `authorization_code` and `refresh_token` when empty.
    pub grants: Vec<String>,
    /// Scopes; [`DEFAULT_SCOPES`] when empty.
    pub scopes: Vec<String>,
    /// Trusted by the operator: no consent page.
    pub first_party: bool,
    /// PKCE even with a secret.
    pub require_pkce: bool,
}

/// A registered client, and its secret when one was just made.
pub struct Registered {
    /// The client as stored.
    pub client: ClientRecord,
    /// The secret, shown once (`None` for a public client).
    pub secret: Option<SecretString>,
}

/// The registry on the database.
pub struct ClientRegistry {
    db: Db,
    clock: Clock,
    audit: Audit,
}

fn invalid(what: String) -> AppError {
    AppError::InvalidClient(what)
}

/// Whether `uri` may be registered as a redirect URI (see the module doc).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let parsed = url::Url::parse(uri).map_err(|e| format!("{uri}: not an absolute URI ({e})"))?;
    if parsed.fragment().is_some() {
        return Err(format!("{uri}: a redirect URI has no fragment"));
    }
    if uri.contains('*') {
        return Err(format!("{uri}: no wildcards; register each URI whole"));
    }
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(()),
        "http" => match parsed.host_str() {
            Some("127.0.0.1" | "[::1]" | "localhost") => Ok(()),
            _ => Err(format!(
                "{uri}: http only on a loopback host (127.0.0.1, [::1], localhost); use https"
            )),
        },
        "https" => Err(format!("{uri}: no host")),
        scheme if scheme.contains('.') => Ok(()),
        scheme => Err(format!(
            "{uri}: scheme {scheme} is neither https nor a private-use scheme with a dot (com.example.app)"
        )),
    }
}

/// Whether `scope` is a scope token (RFC 6749 §3.3).
fn scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn new_id() -> Result<String, AppError> {
    let raw = random_bytes::<16>().map_err(|e| AppError::internal(e.to_string()))?;
    Ok(b64url(&raw))
}

fn new_secret() -> Result<(SecretString, [u8; 32]), AppError> {
    let raw = random_bytes::<32>().map_err(|e| AppError::internal(e.to_string()))?;
    let secret = b64url(&raw);
    let hash = sha256(secret.as_bytes());
    Ok((SecretString::new(secret), hash))
}

impl ClientRegistry {
    /// The registry on `db`, auditing to `audit`.
    pub fn new(db: Db, clock: Clock, audit: Audit) -> Self {
        Self { db, clock, audit }
    }

    /// Validates and registers a client.
    pub async fn create(&self, req: NewClient) -> Result<Registered, AppError> {
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(invalid("--name: 1 to 100 characters".into()));
        }
        let grants = if req.grants.is_empty() {
            vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
        } else {
            req.grants.clone()
        };
        for g in &grants {
            if !GRANTS.contains(&g.as_str()) {
                return Err(invalid(format!(
                    "--grant {g}: one of {} (no implicit or password grant)",
                    GRANTS.join(", ")
                )));
            }
        }
        if req.public && grants.iter().any(|g| g == "client_credentials") {
            return Err(invalid(
                "--grant client_credentials needs a secret: not for a --public client".into(),
            ));
        }
        let redirects = grants.iter().any(|g| g == "authorization_code");
        if redirects && req.redirect_uris.is_empty() {
            return Err(invalid(
                "--redirect-uri: at least one for the authorization_code grant".into(),
            ));
        }
        for uri in req
            .redirect_uris
            .iter()
            .chain(&req.post_logout_redirect_uris)
        {
            check_redirect_uri(uri).map_err(invalid)?;
        }
        let scopes = if req.scopes.is_empty() {
            DEFAULT_SCOPES.map(str::to_owned).to_vec()
        } else {
            req.scopes.clone()
        };
        if let Some(bad) = scopes.iter().find(|s| !scope_token(s)) {
            return Err(invalid(format!("--scope {bad:?}: not a scope token")));
        }
        let (secret, secret_hash) = if req.public {
            (None, None)
        } else {
            let (s, h) = new_secret()?;
            (Some(s), Some(h))
        };
        let client = ClientRecord {
            client_id: new_id()?,
            name,
            secret_hash,
            redirect_uris: dedup(req.redirect_uris),
            post_logout_redirect_uris: dedup(req.post_logout_redirect_uris),
            grant_types: dedup(grants),
            scopes: dedup(scopes),
            first_party: req.first_party,
            require_pkce: req.public || req.require_pkce,
            created_at: self.clock.now(),
        };
        self.db.insert_client(client.clone()).await?;
        self.audit.record(AuditEvent {
            kind: "client_created",
            detail: Some(format!("{} ({})", client.client_id, client.name)),
            ..Default::default()
        });
        Ok(Registered { client, secret })
    }

    /// Every registered client, oldest first.
    pub async fn list(&self) -> Result<Vec<ClientRecord>, AppError> {
        Ok(self.db.clients().await?)
    }

    /// Removes a client.
    pub async fn delete(&self, client_id: &str) -> Result<(), AppError> {
        if !self.db.delete_client(client_id.to_owned()).await? {
            return Err(AppError::NotFound);
        }
        self.audit.record(AuditEvent {
            kind: "client_deleted",
            detail: Some(client_id.to_owned()),
            ..Default::default()
        });
        Ok(())
    }

    /// A new secret for a confidential client; the old one stops working at once.
    pub async fn rotate_secret(&self, client_id: &str) -> Result<SecretString, AppError> {
        let Some(client) = self.db.client(client_id.to_owned()).await? else {
            return Err(AppError::NotFound);
        };
        if client.secret_hash.is_none() {
            return Err(invalid(format!(
                "{client_id} is a public client: it has no secret"
            )));
        }
        let (secret, hash) = new_secret()?;
        let now = self.clock.now();
        if !self
            .db
            .set_client_secret(client_id.to_owned(), hash, now)
            .await?
        {
            return Err(AppError::NotFound);
        }
        self.audit.record(AuditEvent {
            kind: "client_secret_rotated",
            detail: Some(client_id.to_owned()),
            ..Default::default()
        });
        Ok(secret)
    }
}

/// `list` without repeats, first occurrence kept.
fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris_are_https_loopback_http_or_private_use_schemes_without_fragments() {
        for ok in [
            "https://app.example/callback",
            "https://app.example:8443/cb?x=1",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9000/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(check_redirect_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#frag",
            "https://*.example/cb",
            "/relative/cb",
            "myapp:/cb",
            "javascript:alert(1)",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        assert!(scope_token("openid") && scope_token("read:orgs"));
        assert!(!scope_token("") && !scope_token("two words") && !scope_token("quo\"te"));
    }
}
