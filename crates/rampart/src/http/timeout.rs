//! Whole-request timeout.
//!
//! Defends against slow clients and slow handlers holding a worker and a connection forever (a
//! body trickled one byte a second, a stuck downstream call): past the limit the request is
//! dropped and answered 408 as problem+json. The header-read timeout for slowloris on the
//! request head lives in [`crate::server`], where the connection is owned.

use std::future::Future;
use std::time::Duration;

use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Runs `handler`, or answers 408 once `limit` has passed (dropping the handler's future).
pub async fn within(limit: Duration, handler: impl Future<Output = Response>) -> Response {
    if let Ok(response) = tokio::time::timeout(limit, handler).await {
        response
    } else {
        ApiError::RequestTimeout.into_response()
    }
}
