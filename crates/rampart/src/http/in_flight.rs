//! Load shedding: a cap on the requests handled at once, in all and per client.
//!
//! Defends against overload turning into an outage: past the cap a request is answered 503 with
//! `Retry-After` straight away, because a queue would only turn overload into timeouts for
//! everyone, and memory held by waiting requests. One client (an address, an IPv6 /64) may hold
//! only an eighth of the slots, so a few hosts sending slow bodies cannot take them all.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::client_ip::ClientIp;
use super::stage::{stage_layer, Finish, Stage};
use crate::error::ApiError;
use crate::limit::ClientAddress;
use crate::telemetry::LogThrottle;

/// The layer that sheds load: past `max_in_flight` requests at once below it, in all or an
/// eighth of them for one client, a request is answered 503 with `Retry-After` at once. The
/// slot is held until the inner service has answered (a streamed body goes on without it).
/// Clients are told apart by [`ClientIp`] (see [`ClientIp::of`]).
#[derive(Debug, Clone)]
pub struct LoadShedLayer {
    slots: Arc<InFlight>,
}

impl LoadShedLayer {
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            slots: InFlight::new(max_in_flight),
        }
    }
}

impl Stage for LoadShedLayer {
    type Finish = Slot;

    fn enter(&self, request: &mut Request) -> Result<Slot, Response> {
        self.slots
            .admit(ClientIp::of(request.extensions()))
            .map_err(|why| self.slots.shed(why))
    }
}

/// Given back once the response is ready.
impl Finish for Slot {
    fn finish(self, response: Response) -> Response {
        drop(self);
        response
    }
}

stage_layer!(LoadShedLayer);

/// Per-client counters: clients hash (with a per-process key) into this many buckets, so the
/// count needs no lock and no memory per client. Two clients sharing a bucket share its cap,
/// which with this many buckets and an eighth of the slots each is rare and only ever strict.
const BUCKETS: usize = 4096;

/// The in-flight slots of one stack.
#[derive(Debug)]
pub(crate) struct InFlight {
    total: Arc<Semaphore>,
    limit: usize,
    per_client_limit: u32,
    per_client: Box<[AtomicU32]>,
    hasher: RandomState,
    log: LogThrottle,
}

/// A request's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<InFlight>,
    bucket: usize,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.per_client[self.bucket].fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlight {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        let limit = limit.max(1);
        Arc::new(Self {
            total: Arc::new(Semaphore::new(limit)),
            limit,
            per_client_limit: u32::try_from(limit / 8).unwrap_or(u32::MAX).max(1),
            per_client: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            hasher: RandomState::new(),
            log: LogThrottle::default(),
        })
    }

    /// A slot for a request from `ip`, or why there is none (for [`InFlight::shed`]).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let Ok(permit) = Arc::clone(&self.total).try_acquire_owned() else {
            return Err("in-flight request limit reached");
        };
        let bucket = self.bucket(ip);
        let counter = &self.per_client[bucket];
        if counter.fetch_add(1, Ordering::AcqRel) >= self.per_client_limit {
            counter.fetch_sub(1, Ordering::AcqRel);
            return Err("one client holds its share of in-flight requests");
        }
        Ok(Slot {
            slots: Arc::clone(self),
            bucket,
            _permit: permit,
        })
    }

    fn bucket(&self, ip: IpAddr) -> usize {
        let hash = self.hasher.hash_one(ClientAddress::of(ip));
        usize::try_from(hash % BUCKETS as u64).unwrap_or(0)
    }

    /// The 503 for a request [`InFlight::admit`] refused; logged at most once a second.
    pub(crate) fn shed(&self, why: &'static str) -> Response {
        if let Some(left_out) = self.log.admit() {
            tracing::warn!(
                limit = self.limit,
                per_client = self.per_client_limit,
                left_out,
                "{why}; shedding load with 503"
            );
        }
        let mut response = ApiError::Unavailable {
            retry_after: Duration::from_secs(1),
        }
        .into_response();
        // For the access log: a shed request is told apart from a dependency's outage.
        response
            .extensions_mut()
            .insert(crate::error::InternalCause(format!("load shed: {why}")));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn one_client_gets_an_eighth_and_the_rest_remain_for_others() {
        let slots = InFlight::new(16);
        // Clients in distinct buckets (the buckets are keyed per process), so the test is about
        // shares, not about which clients happen to share a bucket.
        let hog_bucket = slots.bucket(ip("203.0.113.1"));
        let six_net = (1..=255u16)
            .map(|n| format!("2001:db8:{n:x}::1"))
            .find(|a| slots.bucket(ip(a)) != hog_bucket)
            .unwrap_or_default();
        let six_host = six_net.replace("::1", "::2");
        let other = (1..=255u8)
            .map(|n| format!("198.51.100.{n}"))
            .find(|a| ![hog_bucket, slots.bucket(ip(&six_net))].contains(&slots.bucket(ip(a))))
            .unwrap_or_default();
        let hog: Vec<Slot> = (0..2)
            .filter_map(|_| slots.admit(ip("203.0.113.1")).ok())
            .collect();
        assert_eq!(hog.len(), 2);
        assert!(slots.admit(ip("203.0.113.1")).is_err(), "over its share");
        // Another host of the same /64 is the same client.
        let first = slots.admit(ip(&six_net));
        assert!(first.is_ok());
        let six: Vec<Slot> = (0..2)
            .filter_map(|_| slots.admit(ip(&six_host)).ok())
            .collect();
        assert_eq!(six.len(), 1);
        assert!(slots.admit(ip(&other)).is_ok(), "others still get in");
        drop(hog);
        assert!(slots.admit(ip("203.0.113.1")).is_ok(), "slots come back");
        drop((first, six));
        assert!(slots
            .per_client
            .iter()
            .all(|c| c.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn the_total_is_a_hard_cap() {
        let slots = InFlight::new(8);
        // Eight clients in eight buckets, each within its share of one.
        let mut buckets = Vec::new();
        let clients: Vec<IpAddr> = (0..=255u8)
            .map(|n| IpAddr::from([198, 51, 100, n]))
            .filter(|a| {
                let bucket = slots.bucket(*a);
                let fresh = !buckets.contains(&bucket);
                buckets.push(bucket);
                fresh
            })
            .take(8)
            .collect();
        let held: Vec<Slot> = clients
            .iter()
            .filter_map(|a| slots.admit(*a).ok())
            .collect();
        assert_eq!(held.len(), 8);
        assert!(slots.admit(ip("203.0.113.9")).is_err());
    }

    #[test]
    fn a_shed_request_is_a_503_whose_log_line_says_it_was_shed() {
        let slots = InFlight::new(8);
        let response = slots.shed("all request slots are taken");
        assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let cause = response.extensions().get::<crate::error::InternalCause>();
        assert_eq!(
            cause.map(|c| c.0.as_str()),
            Some("load shed: all request slots are taken")
        );
    }
}
