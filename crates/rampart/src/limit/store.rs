//! Where limiter state lives: the [`LimitStore`] trait and the keys it is addressed by.
//!
//! Defends against a limiter that can be dodged or exhausted: keys are built from the resolved
//! client ([`ClientAddress`] folds an IPv6 host's whole /64 into one key, so a host cannot rotate
//! through the addresses it is given), and a store must bound its own memory (see
//! [`super::MemoryStore`]). One node keeps state in process; several share a store that runs the
//! same arithmetic atomically, one round trip per check.

use std::fmt;
use std::future::Future;
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    pub policy: &'static str,
    pub subject: Subject,
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
}
