//! Password hashing and verification: argon2id, off the async runtime, bounded.
//!
//! Defends against three things:
//! - offline cracking of a stolen table: argon2id at or above the OWASP parameters, salted per
//!   password, with old hashes upgraded at the next successful login;
//! - login floods starving everything else: hashing runs on its own threads, one per core, at
//!   a lower CPU priority than the threads serving requests (on Linux), behind a bounded queue;
//!   when the queue is full the caller gets [`HashError::Busy`] (answer 503 with `Retry-After`)
//!   instead of an unbounded backlog. A flood of logins then uses the CPU that requests leave
//!   idle rather than taking it from them;
//! - account enumeration by timing: [`PasswordHasher::verify`] with no stored hash verifies
//!   against a dummy hash of the same cost, so an unknown user costs what a wrong password costs.
//!
//! It also verifies `$2a$`/`$2b$`/`$2y$` bcrypt hashes (passlib's format), so a FastAPI user
//! table can be imported; those always report `needs_rehash`. Known limit: until an imported
//! user logs in once, a bcrypt verification takes longer than an argon2id one, which can tell
//! an attacker that an imported account exists.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::settings::HashParams;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the queue is full; retry shortly.
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The password matches; `needs_rehash` when the stored hash is weaker than the current
    /// parameters or not argon2id.
    Valid {
        needs_rehash: bool,
    },
    Invalid,
}

/// Counters, for metrics and for tests that must prove work was done.
#[derive(Debug, Default)]
struct Counters {
    hashes: AtomicU64,
    verifications: AtomicU64,
    dummy_verifications: AtomicU64,
    rejected_busy: AtomicU64,
}

/// A snapshot of [`PasswordHasher`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HasherStats {
    pub hashes: u64,
    /// Every verification, dummy ones included.
    pub verifications: u64,
    pub dummy_verifications: u64,
    pub rejected_busy: u64,
}

/// Hashes and verifies passwords on a bounded pool. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    params: HashParams,
    argon2: Argon2<'static>,
    /// Admission: workers plus queue slots. Failing to get one is `Busy`. A slot is held until
    /// its hash is done, even if the request that asked for it has gone.
    admitted: Arc<Semaphore>,
    pool: Arc<HashPool>,
    dummy_hash: Arc<str>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params.to_string())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// `workers` hashes run at once (use the core count); `queue` more may wait.
    /// Computes the dummy hash once, so this takes one hash's time.
    pub fn new(params: HashParams, workers: usize, queue: usize) -> Result<Self, HashError> {
        let argon2 = argon2_for(params)?;
        let mut dummy_secret = [0u8; 32];
        getrandom::fill(&mut dummy_secret)
            .map_err(|_| HashError::Internal("no randomness".into()))?;
        let dummy_hash = hash_with(&argon2, &dummy_secret)?;
        let workers = workers.max(1);
        Ok(Self {
            params,
            argon2,
            admitted: Arc::new(Semaphore::new(workers + queue)),
            pool: Arc::new(HashPool::start(workers, workers + queue)?),
            dummy_hash: dummy_hash.into(),
            counters: Arc::default(),
        })
    }

    /// Sized for this machine: one worker per core, eight queued per worker.
    pub fn for_this_machine(params: HashParams) -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Self::new(params, cores, cores * 8)
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    /// True when a hash asked for now would be refused as [`HashError::Busy`]. A hint (another
    /// request may take or free a slot a moment later) that lets a caller shed a request before
    /// doing other work for it.
    pub fn is_saturated(&self) -> bool {
        self.admitted.available_permits() == 0
    }

    pub fn stats(&self) -> HasherStats {
        let c = &self.counters;
        HasherStats {
            hashes: c.hashes.load(Ordering::Relaxed),
            verifications: c.verifications.load(Ordering::Relaxed),
            dummy_verifications: c.dummy_verifications.load(Ordering::Relaxed),
            rejected_busy: c.rejected_busy.load(Ordering::Relaxed),
        }
    }

    /// A new argon2id hash (PHC string) of `password`.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        let argon2 = self.argon2.clone();
        let hash = self
            .run(move || hash_with(&argon2, password.expose_secret().as_bytes()))
            .await??;
        self.counters.hashes.fetch_add(1, Ordering::Relaxed);
        Ok(hash)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no stored
    /// hash (unknown user), which always yields [`Verified::Invalid`] after the same work.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        let dummy = stored.is_none();
        let stored: Arc<str> = stored.map_or_else(|| Arc::clone(&self.dummy_hash), Arc::from);
        let params = self.params;
        let argon2 = self.argon2.clone();
        let outcome = self
            .run(move || {
                verify_with(
                    &argon2,
                    params,
                    password.expose_secret().as_bytes(),
                    &stored,
                )
            })
            .await?;
        self.counters.verifications.fetch_add(1, Ordering::Relaxed);
        if dummy {
            self.counters
                .dummy_verifications
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Verified::Invalid);
        }
        Ok(outcome)
    }

    /// Runs CPU-heavy work on the hashing threads, within the queue's bound.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let Ok(admitted) = Arc::clone(&self.admitted).try_acquire_owned() else {
            self.counters.rejected_busy.fetch_add(1, Ordering::Relaxed);
            return Err(HashError::Busy);
        };
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.pool.submit(Box::new(move || {
            let _ = done.send(work());
            drop(admitted);
        }))?;
        outcome
            .await
            .map_err(|_| HashError::Internal("hashing task failed".into()))
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that only hash. They exit when the last [`PasswordHasher`] clone is dropped (the
/// queue's sender goes with it).
#[derive(Debug)]
struct HashPool {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl HashPool {
    fn start(workers: usize, queue: usize) -> Result<Self, HashError> {
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for n in 0..workers {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("rampart-hash-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = receiver
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        let Ok(job) = job else { return };
                        // A panicking hash fails its one request (its answer channel drops),
                        // not the worker.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .map_err(|err| HashError::Internal(format!("starting a hashing thread: {err}")))?;
        }
        Ok(Self { jobs })
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        // Admission already bounds the jobs to the channel's capacity, so this never blocks.
        self.jobs
            .send(job)
            .map_err(|_| HashError::Internal("hashing pool stopped".into()))
    }
}

/// Nice 10 for the calling thread: it gets about a tenth of a core that request threads want,
/// and all of an idle one. Linux keeps niceness per thread; elsewhere this does nothing.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(err) = rustix::process::setpriority_process(None, 10) {
        tracing::debug!(error = %err, "hashing threads keep normal priority");
    }
}

/// True for the stored-hash formats [`PasswordHasher::verify`] understands: an argon2 PHC
/// string or a `$2a$`/`$2b$`/`$2y$` bcrypt hash. Used to vet imported hashes.
pub fn is_supported_hash(stored: &str) -> bool {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return stored.parse::<bcrypt::HashParts>().is_ok();
    }
    PasswordHash::new(stored).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

fn argon2_for(params: HashParams) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| HashError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_with(argon2: &Argon2<'static>, password: &[u8]) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Internal(format!("argon2: {e}")))
}

fn verify_with(
    argon2: &Argon2<'static>,
    current: HashParams,
    password: &[u8],
    stored: &str,
) -> Verified {
    if stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$") {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Verified::Valid { needs_rehash: true },
            _ => Verified::Invalid,
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        tracing::error!("stored password hash is not in a supported format");
        return Verified::Invalid;
    };
    if parsed.algorithm.as_str() != "argon2id"
        && parsed.algorithm.as_str() != "argon2i"
        && parsed.algorithm.as_str() != "argon2d"
    {
        tracing::error!("stored password hash uses an unsupported algorithm");
        return Verified::Invalid;
    }
    if argon2.verify_password(password, &parsed).is_err() {
        return Verified::Invalid;
    }
    let weaker = Params::try_from(&parsed).map_or(true, |p| {
        p.m_cost() < current.memory_kib || p.t_cost() < current.iterations
    });
    Verified::Valid {
        needs_rehash: weaker || parsed.algorithm.as_str() != "argon2id",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: HashParams = HashParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test]
    async fn hash_verify_and_rehash_when_parameters_rise() {
        let weak = PasswordHasher::new(FAST, 2, 4).unwrap();
        let stored = weak
            .hash(secret("correct horse battery staple"))
            .await
            .unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert_eq!(
            weak.verify(secret("correct horse battery staple"), Some(&stored))
                .await
                .unwrap(),
            Verified::Valid {
                needs_rehash: false
            }
        );
        assert_eq!(
            weak.verify(secret("wrong"), Some(&stored)).await.unwrap(),
            Verified::Invalid
        );

        let stronger = PasswordHasher::new(
            HashParams {
                memory_kib: 2048,
                ..FAST
            },
            2,
            4,
        )
        .unwrap();
        assert_eq!(
            stronger
                .verify(secret("correct horse battery staple"), Some(&stored))
                .await
                .unwrap(),
            Verified::Valid { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn unknown_user_costs_a_verification() {
        let hasher = PasswordHasher::new(FAST, 2, 4).unwrap();
        let before = hasher.stats();
        assert_eq!(
            hasher.verify(secret("anything"), None).await.unwrap(),
            Verified::Invalid
        );
        let after = hasher.stats();
        assert_eq!(after.verifications, before.verifications + 1);
        assert_eq!(after.dummy_verifications, before.dummy_verifications + 1);
    }

    #[tokio::test]
    async fn bcrypt_hashes_verify_and_ask_for_an_upgrade() {
        let hasher = PasswordHasher::new(FAST, 2, 4).unwrap();
        let legacy = bcrypt::hash("imported-password-1", 4).unwrap();
        assert!(legacy.starts_with("$2b$"));
        assert_eq!(
            hasher
                .verify(secret("imported-password-1"), Some(&legacy))
                .await
                .unwrap(),
            Verified::Valid { needs_rehash: true }
        );
        assert_eq!(
            hasher.verify(secret("nope"), Some(&legacy)).await.unwrap(),
            Verified::Invalid
        );
        assert_eq!(
            hasher.verify(secret("x"), Some("garbage")).await.unwrap(),
            Verified::Invalid
        );
    }

    #[test]
    fn supported_hash_formats() {
        assert!(is_supported_hash(&bcrypt::hash("x", 4).unwrap()));
        assert!(is_supported_hash(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo"
        ));
        for bad in [
            "",
            "plaintext-password",
            "$1$md5$crypt",
            "$2b$12$short",
            "$pbkdf2-sha256$29000$x$y",
        ] {
            assert!(!is_supported_hash(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_grown() {
        let hasher = PasswordHasher::new(
            HashParams {
                memory_kib: 8192,
                iterations: 3,
                parallelism: 1,
            },
            1,
            1,
        )
        .unwrap();
        let attempts: Vec<_> = (0..8)
            .map(|_| {
                let h = hasher.clone();
                tokio::spawn(async move { h.verify(secret("x"), None).await })
            })
            .collect();
        let mut busy = 0;
        for attempt in attempts {
            if matches!(attempt.await.unwrap(), Err(HashError::Busy)) {
                busy += 1;
            }
        }
        assert!(
            busy >= 1,
            "8 concurrent verifications with 1 worker + 1 queue slot must shed load"
        );
        assert_eq!(hasher.stats().rejected_busy, busy);
    }
}
