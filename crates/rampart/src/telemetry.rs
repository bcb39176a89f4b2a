//! Structured logging set-up.
//!
//! Defends against secrets in logs by construction: rampart's own layers log only fixed fields
//! (see `http::access_log`), and the filter comes from settings, where the posture check fails
//! any debug or trace level in production, because lower levels of dependencies may record
//! request data.
//!
//! Defends against log-driven slowdowns too: lines go into one shared buffer that a background
//! thread flushes every [`FLUSH_INTERVAL`] (or sooner when it fills), so a request never waits on
//! a terminal or pipe and no thread is woken per line. tracing-appender's non-blocking writer
//! wakes its thread for every line, which cost about 15% of throughput on two cores; this
//! batching writer is the few lines that avoid that.

use std::io::{BufWriter, Stderr, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings};

/// Longest time a log line waits in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
const BUFFER_BYTES: usize = 64 * 1024;

type SharedBuffer = Arc<Mutex<BufWriter<Stderr>>>;

/// Flushes the log buffer when dropped; keep it alive until the process exits.
#[derive(Debug)]
pub struct LogGuard {
    buffer: SharedBuffer,
    stop: Arc<AtomicBool>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = flush(&self.buffer);
    }
}

/// Hands each log line the shared buffer.
struct BatchedWriter(SharedBuffer);

/// One line being written; holds the buffer's lock only while the formatted line is copied in.
struct Line<'a>(MutexGuard<'a, BufWriter<Stderr>>);

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes)
    }

    /// Flushing is the flusher thread's job; a per-line flush would be a syscall per line.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn flush(buffer: &SharedBuffer) -> std::io::Result<()> {
    buffer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .flush()
}

/// Installs the global subscriber, writing to stderr (stdout carries only the `listening on`
/// line and command output). Returns `None` if a subscriber was already installed.
pub fn init(settings: &Settings) -> Option<LogGuard> {
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let buffer: SharedBuffer = Arc::new(Mutex::new(BufWriter::with_capacity(
        BUFFER_BYTES,
        std::io::stderr(),
    )));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BatchedWriter(Arc::clone(&buffer)))
        .with_target(false);
    let installed = match settings.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        LogFormat::Pretty => builder.try_init().is_ok(),
    };
    if !installed {
        return None;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (flusher_buffer, flusher_stop) = (Arc::clone(&buffer), Arc::clone(&stop));
    let spawned = std::thread::Builder::new()
        .name("rampart-log-flush".into())
        .spawn(move || {
            while !flusher_stop.load(Ordering::Relaxed) {
                std::thread::sleep(FLUSH_INTERVAL);
                let _ = flush(&flusher_buffer);
            }
        });
    if spawned.is_err() {
        // Without the flusher, lines would wait for a full buffer; say so where it is seen.
        eprintln!(
            "warning: log flusher thread could not start; logs are flushed when 64 KiB accumulate"
        );
    }
    Some(LogGuard { buffer, stop })
}
