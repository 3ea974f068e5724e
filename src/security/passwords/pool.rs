//! The hashing pool: a fixed set of threads, each reusing its own Argon2 working memory and
//! giving it back when idle, behind a semaphore with a bounded number of waiters.

use super::alloc::{map_large_allocations, trim_heap};
use argon2::Block;
use crossbeam_channel::RecvTimeoutError;
use edge_idp_actors::DomainError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};
use zeroize::Zeroize;

fn bytes(memory: &Vec<Block>) -> i64 {
    i64::try_from(memory.capacity() * std::mem::size_of::<Block>()).unwrap_or(i64::MAX)
}

/// Zeroizes a hashing thread's working memory and gives it back to the system.
fn release(memory: &mut Vec<Block>, held: &prometheus::IntGauge) {
    if memory.capacity() == 0 {
        return;
    }
    for block in memory.iter_mut() {
        block.zeroize();
    }
    held.sub(bytes(memory));
    *memory = Vec::new();
    trim_heap();
}

/// How long a hashing thread keeps its working memory without a hash to do. Long enough that
/// a steady login load never gives it back (closed-loop clients leave gaps of milliseconds), short
/// enough that the memory of a burst does not outlive it by much.
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// Work for a hashing thread: runs with that thread's working memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// `n` threads that hash, each with its own reused Argon2 memory, and the slots that bound
/// how many hashes run and wait. The threads end, zeroizing their memory, when the last
/// [`Passwords`](super::Passwords) clone is dropped.
#[derive(Clone)]
pub(super) struct HashPool {
    jobs: crossbeam_channel::Sender<Job>,
    held: prometheus::IntGauge,
    pub(super) slots: Arc<Semaphore>,
    /// Requests waiting for a slot, and how many may.
    pub(super) waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    wait: Duration,
    observe: HashMetrics,
}

/// What the hashing shows of itself in `/metrics`.
#[derive(Clone)]
pub struct HashMetrics {
    /// Time a request waited for a slot.
    pub wait: prometheus::Histogram,
    /// Hashes computing or waiting.
    pub queue: prometheus::IntGauge,
    /// Bytes of working memory the hashing threads hold.
    pub memory: prometheus::IntGauge,
}

impl HashPool {
    /// `threads` hashing threads and as many slots; `max_waiting` requests may wait for a slot,
    /// for `wait` at most; a thread gives its memory back after `idle` without a hash.
    pub(super) fn new(
        threads: usize,
        max_waiting: usize,
        wait: Duration,
        idle: Duration,
        observe: HashMetrics,
    ) -> Result<Self, DomainError> {
        let held = observe.memory.clone();
        map_large_allocations();
        // Multi-consumer: each thread waits on its own, so each one's idle timer is its own.
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let held = held.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    // Allocated at this thread's first hash, so an idle server does not hold it.
                    let mut memory = Vec::new();
                    loop {
                        match rx.recv_timeout(idle) {
                            Ok(job) => job(&mut memory),
                            Err(RecvTimeoutError::Timeout) => release(&mut memory, &held),
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    release(&mut memory, &held);
                })
                .map_err(|e| DomainError::Internal(format!("hash thread: {e}")))?;
        }
        Ok(Self {
            jobs: tx,
            held,
            slots: Arc::new(Semaphore::new(threads.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            wait,
            observe,
        })
    }

    /// Runs `f` on a hashing thread once a slot is free; sheds it at once when `max_waiting`
    /// requests already wait, and after `wait` without a slot.
    pub(super) async fn on_slot<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, DomainError> {
        let HashMetrics {
            wait: wait_hist,
            queue,
            ..
        } = &self.observe;
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => {
                queue.inc();
                wait_hist.observe(0.0);
                Ok(Ok(p))
            }
            Err(_) => {
                let admitted = self
                    .waiting
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.max_waiting).then_some(n + 1)
                    })
                    .is_ok();
                if !admitted {
                    return Err(DomainError::Unavailable(
                        "password hashing saturated: too many waiting".into(),
                    ));
                }
                queue.inc();
                let started = std::time::Instant::now();
                let permit =
                    tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await;
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                wait_hist.observe(started.elapsed().as_secs_f64());
                permit
            }
        };
        let permit = match permit {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                queue.dec();
                return Err(DomainError::Unavailable("password hashing closed".into()));
            }
            Err(_) => {
                queue.dec();
                return Err(DomainError::Unavailable(
                    "password hashing saturated".into(),
                ));
            }
        };
        let queue = queue.clone();
        self.run(move |memory| {
            let r = f(memory);
            drop(permit);
            queue.dec();
            r
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, DomainError> {
        let (tx, rx) = oneshot::channel();
        let held = self.held.clone();
        self.jobs
            .send(Box::new(move |memory: &mut Vec<Block>| {
                let before = bytes(memory);
                let result = f(memory);
                held.add(bytes(memory) - before);
                let _ = tx.send(result);
            }))
            .map_err(|_| DomainError::Unavailable("password hashing stopped".into()))?;
        rx.await
            .map_err(|_| DomainError::Internal("hash thread failed".into()))
    }
}
