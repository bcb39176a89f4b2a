//! Several nodes acting as one: what one node revokes or locks, every node refuses.
//!
//! Defends against a token staying usable on the nodes that did not handle its logout, its
//! refresh-reuse detection or its account's lock. Each node keeps revocations and users' access
//! in memory ([`crate::access`]), so three things keep those copies current:
//!
//! - **At once:** a change is written to the database, then announced on a Redis channel; every
//!   node applies it on receipt. The revoking node announces before it answers. Announcements
//!   are counted in Redis, and every request's rate-limit check (the round trip it makes
//!   anyway) reads the count: a node that has seen a count above the announcements it has
//!   applied waits for the message (or reads the database) before it lets a token through, so
//!   a request sent the moment the 204 of a logout arrives is refused on every node, even
//!   when the message itself is still on its way.
//! - **Within a bound, whatever Redis does:** every node also polls the database for sessions
//!   revoked and users changed since its last look (overlapping the previous look by a minute,
//!   so moderate clock skew between nodes cannot hide a change). A node cut off from Redis, or
//!   one whose peer could not publish, still learns of every change within a third of
//!   `RAMPART_REVOCATION_BOUND`. A resubscription after Redis comes back polls at once.
//! - **Never fail open:** a node that has not completed a poll within `RAMPART_REVOCATION_BOUND`
//!   cannot be sure any session is still live, so it refuses every token (503) until it has.
//!
//! Messages carry ids, never access state: a "user changed" message only makes a node re-read
//! that user from the database, so whoever can publish on the channel can at worst end sessions
//! early, never unlock an account or grant a role.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::access::{AccessState, UserAccess};
use crate::store::EndedSession;

mod sync;

pub use sync::{start_sync, Syncer};

/// How far each poll reaches back before the previous one began.
const POLL_OVERLAP: Duration = Duration::from_secs(60);
/// Announcements' count key, under the namespace.
pub const ANNOUNCEMENTS: &str = "access-announcements";
/// How long a request waits for an announced change's message before asking for a poll.
const MESSAGE_WAIT: Duration = Duration::from_millis(100);
/// How long it then waits for the poll.
const POLL_WAIT: Duration = Duration::from_secs(2);
/// How soon a failed poll is tried again (doubling up to the poll interval).
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Bound on one Redis call (publish, subscribe).
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Larger messages are ignored: a sender would be broken or hostile.
const MAX_MESSAGE: usize = 64 * 1024;
/// Sessions per message when a revoke-all ends many.
const SESSIONS_PER_MESSAGE: usize = 500;

/// One change, as published.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Message {
    /// Sessions ended: `(id, last_used_at)`, the age deciding how long to remember each.
    Ended { sessions: Vec<(String, String)> },
    /// A user's role or lock changed: re-read it from the database.
    User { id: String },
}

/// How current this node's view of revocations is.
#[derive(Debug)]
pub struct Freshness {
    started: Instant,
    /// Milliseconds after `started` when the last complete poll began.
    synced_ms: AtomicU64,
    /// `None` on a store only this process uses: nothing can change behind its back.
    bound: Option<Duration>,
}

impl Freshness {
    fn new(bound: Option<Duration>) -> Self {
        Self {
            started: Instant::now(),
            synced_ms: AtomicU64::new(0),
            bound,
        }
    }

    /// Whether tokens may be accepted: every change made before `bound` ago is known here.
    pub fn is_current(&self) -> bool {
        let Some(bound) = self.bound else {
            return true;
        };
        let synced = Duration::from_millis(self.synced_ms.load(Ordering::Acquire));
        self.started.elapsed().saturating_sub(synced) <= bound
    }

    pub(crate) fn synced_at(&self, at: Instant) {
        let ms = u64::try_from(at.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        self.synced_ms.fetch_max(ms, Ordering::AcqRel);
    }
}

/// This node's link to the others: the publisher and the freshness of its view.
#[derive(Debug)]
pub struct Cluster {
    bus: Option<Bus>,
    pub freshness: Freshness,
    /// How often the database is polled for changes made elsewhere.
    poll_every: Duration,
    /// Wakes the poller early (after a resubscription).
    resync: Notify,
    /// Every announcement up to this count has been applied here.
    applied: AtomicU64,
    /// Woken whenever `applied` moves.
    applied_moved: Notify,
}

struct Bus {
    client: redis::Client,
    /// The limiter's store: its connection carries the announcements, and its checks read
    /// their count.
    store: rampart::limit::RedisStore,
    channel: String,
    failures: rampart::telemetry::LogThrottle,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A node alone on its SQLite file. It still polls, every third of `bound`, so a session
    /// revoked or a user changed in the file by hand (or by another tool) is seen, but it never
    /// refuses tokens for want of a poll: nothing else can write the file unannounced often
    /// enough to matter, and the users' roles and locks are rechecked within `bound` anyway.
    pub fn single(bound: Duration) -> Self {
        Self {
            bus: None,
            freshness: Freshness::new(None),
            poll_every: bound / 3,
            resync: Notify::new(),
            applied: AtomicU64::new(0),
            applied_moved: Notify::new(),
        }
    }

    /// A node sharing its database with others, announcing through Redis when given: the
    /// client opens the subscription, the limiter's store (with announcements enabled, see
    /// [`ANNOUNCEMENTS`]) carries the announcements. `applied` is the announcement count read
    /// before the start-up load of recent revocations: everything up to it is known.
    pub fn shared(
        redis: Option<(redis::Client, rampart::limit::RedisStore)>,
        namespace: &str,
        bound: Duration,
        applied: u64,
    ) -> Self {
        let bus = redis.map(|(client, store)| Bus {
            client,
            store,
            channel: format!("{namespace}:access"),
            failures: rampart::telemetry::LogThrottle::default(),
        });
        let cluster = Self {
            bus,
            freshness: Freshness::new(Some(bound)),
            poll_every: bound / 3,
            resync: Notify::new(),
            applied: AtomicU64::new(applied),
            applied_moved: Notify::new(),
        };
        // The start-up load of recent revocations counts as the first sync.
        cluster.freshness.synced_at(Instant::now());
        cluster
    }
}

impl Cluster {
    /// Tells the other nodes that `ended` sessions were revoked. Waits for Redis (bounded), so
    /// the answer to the revoking request leaves after the message; a failure is logged, and
    /// the other nodes' polls catch the change within the bound.
    async fn announce_ended(&self, ended: &[EndedSession]) {
        for chunk in ended.chunks(SESSIONS_PER_MESSAGE) {
            let sessions = chunk
                .iter()
                .map(|s| (s.id.clone(), s.last_used_at.to_string()))
                .collect();
            self.publish(&Message::Ended { sessions }).await;
        }
    }

    /// Tells the other nodes that `user_id`'s role or lock changed.
    async fn announce_user(&self, user_id: &str) {
        self.publish(&Message::User {
            id: user_id.to_owned(),
        })
        .await;
    }

    async fn publish(&self, message: &Message) {
        let Some(bus) = &self.bus else {
            return;
        };
        let Ok(payload) = serde_json::to_string(message) else {
            return;
        };
        let failure = match bus.store.announce(&bus.channel, &payload).await {
            Ok(_) => return,
            Err(err) => err.to_string(),
        };
        if let Some(left_out) = bus.failures.admit() {
            tracing::error!(
                error = %failure,
                left_out,
                "could not broadcast an access change; other nodes learn of it by polling"
            );
        }
    }
}

/// An access change made on this node: applied here at once and announced to the others.
/// What every session end, role change and lock goes through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Revocations {
    access: Arc<AccessState>,
    cluster: Arc<Cluster>,
}

impl Revocations {
    pub fn new(access: Arc<AccessState>, cluster: Arc<Cluster>) -> Self {
        Self { access, cluster }
    }

    /// `ended` sessions' access tokens stop working here now, and on the other nodes when the
    /// message reaches them (or their next poll, within the revocation bound).
    pub async fn sessions_ended(&self, ended: &[EndedSession]) {
        self.access.forget_sessions(ended);
        self.cluster.announce_ended(ended).await;
    }

    /// `user_id`'s role or lock applies here from the next request, and on the other nodes
    /// as above.
    pub async fn user_changed(&self, user_id: &str, access: UserAccess) {
        self.access.set_user(user_id, access);
        self.cluster.announce_user(user_id).await;
    }
}

impl Cluster {
    /// Asks the poller to try now: a request was refused because the last poll is too old.
    pub fn resync_now(&self) {
        self.resync.notify_one();
    }

    /// Notes that every announcement up to `count` is applied here.
    fn applied_up_to(&self, count: u64) {
        if self.applied.fetch_max(count, Ordering::AcqRel) < count {
            self.applied_moved.notify_waiters();
        }
    }

    /// Reads the announcement count from Redis, for a request whose limit check did not (one
    /// round trip). Redis failing too: logged, and this node is as current as its polling
    /// keeps it (within the revocation bound), as with Redis down.
    pub async fn read_announcements(&self) {
        let Some(bus) = &self.bus else {
            return;
        };
        if let Err(err) = bus.store.announcements_now().await {
            if let Some(left_out) = bus.failures.admit() {
                tracing::warn!(
                    error = %err,
                    left_out,
                    "could not read the announcement count; access changes made on other \
                     nodes apply here within the revocation bound"
                );
            }
        }
    }

    /// Whether [`Cluster::read_announcements`] and [`Cluster::catch_up_on_announcements`]
    /// would have nothing to wait for: a single node, or a request whose limit check read the
    /// count (`charged`) with nothing announced above what this node has applied.
    pub fn caught_up_at_once(&self, charged: rampart::policy::Charged) -> bool {
        let Some(bus) = &self.bus else {
            return true;
        };
        charged == rampart::policy::Charged::Answered
            && self.applied.load(Ordering::Acquire) >= bus.store.announcements_seen()
    }

    /// Before a token is accepted: if any request's limit check has read an announcement count
    /// above what this node has applied, waits for those announcements (a moment for the
    /// message, then a poll of the database), so the checks that follow see them. An error
    /// (503) when they cannot be had in time: refusing is safe, accepting might not be.
    pub async fn catch_up_on_announcements(&self) -> Result<(), rampart::ApiError> {
        let Some(bus) = &self.bus else {
            return Ok(());
        };
        let seen = bus.store.announcements_seen();
        if self.applied.load(Ordering::Acquire) >= seen {
            return Ok(());
        }
        if self.applied_within(seen, MESSAGE_WAIT).await {
            return Ok(());
        }
        self.resync_now();
        if self.applied_within(seen, POLL_WAIT).await {
            return Ok(());
        }
        Err(rampart::ApiError::DependencyUnavailable {
            retry_after: Duration::from_secs(1),
            cause: "access changes announced but not yet applied on this node".into(),
        })
    }

    async fn applied_within(&self, count: u64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let moved = self.applied_moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if self.applied.load(Ordering::Acquire) >= count {
                return true;
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return self.applied.load(Ordering::Acquire) >= count;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_alone_is_always_current() {
        assert!(Freshness::new(None).is_current());
    }

    #[test]
    fn a_shared_node_is_current_only_within_the_bound_of_its_last_sync() {
        let fresh = Freshness::new(Some(Duration::from_millis(50)));
        fresh.synced_at(Instant::now());
        assert!(fresh.is_current());
        std::thread::sleep(Duration::from_millis(70));
        assert!(!fresh.is_current(), "no sync for longer than the bound");
        fresh.synced_at(Instant::now());
        assert!(fresh.is_current());
        // A poll that began earlier but finished later never moves the mark back.
        fresh.synced_at(fresh.started);
        assert!(fresh.is_current());
    }

    #[test]
    fn messages_are_parsed_strictly() {
        let ended: Message = serde_json::from_str(
            r#"{"kind":"ended","sessions":[["s1","2026-01-01T00:00:00.000000Z"]]}"#,
        )
        .unwrap();
        assert_eq!(
            ended,
            Message::Ended {
                sessions: vec![("s1".into(), "2026-01-01T00:00:00.000000Z".into())]
            }
        );
        for bad in [
            r#"{"kind":"user","id":"u1","locked":false}"#,
            r#"{"kind":"grant","id":"u1"}"#,
            r#"{"kind":"user"}"#,
        ] {
            assert!(serde_json::from_str::<Message>(bad).is_err(), "{bad}");
        }
    }
}
