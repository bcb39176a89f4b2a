//! Request body size limit, and bodies received whole before the handler runs.
//!
//! Defends against memory exhaustion by large or endless bodies, and against slow bodies
//! holding workers: a declared `Content-Length` over the limit is answered 413 before any of
//! the body is read (the connection is then closed rather than drained); any other body is
//! received whole, within the size limit, a receive timeout and a byte budget shared by every
//! client ([`super::body_intake`]), before the inner service sees the request. Load shedding and
//! the request timeout inside this layer therefore only ever count a handler's own work.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue};
use tower::Service;

use super::body_intake::BodyIntake;
use super::client_ip::ClientIp;
use super::stage::{around_layer, call_inner, stage_layer, Around, Settled, Stage};
use crate::error::ApiError;

/// The layer's settings.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The largest body accepted, in bytes.
    pub max_bytes: usize,
    /// How long a whole body may take to arrive.
    pub receive_timeout: Duration,
}

/// The layer that enforces [`BodyLimits`] on every request below it. Clients are told apart
/// (for their share of the byte budget) by [`ClientIp`] (see [`ClientIp::of`]). Tell the
/// extractors the same size inside it ([`crate::json::JsonConfig`]'s layer does), so they
/// agree on the limit.
#[derive(Debug, Clone)]
pub struct BodyLimitLayer {
    intake: Arc<BodyIntake>,
    max_bytes: usize,
}

impl BodyLimitLayer {
    pub fn new(limits: BodyLimits) -> Self {
        Self {
            intake: BodyIntake::new(limits.max_bytes, limits.receive_timeout),
            max_bytes: limits.max_bytes,
        }
    }
}

impl Around for BodyLimitLayer {
    type Finish = ();

    /// A declared size over the limit is refused, and a request without a body (most reads)
    /// has nothing to receive: both are settled at once. So is a body on a method whose
    /// content has no meaning (RFC 9110: GET, HEAD, OPTIONS, TRACE): it is dropped
    /// unread, so that nobody spends the byte budget on routes that take no body.
    fn settle(&self, request: &mut Request) -> Settled<()> {
        if let Some(refused) = refuse_unreadable(request, self.max_bytes) {
            return Settled::Answer(refused);
        }
        if axum::body::HttpBody::is_end_stream(request.body()) {
            return Settled::Pass(());
        }
        if takes_no_body(request.method()) {
            *request.body_mut() = axum::body::Body::empty();
            return Settled::Pass(());
        }
        Settled::Wait
    }

    async fn around<S>(self, request: Request, inner: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let client = ClientIp::of(request.extensions());
        let (request, held) = match self.intake.receive(request, client).await {
            Ok(received) => received,
            Err(refused) => return refused,
        };
        let response = call_inner(inner, request).await;
        // The bytes count against the budget until the handler is done with them.
        drop(held);
        response
    }
}

around_layer!(BodyLimitLayer);

/// Methods whose request content has no defined meaning (RFC 9110): a body on them is never
/// read. (DELETE's content has no generally defined meaning either, but an API may define one,
/// as a removal that must be confirmed with a password does; a [`crate::SecureRouter`] route
/// drops a DELETE's body unless its documented DELETE declares one, see [`DropBodyLayer`].)
fn takes_no_body(method: &http::Method) -> bool {
    [
        http::Method::GET,
        http::Method::HEAD,
        http::Method::OPTIONS,
        http::Method::TRACE,
    ]
    .contains(method)
}

/// Drops the body of every request below it unread unless its method is one of those the
/// route takes a body on: for a [`crate::SecureRouter`] route, the methods whose documented
/// operations declare a request body. So a client cannot make a logout or a DELETE wait for a
/// body, or spend the byte budget on one.
#[derive(Debug, Clone)]
pub struct DropBodyLayer {
    keep: std::sync::Arc<[http::Method]>,
}

impl DropBodyLayer {
    /// Drops every body except on `keep`'s methods.
    pub fn except(keep: impl IntoIterator<Item = http::Method>) -> Self {
        Self {
            keep: keep.into_iter().collect(),
        }
    }
}

impl Stage for DropBodyLayer {
    type Finish = ();

    fn enter(&self, request: &mut Request) -> Result<(), Response> {
        if !self.keep.contains(request.method())
            && !axum::body::HttpBody::is_end_stream(request.body())
        {
            *request.body_mut() = axum::body::Body::empty();
        }
        Ok(())
    }
}

stage_layer!(DropBodyLayer);

/// The checks of [`BodyLimitLayer`] that read nothing, alone, as a stage: a request whose
/// `Content-Length` is over the limit is answered 413 on arrival, and one whose body is sent
/// encoded (on a method that takes a body) 415, before any other layer (a rate limit, an
/// authentication step) spends work on it, and nothing of its body is read.
/// [`super::Hardening`] puts it outside a gate and the body intake inside it.
#[derive(Debug, Clone, Copy)]
pub struct DeclaredSizeLayer {
    max_bytes: usize,
}

impl DeclaredSizeLayer {
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl Stage for DeclaredSizeLayer {
    type Finish = ();

    fn enter(&self, request: &mut Request) -> Result<(), Response> {
        refuse_unreadable(request, self.max_bytes).map_or(Ok(()), Err)
    }
}

/// What [`BodyLimitLayer`] refuses without reading a byte, and so what
/// [`DeclaredSizeLayer`] answers on arrival: a declared size over `max_bytes` (413), and a
/// body that would be read (one is framed, on a method that takes one) sent encoded (415).
fn refuse_unreadable(request: &Request, max_bytes: usize) -> Option<Response> {
    refuse_declared_oversize(request.headers(), max_bytes).or_else(|| {
        let read = !axum::body::HttpBody::is_end_stream(request.body())
            && !takes_no_body(request.method());
        read.then(|| refuse_encoded(request.headers())).flatten()
    })
}

stage_layer!(DeclaredSizeLayer);

/// The 415 answer to a body sent encoded: a `Content-Encoding` other than `identity`, or a
/// transfer coding besides one `chunked` (hyper refuses a `Transfer-Encoding` that does not end in
/// chunked; `gzip, chunked` reaches here). Bodies are read as they arrive, never decoded, so
/// an encoded one would be read as something its sender did not send, and a proxy or firewall
/// in front that decodes it would have inspected another body than the one this server acts
/// on.
pub fn refuse_encoded(headers: &HeaderMap) -> Option<Response> {
    let codings = |name: header::HeaderName| {
        headers
            .get_all(name)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|coding| !coding.is_empty())
    };
    let mut transfer = codings(header::TRANSFER_ENCODING);
    // Chunked once or not at all: chunked twice (which HTTP forbids) would be decoded once
    // here, and perhaps twice by a proxy.
    let framed_plainly = match (transfer.next(), transfer.next()) {
        (None, _) => true,
        (Some(coding), None) => coding.eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    };
    let encoded = !framed_plainly
        || codings(header::CONTENT_ENCODING)
            .any(|coding| !coding.eq_ignore_ascii_case(b"identity"));
    encoded.then(|| {
        closing_connection(ApiError::UnsupportedMediaType(
            "The body is encoded (a Content-Encoding, or a transfer coding other than chunked): \
             send it as it is."
                .into(),
        ))
    })
}

/// The 413 answer when the declared body length exceeds `limit` bytes.
pub fn refuse_declared_oversize(headers: &HeaderMap, limit: usize) -> Option<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())?;
    (declared > limit as u64).then(|| closing_connection(ApiError::PayloadTooLarge { limit }))
}

/// A refusal answered before the body was read: the unread body stays on the socket, so the
/// client is told this connection is done rather than left to send it.
fn closing_connection(refusal: ApiError) -> Response {
    let mut response = refusal.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn only_a_body_as_it_is_passes() {
        for plain in [
            &[][..],
            &[("transfer-encoding", "chunked")],
            &[("transfer-encoding", "Chunked")],
            &[
                ("content-encoding", "identity"),
                ("transfer-encoding", "chunked"),
            ],
            &[("content-encoding", "identity, IDENTITY")],
        ] {
            assert!(refuse_encoded(&headers(plain)).is_none(), "{plain:?}");
        }
        for encoded in [
            &[("content-encoding", "gzip")][..],
            &[("content-encoding", "identity"), ("content-encoding", "br")],
            &[("content-encoding", "identity, deflate")],
            &[("transfer-encoding", "gzip, chunked")],
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "x-custom,chunked")],
            &[("transfer-encoding", "chunked, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        ] {
            let refused = refuse_encoded(&headers(encoded));
            assert_eq!(
                refused.map(|r| r.status()),
                Some(http::StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "{encoded:?}"
            );
        }
    }
}
