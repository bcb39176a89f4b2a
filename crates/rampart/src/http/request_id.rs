//! Request ids: one per request, on every response, in every log line and problem document.
//!
//! Defends against untraceable incidents and log injection: a client-sent `x-request-id` is
//! echoed only when it is short and made of safe characters (otherwise a fresh UUIDv7 is used),
//! so an attacker cannot smuggle newlines or markup into logs through it. This layer also
//! finishes every error body: problem documents get the request id, and bare error statuses from
//! outside rampart's handlers (axum's 405, a layer's status-only answer) become problem+json.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{header, HeaderName, HeaderValue};
use tracing::Instrument;

use crate::error::{Problem, PROBLEM_JSON};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 128;

/// The id of the current request, available to handlers as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII (validated or generated), so this cannot fail.
        self.0.to_str().unwrap_or_default()
    }
}

/// A client-sent id is kept only when it is 1..=128 characters of `[A-Za-z0-9._:-]`.
pub fn is_sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

fn generate() -> HeaderValue {
    let id = uuid::Uuid::now_v7();
    let mut buf = uuid::Uuid::encode_buffer();
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or_else(|_| HeaderValue::from_static("unavailable"))
}

/// Middleware: assign the id, run the request inside a span carrying it, and finish errors.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .filter(|v| is_sane(v))
        .cloned()
        .unwrap_or_else(generate);
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", request_id = %RequestId(id.clone()).as_str());
    let mut response = next.run(request).instrument(span).await;
    if response.status().as_u16() >= 400 {
        finish_problem(&mut response, &id);
    }
    response.headers_mut().insert(REQUEST_ID_HEADER, id);
    response
}

/// Renders the error body as problem+json carrying the request id.
fn finish_problem(response: &mut Response, id: &HeaderValue) {
    let problem = match response.extensions_mut().remove::<Problem>() {
        Some(problem) => problem,
        // Someone else's body (a handler that chose its own format) is left alone.
        None if response.headers().contains_key(header::CONTENT_TYPE) => return,
        None => Problem::for_status(response.status()),
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
