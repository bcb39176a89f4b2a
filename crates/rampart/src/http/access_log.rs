//! One structured log line per request.
//!
//! Defends against secrets in logs: only the method, the path without its query string (queries
//! can carry tokens), the status, the latency, the client address and the request id are
//! recorded; never headers, bodies or credentials. A 500's internal cause is logged here too, so
//! every failure is one line carrying the request id the client was given.

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

pub fn record(entry: &Entry<'_>) {
    let status = entry.status.as_u16();
    let latency_us = u64::try_from(entry.latency.as_micros()).unwrap_or(u64::MAX);
    let (request_id, method, path, client) = (
        entry.request_id,
        entry.method.as_str(),
        entry.path,
        entry.client,
    );
    let client_request_id = entry.client_request_id.unwrap_or("");
    if status >= 500 {
        tracing::error!(request_id, client_request_id, method, path, status, latency_us, %client, cause = entry.cause.unwrap_or(""), "request failed");
    } else {
        tracing::info!(request_id, client_request_id, method, path, status, latency_us, %client, "request");
    }
}
