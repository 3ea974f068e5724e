//! The OAuth client registry in SQL (`oauth_clients`). List-valued fields are stored as JSON
//! arrays: they are read whole with their client and never queried inside.

use super::{map_err, Db};
use edge_idp_actors::store::StoreResult;
use edge_idp_actors::StoreError;
use libsql::{params, Value};

/// A registered client as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// The public identifier.
    pub client_id: String,
    /// Display name (shown on the consent page).
    pub name: String,
    /// SHA-256 of the secret; `None` for a public client.
    pub secret_hash: Option<[u8; 32]>,
    /// Redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send the browser back to.
    pub post_logout_redirect_uris: Vec<String>,
    /// Grant types the client may use.
    pub grant_types: Vec<String>,
    /// Scopes the client may ask for.
    pub scopes: Vec<String>,
    /// Trusted by the operator: no consent page.
    pub first_party: bool,
    /// PKCE required even with a secret (always for public clients).
    pub require_pkce: bool,
    /// Unix seconds.
    pub created_at: i64,
}

fn json(list: &[String]) -> Value {
    Value::Text(serde_json::to_string(list).unwrap_or_else(|_| "[]".into()))
}

fn list(text: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(text).map_err(|e| StoreError::Other(format!("client list column: {e}")))
}

const COLUMNS: &str = "client_id, name, secret_hash, redirect_uris, post_logout_redirect_uris, \
                       grant_types, scopes, first_party, require_pkce, created_at";

fn record(r: &libsql::Row) -> StoreResult<ClientRecord> {
    let secret: Option<Vec<u8>> = r.get(2).map_err(map_err)?;
    let secret_hash = secret
        .map(|s| {
            <[u8; 32]>::try_from(s.as_slice())
                .map_err(|_| StoreError::Other("client secret hash is not 32 bytes".into()))
        })
        .transpose()?;
    Ok(ClientRecord {
        client_id: r.get(0).map_err(map_err)?,
        name: r.get(1).map_err(map_err)?,
        secret_hash,
        redirect_uris: list(&r.get::<String>(3).map_err(map_err)?)?,
        post_logout_redirect_uris: list(&r.get::<String>(4).map_err(map_err)?)?,
        grant_types: list(&r.get::<String>(5).map_err(map_err)?)?,
        scopes: list(&r.get::<String>(6).map_err(map_err)?)?,
        first_party: r.get::<i64>(7).map_err(map_err)? != 0,
        require_pkce: r.get::<i64>(8).map_err(map_err)? != 0,
        created_at: r.get(9).map_err(map_err)?,
    })
}

impl Db {
    /// Registers a client.
    pub async fn insert_client(&self, c: ClientRecord) -> StoreResult<()> {
        self.write(move |conn| async move {
            let sql = format!("INSERT INTO oauth_clients ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
            let secret = c
                .secret_hash
                .map(|h| Value::Blob(h.to_vec()))
                .unwrap_or(Value::Null);
            conn.execute(
                &sql,
                params![
                    c.client_id,
                    c.name,
                    secret,
                    json(&c.redirect_uris),
                    json(&c.post_logout_redirect_uris),
                    json(&c.grant_types),
                    json(&c.scopes),
                    i64::from(c.first_party),
                    i64::from(c.require_pkce),
                    c.created_at
                ],
            )
            .await
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    /// Every registered client, oldest first.
    pub async fn clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.run(move |conn| async move {
            let sql = format!("SELECT {COLUMNS} FROM oauth_clients ORDER BY created_at, client_id");
            let mut rows = conn.query(&sql, ()).await.map_err(map_err)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await.map_err(map_err)? {
                out.push(record(&r)?);
            }
            Ok(out)
        })
        .await
    }

    /// One client by id.
    pub async fn client(&self, client_id: String) -> StoreResult<Option<ClientRecord>> {
        self.run(move |conn| async move {
            let sql = format!("SELECT {COLUMNS} FROM oauth_clients WHERE client_id = ?1");
            let mut rows = conn.query(&sql, [client_id]).await.map_err(map_err)?;
            match rows.next().await.map_err(map_err)? {
                Some(r) => Ok(Some(record(&r)?)),
                None => Ok(None),
            }
        })
        .await
    }

    /// Removes a client; `false` when there was none.
    pub async fn delete_client(&self, client_id: String) -> StoreResult<bool> {
        self.write(move |conn| async move {
            let n = conn
                .execute(
                    "DELETE FROM oauth_clients WHERE client_id = ?1",
                    [client_id],
                )
                .await
                .map_err(map_err)?;
            Ok(n == 1)
        })
        .await
    }

    /// Replaces a confidential client's secret hash; `false` when there is no such client or
    /// it is public.
    pub async fn set_client_secret(
        &self,
        client_id: String,
        secret_hash: [u8; 32],
        now: i64,
    ) -> StoreResult<bool> {
        self.write(move |conn| async move {
            let n = conn
                .execute(
                    "UPDATE oauth_clients SET secret_hash = ?2, secret_rotated_at = ?3 \
                     WHERE client_id = ?1 AND secret_hash IS NOT NULL",
                    params![client_id, secret_hash.to_vec(), now],
                )
                .await
                .map_err(map_err)?;
            Ok(n == 1)
        })
        .await
    }
}
