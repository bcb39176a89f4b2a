//! One structured log line per request.
//!
//! Defends against secrets in logs: only the method, the path without its query string (queries
//! can carry tokens), the status, the latency and the client address are recorded; never
//! headers, bodies or credentials. The request id comes from the enclosing span.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use super::client_ip::ClientIp;

pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let client = request.extensions().get::<ClientIp>().map(|c| c.0);
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if status >= 500 {
        tracing::error!(%method, path, status, latency_us, client = ?client, "request failed");
    } else {
        tracing::info!(%method, path, status, latency_us, client = ?client, "request");
    }
    response
}
