//! Logging: JSON lines by default, `LOG_FORMAT=pretty` for humans, filtered by `RUST_LOG`
//! (default `info`). Nothing logged anywhere carries a password, token, secret or key: secrets
//! travel in redacting types and handlers log ids only.
//!
//! Lines are written to stdout by a thread of their own, through a buffer, not by the request
//! that logs them: a write system call per access-log line was a tenth of the cost of serving
//! the JWKS. The hand-off blocks rather than drops when the writer falls behind (as a direct
//! write to a full pipe would), so no line is lost silently; [`flush`] at exit writes what is
//! still queued.

use crate::config::LogFormat;
use std::sync::Mutex;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Installs the global subscriber once; later calls are ignored (tests call it repeatedly).
pub fn init(format: LogFormat) {
    let mut writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    if writer.is_some() {
        return;
    }
    let (stdout, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    *writer = Some(guard);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Writes the lines still queued; call before the process exits.
pub fn flush() {
    drop(WRITER.lock().unwrap_or_else(|e| e.into_inner()).take());
}
