//! Catching up with the other nodes: the poller and the subscriber (see the module above for
//! the three ways a node stays current).
//!
//! Defends against a node that keeps accepting what another node revoked: the poller reads
//! every change since its last look, retrying soon after a failure so a node is current again
//! within a moment of its database's return; the subscriber applies announcements as they
//! arrive and asks for a poll when it sees it missed some.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use rampart::password::PasswordHasher;
use tokio::sync::Notify;

use super::{Cluster, Message, FIRST_RETRY, MAX_MESSAGE, POLL_OVERLAP, REDIS_TIMEOUT};
use crate::access::{AccessState, UserAccess};
use crate::store::{AccessChanges, EndedSession, Store, Timestamp};

/// What the poller and the subscriber keep current from the other nodes' changes; cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Syncer {
    pub cluster: Arc<Cluster>,
    pub access: Arc<AccessState>,
    pub store: Arc<dyn Store>,
    /// For whether a changed user's hash has a cost the login decoys never sampled.
    pub hasher: PasswordHasher,
    /// Woken when one has (the decoys are resampled).
    pub decoys_stale: Arc<Notify>,
}

/// Starts this node's poller and, with Redis, its subscriber.
pub fn start_sync(state: Syncer) {
    tokio::spawn(poll(state.clone(), state.cluster.poll_every));
    if state.cluster.bus.is_some() {
        tokio::spawn(subscribe(state));
    }
}

/// Applies changes made elsewhere: revocations join the set, changed users that this node
/// has cached are re-read (an uncached user is read fresh on its next request anyway).
fn apply_changes(state: &Syncer, changes: AccessChanges) {
    state.access.forget_sessions(&changes.ended);
    // An imported cost the login decoys lack would tell those accounts from missing ones
    // until the next periodic sample: sample now instead.
    if changes
        .users
        .iter()
        .any(|user| state.hasher.is_new_cost(&user.password_hash))
    {
        state.decoys_stale.notify_one();
    }
    for user in changes.users {
        state.access.update_cached(
            &user.id,
            UserAccess {
                role: user.role,
                locked: user.locked,
            },
        );
    }
}

async fn apply_message(state: &Syncer, payload: &[u8]) {
    if payload.len() > MAX_MESSAGE {
        tracing::warn!(
            bytes = payload.len(),
            "ignored an oversized cluster message"
        );
        return;
    }
    // "<count> <json>"; a message without a count (an older node) is applied uncounted.
    let (count, json) = match payload.iter().position(|b| *b == b' ') {
        Some(space) => match std::str::from_utf8(&payload[..space])
            .ok()
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(count) => (Some(count), &payload[space + 1..]),
            None => (None, payload),
        },
        None => (None, payload),
    };
    match serde_json::from_slice::<Message>(json) {
        Ok(Message::Ended { sessions }) => {
            let ended: Vec<EndedSession> = sessions
                .into_iter()
                .map(|(id, last_used_at)| EndedSession {
                    id,
                    // Unreadable is taken as now: remembered the longest.
                    last_used_at: Timestamp::parse(&last_used_at)
                        .unwrap_or_else(|_| Timestamp::now()),
                })
                .collect();
            state.access.forget_sessions(&ended);
        }
        Ok(Message::User { id }) => match state.store.find_user(&id).await {
            Ok(Some(user)) => state.access.update_cached(
                &id,
                UserAccess {
                    role: user.role,
                    locked: user.locked,
                },
            ),
            Ok(None) => {}
            // The poll will carry the change instead; until then the count stays behind.
            Err(err) => {
                tracing::warn!(error = %err, "could not re-read a changed user");
                state.cluster.resync_now();
                return;
            }
        },
        Err(err) => {
            tracing::warn!(error = %err, "ignored a malformed cluster message");
            return;
        }
    }
    let Some(count) = count else { return };
    let applied = state.cluster.applied.load(Ordering::Acquire);
    if count == applied + 1 {
        state.cluster.applied_up_to(count);
    } else if count > applied + 1 {
        // Messages were missed (the subscription dropped them): the database has them.
        state.cluster.resync_now();
    }
}

/// Polls the database for changes every `every`, and at once when woken (by a resubscription,
/// or by a request refused for want of a recent poll). A failed poll is retried soon (from
/// 250 ms, doubling up to `every`), so a node is current again within a moment of its
/// database's return rather than a whole interval later.
async fn poll(state: Syncer, every: Duration) {
    let mut since = time::OffsetDateTime::now_utc() - state.access.window();
    let failures = rampart::telemetry::LogThrottle::default();
    let mut wait = every;
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.cluster.resync.notified() => {}
        }
        let began = Instant::now();
        let began_utc = time::OffsetDateTime::now_utc();
        // Every change announced up to this count was committed before this poll begins.
        let announced = match &state.cluster.bus {
            Some(bus) => bus.store.announcements_now().await.ok(),
            None => None,
        };
        let look_from = Timestamp::from(since - POLL_OVERLAP);
        match tokio::time::timeout(
            every.max(REDIS_TIMEOUT),
            state.store.changes_since(look_from),
        )
        .await
        {
            Ok(Ok(changes)) => {
                apply_changes(&state, changes);
                state.cluster.freshness.synced_at(began);
                if let Some(count) = announced {
                    state.cluster.applied_up_to(count);
                }
                since = began_utc;
                wait = every;
            }
            outcome => {
                wait = if wait >= every {
                    FIRST_RETRY
                } else {
                    (wait * 2).min(every)
                };
                if let Some(left_out) = failures.admit() {
                    let error = match outcome {
                        Ok(Err(err)) => err.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::error!(
                        %error,
                        left_out,
                        "could not poll for revocations; tokens are refused past the bound"
                    );
                }
            }
        }
    }
}

/// Listens on the channel, reconnecting (with backoff) whenever the connection ends, and asks
/// for a poll after each (re)subscription: messages sent while it was away are lost, the
/// database still has the changes.
async fn subscribe(state: Syncer) {
    let Some(bus) = &state.cluster.bus else {
        return;
    };
    let mut delay = Duration::from_millis(100);
    let failures = rampart::telemetry::LogThrottle::default();
    loop {
        let connected = tokio::time::timeout(REDIS_TIMEOUT, async {
            let mut pubsub = bus.client.get_async_pubsub().await?;
            pubsub.subscribe(&bus.channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(pubsub)) => {
                delay = Duration::from_millis(100);
                state.cluster.resync.notify_one();
                tracing::info!(channel = %bus.channel, "subscribed to access changes");
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    apply_message(&state, message.get_payload_bytes()).await;
                }
                tracing::warn!("access-change subscription ended; reconnecting");
            }
            outcome => {
                if let Some(left_out) = failures.admit() {
                    let error = match outcome {
                        Ok(Err(err)) => err.to_string(),
                        _ => "timed out".to_owned(),
                    };
                    tracing::warn!(%error, left_out, "cannot subscribe to access changes");
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
