//! Structured logging set-up.
//!
//! Defends against secrets in logs by construction: rampart's own layers log only fixed fields
//! (see `http::access_log`), and the filter is the app's (the rampart server's posture check
//! fails any level above info in production, because dependencies' debug output may record
//! request data).
//!
//! Defends against log-driven stalls too: a log line is only copied into a memory buffer under a
//! short lock; a background thread swaps the buffer out every [`FLUSH_INTERVAL`] and writes it
//! with no lock held. If stderr stops draining (a stuck pipe), lines beyond [`MAX_PENDING_BYTES`]
//! are dropped and counted instead of blocking requests. tracing-appender's non-blocking writer
//! wakes its thread on every line, which cost about 15% of throughput on two cores; this
//! batching writer is the few lines that avoid both problems.
//!
//! The access log, one line per request, can skip tracing's formatter too: [`LogGuard::json_lines`]
//! hands out [`JsonLines`], the same buffer for lines a caller formats itself
//! (`http::access_log` writes the same JSON the formatter would, at a fraction of its cost).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// Lets one log line a second through and counts the ones held back, for events that arrive in
/// floods (refusals, shed requests): a flood of them must not become a flood of log lines.
#[derive(Debug)]
pub struct LogThrottle {
    started: std::time::Instant,
    /// The second (since `started`) of the last line let through.
    second: AtomicU64,
    held_back: AtomicU64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self {
            started: std::time::Instant::now(),
            second: AtomicU64::new(u64::MAX),
            held_back: AtomicU64::new(0),
        }
    }
}

impl LogThrottle {
    /// `Some(lines held back since the last one)` when a line may be written now.
    pub fn admit(&self) -> Option<u64> {
        let second = self.started.elapsed().as_secs();
        if self.second.swap(second, Ordering::Relaxed) == second {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

/// [`LogThrottle`] per kind: one line a second for each of at most [`KeyedThrottle::KEYS`]
/// kinds of repeated failure (more kinds share one slot), so an outage that fails every request
/// writes a line a second per kind with a count, not a line per request.
#[derive(Debug, Default)]
pub struct KeyedThrottle {
    kinds: Mutex<std::collections::HashMap<String, std::sync::Arc<LogThrottle>>>,
}

impl KeyedThrottle {
    /// Distinct kinds tracked; the rest share one throttle.
    pub const KEYS: usize = 64;

    /// `Some(lines of this kind held back since the last one)` when one may be written now.
    pub fn admit(&self, kind: &str) -> Option<u64> {
        let throttle = {
            let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
            let key = if kinds.len() >= Self::KEYS && !kinds.contains_key(kind) {
                "(other kinds)"
            } else {
                kind
            };
            std::sync::Arc::clone(kinds.entry(key.to_owned()).or_default())
        };
        throttle.admit()
    }
}

/// Longest time a log line waits in memory.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Lines waiting beyond this are dropped (and counted) rather than grow memory.
pub const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

struct Pending {
    lines: Mutex<Vec<u8>>,
    dropped: AtomicU64,
}

impl Pending {
    /// Writes everything pending to stderr; the lock is held only for the swap. `spare` is the
    /// previous batch's buffer, emptied but keeping its capacity, so writers never regrow one.
    fn flush(&self, spare: &mut Vec<u8>) {
        spare.clear();
        std::mem::swap(
            &mut *self.lines.lock().unwrap_or_else(PoisonError::into_inner),
            spare,
        );
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        let mut stderr = std::io::stderr().lock();
        if !spare.is_empty() {
            let _ = stderr.write_all(spare);
        }
        if dropped > 0 {
            let _ = writeln!(
                stderr,
                "rampart: {dropped} log line(s) dropped: stderr did not keep up"
            );
        }
        let _ = stderr.flush();
    }
}

impl Pending {
    /// Copies one line (or part of one) into the buffer, or counts it dropped when the buffer
    /// is full.
    fn append(&self, bytes: &[u8]) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() + bytes.len() > MAX_PENDING_BYTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            lines.extend_from_slice(bytes);
        }
    }
}

/// Flushes pending log lines when dropped; keep it alive until the process exits.
pub struct LogGuard {
    pending: Arc<Pending>,
    stop: Arc<AtomicBool>,
    format: LogFormat,
}

impl LogGuard {
    /// The log buffer for lines formatted by the caller, when the log is JSON (a person
    /// reading the pretty format gets tracing's lines).
    pub fn json_lines(&self) -> Option<JsonLines> {
        matches!(self.format, LogFormat::Json).then(|| JsonLines(Arc::clone(&self.pending)))
    }
}

/// Whole JSON log lines formatted by the caller, written to the same buffer as every other
/// line (see the module header). The caller checks the level filter (`tracing::enabled!`) and
/// writes the fields tracing's JSON formatter would: `timestamp`, `level`, `message`, then
/// its own.
#[derive(Clone)]
pub struct JsonLines(Arc<Pending>);

impl JsonLines {
    /// Appends `line`, which ends with a newline.
    pub fn append(&self, line: &[u8]) {
        self.0.append(line);
    }
}

impl std::fmt::Debug for JsonLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonLines")
    }
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogGuard").finish_non_exhaustive()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.pending.flush(&mut Vec::new());
    }
}

/// Hands each log line the shared buffer.
struct BatchedWriter(Arc<Pending>);

/// One line being written: copied into the buffer, never to a file descriptor.
struct Line<'a>(&'a Pending);

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.0)
    }
}

/// Installs the global subscriber, writing to stderr (stdout carries only the `listening on`
/// line and command output). Returns `None` if a subscriber was already installed.
/// `filter` is an `EnvFilter` directive (`info`, `rampart=debug`); an invalid one means `info`.
pub fn init(filter: &str, format: LogFormat) -> Option<LogGuard> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let pending = Arc::new(Pending {
        lines: Mutex::new(Vec::with_capacity(256 * 1024)),
        dropped: AtomicU64::new(0),
    });
    // Colour only for a person at a terminal: a file or a log shipper gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BatchedWriter(Arc::clone(&pending)))
        .with_ansi(colour)
        .with_target(false);
    let installed = match format {
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
    let (flusher, flusher_stop) = (Arc::clone(&pending), Arc::clone(&stop));
    let spawned = std::thread::Builder::new()
        .name("rampart-log-flush".into())
        .spawn(move || {
            let mut spare = Vec::with_capacity(256 * 1024);
            while !flusher_stop.load(Ordering::Relaxed) {
                std::thread::sleep(FLUSH_INTERVAL);
                flusher.flush(&mut spare);
            }
        });
    if spawned.is_err() {
        eprintln!("warning: the log flusher thread could not start; logs appear only at exit");
    }
    Some(LogGuard {
        pending,
        stop,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_throttle_lets_one_line_a_second_through_and_counts_the_rest() {
        let keyed = KeyedThrottle::default();
        assert_eq!(keyed.admit("database"), Some(0));
        assert_eq!(keyed.admit("database"), None);
        assert_eq!(keyed.admit("redis"), Some(0), "kinds are counted apart");
        for n in 0..KeyedThrottle::KEYS * 2 {
            keyed.admit(&format!("kind {n}"));
        }
        assert!(keyed.kinds.lock().unwrap().len() <= KeyedThrottle::KEYS + 1);
        let throttle = LogThrottle::default();
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        std::thread::sleep(Duration::from_millis(1010));
        assert_eq!(throttle.admit(), Some(2));
    }
}
