//! Request bodies are received in full before a request takes an in-flight slot.
//!
//! Defends against slow-body exhaustion: a client that declares `Content-Length: 1000` and then
//! sends a byte a second would otherwise hold one of the few in-flight slots (and a worker) for
//! the whole request timeout, and a thousand such requests from a handful of addresses keep
//! everyone else out. Here a body being received holds no slot at all; it must arrive whole
//! within the body timeout (like the header timeout for the head), or the request is answered
//! 408 and the connection closed. Only then does the request compete for a slot, with its body
//! already in memory, so the slot is held only for the handler's own work.
//!
//! Received bytes are the scarce thing instead, so they are bounded: bodies being received or
//! handled hold at most [`BodyIntake::budget`] bytes in all, and one client (an address, an
//! IPv6 /64) an eighth of that; past either, 503 with `Retry-After` at once. Holding that
//! memory means actually sending it, so what used to take a trickle of bytes now takes the
//! bandwidth to fill the budget again every body timeout.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::limit::ClientAddress;
use crate::telemetry::LogThrottle;

/// Per-client byte counters, hashed like the in-flight counters (see `in_flight`).
const BUCKETS: usize = 4096;
/// The smallest budget, whatever the body limit.
const MIN_BUDGET: usize = 64 * 1024 * 1024;
/// How many bodies of the largest allowed size the budget holds at least.
const BUDGET_BODIES: usize = 64;

/// Body reception for one stack.
#[derive(Debug)]
pub(crate) struct BodyIntake {
    bytes: Arc<Semaphore>,
    budget: usize,
    per_client_limit: usize,
    per_client: Box<[AtomicUsize]>,
    hasher: RandomState,
    timeout: Duration,
    limit: usize,
    log: LogThrottle,
}

/// The bytes a received body holds against the budget; given back when dropped (after the
/// handler has finished with the body).
#[derive(Debug)]
pub(crate) struct Held {
    intake: Arc<BodyIntake>,
    bucket: usize,
    bytes: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.intake.per_client[self.bucket].fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl BodyIntake {
    /// `limit` is the body size limit, `timeout` the time a whole body may take to arrive.
    pub(crate) fn new(limit: usize, timeout: Duration) -> Arc<Self> {
        let budget = Self::budget(limit);
        Arc::new(Self {
            bytes: Arc::new(Semaphore::new(budget)),
            budget,
            per_client_limit: budget / 8,
            per_client: (0..BUCKETS).map(|_| AtomicUsize::new(0)).collect(),
            hasher: RandomState::new(),
            timeout,
            limit,
            log: LogThrottle::default(),
        })
    }

    /// Bytes that bodies may hold at once: 64 of the largest allowed, and at least 64 MiB, so
    /// one client's eighth always fits eight whole bodies.
    pub(crate) fn budget(limit: usize) -> usize {
        limit
            .saturating_mul(BUDGET_BODIES)
            .clamp(MIN_BUDGET, Semaphore::MAX_PERMITS)
    }

    /// Receives the whole body of `request` from `client`, within the timeout, the size limit
    /// and the budget; hands back the request with its body in memory. A request without a
    /// body passes straight through.
    pub(crate) async fn receive(
        self: &Arc<Self>,
        request: Request,
        client: IpAddr,
    ) -> Result<(Request, Held), Response> {
        let mut held = Held {
            intake: Arc::clone(self),
            bucket: self.bucket(client),
            bytes: 0,
            permit: None,
        };
        if axum::body::HttpBody::is_end_stream(request.body()) {
            return Ok((request, held));
        }
        let (parts, body) = request.into_parts();
        let received = tokio::time::timeout(self.timeout, self.collect(body, &mut held)).await;
        match received {
            Ok(Ok(bytes)) => Ok((Request::from_parts(parts, Body::from(bytes)), held)),
            Ok(Err(refusal)) => Err(refusal),
            Err(_) => Err(closing(ApiError::RequestTimeout.into_response())),
        }
    }

    async fn collect(&self, mut body: Body, held: &mut Held) -> Result<Bytes, Response> {
        // Each frame is a slice of the connection's read buffer and keeps that whole block
        // alive: a body trickled a byte per packet would hold a block per byte. So frames are
        // copied into one buffer of the body's own, and only a body that arrives in a single
        // frame is kept as it came.
        let mut first: Option<Bytes> = None;
        let mut buffer = BytesMut::new();
        let mut received = 0usize;
        while let Some(frame) = body.frame().await {
            // A broken or reset upload: nothing to answer but a bad request.
            let frame = frame.map_err(|_| closing(bad_body()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            received += data.len();
            if received > self.limit {
                return Err(closing(
                    ApiError::PayloadTooLarge { limit: self.limit }.into_response(),
                ));
            }
            self.hold(held, data.len()).map_err(|why| self.shed(why))?;
            if first.is_none() && buffer.is_empty() && axum::body::HttpBody::is_end_stream(&body) {
                first = Some(data);
            } else {
                if let Some(earlier) = first.take() {
                    buffer.extend_from_slice(&earlier);
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok(first.unwrap_or_else(|| buffer.freeze()))
    }

    /// Counts `more` received bytes against the budget and the client's share.
    fn hold(&self, held: &mut Held, more: usize) -> Result<(), &'static str> {
        let counter = &self.per_client[held.bucket];
        if counter.fetch_add(more, Ordering::AcqRel) + more > self.per_client_limit {
            counter.fetch_sub(more, Ordering::AcqRel);
            return Err("one client holds its share of the body buffer");
        }
        held.bytes += more;
        let permit = u32::try_from(more)
            .ok()
            .and_then(|n| Arc::clone(&self.bytes).try_acquire_many_owned(n).ok());
        let Some(permit) = permit else {
            return Err("the body buffer is full");
        };
        match &mut held.permit {
            Some(all) => all.merge(permit),
            none => *none = Some(permit),
        }
        Ok(())
    }

    fn bucket(&self, ip: IpAddr) -> usize {
        let hash = self.hasher.hash_one(ClientAddress::of(ip));
        usize::try_from(hash % BUCKETS as u64).unwrap_or(0)
    }

    fn shed(&self, why: &'static str) -> Response {
        if let Some(left_out) = self.log.admit() {
            tracing::warn!(
                budget = self.budget,
                per_client = self.per_client_limit,
                left_out,
                "{why}; shedding load with 503"
            );
        }
        closing(
            ApiError::Unavailable {
                retry_after: Duration::from_secs(1),
            }
            .into_response(),
        )
    }
}

fn bad_body() -> Response {
    ApiError::BadRequest("The request body could not be read.".into()).into_response()
}

/// The unread rest of the body stays on the socket: this connection is done.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, last])
    }

    fn request(body: Body) -> Request {
        Request::post("/").body(body).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_whole_body_is_received_and_held_until_dropped() {
        let intake = BodyIntake::new(1024, Duration::from_secs(1));
        let (request, held) = intake
            .receive(request(Body::from("hello")), ip(1))
            .await
            .unwrap_or_else(|_| panic!("refused"));
        assert_eq!(held.bytes, 5);
        assert_eq!(intake.bytes.available_permits(), intake.budget - 5);
        let body = request
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes);
        assert_eq!(body.ok().as_deref(), Some(&b"hello"[..]));
        drop(held);
        assert_eq!(intake.bytes.available_permits(), intake.budget);
        assert!(intake
            .per_client
            .iter()
            .all(|c| c.load(Ordering::Relaxed) == 0));
    }

    #[tokio::test]
    async fn a_body_that_never_finishes_is_answered_408_at_the_timeout() {
        let intake = BodyIntake::new(1024, Duration::from_millis(50));
        let stalled =
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        let refused = intake.receive(request(stalled), ip(2)).await.err();
        let refused = refused.unwrap_or_else(|| panic!("a stalled body was accepted"));
        assert_eq!(refused.status(), http::StatusCode::REQUEST_TIMEOUT);
        assert_eq!(refused.headers()[header::CONNECTION], "close");
        assert_eq!(
            intake.bytes.available_permits(),
            intake.budget,
            "nothing held"
        );
    }

    #[tokio::test]
    async fn over_the_limit_is_413_and_over_a_clients_share_is_503() {
        let intake = BodyIntake::new(1024, Duration::from_secs(1));
        let big = Body::from(vec![b'x'; 1025]);
        let refused = intake.receive(request(big), ip(3)).await.err();
        assert_eq!(
            refused.map(|r| r.status()),
            Some(http::StatusCode::PAYLOAD_TOO_LARGE)
        );
        // One client holding its eighth of the budget in received bodies...
        let mut kept = Vec::new();
        let share = intake.per_client_limit;
        let mut sent = 0;
        while sent + 1024 <= share {
            let ok = intake
                .receive(request(Body::from(vec![b'x'; 1024])), ip(4))
                .await;
            kept.push(ok.unwrap_or_else(|_| panic!("within the share")));
            sent += 1024;
        }
        let over = intake
            .receive(request(Body::from(vec![b'x'; 1024])), ip(4))
            .await
            .err();
        assert_eq!(
            over.map(|r| r.status()),
            Some(http::StatusCode::SERVICE_UNAVAILABLE)
        );
        // ...leaves the rest for others.
        let other = (5..=255)
            .map(ip)
            .find(|a| intake.bucket(*a) != intake.bucket(ip(4)))
            .unwrap_or(ip(5));
        assert!(intake
            .receive(request(Body::from(vec![b'x'; 1024])), other)
            .await
            .is_ok());
        drop(kept);
        assert!(intake
            .receive(request(Body::from(vec![b'x'; 1024])), ip(4))
            .await
            .is_ok());
    }
}
