//! The in-process limiter store, with a hard memory budget.
//!
//! Defends against the limiter itself becoming the target: a spray of requests from a million
//! addresses (or a million made-up login names) would otherwise grow its maps until the process
//! dies. Each table is split into shards with a fixed entry cap. An entry whose state has run out
//! (a full quota, a forgotten streak) is worth nothing and is swept first; if a shard is still
//! full, the entries that remember the fewest requests go next (a quota with one unit spent, a
//! streak of one failure), so the keys that are being limited hardest (an attacker's own, a
//! victim's backoff) are the last to be forgotten, whichever policy made them. Only a 64-bit keyed hash of each key is
//! kept, so an entry's size does not depend on what the client sent.
//!
//! No limiter crate offers a fixed entry budget with this eviction order together with backoff
//! streaks, so the tables are written here; the arithmetic lives in [`super::gcra`] and
//! [`super::backoff`].

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::backoff::{BackoffPolicy, Streak, StreakState};
use super::gcra::{self, Decision, Quota};
use super::store::{LimitError, LimitFuture, LimitKey, LimitStore};

const SHARDS: usize = 64;

/// Entries the in-process store keeps by default: about 8 MiB of rate state and 2 MiB of
/// backoff streaks, whatever arrives.
pub const DEFAULT_RATE_ENTRIES: usize = 256 * 1024;
pub const DEFAULT_STREAK_ENTRIES: usize = 64 * 1024;

/// Size of the in-process store's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// Entries held (some may have run out and not been swept yet).
    pub entries: usize,
    /// Bytes of the tables' slots: entries, empty slots and control bytes.
    pub table_bytes: usize,
}

/// Limiter state in this process. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MemoryStore {
    epoch: Instant,
    hasher: RandomState,
    rates: Table<RateState>,
    streaks: Table<StreakState>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_RATE_ENTRIES, DEFAULT_STREAK_ENTRIES)
    }
}

impl MemoryStore {
    /// A store that holds at most `rate_entries` rate states and `streak_entries` streaks.
    pub fn with_capacity(rate_entries: usize, streak_entries: usize) -> Self {
        Self {
            epoch: Instant::now(),
            hasher: RandomState::new(),
            rates: Table::new(rate_entries),
            streaks: Table::new(streak_entries),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn hash(&self, key: &LimitKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// [`LimitStore::check`] without the future, for callers that know the store is in process.
    pub fn check_now(&self, key: &LimitKey, quota: Quota, cost: u32) -> Decision {
        self.check_at(key, quota, cost, self.now())
    }

    /// A check at `now` nanoseconds after the store was made: for simulations and tests.
    pub fn check_at(&self, key: &LimitKey, quota: Quota, cost: u32, now: u64) -> Decision {
        let hash = self.hash(key);
        let interval = u64::try_from(quota.interval().as_nanos()).unwrap_or(u64::MAX);
        self.rates.update(hash, now, |state| {
            let (decision, tat) = gcra::step(quota, state.map(|s| s.tat), now, cost);
            (decision, tat.map(|tat| RateState { tat, interval }))
        })
    }

    /// A login attempt begun at `now` (see [`MemoryStore::check_at`]).
    pub fn begin_attempt_at(
        &self,
        key: &LimitKey,
        policy: BackoffPolicy,
        now: u64,
    ) -> Result<Streak, Duration> {
        let hash = self.hash(key);
        self.streaks.update(hash, now, |previous| {
            match StreakState::attempt(previous, policy, now) {
                Ok((state, streak)) => (Ok(streak), Some(state)),
                Err(waiting) => (Err(waiting), None),
            }
        })
    }

    pub fn backoff_at(&self, key: &LimitKey, now: u64) -> Option<Duration> {
        self.streaks
            .get(self.hash(key))
            .and_then(|state| state.remaining(now))
    }

    pub fn clear_backoff_now(&self, key: &LimitKey) {
        self.streaks.remove(self.hash(key));
    }

    /// What the rate and streak tables hold now.
    pub fn memory_use(&self) -> MemoryUse {
        let (a, b) = (self.rates.memory_use(), self.streaks.memory_use());
        MemoryUse {
            entries: a.entries + b.entries,
            table_bytes: a.table_bytes + b.table_bytes,
        }
    }

    /// The most the tables can take up, whatever arrives: a budget, not a measurement.
    pub fn memory_budget(&self) -> usize {
        self.rates.budget() + self.streaks.budget()
    }
}

impl LimitStore for MemoryStore {
    fn check<'a>(
        &'a self,
        key: &'a LimitKey,
        quota: Quota,
        cost: u32,
    ) -> LimitFuture<'a, Decision> {
        Box::pin(std::future::ready(Ok(self.check_now(key, quota, cost))))
    }

    fn check_at_once(
        &self,
        key: &LimitKey,
        quota: Quota,
        cost: u32,
    ) -> Option<Result<Decision, LimitError>> {
        Some(Ok(self.check_now(key, quota, cost)))
    }

    fn begin_attempt<'a>(
        &'a self,
        key: &'a LimitKey,
        policy: BackoffPolicy,
    ) -> LimitFuture<'a, Result<Streak, Duration>> {
        let attempt = self.begin_attempt_at(key, policy, self.now());
        Box::pin(std::future::ready(Ok(attempt)))
    }

    fn backoff<'a>(&'a self, key: &'a LimitKey) -> LimitFuture<'a, Option<Duration>> {
        Box::pin(std::future::ready(Ok(self.backoff_at(key, self.now()))))
    }

    fn clear_backoff<'a>(&'a self, key: &'a LimitKey) -> LimitFuture<'a, ()> {
        self.clear_backoff_now(key);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A key's GCRA state, with its policy's interval so eviction can weigh it.
#[derive(Debug, Clone, Copy)]
struct RateState {
    tat: u64,
    interval: u64,
}

/// What a table needs to know of a value to sweep and evict it.
trait Expiring {
    /// The time after which the value changes no answer.
    fn expires_at(&self) -> u64;
    /// How many recent requests the value remembers: what forgetting it would give back.
    fn weight(&self, now: u64) -> u64;
}

impl Expiring for RateState {
    /// A TAT in the past is a full quota: the same as no entry at all.
    fn expires_at(&self) -> u64 {
        self.tat
    }
    /// Units of quota still spent, whatever the policy's window.
    fn weight(&self, now: u64) -> u64 {
        self.tat.saturating_sub(now).div_ceil(self.interval.max(1))
    }
}

impl Expiring for StreakState {
    fn expires_at(&self) -> u64 {
        self.forget_at
    }
    fn weight(&self, _now: u64) -> u64 {
        u64::from(self.failures)
    }
}

/// Keys are already keyed SipHash outputs; hashing them again would only cost time.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

#[derive(Debug)]
struct Table<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    shard_cap: usize,
}

impl<V: Expiring + Copy> Table<V> {
    fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_cap: (capacity / SHARDS).max(16),
        }
    }

    /// The middle bits pick the shard: the map itself uses the low bits for the slot and the
    /// top seven for its tags, and both must stay spread within a shard.
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Shard<V>> {
        let index = usize::try_from((hash >> 32) % SHARDS as u64).unwrap_or(0);
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `step` on the value for `hash` and stores what it returns, making room if needed.
    fn update<T>(&self, hash: u64, now: u64, step: impl FnOnce(Option<V>) -> (T, Option<V>)) -> T {
        let mut shard = self.shard(hash);
        // One lookup on the hot path (a known key), two only when a key is new.
        if let Some(slot) = shard.get_mut(&hash) {
            let (answer, next) = step(Some(*slot));
            if let Some(value) = next {
                *slot = value;
            }
            return answer;
        }
        let (answer, next) = step(None);
        if let Some(value) = next {
            if shard.len() >= self.shard_cap {
                make_room(&mut shard, self.shard_cap, now);
            }
            shard.insert(hash, value);
        }
        answer
    }

    fn get(&self, hash: u64) -> Option<V> {
        self.shard(hash).get(&hash).copied()
    }

    fn remove(&self, hash: u64) {
        self.shard(hash).remove(&hash);
    }

    fn memory_use(&self) -> MemoryUse {
        let slot = std::mem::size_of::<(u64, V)>() + 1;
        self.shards.iter().fold(
            MemoryUse {
                entries: 0,
                table_bytes: 0,
            },
            |total, shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                MemoryUse {
                    entries: total.entries + shard.len(),
                    table_bytes: total.table_bytes + shard.capacity() * slot,
                }
            },
        )
    }

    /// A map holding `shard_cap` entries has at most twice that many slots (it grows by
    /// doubling once 7/8 full), each an entry and a control byte.
    fn budget(&self) -> usize {
        let slot = std::mem::size_of::<(u64, V)>() + 1;
        SHARDS * (self.shard_cap * 2).next_power_of_two() * slot
    }
}

/// Drops what has run out, then, while the shard is above seven eighths of its cap, the entries
/// of least weight (soonest to run out among equals). Freeing an eighth at a time pays the scan
/// once per many inserts, even when little has run out.
fn make_room<V: Expiring>(shard: &mut Shard<V>, cap: usize, now: u64) {
    shard.retain(|_, value| value.expires_at() > now);
    let keep = cap - cap / 8;
    if shard.len() < keep {
        return;
    }
    let rank = |value: &V| (value.weight(now), value.expires_at());
    let mut ranks: Vec<(u64, u64)> = shard.values().map(rank).collect();
    let drop = ranks.len() - keep;
    let (_, threshold, _) = ranks.select_nth_unstable(drop);
    let threshold = *threshold;
    shard.retain(|_, value| rank(value) >= threshold);
    // Ties at the threshold can leave a few too many; drop any of them.
    let excess = shard.len().saturating_sub(keep);
    if excess > 0 {
        let victims: Vec<u64> = shard
            .iter()
            .filter(|(_, value)| rank(value) == threshold)
            .map(|(key, _)| *key)
            .take(excess)
            .collect();
        for key in victims {
            shard.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::store::{ClientAddress, Subject};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const SEC: u64 = 1_000_000_000;

    fn address_key(n: u32) -> LimitKey {
        LimitKey::new(
            "global",
            Subject::Address(ClientAddress::of(IpAddr::V4(Ipv4Addr::from(n)))),
        )
    }

    fn per_minute(n: u32) -> Quota {
        Quota::new(n, Duration::from_secs(60)).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn a_million_address_spray_stays_within_the_budget() {
        let store = MemoryStore::with_capacity(64 * 1024, 1024);
        let quota = per_minute(300);
        for n in 0..1_000_000u32 {
            // All at the same instant: nothing has run out, so only eviction bounds the tables.
            store.check_at(&address_key(n), quota, 1, 10 * SEC);
        }
        let used = store.memory_use();
        assert!(used.entries <= 64 * 1024, "{used:?}");
        assert!(used.table_bytes <= store.memory_budget(), "{used:?}");
        assert!(
            store.memory_budget() < 4 * 1024 * 1024,
            "budget {}",
            store.memory_budget()
        );
    }

    #[test]
    fn the_attackers_own_exhausted_key_outlives_a_spray() {
        let store = MemoryStore::with_capacity(1024, 64);
        let quota = per_minute(10);
        let attacker = address_key(u32::MAX);
        for _ in 0..10 {
            store.check_at(&attacker, quota, 1, 0);
        }
        assert!(!store.check_at(&attacker, quota, 1, 0).is_allowed());
        // The attacker sprays fresh keys hoping to push its own entry out.
        for n in 0..100_000 {
            store.check_at(&address_key(n), quota, 1, SEC);
        }
        assert!(
            !store.check_at(&attacker, quota, 1, SEC).is_allowed(),
            "eviction must take the least-limited keys first"
        );
    }

    #[test]
    fn long_lived_marks_do_not_push_out_an_exhausted_short_quota() {
        let store = MemoryStore::with_capacity(1024, 64);
        let auth = per_minute(10);
        let attacker = address_key(u32::MAX);
        for _ in 0..10 {
            store.check_at(&attacker, auth, 1, 0);
        }
        // One unit of a one-per-hour policy lives sixty times longer than the attacker's whole
        // minute, but remembers one request, not ten.
        let hourly = Quota::new(1, Duration::from_secs(3600)).unwrap_or_else(|| unreachable!());
        for n in 0..100_000 {
            let mark = LimitKey::new("stuffing-name", Subject::Name(format!("name{n}")));
            store.check_at(&mark, hourly, 1, SEC);
        }
        assert!(!store.check_at(&attacker, auth, 1, SEC).is_allowed());
    }

    #[test]
    fn a_victims_backoff_outlives_a_spray_of_made_up_names() {
        let store = MemoryStore::with_capacity(1024, 1024);
        let policy = BackoffPolicy::default();
        let victim = LimitKey::new("login-backoff", Subject::Name("victim".into()));
        for _ in 0..10 {
            let _ = store.begin_attempt_at(&victim, policy, 0);
        }
        for n in 0..100_000u32 {
            let key = LimitKey::new("login-backoff", Subject::Name(format!("made-up{n}")));
            let _ = store.begin_attempt_at(&key, policy, SEC / 2);
        }
        assert!(store.backoff_at(&victim, SEC / 2).is_some());
    }

    #[test]
    fn run_out_entries_are_swept_before_anything_is_evicted() {
        let store = MemoryStore::with_capacity(1024, 64);
        let quota = per_minute(60); // one-second interval
        let busy = address_key(7);
        for _ in 0..30 {
            store.check_at(&busy, quota, 1, 0);
        }
        // A one-off visitor's state runs out after one interval; fill the table with them.
        for n in 100..20_000 {
            store.check_at(&address_key(n), quota, 1, 0);
        }
        for n in 20_000..40_000 {
            store.check_at(&address_key(n), quota, 1, 2 * SEC);
        }
        let decision = store.check_at(&busy, quota, 0, 2 * SEC);
        assert!(
            matches!(decision, Decision::Allowed { remaining, .. } if remaining < 60),
            "the busy client's spending is remembered: {decision:?}"
        );
    }

    #[test]
    fn streaks_are_bounded_too() {
        let store = MemoryStore::with_capacity(1024, 4096);
        let policy = BackoffPolicy::default();
        for n in 0..200_000u32 {
            let key = LimitKey::new("login-backoff", Subject::Name(format!("user{n}")));
            let _ = store.begin_attempt_at(&key, policy, 0);
        }
        assert!(store.streaks.memory_use().entries <= 4096);
    }

    /// Logins of one account in parallel, each counted in advance and cleared by its success,
    /// as the server does them: no reader ever sees a delay, whichever thread read the clock
    /// first (one in about 5,600 logins at 4 in parallel was refused before the fix).
    #[test]
    fn parallel_successes_never_see_a_delay() {
        let store = std::sync::Arc::new(MemoryStore::default());
        let key = LimitKey::new("login-backoff", Subject::Name("alice".into()));
        let policy = BackoffPolicy::default();
        let refused: u32 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let (store, key) = (&store, &key);
                    scope.spawn(move || {
                        let mut refused = 0;
                        for _ in 0..50_000 {
                            let now = store.now();
                            if store.backoff_at(key, now).is_some()
                                || store.begin_attempt_at(key, policy, store.now()).is_err()
                            {
                                refused += 1;
                            }
                            store.clear_backoff_now(key);
                        }
                        refused
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(1)).sum()
        });
        assert_eq!(refused, 0);
    }

    #[test]
    fn backoff_is_recorded_reported_and_cleared() {
        let store = MemoryStore::default();
        let key = LimitKey::new("login-backoff", Subject::Name("alice".into()));
        let policy = BackoffPolicy::default();
        for _ in 0..10 {
            let _ = store.begin_attempt_at(&key, policy, 0);
        }
        assert_eq!(store.backoff_at(&key, 0), Some(Duration::from_secs(1)));
        assert_eq!(
            store.begin_attempt_at(&key, policy, 0),
            Err(Duration::from_secs(1))
        );
        let other = LimitKey::new("login-backoff", Subject::Name("bob".into()));
        assert_eq!(store.backoff_at(&other, 0), None);
        store.clear_backoff_now(&key);
        assert_eq!(store.backoff_at(&key, 0), None);
        assert_eq!(
            store.begin_attempt_at(&key, policy, 0).map(|s| s.failures),
            Ok(1)
        );
    }
}
