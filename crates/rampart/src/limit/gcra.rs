//! The generic cell rate algorithm (GCRA): one timestamp per key, exact rates, no timers.
//!
//! A key's whole state is its theoretical arrival time (TAT): the moment its quota would be
//! full again if nothing else arrived. A request of cost `c` is allowed when moving the TAT on by
//! `c` emission intervals leaves it no further than `burst` intervals ahead of now. Compared with
//! fixed windows there is no boundary at which a client may send twice its quota, and compared
//! with token buckets there is nothing to refill: the same arithmetic runs in process or in a
//! shared store's script, which is why it is written here rather than taken from a crate whose
//! state cannot leave the process.

use std::time::Duration;

use crate::settings::Rate;

/// A rate limit: `burst` requests at once, then one per `interval`. `burst` is the rate's
/// count, so `10/minute` allows ten at once and then one every six seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    interval_ns: u64,
    burst: u32,
    window: Duration,
}

impl Quota {
    pub fn from_rate(rate: Rate) -> Self {
        let window = rate.period();
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Self {
            // Rounded down but never zero: a billion a second still advances the clock.
            interval_ns: (window_ns / u64::from(rate.count())).max(1),
            burst: rate.count(),
            window,
        }
    }

    /// `count` per `window`; `None` when either is zero.
    pub fn new(count: u32, window: Duration) -> Option<Self> {
        Rate::new(count, window).map(Self::from_rate)
    }

    /// Requests allowed at once (the `q` of `RateLimit-Policy`).
    pub fn burst(self) -> u32 {
        self.burst
    }

    /// The period the burst refills over (the `w` of `RateLimit-Policy`).
    pub fn window(self) -> Duration {
        self.window
    }

    pub fn interval(self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }

    fn span(self, cost: u32) -> u64 {
        self.interval_ns.saturating_mul(u64::from(cost))
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        /// Requests still allowed right now.
        remaining: u32,
        /// Until the quota is whole again.
        reset: Duration,
    },
    Denied {
        /// Until a request of the same cost would be allowed.
        retry_after: Duration,
        reset: Duration,
    },
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        matches!(self, Self::Allowed { .. })
    }
}

/// One GCRA step at `now` (nanoseconds on any clock that only moves forward) for a key whose
/// stored TAT is `tat` (`None` for an unknown key). Returns the decision and, when the request is
/// allowed with a non-zero cost, the TAT to store. A cost of zero reports without spending.
pub fn step(quota: Quota, tat: Option<u64>, now: u64, cost: u32) -> (Decision, Option<u64>) {
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(quota.span(cost));
    // How far ahead of now the quota would be committed, against how far it may be. Measured
    // from now rather than as absolute times, so a clock that starts at zero cannot underflow.
    let ahead = new_tat - now;
    let allowed_ahead = quota.span(quota.burst);
    if ahead > allowed_ahead {
        let decision = Decision::Denied {
            retry_after: Duration::from_nanos(ahead - allowed_ahead),
            reset: Duration::from_nanos(tat - now),
        };
        return (decision, None);
    }
    let remaining = (allowed_ahead - ahead) / quota.interval_ns;
    let decision = Decision::Allowed {
        remaining: u32::try_from(remaining)
            .unwrap_or(u32::MAX)
            .min(quota.burst),
        reset: Duration::from_nanos(ahead),
    };
    (decision, (cost > 0).then_some(new_tat))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn ten_per_minute() -> Quota {
        Quota::new(10, Duration::from_secs(60)).unwrap_or(Quota {
            interval_ns: 1,
            burst: 1,
            window: Duration::ZERO,
        })
    }

    /// Runs `n` checks at `now`, threading the stored TAT, and returns the decisions.
    fn run(quota: Quota, tat: &mut Option<u64>, now: u64, n: usize) -> Vec<Decision> {
        (0..n)
            .map(|_| {
                let (decision, stored) = step(quota, *tat, now, 1);
                if stored.is_some() {
                    *tat = stored;
                }
                decision
            })
            .collect()
    }

    #[test]
    fn the_burst_is_allowed_and_the_next_request_is_not() {
        let q = ten_per_minute();
        let mut tat = None;
        // From the clock's very start: nothing may underflow.
        let decisions = run(q, &mut tat, 0, 11);
        for (i, d) in decisions[..10].iter().enumerate() {
            assert_eq!(
                *d,
                Decision::Allowed {
                    remaining: 9 - u32::try_from(i).unwrap_or(0),
                    reset: Duration::from_secs(6 * (i as u64 + 1)),
                }
            );
        }
        assert_eq!(
            decisions[10],
            Decision::Denied {
                retry_after: Duration::from_secs(6),
                reset: Duration::from_secs(60),
            }
        );
    }

    #[test]
    fn quota_refills_at_the_rate_and_no_faster() {
        let q = ten_per_minute();
        let mut tat = None;
        run(q, &mut tat, 0, 10);
        assert!(
            !run(q, &mut tat, 5 * SEC, 1)[0].is_allowed(),
            "5 s < one interval"
        );
        assert!(run(q, &mut tat, 6 * SEC, 1)[0].is_allowed());
        assert!(!run(q, &mut tat, 6 * SEC, 1)[0].is_allowed());
        // After a whole window idle the full burst is back, not more.
        let later = run(q, &mut tat, 1000 * SEC, 11);
        assert_eq!(later.iter().filter(|d| d.is_allowed()).count(), 10);
    }

    #[test]
    fn denied_requests_do_not_spend() {
        let q = ten_per_minute();
        let mut tat = None;
        run(q, &mut tat, 0, 10);
        let before = tat;
        run(q, &mut tat, SEC, 1000);
        assert_eq!(
            tat, before,
            "hammering while limited must not push the limit out"
        );
    }

    #[test]
    fn cost_zero_reports_without_spending_and_cost_counts_units() {
        let q = ten_per_minute();
        let (d, stored) = step(q, None, 0, 0);
        assert_eq!(
            d,
            Decision::Allowed {
                remaining: 10,
                reset: Duration::ZERO
            }
        );
        assert_eq!(stored, None);
        let (d, stored) = step(q, None, 0, 4);
        assert_eq!(
            d,
            Decision::Allowed {
                remaining: 6,
                reset: Duration::from_secs(24)
            }
        );
        let (d, _) = step(q, stored, 0, 7);
        assert!(!d.is_allowed(), "7 units with 6 left");
    }

    #[test]
    fn extreme_rates_neither_overflow_nor_stall() {
        let fast = Quota::new(u32::MAX, Duration::from_secs(1)).unwrap_or(ten_per_minute());
        let (d, _) = step(fast, Some(u64::MAX - 1), u64::MAX - 2, u32::MAX);
        let _ = d; // saturating arithmetic: any answer, no panic
        let slow = Quota::new(1, Duration::from_secs(3600)).unwrap_or(ten_per_minute());
        let (d, tat) = step(slow, None, 0, 1);
        assert!(d.is_allowed());
        assert!(!step(slow, tat, 3599 * SEC, 1).0.is_allowed());
        assert!(step(slow, tat, 3600 * SEC, 1).0.is_allowed());
    }
}
