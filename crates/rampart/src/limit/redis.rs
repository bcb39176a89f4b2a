//! The shared limiter store: every node's counters in one Redis, so a limit is one limit
//! however many nodes answer.
//!
//! Defends against a limit multiplied by the node count (an attacker spreading guesses over N
//! nodes gets N budgets) and against races between nodes: each [`LimitStore`] method is one Lua
//! script, run atomically by Redis in one round trip, reading Redis's own clock (`TIME`) so nodes
//! with drifting clocks still agree. Keys hold a SHA-256 of the subject, never a login name or
//! an address in the clear, and every key expires once it no longer limits anything, so Redis
//! holds only live state. No crate implements GCRA and backoff streaks as Redis scripts with
//! these semantics (the in-process [`super::MemoryStore`] and this store must agree), so the
//! scripts are written here, mirroring [`super::gcra::step`] and
//! [`super::backoff::StreakState::attempt`] in microseconds (Lua numbers are doubles: exact
//! to 2^53, which microseconds since 1970 stay well under).
//!
//! Every call is bounded by a timeout; a failure is a [`LimitError`], and the caller decides
//! whether that fails open or closed. While Redis is down a circuit breaker fails calls at once
//! instead of dialling it for each one (see [`Breaker`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::backoff::{BackoffPolicy, Streak};
use super::gcra::{Decision, Quota};
use super::store::{LimitError, LimitFuture, LimitKey, LimitStore, Subject};

/// Reads Redis's clock in microseconds; shared by the scripts.
const NOW: &str =
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n";

/// GCRA, as [`super::gcra::step`]: KEYS[1] holds the theoretical arrival time (µs); KEYS[2],
/// when given, the announcement count, read in the same round trip. ARGV: interval (µs), burst,
/// cost. Returns {allowed, remaining or retry_after, reset, announcements}.
const CHECK: &str = r"
local announced = 0
if #KEYS > 1 then announced = tonumber(redis.call('GET', KEYS[2])) or 0 end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local ahead = tat + interval * cost - now
local allowed = interval * burst
if ahead > allowed then
  return {0, ahead - allowed, tat - now, announced}
end
if cost > 0 then
  redis.call('SET', KEYS[1], string.format('%.0f', now + ahead), 'PX', math.max(1, math.ceil(ahead / 1000)))
end
return {1, math.floor((allowed - ahead) / interval), ahead, announced}
";

/// An announcement: KEYS[1] counts them; ARGV: channel, message. Publishes "<count> <message>"
/// and returns the count, both in one atomic step, so the count a check reads never runs ahead
/// of the messages on the channel.
const ANNOUNCE: &str = r"
local count = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], count .. ' ' .. ARGV[2])
return count
";

/// A login attempt on a backoff streak, as [`super::backoff::StreakState::attempt`]: KEYS[1]
/// is a hash of failures (f), delay end (l, 0 when none started) and forget time (g), in µs.
/// ARGV: free failures, first delay, max delay, forget after (µs). Returns {0, wait} while a delay runs, else
/// {1, failures, has_delay, delay}.
const ATTEMPT: &str = r"
local s = redis.call('HMGET', KEYS[1], 'f', 'l', 'g')
local failures = tonumber(s[1]) or 0
local locked = tonumber(s[2]) or 0
local forget = tonumber(s[3]) or 0
if forget <= now then failures = 0 locked = 0 end
if locked > now then return {0, locked - now} end
failures = failures + 1
local free = math.max(1, tonumber(ARGV[1]))
local has_delay = 0
local delay = 0
if failures >= free then
  has_delay = 1
  delay = math.min(tonumber(ARGV[2]) * 2 ^ math.min(failures - free, 31), tonumber(ARGV[3]))
end
local forget_in = delay + tonumber(ARGV[4])
local ends = 0
if has_delay == 1 then ends = now + delay end
redis.call('HSET', KEYS[1], 'f', failures, 'l', string.format('%.0f', ends), 'g', string.format('%.0f', now + forget_in))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(forget_in / 1000)))
return {1, failures, has_delay, delay}
";

/// The delay still running on a streak (µs), or -1.
const PEEK: &str = r"
local s = redis.call('HMGET', KEYS[1], 'l', 'g')
local locked = tonumber(s[1]) or 0
local forget = tonumber(s[2]) or 0
if forget > now and locked > now then return locked - now end
return -1
";

/// Limiter state in Redis. Cheap to clone (the connection is multiplexed and reconnects on its
/// own after Redis restarts or the network fails).
#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    namespace: String,
    timeout: Duration,
    breaker: Arc<Breaker>,
    /// Calls that failed, timed out or were refused by the open breaker (for metrics).
    errors: Arc<AtomicU64>,
    /// Announcements: the counter's key, and the highest count any check has read.
    announcements: Option<String>,
    announced_seen: Arc<AtomicU64>,
    announce: Script,
    check: Script,
    attempt: Script,
    peek: Script,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("RedisStore")
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on `client`, its keys under `namespace` (so deployments can share a Redis), each
    /// call bounded by `timeout`. Connects lazily: a node starts while Redis is down, and its
    /// limits fail (open or closed, as the caller decides) until Redis answers.
    pub fn new(
        client: redis::Client,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Self, LimitError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| LimitError(err.to_string()))?;
        Ok(Self {
            connection,
            namespace: namespace.to_owned(),
            timeout,
            breaker: Arc::new(Breaker::new()),
            errors: Arc::default(),
            announcements: None,
            announced_seen: Arc::new(AtomicU64::new(0)),
            announce: Script::new(ANNOUNCE),
            check: Script::new(&format!("{NOW}{CHECK}")),
            attempt: Script::new(&format!("{NOW}{ATTEMPT}")),
            peek: Script::new(&format!("{NOW}{PEEK}")),
        })
    }

    /// Counts announcements under `name` (in the namespace) and has every check read the count,
    /// in the round trip it makes anyway. An application that broadcasts changes with
    /// [`RedisStore::announce`] learns from any request's limit check that a change was
    /// announced which it has not received yet ([`RedisStore::announcements_seen`]), and can
    /// wait for it instead of acting on stale state: no extra round trip per request.
    #[must_use]
    pub fn with_announcements(mut self, name: &str) -> Self {
        self.announcements = Some(format!("{}:{name}", self.namespace));
        self
    }

    /// Publishes `message` on `channel` as `"<count> <message>"`, counting it; returns the
    /// count. Fails at once while the breaker is open.
    pub async fn announce(&self, channel: &str, message: &str) -> Result<u64, LimitError> {
        let Some(counter) = &self.announcements else {
            return Err(LimitError("announcements are not enabled".into()));
        };
        let mut connection = self.connection.clone();
        let mut invocation = self.announce.key(counter);
        invocation.arg(channel).arg(message);
        let count: i64 = self
            .bounded(invocation.invoke_async(&mut connection))
            .await?;
        let count = u64::try_from(count).unwrap_or(0);
        self.announced_seen.fetch_max(count, Ordering::AcqRel);
        Ok(count)
    }

    /// The announcement count as Redis holds it now (one round trip).
    pub async fn announcements_now(&self) -> Result<u64, LimitError> {
        let Some(counter) = &self.announcements else {
            return Ok(0);
        };
        let mut connection = self.connection.clone();
        let count: Option<u64> = self
            .bounded(redis::cmd("GET").arg(counter).query_async(&mut connection))
            .await?;
        let count = count.unwrap_or(0);
        self.announced_seen.fetch_max(count, Ordering::AcqRel);
        Ok(count)
    }

    /// Calls that failed, timed out or were refused by the open breaker, since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The highest announcement count any call has read so far.
    pub fn announcements_seen(&self) -> u64 {
        self.announced_seen.load(Ordering::Acquire)
    }

    /// The multiplexed connection, for other users of the same Redis (the revocation
    /// broadcast), so a node keeps one connection and one reconnect policy.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// One round trip proving Redis answers (readiness).
    pub async fn ping(&self) -> Result<(), LimitError> {
        let mut connection = self.connection.clone();
        self.bounded(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
                .map(drop)
        })
        .await
    }

    fn key(&self, kind: &str, key: &LimitKey) -> String {
        // Tagged, with NUL between parts: no two subjects hash the same input (an address
        // never contains NUL, and it comes before the free-form name).
        let subject = match &key.subject {
            Subject::Address(address) => format!("a\0{address}"),
            Subject::User(id) => format!("u\0{id}"),
            Subject::Session(id) => format!("s\0{id}"),
            Subject::Name(name) => format!("n\0{name}"),
            Subject::AddressAndName(address, name) => format!("an\0{address}\0{name}"),
            Subject::Everyone => "e".to_owned(),
        };
        // 128 bits of the digest: collisions are out of reach, keys stay short.
        let digest = crate::tokens::sha256_hex(subject.as_bytes());
        format!("{}:{kind}:{}:{}", self.namespace, key.policy, &digest[..32])
    }

    /// Runs one call within the timeout, unless the breaker says Redis is down: then it fails
    /// at once (see [`Breaker`]).
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, LimitError> {
        let outcome = self.bounded_once(call).await;
        if outcome.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }

    async fn bounded_once<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, LimitError> {
        if let Err(retry_in) = self.breaker.admit() {
            return Err(LimitError(format!(
                "Redis is down (not dialled again for {retry_in:?})"
            )));
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => {
                self.breaker.succeeded();
                Ok(value)
            }
            Ok(Err(err)) => {
                if err.is_io_error()
                    || err.is_connection_refusal()
                    || err.is_connection_dropped()
                    || err.is_timeout()
                    || err.is_unrecoverable_error()
                {
                    self.breaker.failed();
                } else {
                    // Redis answered (a script error, say): it is up.
                    self.breaker.succeeded();
                }
                Err(LimitError(err.to_string()))
            }
            Err(_) => {
                self.breaker.failed();
                Err(LimitError(format!("no answer within {:?}", self.timeout)))
            }
        }
    }
}

/// A circuit breaker for the Redis connection.
///
/// Defends the fail-open path against paying for an outage on every request: without it each
/// request would wait for a connection attempt (about 150 ms where the address refuses, the
/// whole timeout where packets are dropped) before the limiter gives up. After a connection-level
/// failure the breaker opens: calls fail at once for a cool-down (250 ms, doubling with each
/// failed probe up to 2 s); then one call at a time is let through as a probe, and the first
/// that succeeds closes it. So an outage costs microseconds per request, and recovery is seen
/// within the cool-down of Redis coming back.
#[derive(Debug)]
struct Breaker {
    started: std::time::Instant,
    /// Milliseconds after `started` until which calls fail at once; 0 when closed.
    open_until: AtomicU64,
    /// Consecutive failed probes, for the cool-down's growth.
    failures: AtomicU32,
    /// A probe is in flight; the others keep failing fast until it returns.
    probing: AtomicBool,
}

const FIRST_COOL_DOWN: Duration = Duration::from_millis(250);
const LONGEST_COOL_DOWN: Duration = Duration::from_secs(2);

impl Breaker {
    fn new() -> Self {
        Self {
            started: std::time::Instant::now(),
            open_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// `Ok` when a call may go out (always, while closed; one probe at a time once the
    /// cool-down is over); `Err` with the cool-down left otherwise.
    fn admit(&self) -> Result<(), Duration> {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        if now < until {
            return Err(Duration::from_millis(until - now));
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Ok(());
        }
        Err(Duration::ZERO)
    }

    fn succeeded(&self) {
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("Redis answers again");
        }
        self.failures.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    fn failed(&self) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel);
        let cool_down = FIRST_COOL_DOWN
            .saturating_mul(1u32.checked_shl(failures.min(8)).unwrap_or(u32::MAX))
            .min(LONGEST_COOL_DOWN);
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(cool_down.as_millis()).unwrap_or(u64::MAX))
            .max(1);
        self.open_until.store(until, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn malformed(reply: &[i64]) -> LimitError {
    LimitError(format!("unexpected script reply {reply:?}"))
}

impl LimitStore for RedisStore {
    fn check<'a>(
        &'a self,
        key: &'a LimitKey,
        quota: Quota,
        cost: u32,
    ) -> LimitFuture<'a, Decision> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let mut invocation = self.check.key(self.key("rl", key));
            if let Some(counter) = &self.announcements {
                invocation.key(counter);
            }
            invocation
                .arg(micros(quota.interval()).max(1))
                .arg(quota.burst())
                .arg(cost);
            let reply: Vec<i64> = self
                .bounded(invocation.invoke_async(&mut connection))
                .await?;
            let decision = match reply.as_slice() {
                [1, remaining, reset, _] => Decision::Allowed {
                    remaining: u32::try_from(*remaining).unwrap_or(0).min(quota.burst()),
                    reset: from_micros(*reset),
                },
                [0, retry_after, reset, _] => Decision::Denied {
                    retry_after: from_micros(*retry_after),
                    reset: from_micros(*reset),
                },
                _ => return Err(malformed(&reply)),
            };
            if let Some(&announced) = reply.get(3) {
                self.announced_seen
                    .fetch_max(u64::try_from(announced).unwrap_or(0), Ordering::AcqRel);
            }
            Ok(decision)
        })
    }

    fn begin_attempt<'a>(
        &'a self,
        key: &'a LimitKey,
        policy: BackoffPolicy,
    ) -> LimitFuture<'a, Result<Streak, Duration>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let mut invocation = self.attempt.key(self.key("bo", key));
            invocation
                .arg(policy.free_failures)
                .arg(micros(policy.first_delay))
                .arg(micros(policy.max_delay))
                .arg(micros(policy.forget_after));
            let reply: Vec<i64> = self
                .bounded(invocation.invoke_async(&mut connection))
                .await?;
            match reply.as_slice() {
                [0, wait] => Ok(Err(from_micros(*wait))),
                [1, failures, has_delay, delay] => Ok(Ok(Streak {
                    failures: u32::try_from(*failures).unwrap_or(u32::MAX),
                    delay: (*has_delay == 1).then(|| from_micros(*delay)),
                })),
                _ => Err(malformed(&reply)),
            }
        })
    }

    fn backoff<'a>(&'a self, key: &'a LimitKey) -> LimitFuture<'a, Option<Duration>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let invocation = self.peek.key(self.key("bo", key));
            let wait: i64 = self
                .bounded(invocation.invoke_async(&mut connection))
                .await?;
            Ok((wait >= 0).then(|| from_micros(wait)))
        })
    }

    fn clear_backoff<'a>(&'a self, key: &'a LimitKey) -> LimitFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let name = self.key("bo", key);
            self.bounded(async move {
                redis::cmd("DEL")
                    .arg(name)
                    .query_async::<i64>(&mut connection)
                    .await
                    .map(drop)
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_fails_fast_while_open_and_lets_one_probe_through_after_the_cool_down() {
        let breaker = Breaker::new();
        assert_eq!(breaker.admit(), Ok(()), "closed: every call goes out");
        assert_eq!(breaker.admit(), Ok(()));
        breaker.failed();
        let waiting = breaker.admit().err();
        assert!(waiting.is_some_and(|left| left <= FIRST_COOL_DOWN));
        std::thread::sleep(FIRST_COOL_DOWN + Duration::from_millis(20));
        assert_eq!(breaker.admit(), Ok(()), "one probe");
        assert!(breaker.admit().is_err(), "only one at a time");
        // The probe failed: a longer cool-down.
        breaker.failed();
        let waiting = breaker.admit().err();
        assert!(waiting.is_some_and(|left| left > FIRST_COOL_DOWN));
        // A probe that succeeds closes it.
        std::thread::sleep(FIRST_COOL_DOWN * 2 + Duration::from_millis(20));
        assert_eq!(breaker.admit(), Ok(()));
        breaker.succeeded();
        assert_eq!(breaker.admit(), Ok(()));
        assert_eq!(breaker.admit(), Ok(()));
    }

    #[test]
    fn the_cool_down_stops_growing_at_its_cap() {
        let breaker = Breaker::new();
        for _ in 0..40 {
            breaker.failed();
        }
        let waiting = breaker.admit().err();
        assert!(waiting.is_some_and(|left| left <= LONGEST_COOL_DOWN));
    }
}
