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
//! - account enumeration by timing: [`PasswordHasher::verify_unknown`] verifies a name with no
//!   account against a decoy of a cost the stored hashes have, in their proportions
//!   ([`decoys`]), so an unknown name costs what some account's wrong password costs.
//!
//! It also verifies `$2a$`/`$2b$`/`$2y$` bcrypt hashes (passlib's format), so a FastAPI user
//! table can be imported; those always report `needs_rehash`. Imported hashes keep their own
//! cost until their user's next login; the decoys mirror those costs meanwhile.
//!
//! A stored hash chooses its own cost, so an imported `$2b$31$` or an argon2 hash asking for
//! gigabytes and a thousand passes would pin a hashing thread for hours per login. Every hash is
//! held to a [`CostCeiling`] before it is computed: the importer refuses rows above it, and a
//! verification of one that got into the table anyway does the dummy hash's work instead and
//! fails, exactly like an unknown user.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::PasswordHash;
use argon2::Params;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::settings::HashParams;

mod core;
pub mod decoys;
mod pool;

use self::core::{Config, Scratch};
use self::pool::HashPool;

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

/// The most a stored hash may cost to verify. Above it a hash is refused at import and never
/// computed at login. The ceiling covers the common framework defaults (passlib and Django
/// bcrypt at cost 12, argon2-cffi at m=65536,t=3, Django argon2 at m=102400,t=2) and rises
/// with the configured parameters, so the server's own hashes are always within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostCeiling {
    /// Highest bcrypt cost (2^cost rounds; 13 is about half a second on one core).
    pub bcrypt_cost: u32,
    /// Highest argon2 memory, in KiB.
    pub argon2_memory_kib: u32,
    /// Highest argon2 memory times passes, in KiB: what a verification costs in time.
    pub argon2_work_kib: u64,
    /// Highest argon2 lanes.
    pub argon2_lanes: u32,
}

impl CostCeiling {
    /// The fixed ceiling, raised where the configured parameters are above it.
    pub fn for_params(params: HashParams) -> Self {
        Self {
            bcrypt_cost: 13,
            argon2_memory_kib: params.memory_kib.max(128 * 1024),
            argon2_work_kib: (u64::from(params.memory_kib) * u64::from(params.iterations))
                .max(256 * 1024),
            argon2_lanes: params.parallelism.max(16),
        }
    }

    /// `Ok` when verifying `stored` costs no more than the ceiling; otherwise which parameter
    /// is above which limit. Never quotes the hash itself.
    pub fn check(&self, stored: &str) -> Result<(), String> {
        if is_bcrypt(stored) {
            let cost = stored
                .parse::<bcrypt::HashParts>()
                .map_err(|_| "not a readable bcrypt hash".to_owned())?
                .get_cost();
            if cost > self.bcrypt_cost {
                return Err(format!(
                    "bcrypt cost {cost} is above the ceiling of {}",
                    self.bcrypt_cost
                ));
            }
            return Ok(());
        }
        let parsed = PasswordHash::new(stored).map_err(|_| "not a PHC string".to_owned())?;
        let params = Params::try_from(&parsed)
            .map_err(|_| "its argon2 parameters are not readable".to_owned())?;
        let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
        if m > self.argon2_memory_kib {
            return Err(format!(
                "argon2 memory m={m} KiB is above the ceiling of {} KiB",
                self.argon2_memory_kib
            ));
        }
        let work = u64::from(m) * u64::from(t);
        if work > self.argon2_work_kib {
            return Err(format!(
                "argon2 m*t={work} KiB is above the ceiling of {} KiB (m={m}, t={t})",
                self.argon2_work_kib
            ));
        }
        if p > self.argon2_lanes {
            return Err(format!(
                "argon2 parallelism p={p} is above the ceiling of {}",
                self.argon2_lanes
            ));
        }
        Ok(())
    }
}

fn is_bcrypt(stored: &str) -> bool {
    stored.starts_with("$2a$") || stored.starts_with("$2b$") || stored.starts_with("$2y$")
}

/// Counters, for metrics and for tests that must prove work was done.
#[derive(Debug, Default)]
struct Counters {
    hashes: AtomicU64,
    verifications: AtomicU64,
    dummy_verifications: AtomicU64,
    rejected_busy: AtomicU64,
    over_ceiling: AtomicU64,
    unreadable: AtomicU64,
}

/// A snapshot of [`PasswordHasher`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HasherStats {
    pub hashes: u64,
    /// Every verification, dummy ones included.
    pub verifications: u64,
    pub dummy_verifications: u64,
    pub rejected_busy: u64,
    /// Verifications refused because the stored hash was above the [`CostCeiling`].
    pub over_ceiling: u64,
    /// Stored values that could not be verified at all (the dummy's work was done instead).
    pub unreadable: u64,
}

/// What [`PasswordHasher::load`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HasherLoad {
    /// On a hashing thread now (at most one per worker).
    pub running: usize,
    /// Waiting for a hashing thread.
    pub queued: usize,
}

/// Hashes and verifies passwords on a bounded pool. Cheap to clone.
#[derive(Clone)]
pub struct PasswordHasher {
    params: HashParams,
    ceiling: CostCeiling,
    /// New hashes: argon2id at the configured parameters.
    config: Config,
    /// Admission: workers plus queue slots. Failing to get one is `Busy`. A slot is held until
    /// its hash is done, even if the request that asked for it has gone.
    admitted: Arc<Semaphore>,
    /// Workers plus queue slots: the permits `admitted` started with.
    capacity: usize,
    workers: usize,
    pool: Arc<HashPool>,
    dummy_hash: Arc<str>,
    decoys: Arc<decoys::Decoys>,
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
        let config = Config::argon2id(params)?;
        let mut dummy_secret = [0u8; 32];
        getrandom::fill(&mut dummy_secret)
            .map_err(|_| HashError::Internal("no randomness".into()))?;
        let dummy_hash = Scratch::new(config).hash(config, &dummy_secret)?;
        let workers = workers.max(1);
        let dummy_hash: Arc<str> = dummy_hash.into();
        Ok(Self {
            params,
            ceiling: CostCeiling::for_params(params),
            config,
            admitted: Arc::new(Semaphore::new(workers + queue)),
            capacity: workers + queue,
            workers,
            pool: Arc::new(HashPool::start(workers, workers + queue, config)?),
            decoys: Arc::new(decoys::Decoys::new(Arc::clone(&dummy_hash))?),
            dummy_hash,
            counters: Arc::default(),
        })
    }

    /// Picks decoys with a key derived from `secret`, which every node of a deployment must
    /// share (the keys file's audit key, say): otherwise one unknown name would take one time
    /// on one node and another elsewhere, which no account does. Without it the key is random
    /// per process.
    #[must_use]
    pub fn with_decoy_key(self, secret: &[u8]) -> Self {
        self.decoys.set_key(secret);
        self
    }

    /// Mirrors the costs of `sample` (stored hashes drawn at random from the user table) in
    /// the decoys [`PasswordHasher::verify_unknown`] uses; computes one hash for each cost not
    /// seen before, on a blocking thread. Run at start and again now and then, as logins
    /// upgrade imported hashes and imports add new ones.
    pub async fn mirror_stored_costs(&self, sample: Vec<String>) -> Result<(), HashError> {
        let (decoys, ceiling) = (Arc::clone(&self.decoys), self.ceiling);
        tokio::task::spawn_blocking(move || decoys.mirror(&sample, ceiling))
            .await
            .map_err(|_| HashError::Internal("mirroring stored costs failed".into()))?
    }

    /// Whether `stored` has a cost no sample of the table held: a sign
    /// the mix changed (an import) and [`PasswordHasher::mirror_stored_costs`] should run now.
    pub fn is_new_cost(&self, stored: &str) -> bool {
        self.decoys.is_new_cost(stored)
    }

    /// Distinct costs among the decoys (1 until [`PasswordHasher::mirror_stored_costs`]).
    pub fn decoy_costs(&self) -> usize {
        self.decoys.classes()
    }

    /// Sized for this machine: one worker per core, eight queued per worker.
    pub fn for_this_machine(params: HashParams) -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Self::new(params, cores, cores * 8)
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    /// The most a stored hash may cost; see [`CostCeiling`].
    pub fn ceiling(&self) -> CostCeiling {
        self.ceiling
    }

    /// True when a hash asked for now would be refused as [`HashError::Busy`]. A hint (another
    /// request may take or free a slot a moment later) that lets a caller shed a request before
    /// doing other work for it.
    pub fn is_saturated(&self) -> bool {
        self.admitted.available_permits() == 0
    }

    /// Hashes being computed and waiting now.
    pub fn load(&self) -> HasherLoad {
        let held = self
            .capacity
            .saturating_sub(self.admitted.available_permits());
        HasherLoad {
            running: held.min(self.workers),
            queued: held.saturating_sub(self.workers),
        }
    }

    pub fn stats(&self) -> HasherStats {
        let c = &self.counters;
        HasherStats {
            hashes: c.hashes.load(Ordering::Relaxed),
            verifications: c.verifications.load(Ordering::Relaxed),
            dummy_verifications: c.dummy_verifications.load(Ordering::Relaxed),
            rejected_busy: c.rejected_busy.load(Ordering::Relaxed),
            over_ceiling: c.over_ceiling.load(Ordering::Relaxed),
            unreadable: c.unreadable.load(Ordering::Relaxed),
        }
    }

    /// A new argon2id hash (PHC string) of `password`.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        let config = self.config;
        let hash = self
            .run(move |scratch| scratch.hash(config, password.expose_secret().as_bytes()))
            .await??;
        self.counters.hashes.fetch_add(1, Ordering::Relaxed);
        Ok(hash)
    }

    /// Verifies `password` against `stored`, or against the dummy hash when there is no stored
    /// hash, which always yields [`Verified::Invalid`] after the same work. A stored hash above
    /// the [`CostCeiling`] is treated like no hash at all: the dummy's work, then `Invalid`, so
    /// it can neither pin a thread nor be told apart by its timing. For a login name that
    /// matches no account, [`PasswordHasher::verify_unknown`] hides more.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<&str>,
    ) -> Result<Verified, HashError> {
        let over_ceiling = match stored.map(|hash| self.ceiling.check(hash)) {
            Some(Err(why)) => {
                tracing::error!(
                    reason = %why,
                    "stored password hash is above the cost ceiling; verifying the dummy instead"
                );
                self.counters.over_ceiling.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        };
        match stored {
            Some(hash) if !over_ceiling => self.check(password, Arc::from(hash), false).await,
            _ => {
                self.check(password, Arc::clone(&self.dummy_hash), true)
                    .await
            }
        }
    }

    /// Verifies `password` for `login_name`, which matches no account, against the name's
    /// decoy ([`decoys`]): the time a stored hash of this deployment takes, so the answer's
    /// timing does not tell that the name has no account. Always [`Verified::Invalid`].
    pub async fn verify_unknown(
        &self,
        password: SecretString,
        login_name: &str,
    ) -> Result<Verified, HashError> {
        let decoy = self.decoys.for_name(login_name);
        self.check(password, decoy, true).await
    }

    /// One verification on the pool; `dummy` when `stored` is a stand-in whose answer does
    /// not count.
    async fn check(
        &self,
        password: SecretString,
        stored: Arc<str>,
        dummy: bool,
    ) -> Result<Verified, HashError> {
        let params = self.params;
        let dummy_hash = Arc::clone(&self.dummy_hash);
        let counters = Arc::clone(&self.counters);
        let outcome = self
            .run(move |scratch| {
                let (verified, readable) = verify_with(
                    scratch,
                    params,
                    password.expose_secret().as_bytes(),
                    &stored,
                    &dummy_hash,
                );
                if !readable {
                    counters.unreadable.fetch_add(1, Ordering::Relaxed);
                    counters.dummy_verifications.fetch_add(1, Ordering::Relaxed);
                }
                verified
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
        work: impl FnOnce(&mut Scratch) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let Ok(admitted) = Arc::clone(&self.admitted).try_acquire_owned() else {
            self.counters.rejected_busy.fetch_add(1, Ordering::Relaxed);
            return Err(HashError::Busy);
        };
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.pool.submit(Box::new(move |scratch: &mut Scratch| {
            let result = work(scratch);
            // The slot is free before the answer is: whoever acts on the answer (a login's
            // caller reading the load, a test scraping metrics) finds the hash finished.
            drop(admitted);
            let _ = done.send(result);
        }))?;
        outcome
            .await
            .map_err(|_| HashError::Internal("hashing task failed".into()))
    }
}

/// True for the stored-hash formats [`PasswordHasher::verify`] understands: an argon2 PHC
/// string or a `$2a$`/`$2b$`/`$2y$` bcrypt hash. Used to vet imported hashes.
pub fn is_supported_hash(stored: &str) -> bool {
    if is_bcrypt(stored) {
        return stored.parse::<bcrypt::HashParts>().is_ok();
    }
    PasswordHash::new(stored).is_ok_and(|h| {
        h.algorithm.as_str().starts_with("argon2")
            && h.salt.is_some()
            && h.hash.is_some_and(|out| out.len() >= MIN_OUTPUT_BYTES)
    })
}

/// The shortest argon2 output accepted: shorter ones (or none) would be compared, or found
/// wanting, in less time than a real verification takes.
const MIN_OUTPUT_BYTES: usize = 16;

/// Verifies `password` against `stored`. A stored value that cannot be verified at all (not a
/// hash this module reads, an output too short to compare) does the `dummy`'s work before it
/// fails, like an unknown user: a broken row must not answer faster than a wrong password.
fn verify_with(
    scratch: &mut Scratch,
    current: HashParams,
    password: &[u8],
    stored: &str,
    dummy: &str,
) -> (Verified, bool) {
    if let Some(verified) = try_verify(scratch, current, password, stored) {
        return (verified, true);
    }
    tracing::error!("a stored password hash cannot be verified; it fails like an unknown user's");
    if let Ok(dummy) = PasswordHash::new(dummy) {
        let _ = scratch.verify(&dummy, password);
    }
    (Verified::Invalid, false)
}

/// `None` when `stored` cannot be verified at all.
fn try_verify(
    scratch: &mut Scratch,
    current: HashParams,
    password: &[u8],
    stored: &str,
) -> Option<Verified> {
    if is_bcrypt(stored) {
        return match bcrypt::verify(password, stored) {
            Ok(true) => Some(Verified::Valid { needs_rehash: true }),
            Ok(false) => Some(Verified::Invalid),
            Err(_) => None,
        };
    }
    let parsed = PasswordHash::new(stored).ok()?;
    if !matches!(
        parsed.algorithm.as_str(),
        "argon2id" | "argon2i" | "argon2d"
    ) || parsed.salt.is_none()
        || parsed.hash.is_none_or(|out| out.len() < MIN_OUTPUT_BYTES)
    {
        return None;
    }
    if !scratch.verify(&parsed, password)? {
        return Some(Verified::Invalid);
    }
    let weaker = Params::try_from(&parsed).map_or(true, |p| {
        p.m_cost() < current.memory_kib || p.t_cost() < current.iterations
    });
    Some(Verified::Valid {
        needs_rehash: weaker || parsed.algorithm.as_str() != "argon2id",
    })
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
    async fn an_unknown_name_costs_a_verification_against_its_decoy() {
        let hasher = PasswordHasher::new(FAST, 2, 4)
            .unwrap()
            .with_decoy_key(b"shared");
        hasher
            .mirror_stored_costs(vec![bcrypt::hash("imported", 4).unwrap(); 3])
            .await
            .unwrap();
        assert_eq!(hasher.decoy_costs(), 1);
        let before = hasher.stats();
        assert_eq!(
            hasher
                .verify_unknown(secret("imported"), "nobody@example.com")
                .await
                .unwrap(),
            Verified::Invalid,
            "a decoy never verifies, whatever the password"
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
            // No output, or one too short to take a real comparison's time.
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$YWJjZA",
        ] {
            assert!(!is_supported_hash(bad), "{bad}");
        }
    }

    #[test]
    fn the_ceiling_refuses_hashes_that_would_pin_a_thread_and_names_the_limit() {
        let ceiling = CostCeiling::for_params(HashParams::OWASP_MINIMUM);
        let salt = "c2FsdHNhbHRzYWx0";
        let out = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo";
        let argon =
            |m: u32, t: u32, p: u32| format!("$argon2id$v=19$m={m},t={t},p={p}${salt}${out}");
        // Framework defaults and rampart's own parameters are within it.
        for fine in [
            argon(19_456, 2, 1),
            argon(65_536, 3, 4),
            argon(102_400, 2, 8),
            bcrypt::hash("x", 4).unwrap(),
            "$2b$12$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234".into(),
        ] {
            assert_eq!(ceiling.check(&fine), Ok(()), "{fine}");
        }
        for (hostile, names) in [
            // The review's hashes: bcrypt at 2^31 rounds, argon2 at 2 GiB and 1000 passes.
            (
                "$2b$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234".to_owned(),
                "bcrypt cost 31 is above the ceiling of 13",
            ),
            (
                argon(2 * 1024 * 1024, 1000, 1),
                "memory m=2097152 KiB is above the ceiling of 131072 KiB",
            ),
            (
                argon(65_536, 100, 1),
                "m*t=6553600 KiB is above the ceiling of 262144 KiB",
            ),
            (argon(131_072, 16, 64), "m*t"),
            (
                argon(8192, 2, 64),
                "parallelism p=64 is above the ceiling of 16",
            ),
        ] {
            let why = ceiling.check(&hostile).unwrap_err();
            assert!(why.contains(names), "{hostile}: {why}");
            assert!(!why.contains(out), "never quotes the hash");
        }
        // A server configured above the fixed ceiling can still verify its own hashes.
        let strong = CostCeiling::for_params(HashParams {
            memory_kib: 262_144,
            iterations: 4,
            parallelism: 1,
        });
        assert_eq!(strong.check(&argon(262_144, 4, 1)), Ok(()));
    }

    #[tokio::test]
    async fn a_hash_above_the_ceiling_is_never_computed_and_fails_like_an_unknown_user() {
        let hasher = PasswordHasher::new(FAST, 1, 2).unwrap();
        // Would take hours: 2^31 bcrypt rounds. The test finishes only if it is not computed.
        let hostile = "$2b$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234";
        let before = hasher.stats();
        let started = std::time::Instant::now();
        assert_eq!(
            hasher
                .verify(secret("anything"), Some(hostile))
                .await
                .unwrap(),
            Verified::Invalid
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let after = hasher.stats();
        assert_eq!(after.over_ceiling, before.over_ceiling + 1);
        assert_eq!(
            after.dummy_verifications,
            before.dummy_verifications + 1,
            "the dummy hash's work was done instead, as for an unknown user"
        );
    }

    #[tokio::test]
    async fn a_stored_value_that_cannot_be_verified_costs_the_dummys_work() {
        let hasher = PasswordHasher::new(FAST, 1, 2).unwrap();
        for broken in [
            // Readable enough to pass the ceiling, but argon2 refuses the salt before hashing.
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$YQ",
            // The review's: a hash with no output part failed in 2 ms.
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0",
            "$scrypt$ln=16,r=8,p=1$c2FsdA$aGFzaA",
            "$2b$04$tooshort",
            "not a hash at all",
        ] {
            let before = hasher.stats().dummy_verifications;
            assert_eq!(
                hasher
                    .verify(secret("anything"), Some(broken))
                    .await
                    .unwrap(),
                Verified::Invalid
            );
            assert_eq!(
                hasher.stats().dummy_verifications,
                before + 1,
                "{broken}: the dummy's work, as for an unknown user"
            );
        }
        assert!(hasher.stats().unreadable >= 1);
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
