//! The server edge: accepts connections and wraps every request in what API.md asks of *every*
//! response, whichever handler (or none) produced it.
//!
//! Per request: a sane `X-Request-Id` is echoed or one is generated (and handed to the router
//! as the request header, so handlers and logs see the same id); the TCP peer goes into the
//! request extensions; the body is read whole (at most 16 KiB, within `BODY_READ_TIMEOUT_SECS`)
//! *before* the request takes one of the in-flight permits, so a client that stalls mid-body
//! holds a connection, never a permit; a global in-flight bound sheds excess load with an
//! immediate 503 instead of queueing (`/healthz` and `/readyz` take no permit, so they answer
//! under any load); the security headers are added; one access-log line is written.
//!
//! Per connection: at most `MAX_CONNECTIONS` are open (more wait in the listen backlog), and
//! hyper's timer closes a connection that takes longer than `HEADER_READ_TIMEOUT_SECS` to send
//! a request's headers, counted from when the server starts waiting for them, so an idle
//! keep-alive connection is closed after the same time. Together these bound what slow clients
//! can hold: a connection for a few seconds each, and no permit at all.
//!
//! Shutdown stops accepting, lets requests in flight finish (bounded by a drain timeout), then
//! returns.

use super::error::ApiError;
use super::extract::{BodyTooLarge, PeerAddr, BODY_LIMIT};
use super::route_of;
use crate::config::EdgeLimits;
use crate::ops::metrics::Metrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service;
use tracing::Instrument;
use warp::filters::BoxedFilter;
use warp::http::{HeaderName, HeaderValue, Request};
use warp::reply::Response;

/// How long shutdown waits for requests in flight.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
];

/// Whether a client-sent request id may be echoed: 1 to 128 of `A-Za-z0-9._-`.
pub fn sane_request_id(v: &[u8]) -> bool {
    (1..=128).contains(&v.len())
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A UUID v7, in hex, for a request that came without a usable id. Its random part comes from a
/// generator per thread seeded once by the operating system: a request id must be unique, not
/// secret, and asking the OS for randomness per request (as `Uuid::now_v7` does) was a system
/// call per answer.
fn new_request_id() -> HeaderValue {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(u64::from_le_bytes(
            edge_idp_actors::crypto::random_bytes::<8>().unwrap_or_else(|_| {
                // No OS randomness: the time in nanoseconds still keeps threads apart.
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                t.to_le_bytes()
            }),
        ));
    }
    // splitmix64: every step of the state gives a distinct, well-mixed output.
    let next = || {
        STATE.with(|s| {
            let x = s.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            s.set(x);
            let z = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&next().to_le_bytes());
    random[8..].copy_from_slice(&next().to_le_bytes()[..2]);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    HeaderValue::from_str(id.simple().encode_lower(&mut buf))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// What one connection's requests share.
struct Edge {
    in_flight: Semaphore,
    metrics: Arc<Metrics>,
    body_read_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: BoxedFilter<(Response,)>,
    max_in_flight: usize,
    limits: EdgeLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let svc = warp::service(router);
    let edge = Arc::new(Edge {
        in_flight: Semaphore::new(max_in_flight),
        metrics,
        body_read_timeout: limits.body_read_timeout,
    });
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A connection slot first: at the cap, further clients wait in the listen backlog
        // until a connection closes (the header-read timeout closes slow ones).
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        let edge = edge.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut svc = svc.clone();
            let edge = edge.clone();
            async move { Ok::<_, Infallible>(handle(&mut svc, req, peer, &edge).await) }
        });
        let conn = http1.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining requests in flight");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
}

/// The whole body, read within the deadline and the size limit. A body over the limit is not
/// read further: the request goes on with an empty body and a [`BodyTooLarge`] mark, so the
/// handler still answers 415 before 413 as API.md orders them.
async fn read_body(
    req: Request<Incoming>,
    deadline: Duration,
) -> Result<Request<Full<Bytes>>, ApiError> {
    let (mut parts, body) = req.into_parts();
    let body = match tokio::time::timeout(deadline, Limited::new(body, BODY_LIMIT).collect()).await
    {
        Err(_) => return Err(ApiError::RequestTimeout),
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            parts.extensions.insert(BodyTooLarge);
            Bytes::new()
        }
        Ok(Err(e)) => {
            return Err(ApiError::InvalidJson(format!(
                "body could not be read: {e}"
            )))
        }
    };
    Ok(Request::from_parts(parts, Full::new(body)))
}

async fn handle<S>(
    svc: &mut S,
    mut req: Request<Incoming>,
    peer: std::net::SocketAddr,
    edge: &Edge,
) -> Response
where
    S: Service<Request<Full<Bytes>>, Response = Response, Error = Infallible>,
{
    let metrics = &edge.metrics;
    let started = Instant::now();
    let request_id = match req.headers().get("x-request-id") {
        Some(v) if sane_request_id(v.as_bytes()) => v.clone(),
        _ => new_request_id(),
    };
    req.headers_mut().insert("x-request-id", request_id.clone());
    req.extensions_mut().insert(PeerAddr(peer));
    let method = req.method().clone();
    let route = route_of(req.uri().path())
        .map(|r| r.0)
        .unwrap_or("unmatched");
    let span = tracing::info_span!("request", request_id = %request_id.to_str().unwrap_or(""), method = %method, route);

    // Probes answer without a permit: a full house must not fail the health checks.
    let probe = matches!(route, "/healthz" | "/readyz");
    let mut resp = match read_body(req, edge.body_read_timeout).await {
        Err(e) => e.into_response(),
        Ok(req) => {
            let permit = if probe {
                Ok(None)
            } else {
                edge.in_flight.try_acquire().map(Some)
            };
            match permit {
                Ok(_permit) => match svc.call(req).instrument(span.clone()).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
                Err(_) => ApiError::unavailable("too many requests in flight").into_response(),
            }
        }
    };
    let h = resp.headers_mut();
    for (k, v) in SECURITY_HEADERS {
        // A hosted page sets its own (wider) Content-Security-Policy; every other answer
        // gets the edge's.
        h.entry(HeaderName::from_static(k))
            .or_insert(HeaderValue::from_static(v));
    }
    h.insert("x-request-id", request_id);
    let method_label = match method.as_str() {
        m @ ("GET" | "POST" | "DELETE" | "PUT" | "PATCH" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    };
    let elapsed = started.elapsed().as_secs_f64();
    metrics
        .http_requests
        .with_label_values(&[route, method_label, resp.status().as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[route, method_label])
        .observe(elapsed);
    let _e = span.enter();
    tracing::info!(
        target: "http",
        status = resp.status().as_u16(),
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_request_ids_are_sane_distinct_uuid_v7s() {
        let ids: std::collections::HashSet<String> = (0..10_000)
            .map(|_| new_request_id().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(50) {
            assert!(sane_request_id(id.as_bytes()));
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 7, "{id}");
        }
    }

    #[test]
    fn request_id_sanity() {
        assert!(sane_request_id(b"abc-123_.X"));
        assert!(!sane_request_id(b""));
        assert!(!sane_request_id(&[b'a'; 129]));
        assert!(!sane_request_id(b"has space"));
        assert!(!sane_request_id(b"semi;colon"));
    }
}
