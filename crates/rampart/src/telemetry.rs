//! Structured logging set-up.
//!
//! Defends against secrets in logs by construction: rampart's own layers log only fixed fields
//! (see `http::access_log`), and the filter comes from settings, where the posture check fails
//! any debug or trace level in production, because lower levels of dependencies may record
//! request data. Defends against log-driven slowdowns too: lines are written by a background
//! thread, so a slow terminal or pipe never holds a request.

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings};

/// Lines buffered for the writer thread; past this, new lines are dropped rather than blocking
/// requests (security events are also persisted by the audit log, not only logged).
const LOG_BUFFER_LINES: usize = 64 * 1024;

/// Installs the global subscriber, writing to stderr (stdout carries only the `listening on`
/// line and command output). Keep the returned guard alive until exit: dropping it flushes what
/// is buffered. Returns `None` if a subscriber was already installed.
pub fn init(settings: &Settings) -> Option<WorkerGuard> {
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .lossy(true)
        // Batches the lines the writer thread drains at once into one write; it flushes
        // whenever the queue empties.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let installed = match settings.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        LogFormat::Pretty => builder.try_init().is_ok(),
    };
    installed.then_some(guard)
}
