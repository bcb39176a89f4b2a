//! Whole-request timeout.
//!
//! Defends against slow clients and slow handlers holding a worker and a connection forever (a
//! body trickled one byte a second, a stuck downstream call): past the limit the request is
//! dropped and answered 408 as problem+json. The header-read timeout for slowloris on the
//! request head lives in [`crate::server`], where the connection is owned.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn limit_request_time(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    if let Ok(response) = tokio::time::timeout(limit, next.run(request)).await {
        response
    } else {
        tracing::warn!(timeout_ms = limit.as_millis(), "request timed out");
        ApiError::RequestTimeout.into_response()
    }
}
