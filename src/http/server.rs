//! The server edge: accepts connections and wraps every request in what API.md asks of *every*
//! response, whichever handler (or none) produced it.
//!
//! Per request: a sane `X-Request-Id` is echoed or one is generated (and handed to the router
//! as the request header, so handlers and logs see the same id); the TCP peer goes into the
//! request extensions; a global in-flight bound sheds excess load with an immediate 503 instead
//! of queueing; the security headers are added; one access-log line is written. Shutdown stops
//! accepting, lets requests in flight finish (bounded by a drain timeout), then returns.

use super::error::ApiError;
use super::extract::PeerAddr;
use super::route_of;
use crate::metrics::Metrics;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
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

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: BoxedFilter<(Response,)>,
    max_in_flight: usize,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let svc = warp::service(router);
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
        let in_flight = in_flight.clone();
        let metrics = metrics.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut svc = svc.clone();
            let in_flight = in_flight.clone();
            let metrics = metrics.clone();
            async move { Ok::<_, Infallible>(handle(&mut svc, req, peer, &in_flight, &metrics).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
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

async fn handle<S>(
    svc: &mut S,
    mut req: Request<Incoming>,
    peer: std::net::SocketAddr,
    in_flight: &Semaphore,
    metrics: &Metrics,
) -> Response
where
    S: Service<Request<Incoming>, Response = Response, Error = Infallible>,
{
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

    let mut resp = match in_flight.try_acquire() {
        Ok(_permit) => match svc.call(req).instrument(span.clone()).await {
            Ok(r) => r,
            Err(never) => match never {},
        },
        Err(_) => ApiError::Unavailable("too many requests in flight".into()).into_response(),
    };
    let h = resp.headers_mut();
    for (k, v) in SECURITY_HEADERS {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
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
