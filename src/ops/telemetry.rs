//! Logging: JSON lines by default, `LOG_FORMAT=pretty` for humans, filtered by `RUST_LOG`
//! (default `info`). Nothing logged anywhere carries a password, token, secret or key: secrets
//! travel in redacting types and handlers log ids only.
//!
//! Lines are written to stdout in batches by a thread of their own, not by the request that logs
//! them. A write system call per access-log line was a tenth of the cost of serving the JWKS;
//! handing each line to a writer thread over a channel (tracing-appender) removed the write but
//! kept a wake-up per line, and the writer spun in `sched_yield` between lines: the access log
//! still took a third of a JWKS answer's CPU. So a line is appended to a shared buffer under a
//! short lock, and the writer wakes when the buffer holds [`BATCH`] bytes or every [`EVERY`]
//! at most: one `write` per batch, no wake-up per line. When the writer falls behind (a stalled
//! pipe), loggers wait once [`MAX_PENDING`] bytes are queued rather than drop lines, as a direct
//! write to a full pipe would; [`flush`] at exit writes what is still queued.

use crate::config::LogFormat;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Bytes that wake the writer at once.
const BATCH: usize = 64 * 1024;
/// Longest a line waits for its batch.
const EVERY: Duration = Duration::from_millis(50);
/// Bytes queued before loggers wait for the writer.
const MAX_PENDING: usize = 4 * 1024 * 1024;

static WRITER: Mutex<Option<(Batches, JoinHandle<()>)>> = Mutex::new(None);

/// Installs the global subscriber once; later calls are ignored (tests call it repeatedly).
pub fn init(format: LogFormat) {
    let mut writer = lock(&WRITER);
    if writer.is_some() {
        return;
    }
    let Ok((batches, thread)) = Batches::start(std::io::stdout()) else {
        // No thread to write with: log nothing rather than fail to start.
        return;
    };
    *writer = Some((batches.clone(), thread));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(batches);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Writes the lines still queued and stops the writer; call before the process exits.
pub fn flush() {
    if let Some((batches, thread)) = lock(&WRITER).take() {
        batches.close();
        let _ = thread.join();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Lines waiting for the writer thread. Cheap to clone; every clone appends to the same queue.
#[derive(Clone)]
struct Batches {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The writer waits on this for a full batch (or its timer, or close).
    full: Condvar,
    /// Loggers wait on this when too much is queued.
    room: Condvar,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    closed: bool,
}

impl Batches {
    /// Starts the writer thread that drains the queue into `out`.
    fn start<W: Write + Send + 'static>(mut out: W) -> std::io::Result<(Self, JoinHandle<()>)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            full: Condvar::new(),
            room: Condvar::new(),
        });
        let this = Self {
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                let mut spare = Vec::with_capacity(BATCH);
                loop {
                    let mut q = lock(&shared.queue);
                    if q.bytes.len() < BATCH && !q.closed {
                        q = shared
                            .full
                            .wait_timeout(q, EVERY)
                            .map(|(q, _)| q)
                            .unwrap_or_else(|e| e.into_inner().0);
                    }
                    std::mem::swap(&mut q.bytes, &mut spare);
                    let closed = q.closed;
                    drop(q);
                    shared.room.notify_all();
                    if !spare.is_empty() {
                        // Nowhere to report a failed log write; the next batch tries again.
                        let _ = out.write_all(&spare).and_then(|()| out.flush());
                        spare.clear();
                    }
                    if closed && lock(&shared.queue).bytes.is_empty() {
                        break;
                    }
                }
            })?;
        Ok((this, thread))
    }

    /// Asks the writer to write what is queued and stop.
    fn close(&self) {
        lock(&self.shared.queue).closed = true;
        self.shared.full.notify_one();
    }
}

impl Write for Batches {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = &self.shared;
        let mut q = lock(&shared.queue);
        while q.bytes.len() >= MAX_PENDING && !q.closed {
            q = shared.room.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        let before = q.bytes.len();
        q.bytes.extend_from_slice(line);
        if before < BATCH && q.bytes.len() >= BATCH {
            shared.full.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Batches {
    type Writer = Batches;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// An error and its sources, outermost first, joined by `: `, for a log line or the one line a
/// failed start prints. A source whose text the message before it already ends with (an error
/// that prints its cause itself) is not repeated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read while the writer owns a clone.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_and_in_each_threads_order() {
        let sink = Sink::default();
        let (batches, thread) = Batches::start(sink.clone()).unwrap();
        let loggers: Vec<_> = (0..4)
            .map(|t| {
                let mut b = batches.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        b.write_all(format!("t{t} line {i:05} {}\n", "x".repeat(40)).as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for l in loggers {
            l.join().unwrap();
        }
        batches.close();
        thread.join().unwrap();
        let out = String::from_utf8(lock(&sink.0).clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 80_000, "no line lost, none split");
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .map(|l| l[8..13].parse().unwrap())
                .collect();
            assert_eq!(mine, (0..20_000).collect::<Vec<_>>(), "thread {t} in order");
        }
    }

    #[test]
    fn a_lone_line_is_written_without_waiting_for_a_full_batch() {
        let sink = Sink::default();
        let (mut batches, thread) = Batches::start(sink.clone()).unwrap();
        batches.write_all(b"only line\n").unwrap();
        // The writer's timer, not a close, gets it out.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lock(&sink.0).is_empty() {
            assert!(std::time::Instant::now() < deadline, "line never written");
            std::thread::sleep(EVERY / 5);
        }
        assert_eq!(lock(&sink.0).as_slice(), b"only line\n");
        batches.close();
        thread.join().unwrap();
    }
}
