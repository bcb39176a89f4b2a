//! The layers' own setting types, and the parsers for their text forms.
//!
//! Each layer takes a small typed value ([`HttpLimits`], [`CorsSettings`], [`Rate`],
//! [`HashParams`], [`LogFormat`]), never the environment: reading configuration (which
//! variables, which file, what an unknown name means) is the application's, so an app that adopts
//! a layer inherits no schema. The parsers ([`parse_duration`], [`parse_size`], `Rate`'s and
//! `CorsOrigins`' `FromStr`, ...) are strict, for apps that read these values from text: a
//! typo'd duration is an error, never a silent default.
//!
//! Defends against configuration mistakes becoming vulnerabilities: each value is a type whose
//! every instance is usable (no zero rate, no `*` origin with credentials), and the defaults
//! are the safe ones.

mod values;

use std::time::Duration;

pub use crate::http::client_ip::ForwardedHeader;

pub use values::{
    format_duration, parse_bool, parse_duration, parse_networks, parse_size, whole_number,
    CorsOrigins, HashParams, Rate,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Cross-origin settings. The default allows no cross-origin access.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorsSettings {
    pub origins: CorsOrigins,
    /// Whether browsers may send cookies/credentials cross-origin. Never together with `*`.
    pub credentials: bool,
}

/// Limits that bound the work one request can cause, for [`crate::http::Hardening`].
/// Connection-level limits (header timeout, open connections, draining) are the server
/// loop's, in [`crate::server::ServeOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub body_limit: usize,
    /// Time allowed to receive a whole request body, counted from the end of the head.
    pub body_timeout: Duration,
    pub request_timeout: Duration,
    /// Requests handled at once; more are answered 503 with `Retry-After` at once rather than
    /// queued.
    pub max_in_flight: usize,
    pub json_max_depth: usize,
}

/// rampart's defaults: what the server falls back to and an app's starting point.
impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 1024,
            json_max_depth: 32,
        }
    }
}
