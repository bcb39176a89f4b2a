//! Request ids: one per request, on every response, its log line and every problem document.
//!
//! Defends against untraceable incidents, log injection and misfiled evidence: a client-sent
//! `x-request-id` is echoed only when it is short and made of safe characters (otherwise a fresh
//! UUIDv7 is used), so an attacker cannot smuggle newlines or markup into logs through it. Every
//! request also gets an id of the server's own, and logs and audit records are filed under that
//! one, with the client's beside it: a client cannot make its actions look like another
//! request's by reusing its id. Its layer ([`RequestIdLayer`]) also finishes every error body: problem documents get the request id, and bare error statuses from
//! outside rampart's handlers (axum's 405, a layer's status-only answer) become problem+json.
//!
//! Generated ids are UUIDv7 built from the clock and a keyed hash of a counter: unique and
//! time-ordered without a system call per request, and they do not reveal how many requests
//! the server handled (a bare counter did). They are identifiers, not secrets.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{header, HeaderMap, HeaderName, HeaderValue};

use super::stage::{stage_layer, Finish, Stage};
use crate::error::{Problem, PROBLEM_JSON};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 128;

/// A client-sent id is kept only when it is 1..=128 characters of `[A-Za-z0-9._:-]`.
pub fn is_sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Makes request ids; one per app, shared by its connections.
#[derive(Debug, Clone)]
pub struct IdGenerator {
    counter: Arc<AtomicU64>,
    /// Keyed per process: ids carry a hash of the counter, never the counter itself, so two
    /// ids a client sees do not tell it how many requests the server handled between them.
    key: RandomState,
}

impl IdGenerator {
    pub fn new() -> Self {
        Self {
            counter: Arc::new(AtomicU64::new(0)),
            key: RandomState::new(),
        }
    }

    pub fn generate(&self) -> HeaderValue {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let count = self.counter.fetch_add(1, Ordering::Relaxed);
        // Two keyed hashes of a counter that never repeats: 80 bits that differ for every id
        // of this process (a collision within one millisecond is out of reach) and reveal
        // nothing of the count.
        let mut tail = [0u8; 10];
        tail[..8].copy_from_slice(&self.key.hash_one(count).to_be_bytes());
        tail[8..].copy_from_slice(&self.key.hash_one(!count).to_be_bytes()[..2]);
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid();
        let mut buf = uuid::Uuid::encode_buffer();
        // A hyphenated UUID is always a valid header value.
        HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
            .unwrap_or_else(|_| HeaderValue::from_static("unavailable"))
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

/// A request's ids, put on it by [`RequestIdLayer`] (read them through
/// [`super::RequestContext`]).
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// The id the response carries: the client's, when it sent a sane one, else `server`.
    pub echoed: HeaderValue,
    /// The id this server gave the request, whatever the client sent.
    pub server: HeaderValue,
}

impl RequestIds {
    /// The id the client chose, when it sent one.
    pub fn from_client(&self) -> Option<&HeaderValue> {
        (self.echoed != self.server).then_some(&self.echoed)
    }
}

/// The layer that gives every request its ids, puts the echoed one on the response, and
/// finishes every error below it as problem+json carrying that id. Put it outside every layer
/// that can refuse a request, so their answers are finished too.
#[derive(Debug, Clone, Default)]
pub struct RequestIdLayer {
    ids: IdGenerator,
}

impl RequestIdLayer {
    pub fn new() -> Self {
        Self::default()
    }
}

/// What [`RequestIdLayer`] applies to the response.
#[derive(Debug)]
pub struct EchoId(HeaderValue);

impl Stage for RequestIdLayer {
    type Finish = EchoId;

    fn enter(&self, request: &mut Request) -> Result<EchoId, Response> {
        let server = self.ids.generate();
        let echoed = from_client(request.headers()).unwrap_or_else(|| server.clone());
        request.extensions_mut().insert(RequestIds {
            echoed: echoed.clone(),
            server,
        });
        Ok(EchoId(echoed))
    }
}

impl Finish for EchoId {
    fn finish(self, mut response: Response) -> Response {
        if response.status().as_u16() >= 400 {
            finish_problem(&mut response, &self.0);
        }
        response.headers_mut().insert(REQUEST_ID_HEADER, self.0);
        response
    }
}

stage_layer!(RequestIdLayer);

/// The client's id, when it sent a sane one.
pub fn from_client(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(&REQUEST_ID_HEADER)
        .filter(|v| is_sane(v))
        .cloned()
}

/// Renders an error body as problem+json carrying the request id: a handler's [`Problem`] gets
/// the id added; any other error response gets the generic document for its status.
pub fn finish_problem(response: &mut Response, id: &HeaderValue) {
    let problem = if let Some(problem) = response.extensions_mut().remove::<Problem>() {
        problem
    } else {
        // Any other error body (a library's text/plain rejection naming its internals, a
        // handler's `e.to_string()`) is replaced with the generic document for its status.
        if response.status().is_server_error() {
            tracing::error!(
                status = response.status().as_u16(),
                "an error body from outside rampart was replaced"
            );
        }
        Problem::for_status(response.status())
    };
    let problem = Problem {
        request_id: id.to_str().ok().map(str::to_owned),
        ..problem
    };
    let body = problem.to_body();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    headers.remove(header::CONTENT_LENGTH);
    *response.body_mut() = Body::from(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_do_not_count_requests() {
        let ids = IdGenerator::new();
        let tails: Vec<u128> = (0..64)
            .map(|_| {
                let id = ids.generate();
                let uuid =
                    uuid::Uuid::parse_str(id.to_str().unwrap_or_default()).unwrap_or_default();
                uuid.as_u128() & ((1u128 << 62) - 1)
            })
            .collect();
        let unique: std::collections::HashSet<_> = tails.iter().collect();
        assert_eq!(unique.len(), tails.len());
        // A counter would step by one; keyed hashes land anywhere.
        let steps_of_one = tails
            .windows(2)
            .filter(|w| w[1].wrapping_sub(w[0]) == 1)
            .count();
        assert_eq!(steps_of_one, 0, "{tails:x?}");
    }

    #[test]
    fn generated_ids_are_unique_uuid_v7() {
        let ids = IdGenerator::new();
        let a = ids.generate();
        let b = ids.generate();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(a.to_str().unwrap_or_default());
        assert_eq!(parsed.map(|u| u.get_version_num()).ok(), Some(7));
        assert!(is_sane(&a));
    }

    #[test]
    fn only_short_plain_ids_are_echoed() {
        for ok in ["abc", "0190c1a2-7e4b-7000-8000-000000000000", "trace:1.2_3"] {
            assert!(is_sane(&HeaderValue::from_static(ok)), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in ["", "a b", "<script>", "id\u{7f}", long.as_str()] {
            let value = HeaderValue::from_str(bad).unwrap_or_else(|_| HeaderValue::from_static(""));
            assert!(!is_sane(&value), "{bad:?}");
        }
    }
}
