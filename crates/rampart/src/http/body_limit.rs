//! Request body size limit.
//!
//! Defends against memory exhaustion by large or endless bodies: a declared `Content-Length`
//! over the limit is answered 413 before any of the body is read (the connection is then closed
//! rather than drained), and a body without a declared length is cut off at the limit by axum's
//! `DefaultBodyLimit` when an extractor reads it, which [`crate::json::Json`] turns into 413.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;

use crate::error::ApiError;

/// Middleware: refuse bodies whose declared length exceeds `limit` bytes.
pub async fn reject_declared_oversize(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => {
            let mut response = ApiError::PayloadTooLarge { limit }.into_response();
            // The unread body stays on the socket; tell the client this connection is done.
            response
                .headers_mut()
                .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            response
        }
        _ => next.run(request).await,
    }
}
