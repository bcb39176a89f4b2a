//! Request body size limit.
//!
//! Defends against memory exhaustion by large or endless bodies: a declared `Content-Length`
//! over the limit is answered 413 before any of the body is read (the connection is then closed
//! rather than drained), and a body without a declared length is cut off at the limit by axum's
//! `DefaultBodyLimit` when an extractor reads it, which [`crate::json::Json`] turns into 413.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue};

use crate::error::ApiError;

/// The 413 answer when the declared body length exceeds `limit` bytes.
pub fn refuse_declared_oversize(headers: &HeaderMap, limit: usize) -> Option<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())?;
    if declared <= limit as u64 {
        return None;
    }
    let mut response = ApiError::PayloadTooLarge { limit }.into_response();
    // The unread body stays on the socket; tell the client this connection is done.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(response)
}
