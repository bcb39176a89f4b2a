//! Where limiter state lives: the [`LimitStore`] trait and the keys it is addressed by.
//!
//! Defends against a limiter that can be dodged or exhausted: keys are built from the resolved
//! client ([`ClientAddress`] folds an IPv6 host's whole /64 into one key, so a host cannot rotate
//! through the addresses it is given), and a store must bound its own memory (see
//! [`super::MemoryStore`]). One node keeps state in process; several share a store that runs the
//! same arithmetic atomically, one round trip per check.

use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use super::backoff::{BackoffPolicy, Streak};
use super::gcra::{Decision, Quota};

/// The address a client is limited by: an IPv4 address, or the /64 network of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(IpAddr);

impl ClientAddress {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(
                || Self(IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())),
                |v4| Self(IpAddr::V4(v4)),
            ),
        }
    }

    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Who a limit counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    Address(ClientAddress),
    /// An authenticated account, by user id: every session of it together.
    User(String),
    /// An authenticated session, by id.
    Session(String),
    /// A submitted login name (normalised), whether or not such an account exists.
    Name(String),
    /// A login name tried from one address.
    AddressAndName(ClientAddress, String),
    /// Everyone together (a budget for the whole process).
    Everyone,
}

/// A policy name and the subject it counts. Stores hash it (in process with a per-process key,
/// so an attacker cannot aim keys at one slot) and never store names in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitKey {
    pub policy: &'static str,
    pub subject: Subject,
}

/// The key as one run of bytes, handed to the hasher in one write where it fits (every key
/// but one naming a very long login name): a keyed hasher pays for each call, and the derived
/// impl made eight of them for an address, on every request. The policy name ends at a 0xFF
/// byte (never in UTF-8), the subject's kind is a tag byte after it, an address is its family
/// and octets, and the only free-form part (an id or a name) comes last: no two keys give the
/// same bytes, so keys stay as far apart as the derived impl kept them.
impl Hash for LimitKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (tag, address, text): (u8, Option<ClientAddress>, &str) = match &self.subject {
            Subject::Address(address) => (b'a', Some(*address), ""),
            Subject::User(id) => (b'u', None, id),
            Subject::Session(id) => (b's', None, id),
            Subject::Name(name) => (b'n', None, name),
            Subject::AddressAndName(address, name) => (b'b', Some(*address), name),
            Subject::Everyone => (b'e', None, ""),
        };
        let mut feed = Feed::new(state);
        feed.put(self.policy.as_bytes());
        feed.put(&[0xff, tag]);
        match address.map(ClientAddress::ip) {
            Some(IpAddr::V4(v4)) => {
                feed.put(&[4]);
                feed.put(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                feed.put(&[6]);
                feed.put(&v6.octets());
            }
            None => {}
        }
        feed.put(text.as_bytes());
        feed.flush();
    }
}

/// Bytes gathered for a hasher and written in as few calls as fit a small buffer.
struct Feed<'h, H: Hasher> {
    state: &'h mut H,
    buf: [u8; 96],
    len: usize,
}

impl<'h, H: Hasher> Feed<'h, H> {
    fn new(state: &'h mut H) -> Self {
        Self {
            state,
            buf: [0; 96],
            len: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() - self.len < bytes.len() {
            self.flush();
            if self.buf.len() < bytes.len() {
                self.state.write(bytes);
                return;
            }
        }
        let end = self.len + bytes.len();
        if let Some(room) = self.buf.get_mut(self.len..end) {
            room.copy_from_slice(bytes);
            self.len = end;
        }
    }

    fn flush(&mut self) {
        if let Some(gathered) = self.buf.get(..self.len) {
            if !gathered.is_empty() {
                self.state.write(gathered);
            }
        }
        self.len = 0;
    }
}

impl LimitKey {
    pub fn new(policy: &'static str, subject: Subject) -> Self {
        Self { policy, subject }
    }
}

/// A store could not answer (a shared store's connection failed). Callers decide whether to
/// fail open or closed; the in-process store never fails.
#[derive(Debug, thiserror::Error)]
#[error("rate-limit store unavailable: {0}")]
pub struct LimitError(pub String);

/// The future every [`LimitStore`] method returns.
pub type LimitFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LimitError>> + Send + 'a>>;

/// Limiter state. Each method is one atomic step on one key.
pub trait LimitStore: Send + Sync + fmt::Debug + 'static {
    /// Spends `cost` units of `quota` on `key` if they are there (GCRA, see
    /// [`super::gcra::step`]). A cost of zero reports the quota without spending it.
    fn check<'a>(&'a self, key: &'a LimitKey, quota: Quota, cost: u32)
        -> LimitFuture<'a, Decision>;

    /// [`LimitStore::check`] answered at once, by a store that needs no I/O for it (the
    /// in-process one): the request it charges then takes no boxed future. `None` (the
    /// default) when the answer must be awaited.
    fn check_at_once(
        &self,
        key: &LimitKey,
        quota: Quota,
        cost: u32,
    ) -> Option<Result<Decision, LimitError>> {
        let _ = (key, quota, cost);
        None
    }

    /// Starts a login attempt on `key`'s backoff streak, atomically: `Err` with the delay
    /// still running, or the attempt counted as a failure in advance (see
    /// [`super::backoff::StreakState::attempt`]); a success then clears the streak.
    fn begin_attempt<'a>(
        &'a self,
        key: &'a LimitKey,
        policy: BackoffPolicy,
    ) -> LimitFuture<'a, Result<Streak, Duration>>;

    /// The backoff delay still running for `key`, if any (a read, for refusing early).
    fn backoff<'a>(&'a self, key: &'a LimitKey) -> LimitFuture<'a, Option<Duration>>;

    /// Ends `key`'s backoff streak (a successful login, an admin's unlock).
    fn clear_backoff<'a>(&'a self, key: &'a LimitKey) -> LimitFuture<'a, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_hosts_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientAddress::of(a), ClientAddress::of(b));
        assert_ne!(ClientAddress::of(a), ClientAddress::of(other));
        assert_eq!(ClientAddress::of(a).to_string(), "2001:db8:1:2::/64");
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(ClientAddress::of(mapped), ClientAddress::of(v4));
        let neighbour: IpAddr = "203.0.113.8".parse().unwrap();
        assert_ne!(ClientAddress::of(v4), ClientAddress::of(neighbour));
    }

    /// The bytes a key is hashed as, recorded: what the hasher is fed, call boundaries aside.
    #[derive(Default)]
    struct Recorded(Vec<u8>);

    impl Hasher for Recorded {
        fn finish(&self) -> u64 {
            0
        }

        fn write(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
    }

    fn fed(key: &LimitKey) -> Vec<u8> {
        let mut recorded = Recorded::default();
        key.hash(&mut recorded);
        recorded.0
    }

    /// Keys an attacker could try to line up with someone else's (a policy name running into
    /// the subject, one kind of subject posing as another, an address posing as a name, a
    /// name long enough to leave the buffer) are all fed as different bytes, and a key is
    /// always fed the same bytes.
    #[test]
    fn no_two_keys_are_hashed_from_the_same_bytes() {
        let v4 = ClientAddress::of("203.0.113.7".parse().unwrap_or(IpAddr::from([0; 4])));
        let v6 = ClientAddress::of("2001:db8::1".parse().unwrap_or(IpAddr::from([0; 16])));
        let long = "n".repeat(300);
        let keys = [
            LimitKey::new("auth", Subject::Address(v4)),
            LimitKey::new("auth", Subject::Address(v6)),
            LimitKey::new("auth", Subject::AddressAndName(v4, String::new())),
            LimitKey::new("auth", Subject::AddressAndName(v4, "alice".into())),
            LimitKey::new("auth", Subject::AddressAndName(v6, "alice".into())),
            LimitKey::new("auth", Subject::User("alice".into())),
            LimitKey::new("auth", Subject::Session("alice".into())),
            LimitKey::new("auth", Subject::Name("alice".into())),
            LimitKey::new("aut", Subject::Name("halice".into())),
            // Without the policy's end marker, these two would be "aus" + "x".
            LimitKey::new("a", Subject::User("sx".into())),
            LimitKey::new("au", Subject::Session("x".into())),
            LimitKey::new("auth", Subject::Name(String::new())),
            LimitKey::new("auth", Subject::Everyone),
            LimitKey::new("global", Subject::Everyone),
            LimitKey::new("auth", Subject::Name(long.clone())),
            LimitKey::new("auth", Subject::Name(format!("{long}x"))),
            LimitKey::new("auth", Subject::User(long.clone())),
        ];
        let fed_bytes: Vec<Vec<u8>> = keys.iter().map(fed).collect();
        for (i, a) in fed_bytes.iter().enumerate() {
            for (j, b) in fed_bytes.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{:?} and {:?}", keys[i], keys[j]);
            }
        }
        for key in &keys {
            assert_eq!(fed(key), fed(&key.clone()), "{key:?}");
            let hash = |key: &LimitKey| {
                std::hash::BuildHasher::hash_one(
                &std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default(),
                key,
            )
            };
            assert_eq!(hash(key), hash(&key.clone()), "{key:?}");
        }
        // The free-form part is fed whole, past the buffer too.
        assert!(fed(&keys[14]).ends_with(long.as_bytes()));
    }
}
