//! Structured logging set-up.
//!
//! Defends against secrets in logs by construction: rampart's own layers log only fixed fields
//! (see `http::access_log`), and the filter comes from settings, where the posture check fails
//! any debug or trace level in production, because lower levels of dependencies may record
//! request data.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings};

/// Installs the global subscriber (logs go to stderr; stdout carries only the `listening on`
/// line and command output). Returns false if one was already installed.
pub fn init(settings: &Settings) -> bool {
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match settings.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        LogFormat::Pretty => builder.try_init().is_ok(),
    }
}
