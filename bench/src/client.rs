//! The load generator's HTTP/1.1 client: hyper's pooled client, one connection per concurrent
//! worker, bodies read to the end (as a real client would).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Status and body of a response.
pub type Answer = (u16, Bytes);

/// A pooled HTTP client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    /// A client keeping up to `connections` idle connections.
    pub fn new(connections: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(connections.max(1) * 2)
                .build(connector),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        bearer: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(b))),
            None => req.body(Full::new(Bytes::new())),
        }
        .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    /// GET, optionally with a Bearer token.
    pub async fn get(&self, url: &str, bearer: Option<&str>) -> Result<Answer, String> {
        self.send(Method::GET, url, bearer, None).await
    }

    /// POST a JSON body, optionally with a Bearer token.
    pub async fn post(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<Answer, String> {
        self.send(
            Method::POST,
            url,
            bearer,
            Some(body.to_string().into_bytes()),
        )
        .await
    }
}

/// The body as JSON, or an error naming the status and the start of the body.
pub fn json(answer: &Answer, expect: u16) -> Result<serde_json::Value, String> {
    if answer.0 != expect {
        let text = String::from_utf8_lossy(&answer.1);
        return Err(format!(
            "status {} (expected {expect}): {}",
            answer.0,
            text.chars().take(160).collect::<String>()
        ));
    }
    serde_json::from_slice(&answer.1).map_err(|e| format!("bad JSON: {e}"))
}
