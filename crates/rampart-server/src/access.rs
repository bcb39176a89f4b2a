//! Live access state held in memory: which sessions were revoked recently, and each user's role
//! and lock.
//!
//! Defends against access tokens outliving the session or the account they stand for, without a
//! database read per request. A token is self-contained until it expires, so revoking it means
//! remembering its session id for as long as a token of that session can still be valid: the
//! access-token lifetime plus clock leeway plus a margin for a refresh racing the revocation.
//! After that every token of the session has expired on its own and the entry is dropped, so the
//! set holds only sessions that issued a token within that window. Tokens are issued only by a
//! login (bounded by the password-hash pool) or a refresh, which bounds the set's size.
//!
//! A session is also confirmed to exist in the store, unrevoked and unexpired, on its first
//! request to this process and again once that is older than the recheck interval, so a token
//! naming a session that was never created (forged with a leaked signing key) is refused at
//! once, and a session deleted or marked revoked by hand (with any date) is refused within the
//! interval. Only tokens with a valid signature reach this, so the map holds only sessions this
//! deployment issued; it is capped, and an evicted session is simply read again.
//!
//! Users' role and lock are read from the store and kept for at most the recheck interval
//! (`RAMPART_REVOCATION_BOUND`); every change this process makes is written here right after
//! the store, so locks and role changes made through the API apply to the very next request,
//! and a change made any other way (another node, a `psql` session, a restored backup) applies
//! within the interval, on one node as on many. Each entry carries a generation: a store read
//! replaces only the entry it found stale, never one a change wrote while the read was in
//! flight, so a lookup that raced a lock cannot put the unlocked state back. The user map is
//! capped; an evicted user is simply read again. Changes made by other nodes also arrive
//! sooner through [`crate::cluster`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use rampart::Role;

/// What authorising a request needs to know about a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserAccess {
    pub role: Role,
    pub locked: bool,
}

/// A refresh that read its session as live just before a revocation may still issue a token a
/// moment later; keeping entries this much longer covers it.
const REFRESH_RACE_MARGIN: Duration = Duration::from_secs(60);
/// Users kept in memory before the oldest-looking half is dropped (each is re-read on demand).
const USER_CAPACITY: usize = 200_000;
/// Sessions kept as confirmed before the stale ones (then half) are dropped.
const SESSION_CAPACITY: usize = 500_000;
/// How often expired revocations are swept out, at most.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Revoked {
    /// Session id to the instant after which no token of it can still verify.
    until: HashMap<Box<str>, Instant>,
    next_sweep: Instant,
}

/// A session's user, and when the store last showed the session live.
type Confirmed = (Box<str>, Instant);

/// One cached user.
#[derive(Debug, Clone, Copy)]
struct Entry {
    access: UserAccess,
    /// When it was read or changed; past the recheck interval it is read again.
    at: Instant,
    /// Bumped by every write, so a store read can tell whether a change overtook it.
    generation: u64,
    /// Written by a change ([`AccessState::set_user`]): never evicted, or a stale store read
    /// could refill the gap with the state before the change.
    changed: bool,
}

/// What the cache knows of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// Checked within the recheck interval: use it.
    Fresh(UserAccess),
    /// Unknown or older than the interval: read the store, then [`AccessState::refreshed`]
    /// with this token.
    Stale(Seen),
}

/// Which entry a store read is about to replace (see [`Cached::Stale`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen(Option<u64>);

/// The in-memory revocation set and user access cache. One per process, held in the app state.
#[derive(Debug)]
pub struct AccessState {
    revoked: RwLock<Revoked>,
    users: RwLock<HashMap<Box<str>, Entry>>,
    /// Session id to its user and when the store last showed it live for that user.
    live: RwLock<HashMap<Box<str>, Confirmed>>,
    generations: AtomicU64,
    /// How long a revoked session must be remembered.
    window: Duration,
    /// How long a user's role and lock are trusted before they are read again.
    recheck: Duration,
}

impl AccessState {
    /// `token_lifetime` is the longest an access token can stay valid, leeway included;
    /// `recheck` the longest a user's role and lock are trusted without reading them again.
    pub fn new(token_lifetime: Duration, recheck: Duration) -> Self {
        Self {
            revoked: RwLock::new(Revoked {
                until: HashMap::new(),
                next_sweep: Instant::now() + SWEEP_INTERVAL,
            }),
            users: RwLock::new(HashMap::new()),
            live: RwLock::new(HashMap::new()),
            generations: AtomicU64::new(0),
            window: token_lifetime + REFRESH_RACE_MARGIN,
            recheck,
        }
    }

    fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// How far back revocations matter: sessions revoked, or last issuing a token, before
    /// `now - window()` have no token left that could verify.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Whether tokens of `session_id` must be refused.
    pub fn is_revoked(&self, session_id: &str) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(PoisonError::into_inner);
        revoked
            .until
            .get(session_id)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Makes the access tokens of `ended` sessions stop working on this node; each is
    /// remembered for as long as its last-issued token could still be unexpired.
    pub fn forget_sessions(&self, ended: &[crate::store::EndedSession]) {
        let now = time::OffsetDateTime::now_utc();
        for session in ended {
            self.revoke(&session.id, session.last_used_at.age(now));
        }
    }

    /// Records that `session_id` was revoked `age` ago (zero: just now).
    pub fn revoke(&self, session_id: &str, age: Duration) {
        let Some(left) = self.window.checked_sub(age) else {
            return;
        };
        let now = Instant::now();
        let mut revoked = self.revoked.write().unwrap_or_else(PoisonError::into_inner);
        if now >= revoked.next_sweep {
            revoked.until.retain(|_, until| *until > now);
            revoked.next_sweep = now + SWEEP_INTERVAL;
        }
        let until = now + left;
        revoked
            .until
            .entry(session_id.into())
            .and_modify(|at| *at = (*at).max(until))
            .or_insert(until);
    }

    /// Whether the store showed `session_id` live, as `user_id`'s, within the recheck
    /// interval. A token naming another user's session is never confirmed from here.
    pub fn session_confirmed(&self, session_id: &str, user_id: &str) -> bool {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session_id)
            .is_some_and(|(owner, at)| **owner == *user_id && at.elapsed() < self.recheck)
    }

    /// Records that the store just showed `session_id` live as `user_id`'s.
    pub fn confirm_session(&self, session_id: &str, user_id: &str) {
        let mut live = self.live.write().unwrap_or_else(PoisonError::into_inner);
        if live.len() >= SESSION_CAPACITY {
            live.retain(|_, (_, at)| at.elapsed() < self.recheck);
            if live.len() >= SESSION_CAPACITY {
                let mut keep = false;
                live.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
        }
        live.insert(session_id.into(), (user_id.into(), Instant::now()));
    }

    /// How many revocations are held (expired ones not yet swept included).
    pub fn revoked_len(&self) -> usize {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .until
            .len()
    }

    /// The user's cached access state, if it may still be trusted.
    pub fn user(&self, user_id: &str) -> Cached {
        let users = self.users.read().unwrap_or_else(PoisonError::into_inner);
        match users.get(user_id) {
            Some(entry) if entry.at.elapsed() < self.recheck => Cached::Fresh(entry.access),
            Some(entry) => Cached::Stale(Seen(Some(entry.generation))),
            None => Cached::Stale(Seen(None)),
        }
    }

    /// Stores what a read of the store found, unless a change replaced the entry `seen` while
    /// the read was in flight; returns the entry that is now cached.
    pub fn refreshed(&self, user_id: &str, access: UserAccess, seen: Seen) -> UserAccess {
        let generation = self.next_generation();
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        make_room(&mut users);
        let fresh = Entry {
            access,
            at: Instant::now(),
            generation,
            changed: false,
        };
        match users.get_mut(user_id) {
            Some(entry) if Some(entry.generation) == seen.0 => {
                *entry = Entry {
                    changed: entry.changed,
                    ..fresh
                };
                access
            }
            // A change landed meanwhile: it is newer than this read.
            Some(entry) => entry.access,
            None => {
                users.insert(user_id.into(), fresh);
                access
            }
        }
    }

    /// Applies a change read from the store after another node made it, if the user is cached
    /// here (an uncached user is read fresh on its next request anyway).
    pub fn update_cached(&self, user_id: &str, access: UserAccess) {
        let generation = self.next_generation();
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = users.get_mut(user_id) {
            *entry = Entry {
                access,
                at: Instant::now(),
                generation,
                changed: entry.changed,
            };
        }
    }

    /// Applies a change this process just wrote to the store.
    pub fn set_user(&self, user_id: &str, access: UserAccess) {
        let generation = self.next_generation();
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        make_room(&mut users);
        users.insert(
            user_id.into(),
            Entry {
                access,
                at: Instant::now(),
                generation,
                changed: true,
            },
        );
    }
}

/// Keeps the user map under its cap by dropping half of the entries read from the store. Which
/// half does not matter: a dropped user is read again on its next request. Entries written by
/// changes stay (there are only as many as admins made changes).
fn make_room(users: &mut HashMap<Box<str>, Entry>) {
    if users.len() >= USER_CAPACITY {
        let mut keep = false;
        users.retain(|_, entry| {
            keep = !keep;
            entry.changed || keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: UserAccess = UserAccess {
        role: Role::User,
        locked: false,
    };
    const RECHECK: Duration = Duration::from_secs(10);

    /// What a request does: read the store when the cache says so.
    fn lookup(access: &AccessState, id: &str, in_store: UserAccess) -> UserAccess {
        match access.user(id) {
            Cached::Fresh(cached) => cached,
            Cached::Stale(seen) => access.refreshed(id, in_store, seen),
        }
    }

    #[test]
    fn a_revoked_session_stays_revoked_for_the_window_then_is_forgotten() {
        let access = AccessState::new(Duration::from_secs(900), RECHECK);
        assert!(!access.is_revoked("s1"));
        access.revoke("s1", Duration::ZERO);
        assert!(access.is_revoked("s1"));
        assert!(!access.is_revoked("s2"));
        // Revoked longer ago than the window: every token of it has expired, nothing to hold.
        access.revoke("old", access.window() + Duration::from_secs(1));
        assert!(!access.is_revoked("old"));
        assert_eq!(access.revoked_len(), 1);
    }

    #[test]
    fn entries_expire_and_are_swept() {
        let access = AccessState {
            window: Duration::from_millis(30),
            ..AccessState::new(Duration::ZERO, RECHECK)
        };
        access.revoke("s1", Duration::ZERO);
        assert!(access.is_revoked("s1"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!access.is_revoked("s1"), "expired entries no longer count");
        access
            .revoked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .next_sweep = Instant::now();
        access.revoke("s2", Duration::ZERO);
        assert_eq!(
            access.revoked_len(),
            1,
            "the sweep dropped the expired entry"
        );
    }

    #[test]
    fn a_later_revocation_never_shortens_an_entry() {
        let access = AccessState::new(Duration::from_secs(900), RECHECK);
        access.revoke("s1", Duration::ZERO);
        access.revoke("s1", Duration::from_secs(899));
        let until = access.revoked.read().unwrap().until["s1"];
        assert!(until > Instant::now() + Duration::from_secs(900));
    }

    #[test]
    fn a_store_read_never_overwrites_a_newer_change() {
        let access = AccessState::new(Duration::from_secs(900), RECHECK);
        let locked = UserAccess {
            locked: true,
            ..USER
        };
        // A request found the user uncached and went to read the store (unlocked)...
        let Cached::Stale(seen) = access.user("u1") else {
            panic!("an unknown user is stale")
        };
        // ...meanwhile an admin locked them...
        access.set_user("u1", locked);
        // ...and the stale read arrives last: the request still sees the lock.
        assert_eq!(access.refreshed("u1", USER, seen), locked);
        assert_eq!(access.user("u1"), Cached::Fresh(locked));
        // The same race on an entry that had gone stale.
        let stale = AccessState::new(Duration::from_secs(900), Duration::ZERO);
        stale.refreshed("u2", USER, Seen(None));
        let Cached::Stale(seen) = stale.user("u2") else {
            panic!("a zero interval makes every entry stale")
        };
        stale.set_user("u2", locked);
        assert_eq!(stale.refreshed("u2", USER, seen), locked);
        // A change always applies.
        access.set_user("u1", USER);
        assert_eq!(access.user("u1"), Cached::Fresh(USER));
    }

    #[test]
    fn a_change_made_behind_the_processs_back_is_seen_after_the_recheck_interval() {
        let access = AccessState::new(Duration::from_secs(900), Duration::from_millis(40));
        let admin = UserAccess {
            role: Role::Admin,
            locked: false,
        };
        assert_eq!(lookup(&access, "u1", admin), admin);
        // Demoted in the database by hand: nothing told this process.
        assert_eq!(
            lookup(&access, "u1", USER),
            admin,
            "trusted within the interval"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(lookup(&access, "u1", USER), USER, "read again after it");
    }

    #[test]
    fn eviction_never_drops_a_change() {
        let access = AccessState::new(Duration::from_secs(900), RECHECK);
        let locked = UserAccess {
            locked: true,
            ..USER
        };
        let Cached::Stale(seen) = access.user("locked-user") else {
            panic!("unknown")
        };
        access.set_user("locked-user", locked);
        for i in 0..USER_CAPACITY * 2 {
            access.refreshed(&format!("user-{i}"), USER, Seen(None));
        }
        // A stale read (from before the lock) arriving now must not undo the lock.
        assert_eq!(access.refreshed("locked-user", USER, seen), locked);
    }

    #[test]
    fn a_confirmed_session_is_trusted_for_the_interval_and_the_map_stays_capped() {
        let access = AccessState::new(Duration::from_secs(900), Duration::from_millis(40));
        assert!(
            !access.session_confirmed("s1", "u1"),
            "never read: read the store"
        );
        access.confirm_session("s1", "u1");
        assert!(access.session_confirmed("s1", "u1"));
        assert!(
            !access.session_confirmed("s1", "u2"),
            "another user's token naming the session is not confirmed by it"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !access.session_confirmed("s1", "u1"),
            "read again after the interval"
        );
        // Over the cap with every entry fresh: half go, each simply read again when next used.
        let access = AccessState::new(Duration::from_secs(900), RECHECK);
        for i in 0..SESSION_CAPACITY + 10 {
            access.confirm_session(&format!("s-{i}"), "u1");
        }
        let len = access.live.read().unwrap().len();
        assert!(
            (SESSION_CAPACITY / 2..=SESSION_CAPACITY).contains(&len),
            "{len}"
        );
    }

    #[test]
    fn the_user_cache_stays_under_its_cap() {
        let access = AccessState::new(Duration::from_secs(900), RECHECK);
        for i in 0..USER_CAPACITY + 10 {
            access.refreshed(&format!("user-{i}"), USER, Seen(None));
        }
        let len = access.users.read().unwrap().len();
        assert!(len <= USER_CAPACITY, "{len}");
        assert!(len >= USER_CAPACITY / 2);
    }
}
