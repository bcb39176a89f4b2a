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
//! Users' role and lock are read from the store once and then kept; every change this process
//! makes is written here right after the store, so locks and role changes apply to the very next
//! request. A store read never overwrites a newer entry (it only fills a gap), so a lookup that
//! raced a lock cannot put the unlocked state back. The user map is capped; an evicted user is
//! simply read again. Changes made by other nodes arrive through [`crate::cluster`].

use std::collections::HashMap;
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
/// How often expired revocations are swept out, at most.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Revoked {
    /// Session id to the instant after which no token of it can still verify.
    until: HashMap<Box<str>, Instant>,
    next_sweep: Instant,
}

/// The in-memory revocation set and user access cache. One per process, held in the app state.
#[derive(Debug)]
pub struct AccessState {
    revoked: RwLock<Revoked>,
    /// The flag marks entries written by a change ([`AccessState::set_user`]): those are never
    /// evicted, or a stale store read could refill the gap with the state before the change.
    users: RwLock<HashMap<Box<str>, (UserAccess, bool)>>,
    /// How long a revoked session must be remembered.
    window: Duration,
}

impl AccessState {
    /// `token_lifetime` is the longest an access token can stay valid, leeway included.
    pub fn new(token_lifetime: Duration) -> Self {
        Self {
            revoked: RwLock::new(Revoked {
                until: HashMap::new(),
                next_sweep: Instant::now() + SWEEP_INTERVAL,
            }),
            users: RwLock::new(HashMap::new()),
            window: token_lifetime + REFRESH_RACE_MARGIN,
        }
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

    /// How many revocations are held (expired ones not yet swept included).
    pub fn revoked_len(&self) -> usize {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .until
            .len()
    }

    /// The user's cached access state; `None` means read it from the store.
    pub fn user(&self, user_id: &str) -> Option<UserAccess> {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(user_id)
            .map(|(access, _)| *access)
    }

    /// Fills the cache with state read from the store, unless a change already put a newer
    /// entry there in the meantime; returns the entry that is now cached.
    pub fn remember_user(&self, user_id: &str, access: UserAccess) -> UserAccess {
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        make_room(&mut users);
        users.entry(user_id.into()).or_insert((access, false)).0
    }

    /// Applies a change read from the store after another node made it, if the user is cached
    /// here (an uncached user is read fresh on its next request anyway).
    pub fn update_cached(&self, user_id: &str, access: UserAccess) {
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = users.get_mut(user_id) {
            entry.0 = access;
        }
    }

    /// Applies a change this process just wrote to the store.
    pub fn set_user(&self, user_id: &str, access: UserAccess) {
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        make_room(&mut users);
        users.insert(user_id.into(), (access, true));
    }
}

/// Keeps the user map under its cap by dropping half of the entries read from the store. Which
/// half does not matter: a dropped user is read again on its next request. Entries written by
/// changes stay (there are only as many as admins made changes).
fn make_room(users: &mut HashMap<Box<str>, (UserAccess, bool)>) {
    if users.len() >= USER_CAPACITY {
        let mut keep = false;
        users.retain(|_, (_, changed)| {
            keep = !keep;
            *changed || keep
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

    #[test]
    fn a_revoked_session_stays_revoked_for_the_window_then_is_forgotten() {
        let access = AccessState::new(Duration::from_secs(900));
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
            ..AccessState::new(Duration::ZERO)
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
        let access = AccessState::new(Duration::from_secs(900));
        access.revoke("s1", Duration::ZERO);
        access.revoke("s1", Duration::from_secs(899));
        let until = access.revoked.read().unwrap().until["s1"];
        assert!(until > Instant::now() + Duration::from_secs(900));
    }

    #[test]
    fn a_store_read_never_overwrites_a_newer_change() {
        let access = AccessState::new(Duration::from_secs(900));
        // A request read the user as unlocked; meanwhile an admin locked them.
        let locked = UserAccess {
            locked: true,
            ..USER
        };
        access.set_user("u1", locked);
        assert_eq!(
            access.remember_user("u1", USER),
            locked,
            "the request sees the lock"
        );
        assert_eq!(access.user("u1"), Some(locked));
        // A change always applies.
        access.set_user("u1", USER);
        assert_eq!(access.user("u1"), Some(USER));
    }

    #[test]
    fn eviction_never_drops_a_change() {
        let access = AccessState::new(Duration::from_secs(900));
        let locked = UserAccess {
            locked: true,
            ..USER
        };
        access.set_user("locked-user", locked);
        for i in 0..USER_CAPACITY * 2 {
            access.remember_user(&format!("user-{i}"), USER);
        }
        // A stale read (from before the lock) arriving now must not undo the lock.
        assert_eq!(access.remember_user("locked-user", USER), locked);
    }

    #[test]
    fn the_user_cache_stays_under_its_cap() {
        let access = AccessState::new(Duration::from_secs(900));
        for i in 0..USER_CAPACITY + 10 {
            access.remember_user(&format!("user-{i}"), USER);
        }
        let len = access.users.read().unwrap().len();
        assert!(len <= USER_CAPACITY, "{len}");
        assert!(len >= USER_CAPACITY / 2);
    }
}
