//! One structured log line per request.
//!
//! Defends against secrets in logs: only the method, the path without its query string (queries
//! can carry tokens), the status, the latency, the client address and the request id are
//! recorded; never headers, bodies or credentials. A 5xx's internal cause is logged here too, so
//! a failure is one line carrying the request id the client was given.
//!
//! And against a failure flooding the log: while a dependency is down every request fails the
//! same way, so server errors are written at most once a second per kind (status and cause),
//! each line counting the ones folded into it (`repeated`). Other requests keep a line each.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use http::{Method, StatusCode, Uri};

use super::client_ip::ClientIp;
use super::request_id::RequestIds;
use super::stage::{stage_layer, Finish, Stage};
use crate::error::InternalCause;

/// The layer that writes one line per request below it. It reads the ids and the client address
/// the [`super::RequestIdLayer`] and [`super::ClientIpLayer`] outside it put on the request,
/// and takes a 5xx's internal cause off the response, so the cause reaches the log and never
/// the client.
#[derive(Debug, Clone, Default)]
pub struct AccessLogLayer {
    log: Arc<AccessLog>,
}

impl AccessLogLayer {
    pub fn new() -> Self {
        Self::default()
    }
}

/// What [`AccessLogLayer`] keeps of a request until its response.
#[derive(Debug)]
pub struct Pending {
    log: Arc<AccessLog>,
    started: Instant,
    ids: Option<RequestIds>,
    method: Method,
    uri: Uri,
    client: IpAddr,
}

impl Stage for AccessLogLayer {
    type Finish = Pending;

    fn enter(&self, request: &mut Request) -> Result<Pending, Response> {
        Ok(Pending {
            log: Arc::clone(&self.log),
            started: Instant::now(),
            ids: request.extensions().get::<RequestIds>().cloned(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            client: ClientIp::of(request.extensions()),
        })
    }
}

impl Finish for Pending {
    fn finish(self, mut response: Response) -> Response {
        let cause = response.extensions_mut().remove::<InternalCause>();
        let ids = self.ids.as_ref();
        self.log.record(&Entry {
            request_id: ids
                .and_then(|ids| ids.server.to_str().ok())
                .unwrap_or_default(),
            client_request_id: ids
                .and_then(RequestIds::from_client)
                .and_then(|id| id.to_str().ok()),
            method: &self.method,
            path: self.uri.path(),
            status: response.status(),
            latency: self.started.elapsed(),
            client: self.client,
            cause: cause.as_ref().map(|c| c.0.as_str()),
        });
        response
    }
}

stage_layer!(AccessLogLayer);

/// What is logged about one request.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The id this server gave the request.
    pub request_id: &'a str,
    /// The id the client sent and the response echoed, when it sent one: recorded beside the
    /// server's, never in its place, so a client cannot choose the id its actions are filed
    /// under.
    pub client_request_id: Option<&'a str>,
    pub method: &'a Method,
    pub path: &'a str,
    pub status: StatusCode,
    pub latency: Duration,
    pub client: IpAddr,
    /// The internal cause of a 5xx (see [`crate::error::InternalCause`]).
    pub cause: Option<&'a str>,
}

/// Writes access-log lines, folding repeated server errors (see the module header).
#[derive(Debug, Default)]
pub struct AccessLog {
    failures: crate::telemetry::KeyedThrottle,
}

impl AccessLog {
    pub fn record(&self, entry: &Entry<'_>) {
        if entry.status.is_server_error() {
            // The cause's first clause names the kind ("database error", "rate-limit store
            // unavailable"); what follows varies per request.
            let cause = entry.cause.unwrap_or("");
            let class = cause.split(':').next().unwrap_or_default();
            let class: String = class.chars().take(60).collect();
            let kind = format!("{} {class}", entry.status.as_u16());
            let Some(repeated) = self.failures.admit(&kind) else {
                return;
            };
            return write(entry, repeated);
        }
        write(entry, 0);
    }
}

fn write(entry: &Entry<'_>, repeated: u64) {
    let status = entry.status.as_u16();
    let latency_us = u64::try_from(entry.latency.as_micros()).unwrap_or(u64::MAX);
    let (request_id, method, path, client) = (
        entry.request_id,
        entry.method.as_str(),
        entry.path,
        entry.client,
    );
    let client_request_id = entry.client_request_id.unwrap_or("");
    let cause = entry.cause.unwrap_or("");
    if status == 503 {
        // Shedding or a dependency down: an operating condition, not a bug.
        tracing::warn!(request_id, client_request_id, method, path, status, latency_us, %client, cause, repeated, "request refused");
    } else if status >= 500 {
        tracing::error!(request_id, client_request_id, method, path, status, latency_us, %client, cause, repeated, "request failed");
    } else {
        tracing::info!(request_id, client_request_id, method, path, status, latency_us, %client, "request");
    }
}
