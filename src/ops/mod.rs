//! Operations: what the service shows of itself to the people running it (metrics, the audit
//! trail, logging) and the health check its container runs.

pub mod audit;
pub mod healthcheck;
pub mod metrics;
pub mod telemetry;
