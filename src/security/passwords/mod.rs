//! Password hashing (Argon2id) and the password policy.
//!
//! A hash costs ~20 ms and 19 MiB, so an unbounded number in flight would turn a login flood
//! into memory exhaustion. Hashes run on a fixed set of `HASH_CONCURRENCY` threads of their own
//! (not tokio's blocking pool, which grows to hundreds of threads), behind a semaphore of the
//! same size. At most `HASH_QUEUE` requests wait for a slot: one more is shed at once with 503
//! (its client retries after `Retry-After`), so under twice the load the machine can hash, the
//! waits stay short instead of growing until every request times out; a request that still
//! cannot get a slot within the ask timeout is shed too.
//!
//! Each hashing thread allocates its Argon2 working memory at its first hash and reuses it:
//! the server's memory for hashing is at most `HASH_CONCURRENCY × m_cost`, whatever the load,
//! and no hash pays for a 19 MiB allocation and its page faults. The buffer holds Argon2's
//! internal blocks of the last hash (as good as the hash itself to an attacker, which is to say
//! a brute-force target), is overwritten by the next one, and is zeroized and given back to the
//! system once its thread has had no hash for [`IDLE_RELEASE`] (and when the thread ends): a
//! server between login bursts holds no hashing memory and no traces of the last passwords'
//! work, and a burst pays one allocation per thread, not one per hash.
//!
//! Unknown emails are verified against a dummy hash of the same cost, so the answer and its
//! timing do not reveal whether an account exists.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use crossbeam_channel::RecvTimeoutError;
use edge_idp_actors::{DomainError, SecretString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::{oneshot, Semaphore};
use zeroize::Zeroize;

/// Why a password is refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Fewer than 8 characters.
    #[error("must be at least 8 characters")]
    TooShort,
    /// More than 128 characters.
    #[error("must be at most 128 characters")]
    TooLong,
    /// On the common-passwords list.
    #[error("is too common")]
    Common,
    /// One character or one short group repeated (`aaaaaaaa`, `abcabcabc`).
    #[error("must not be a repeated character or group")]
    Repetitive,
    /// A run of consecutive characters (`abcdefgh`, `87654321`).
    #[error("must not be a sequence such as abcdefgh or 12345678")]
    Sequential,
    /// Contains a word from the context (the product's name, the email's local part).
    #[error("must not contain the service's name or your email address")]
    ContextWord,
    /// Guessable in few tries even though on no list (zxcvbn score below 2).
    #[error("is too easy to guess; use a longer passphrase")]
    Guessable,
}

/// Whether the whole string is one unit repeated (a unit of 1 to 4 characters).
fn repetitive(chars: &[char]) -> bool {
    (1..=4).any(|unit| {
        chars.len() >= 2 * unit
            && chars.len().is_multiple_of(unit)
            && chars.chunks(unit).all(|c| c == &chars[..unit])
    })
}

/// Whether the whole string steps by +1 or -1 through code points (letters compared without
/// case).
fn sequential(chars: &[char]) -> bool {
    let lower: Vec<u32> = chars
        .iter()
        .map(|c| c.to_ascii_lowercase() as u32)
        .collect();
    let steps: Vec<i64> = lower
        .windows(2)
        .map(|w| i64::from(w[1]) - i64::from(w[0]))
        .collect();
    !steps.is_empty() && (steps.iter().all(|&d| d == 1) || steps.iter().all(|&d| d == -1))
}

/// Applies the password policy (API.md's, and NIST SP 800-63B §5.1.1.2's list of what to
/// refuse): 8 to 128 characters; not on the common-passwords list (zxcvbn's frequency list of
/// leaked passwords, matched as a whole); not a repeated character or group nor a sequence;
/// not containing a context word of four or more characters (the product's name, the email's
/// local part), compared without case; and not guessable in few tries by zxcvbn's estimate
/// (score 0 or 1 of 4). A common password dressed up with capitals, digits or a year
/// (`Passw0rd!`, `Summer2024!`) counts as common.
pub fn check_policy(password: &str, context: &[&str]) -> Result<(), PolicyError> {
    let chars: Vec<char> = password.chars().collect();
    if chars.len() < 8 {
        return Err(PolicyError::TooShort);
    }
    if chars.len() > 128 {
        return Err(PolicyError::TooLong);
    }
    if repetitive(&chars) {
        return Err(PolicyError::Repetitive);
    }
    if sequential(&chars) {
        return Err(PolicyError::Sequential);
    }
    let lower = password.to_lowercase();
    if context
        .iter()
        .map(|w| w.trim().to_lowercase())
        .any(|w| w.chars().count() >= 4 && lower.contains(&w))
    {
        return Err(PolicyError::ContextWord);
    }
    use zxcvbn::feedback::Warning;
    let estimate = zxcvbn::zxcvbn(password, context);
    let common = estimate
        .feedback()
        .and_then(|f| f.warning())
        .is_some_and(|w| {
            matches!(
                w,
                Warning::ThisIsATop10Password
                    | Warning::ThisIsATop100Password
                    | Warning::ThisIsACommonPassword
                    | Warning::ThisIsSimilarToACommonlyUsedPassword
            )
        });
    if common {
        return Err(PolicyError::Common);
    }
    if (estimate.score() as u8) < 2 {
        return Err(PolicyError::Guessable);
    }
    Ok(())
}

/// The context words a user's password must not contain: the product's names and the local
/// part of the email.
pub fn context_words<'a>(product: &'a str, email: &'a str) -> [&'a str; 3] {
    let local = email.split('@').next().unwrap_or("");
    [product, "edge-idp", local]
}

/// Outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whether the password matched.
    pub ok: bool,
    /// A hash with the current costs, when the stored one used other costs.
    pub rehash: Option<String>,
}

/// Argon2id with the configured cost, bounded concurrency and a dummy hash.
#[derive(Clone)]
pub struct Passwords {
    params: Params,
    slots: Arc<Semaphore>,
    /// Requests waiting for a slot, and how many may.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    pool: HashPool,
    wait: Duration,
    dummy: Arc<str>,
    observe: HashMetrics,
}

fn hasher(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn internal(context: &str) -> impl Fn(argon2::password_hash::Error) -> DomainError + '_ {
    move |e| DomainError::Internal(format!("{context}: {e}"))
}

/// A new PHC string for `password`, computed in `memory` (grown once to the cost's size).
fn hash_in(
    memory: &mut Vec<Block>,
    params: &Params,
    password: &str,
) -> Result<String, DomainError> {
    let salt_bytes = edge_idp_actors::crypto::random_bytes::<16>()
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    fill(memory, params.block_count());
    hasher(params)
        .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, &mut out, &mut memory[..])
        .map_err(|e| DomainError::Internal(format!("argon2: {e}")))?;
    phc_string(params, &salt_bytes, &out)
}

/// The dummy hash unknown emails are verified against: a PHC string with the current costs, a
/// random salt and a random output. Verifying against it costs one full hash, like a real one,
/// and matches no password; making it costs no hash, so it is off the path to listening.
fn dummy_hash(params: &Params) -> Result<String, DomainError> {
    let salt = edge_idp_actors::crypto::random_bytes::<16>()
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let out = edge_idp_actors::crypto::random_bytes::<{ Params::DEFAULT_OUTPUT_LEN }>()
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    phc_string(params, &salt, &out)
}

fn phc_string(params: &Params, salt_bytes: &[u8], out: &[u8]) -> Result<String, DomainError> {
    let salt = SaltString::encode_b64(salt_bytes).map_err(internal("salt"))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(internal("params"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(out).map_err(internal("output"))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the parsed PHC hash, computed in `memory` with the hash's own
/// algorithm, version and costs; the comparison is constant-time.
fn matches_in(
    memory: &mut Vec<Block>,
    parsed: &PasswordHash<'_>,
    password: &str,
) -> Result<bool, DomainError> {
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(internal("stored hash"))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| DomainError::Internal(format!("stored hash: {e}")))?
        .unwrap_or_default();
    let params = Params::try_from(parsed).map_err(internal("stored hash"))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(DomainError::Internal(
            "stored hash without salt or output".into(),
        ));
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_buf)
        .map_err(internal("stored salt"))?;
    let mut out = vec![0u8; expected.len()];
    fill(memory, params.block_count());
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
        .map_err(|e| DomainError::Internal(format!("argon2: {e}")))?;
    let ok = bool::from(out.as_slice().ct_eq(expected.as_bytes()));
    out.zeroize();
    Ok(ok)
}

fn fill(memory: &mut Vec<Block>, blocks: usize) {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
}

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

/// Allocations from this size up are mapped on their own, so freeing one unmaps it.
const MAP_FROM_BYTES: i32 = 4 << 20;

/// Makes glibc map every large allocation on its own, once per process. By default it raises
/// its mapping threshold to the size of a mapped block once that block is freed: a first
/// hash's 19 MiB, once freed, sends the hashing threads' buffers into arenas, and a
/// buffer freed at the top of a thread's arena stays resident (`malloc_trim` shrinks only the
/// main arena's top). The bench saw the server keep one or both 19 MiB buffers after the idle
/// release while the gauge said 0. A fixed threshold turns that adjustment off.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn map_large_allocations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only changes the allocator's own tuning; called before any hashing
        // buffer exists, and glibc serialises it with allocation.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MAP_FROM_BYTES);
        }
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn map_large_allocations() {}

/// Asks glibc to return other freed memory to the system as well (the buffers themselves are
/// unmapped when freed, see [`map_large_allocations`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only walks and shrinks the allocator's own arenas; it takes no
    // pointers from us and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// How long a hashing thread keeps its working memory without a hash to do. Long enough that
/// a steady login load never gives it back (closed-loop clients leave gaps of milliseconds), short
/// enough that the memory of a burst does not outlive it by much.
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// Work for a hashing thread: runs with that thread's working memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// `n` threads that hash, each with its own reused Argon2 memory. The threads end, zeroizing
/// their memory, when the last [`Passwords`] clone is dropped.
#[derive(Clone)]
struct HashPool {
    jobs: crossbeam_channel::Sender<Job>,
    held: prometheus::IntGauge,
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
    fn new(
        threads: usize,
        idle: Duration,
        held: prometheus::IntGauge,
    ) -> Result<Self, DomainError> {
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
        Ok(Self { jobs: tx, held })
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

impl Passwords {
    /// Starts the hashing threads and makes the dummy hash (no hashing). `max_waiting`
    /// requests may wait for one of the `concurrency` slots, for `wait` at most; a thread gives
    /// its memory back after `idle` without a hash ([`IDLE_RELEASE`] in the server).
    pub async fn new(
        params: Params,
        concurrency: usize,
        max_waiting: usize,
        wait: Duration,
        idle: Duration,
        observe: HashMetrics,
    ) -> Result<Self, DomainError> {
        let pool = HashPool::new(concurrency, idle, observe.memory.clone())?;
        let dummy = dummy_hash(&params)?;
        Ok(Self {
            params,
            pool,
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            wait,
            dummy: dummy.into(),
            observe,
        })
    }

    async fn on_slot<T: Send + 'static>(
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
        self.pool
            .run(move |memory| {
                let r = f(memory);
                drop(permit);
                queue.dec();
                r
            })
            .await
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: SecretString) -> Result<String, DomainError> {
        let params = self.params.clone();
        self.on_slot(move |memory| hash_in(memory, &params, password.expose()))
            .await?
    }

    /// Verifies `password` against `phc`, or against the dummy hash when there is no account,
    /// which always answers `ok: false` after the same work.
    pub async fn verify(
        &self,
        password: SecretString,
        phc: Option<String>,
    ) -> Result<Verified, DomainError> {
        let params = self.params.clone();
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.to_string());
        self.on_slot(move |memory| {
            let parsed = PasswordHash::new(&phc)
                .map_err(|e| DomainError::Internal(format!("stored hash unreadable: {e}")))?;
            let ok = matches_in(memory, &parsed, password.expose())? && known;
            let current = Params::try_from(&parsed).map(|p| {
                p.m_cost() == params.m_cost()
                    && p.t_cost() == params.t_cost()
                    && p.p_cost() == params.p_cost()
            });
            let outdated = parsed.algorithm != argon2::ARGON2ID_IDENT || !current.unwrap_or(false);
            let rehash = if ok && outdated {
                Some(hash_in(memory, &params, password.expose())?)
            } else {
                None
            };
            Ok(Verified { ok, rehash })
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe() -> HashMetrics {
        HashMetrics {
            wait: prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("w", "w"))
                .unwrap(),
            queue: prometheus::IntGauge::new("q", "q").unwrap(),
            memory: prometheus::IntGauge::new("m", "m").unwrap(),
        }
    }

    /// Two hashing threads, room for 32 waiting, the server's idle release.
    async fn passwords(params: Params) -> Passwords {
        Passwords::new(
            params,
            2,
            32,
            Duration::from_secs(5),
            IDLE_RELEASE,
            observe(),
        )
        .await
        .unwrap()
    }

    #[test]
    fn policy_refuses_short_long_and_common_passwords() {
        let check = |p: &str| check_policy(p, &[]);
        assert_eq!(check("short"), Err(PolicyError::TooShort));
        assert_eq!(check(&"xy".repeat(65)), Err(PolicyError::TooLong));
        assert_eq!(check("password"), Err(PolicyError::Common));
        assert_eq!(check("iloveyou"), Err(PolicyError::Common));
        assert_eq!(check("qwertyuiop"), Err(PolicyError::Common));
        assert!(check("correct horse battery staple").is_ok());
        assert!(check("Tr0ub4dour&3-unique").is_ok());
        let long: String = "été à la plage, 7 vagues "
            .chars()
            .cycle()
            .take(128)
            .collect();
        assert!(check(&long).is_ok(), "characters, not bytes");
    }

    #[test]
    fn policy_refuses_repetitive_sequential_guessable_and_context_passwords() {
        let check =
            |p: &str| check_policy(p, &context_words("Acme Login", "ada.lovelace@example.com"));
        assert_eq!(check("aaaaaaaa"), Err(PolicyError::Repetitive));
        assert_eq!(check("11111111"), Err(PolicyError::Repetitive));
        assert_eq!(check("abcabcabcabc"), Err(PolicyError::Repetitive));
        assert_eq!(check("abcdefgh"), Err(PolicyError::Sequential));
        assert_eq!(check("87654321"), Err(PolicyError::Sequential));
        assert!(check("Passw0rd!").is_err());
        assert!(check("Summer2024!").is_err());
        assert_eq!(
            check("my ada.lovelace key 93"),
            Err(PolicyError::ContextWord)
        );
        assert_eq!(
            check("EDGE-IDP rocks hard 7"),
            Err(PolicyError::ContextWord)
        );
        assert_eq!(check("acme login vault 42!"), Err(PolicyError::ContextWord));
        assert!(check("correct horse battery staple").is_ok());
    }

    #[tokio::test]
    async fn beyond_the_waiting_bound_a_hash_is_shed_at_once_and_admitted_again_after() {
        let p = Passwords::new(
            Params::new(128, 1, 1, None).unwrap(),
            1,
            1,
            Duration::from_secs(30),
            IDLE_RELEASE,
            observe(),
        )
        .await
        .unwrap();
        // Every slot taken: the next request waits, the one after it is over the bound.
        let held = p.slots.clone().acquire_many_owned(1).await.unwrap();
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.hash(SecretString::new("waits its turn".into())).await })
        };
        while p.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let shed = p.hash(SecretString::new("one too many".into())).await;
        assert!(
            matches!(shed, Err(DomainError::Unavailable(_))),
            "expected 503-class shedding, got {shed:?}"
        );
        drop(held);
        assert!(waiter.await.unwrap().unwrap().starts_with("$argon2id$"));
        assert_eq!(p.waiting.load(Ordering::Acquire), 0);
        assert!(p.hash(SecretString::new("room again".into())).await.is_ok());
    }

    #[tokio::test]
    async fn verify_accepts_the_right_password_and_upgrades_old_costs() {
        let weak = Params::new(64, 1, 1, None).unwrap();
        let p_old = passwords(weak).await;
        let phc = p_old
            .hash(SecretString::new("right password".into()))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let v = p_old
            .verify(
                SecretString::new("right password".into()),
                Some(phc.clone()),
            )
            .await
            .unwrap();
        assert_eq!(
            v,
            Verified {
                ok: true,
                rehash: None
            }
        );
        assert!(
            !p_old
                .verify(
                    SecretString::new("wrong password".into()),
                    Some(phc.clone())
                )
                .await
                .unwrap()
                .ok
        );
        assert!(
            !p_old
                .verify(SecretString::new("right password".into()), None)
                .await
                .unwrap()
                .ok,
            "dummy never matches"
        );

        let p_new = passwords(Params::new(128, 2, 1, None).unwrap()).await;
        let v = p_new
            .verify(SecretString::new("right password".into()), Some(phc))
            .await
            .unwrap();
        assert!(v.ok);
        assert!(v.rehash.unwrap().contains("m=128,t=2,p=1"));
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let params = Params::new(256, 2, 1, None).unwrap();
        let p = passwords(params.clone()).await;
        // Ours, checked by the reference verifier: right and wrong password.
        let ours = p
            .hash(SecretString::new("pässword one".into()))
            .await
            .unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(hasher(&params)
            .verify_password("pässword one".as_bytes(), &parsed)
            .is_ok());
        assert!(hasher(&params)
            .verify_password(b"password two", &parsed)
            .is_err());
        // The reference hasher's, checked by ours (hashes stored before this pool existed),
        // with other costs and a longer output than ours.
        let other = Params::new(512, 3, 1, Some(48)).unwrap();
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let theirs = hasher(&other)
            .hash_password(b"legacy password", &salt)
            .unwrap()
            .to_string();
        let v = p
            .verify(
                SecretString::new("legacy password".into()),
                Some(theirs.clone()),
            )
            .await
            .unwrap();
        assert!(v.ok && v.rehash.is_some(), "{v:?}");
        assert!(
            !p.verify(SecretString::new("legacy passwort".into()), Some(theirs))
                .await
                .unwrap()
                .ok
        );
    }

    #[tokio::test]
    async fn hashing_memory_is_held_while_busy_and_given_back_when_idle() {
        let idle = Duration::from_millis(200);
        let metrics = observe();
        let held = metrics.memory.clone();
        let p = Passwords::new(
            Params::new(1024, 1, 1, None).unwrap(),
            2,
            8,
            Duration::from_secs(5),
            idle,
            metrics,
        )
        .await
        .unwrap();
        assert_eq!(held.get(), 0, "nothing held before the first hash");
        let phc = p
            .hash(SecretString::new("burst of logins".into()))
            .await
            .unwrap();
        let one = 1024 * 1024;
        assert_eq!(held.get(), one, "one thread holds the cost's memory");
        // Back to back, within the idle time: the memory is reused, not allocated again.
        for _ in 0..4 {
            p.verify(
                SecretString::new("burst of logins".into()),
                Some(phc.clone()),
            )
            .await
            .unwrap();
            assert!(held.get() <= 2 * one, "at most one buffer per thread");
        }
        // Then no hash for longer than `idle`: every thread gives its buffer back.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while held.get() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "still holding {} bytes long after the idle time",
                held.get()
            );
            tokio::time::sleep(idle / 4).await;
        }
        // And the next hash works, allocating again.
        assert!(
            p.verify(SecretString::new("burst of logins".into()), Some(phc))
                .await
                .unwrap()
                .ok
        );
        assert_eq!(held.get(), one);
    }
}
