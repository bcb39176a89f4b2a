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
use std::time::Duration;

use http::{Method, StatusCode};

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
