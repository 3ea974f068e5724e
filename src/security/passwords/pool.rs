//! The hashing pool: a fixed set of threads, each reusing its own Argon2 working memory and
//! giving it back when idle, behind a semaphore whose waiters are admitted by expected wait.
//!
//! A request that finds every slot taken is admitted to wait only if it can expect to start
//! hashing within the budget (`HASH_MAX_WAIT_MS`): with `n` requests already waiting for `t`
//! threads, it starts after about `(n / t + 1)` hash durations, the duration being a moving
//! average of the hashes this pool ran. So a burst the threads can work through within the
//! budget is served whole, and a sustained overload is refused at once (503, microseconds)
//! instead of joining a queue that only grows.

use super::alloc::{map_large_allocations, trim_heap};
use argon2::Block;
use crossbeam_channel::RecvTimeoutError;
use edge_idp_actors::DomainError;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};
use zeroize::Zeroize;

fn bytes(memory: &Vec<Block>) -> i64 {
    i64::try_from(memory.capacity() * std::mem::size_of::<Block>()).unwrap_or(i64::MAX)
}

/// Overwrites every block with zeros (before the memory is given back).
fn wipe(memory: &mut [Block]) {
    for block in memory.iter_mut() {
        block.zeroize();
    }
}

/// Zeroizes a hashing thread's working memory and gives it back to the system.
fn release(memory: &mut Vec<Block>, held: &prometheus::IntGauge) {
    if memory.capacity() == 0 {
        return;
    }
    wipe(memory);
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
    /// Requests waiting for a slot, and how many may whatever their expected wait.
    pub(super) waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    /// The hashing threads.
    threads: usize,
    /// Longest expected wait for a slot a request is admitted with.
    max_wait: Duration,
    /// Moving average of one hash's duration on a hashing thread, microseconds.
    estimate_us: Arc<AtomicU64>,
    /// Hard bound on any wait for a slot.
    wait: Duration,
    observe: HashMetrics,
}

/// The admission rule: may a request wait when `ahead` requests already wait for `threads`
/// threads, one hash taking `estimate`? It starts after the running hashes and `ahead /
/// threads` rounds of the waiting ones: about `(ahead / threads + 1) × estimate`.
pub(super) fn admits(ahead: usize, threads: usize, estimate: Duration, budget: Duration) -> bool {
    let rounds = u32::try_from(ahead / threads.max(1) + 1).unwrap_or(u32::MAX);
    estimate.saturating_mul(rounds) <= budget
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
    /// `threads` hashing threads and as many slots; a request waits for a slot only when it
    /// can expect one within `max_wait` and fewer than `max_waiting` wait, and for `wait` at
    /// most; a thread gives its memory back after `idle` without a hash. `estimate` is a first
    /// guess of one hash's duration, refined by every hash.
    pub(super) fn new(
        threads: usize,
        max_waiting: usize,
        max_wait: Duration,
        wait: Duration,
        idle: Duration,
        estimate: Duration,
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
            threads: threads.max(1),
            max_wait,
            estimate_us: Arc::new(AtomicU64::new(micros(estimate))),
            wait,
            observe,
        })
    }

    /// The current estimate of one hash's duration.
    pub(super) fn estimate(&self) -> Duration {
        Duration::from_micros(self.estimate_us.load(Ordering::Relaxed))
    }

    /// Replaces the estimate (tests: admission at a known hash duration).
    #[cfg(test)]
    pub(super) fn set_estimate(&self, d: Duration) {
        self.estimate_us.store(micros(d), Ordering::Relaxed);
    }

    /// Runs `f` on a hashing thread once a slot is free; sheds it at once when it could not
    /// expect a slot within the budget (or `max_waiting` requests already wait), and after
    /// `wait` without a slot.
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
                let estimate = self.estimate();
                let admitted = self
                    .waiting
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.max_waiting && admits(n, self.threads, estimate, self.max_wait))
                            .then_some(n + 1)
                    })
                    .is_ok();
                if !admitted {
                    return Err(DomainError::Unavailable(
                        "password hashing saturated: no slot expected within the wait budget"
                            .into(),
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
        let estimate = self.estimate_us.clone();
        self.jobs
            .send(Box::new(move |memory: &mut Vec<Block>| {
                let before = bytes(memory);
                let started = std::time::Instant::now();
                let result = f(memory);
                learn(&estimate, started.elapsed());
                held.add(bytes(memory) - before);
                let _ = tx.send(result);
            }))
            .map_err(|_| DomainError::Unavailable("password hashing stopped".into()))?;
        rx.await
            .map_err(|_| DomainError::Internal("hash thread failed".into()))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Moves the estimate an eighth of the way to `sample`: a few hashes follow a change of cost
/// or of the machine's load, one slow hash does not swing admission.
fn learn(estimate: &AtomicU64, sample: Duration) {
    let sample = micros(sample);
    let _ = estimate.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        Some(if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashing_buffer_is_all_zeros_after_a_hash_and_its_wipe() {
        // A real hash fills the buffer with Argon2's blocks of this password.
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let mut memory = Vec::new();
        super::super::hash::hash_in(&mut memory, &params, "a password").unwrap();
        let nonzero = |m: &[Block]| m.iter().any(|b| b.as_ref().iter().any(|w| *w != 0));
        assert!(nonzero(&memory), "the hash left its blocks in the buffer");
        wipe(&mut memory);
        assert!(!nonzero(&memory), "a block survived the wipe");
    }

    #[test]
    fn admission_follows_the_expected_wait() {
        let ms = Duration::from_millis;
        // Two threads, 25 ms a hash, a 2 s budget: 158 waiting still start in time (79 rounds
        // plus the running one = 2 s), the 160th does not.
        assert!(admits(0, 2, ms(25), ms(2000)));
        assert!(admits(158, 2, ms(25), ms(2000)));
        assert!(!admits(160, 2, ms(25), ms(2000)));
        // A slower machine admits fewer.
        assert!(!admits(20, 2, ms(250), ms(2000)));
    }

    #[test]
    fn the_estimate_follows_the_hashes_it_sees() {
        let e = AtomicU64::new(0);
        learn(&e, Duration::from_millis(40));
        assert_eq!(
            e.load(Ordering::Relaxed),
            40_000,
            "the first sample is the estimate"
        );
        for _ in 0..40 {
            learn(&e, Duration::from_millis(20));
        }
        let now = e.load(Ordering::Relaxed);
        assert!((20_000..20_200).contains(&now), "{now}");
    }
}
