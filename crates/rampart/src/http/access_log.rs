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
//!
//! And against a client making the log lie or swell: a path or method is recorded up to a
//! bound, and characters a log reader would take for a line break or a reordering (C1
//! controls, U+2028, bidi overrides) are escaped.
//!
//! Lines are tracing events, so any subscriber an app installs receives them. With rampart's
//! own JSON log ([`crate::telemetry::LogGuard::json_lines`]), the layer formats the line
//! itself, field for field what tracing's JSON formatter writes: that formatter (field
//! visitors, a serializer per line, the timestamp through `fmt`) cost about an eighth of the
//! throughput of a small request, more than any protection in the stack.

use std::cell::RefCell;
use std::io::Write as _;
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
use crate::telemetry::JsonLines;

/// The layer that writes one line per request below it. It reads the ids and the client address
/// the [`super::RequestIdLayer`] and [`super::ClientIpLayer`] outside it put on the request,
/// and takes a 5xx's internal cause off the response, so the cause reaches the log and never
/// the client.
#[derive(Debug, Clone, Default)]
pub struct AccessLogLayer {
    log: Arc<AccessLog>,
}

impl AccessLogLayer {
    /// Lines as tracing events, for whatever subscriber the app installed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lines formatted here and written to rampart's JSON log (see the module header).
    pub fn json(lines: JsonLines) -> Self {
        Self {
            log: Arc::new(AccessLog {
                failures: crate::telemetry::KeyedThrottle::default(),
                json: Some(lines),
            }),
        }
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
            method: &bounded(self.method.as_str(), MAX_LOGGED_METHOD),
            path: &bounded(self.uri.path(), MAX_LOGGED_PATH),
            status: response.status(),
            latency: self.started.elapsed(),
            client: self.client,
            cause: cause.as_ref().map(|c| c.0.as_str()),
        });
        response
    }
}

stage_layer!(AccessLogLayer);

/// The longest path and method a line records. hyper takes a request head of up to 16 KiB,
/// nearly all of it path or method if a client likes; without a bound, every request it sends,
/// refused ones included, would cost the log that much.
pub const MAX_LOGGED_PATH: usize = 512;
pub const MAX_LOGGED_METHOD: usize = 32;

/// `text`, or its first `max` bytes (to a character boundary) marked as cut, with how long
/// it was.
fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...({} bytes)", &text[..end], text.len()).into()
}

/// What is logged about one request.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The id this server gave the request.
    pub request_id: &'a str,
    /// The id the client sent and the response echoed, when it sent one: recorded beside the
    /// server's, never in its place, so a client cannot choose the id its actions are filed
    /// under.
    pub client_request_id: Option<&'a str>,
    pub method: &'a str,
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
    /// Where lines go when they are formatted here; tracing events otherwise.
    json: Option<JsonLines>,
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
            return self.write(entry, repeated);
        }
        self.write(entry, 0);
    }

    fn write(&self, entry: &Entry<'_>, repeated: u64) {
        match &self.json {
            Some(lines) => write_json(lines, entry, repeated),
            None => write_event(entry, repeated),
        }
    }
}

/// What a line says of its request: its level and message.
fn verdict(status: StatusCode) -> (tracing::Level, &'static str) {
    match status.as_u16() {
        // Shedding or a dependency down: an operating condition, not a bug.
        503 => (tracing::Level::WARN, "request refused"),
        500.. => (tracing::Level::ERROR, "request failed"),
        _ => (tracing::Level::INFO, "request"),
    }
}

thread_local! {
    /// Each thread's line being formatted, so a line costs no allocation.
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The line tracing's JSON formatter would write for the event [`write_event`] records (the
/// same fields in the same order), with a few more characters escaped (see [`json_string`]).
fn write_json(lines: &JsonLines, entry: &Entry<'_>, repeated: u64) {
    let (level, _) = verdict(entry.status);
    // The subscriber's filter still decides (RAMPART_LOG=warn turns these lines off).
    let enabled = match level {
        tracing::Level::INFO => tracing::enabled!(tracing::Level::INFO),
        tracing::Level::WARN => tracing::enabled!(tracing::Level::WARN),
        _ => tracing::enabled!(tracing::Level::ERROR),
    };
    if !enabled {
        return;
    }
    LINE.with(|line| {
        let Ok(mut line) = line.try_borrow_mut() else {
            return;
        };
        line.clear();
        format_json(&mut line, entry, repeated);
        lines.append(&line);
    });
}

/// Writes `entry`'s line, stamped now, into `line`.
fn format_json(line: &mut Vec<u8>, entry: &Entry<'_>, repeated: u64) {
    let (level, message) = verdict(entry.status);
    let now = time::OffsetDateTime::now_utc();
    line.extend_from_slice(b"{\"timestamp\":\"");
    // As tracing writes it: RFC 3339 in UTC with microseconds (this clock is past year 0).
    if let Some(stamp) = crate::rfc3339::utc_micros(now) {
        line.extend_from_slice(&stamp);
    }
    line.extend_from_slice(b"\",\"level\":\"");
    line.extend_from_slice(level.as_str().as_bytes());
    line.extend_from_slice(b"\",\"message\":");
    json_string(line, message);
    let mut field = |name: &str, value: &str| {
        line.extend_from_slice(b",\"");
        line.extend_from_slice(name.as_bytes());
        line.extend_from_slice(b"\":");
        json_string(line, value);
    };
    field("request_id", entry.request_id);
    field("client_request_id", entry.client_request_id.unwrap_or(""));
    field("method", entry.method);
    field("path", entry.path);
    let latency_us = u64::try_from(entry.latency.as_micros()).unwrap_or(u64::MAX);
    let mut digits = itoa::Buffer::new();
    line.extend_from_slice(b",\"status\":");
    line.extend_from_slice(digits.format(entry.status.as_u16()).as_bytes());
    line.extend_from_slice(b",\"latency_us\":");
    line.extend_from_slice(digits.format(latency_us).as_bytes());
    line.extend_from_slice(b",\"client\":\"");
    client_address(line, entry.client);
    line.push(b'"');
    if entry.status.is_server_error() {
        line.extend_from_slice(b",\"cause\":");
        json_string(line, entry.cause.unwrap_or(""));
        line.extend_from_slice(b",\"repeated\":");
        line.extend_from_slice(digits.format(repeated).as_bytes());
    }
    line.extend_from_slice(b"}\n");
}

/// `value` as a JSON string. Escaped as serde_json escapes (quotes, backslashes, C0
/// controls), and beyond it what a log reader must not take as text: C1 controls and DEL, the
/// line and paragraph separators (line splitters that honour U+0085 or U+2028 would cut one
/// record in two), bidirectional overrides and isolates (a log viewer would reorder the text
/// around them) and the byte order mark. A path may hold any of them.
fn json_string(line: &mut Vec<u8>, value: &str) {
    line.push(b'"');
    let bytes = value.as_bytes();
    if is_plain(bytes) {
        line.extend_from_slice(bytes);
        line.push(b'"');
        return;
    }
    let mut copied = 0;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        // Printable ASCII but the quote and the backslash, nearly every byte of a line, is
        // taken as it is without decoding a character.
        if (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\' {
            at += 1;
            continue;
        }
        // `at` is a character boundary: it only ever moves by whole characters.
        let Some(c) = value.get(at..).and_then(|rest| rest.chars().next()) else {
            break;
        };
        let width = c.len_utf8();
        let short: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            c if unreadable(c) => b"",
            _ => {
                at += width;
                continue;
            }
        };
        line.extend_from_slice(&bytes[copied..at]);
        if short.is_empty() {
            // Every such character is in the Basic Multilingual Plane: four hex digits.
            let _ = write!(line, "\\u{:04x}", u32::from(c));
        } else {
            line.extend_from_slice(short);
        }
        at += width;
        copied = at;
    }
    line.extend_from_slice(&bytes[copied..]);
    line.push(b'"');
}

/// Whether every byte is printable ASCII but the quote and the backslash: nothing to escape.
/// Nearly every field of a line is; one pass without branches (vector compares) tells.
#[allow(clippy::needless_bitwise_bool)] // no short-circuits: that is what lets it vectorise
fn is_plain(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |all, &b| {
        all & (b.wrapping_sub(0x20) < 0x5f) & (b != b'"') & (b != b'\\')
    })
}

/// The client address as `Display` writes it; an IPv4 address's four numbers are written
/// directly (through `fmt` they cost more than the rest of the line's numbers together).
fn client_address(line: &mut Vec<u8>, client: IpAddr) {
    match client {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    line.push(b'.');
                }
                line.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            // Writing to a Vec cannot fail.
            let _ = write!(line, "{v6}");
        }
    }
}

/// Characters written as `\uXXXX` (see [`json_string`]).
fn unreadable(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{feff}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// The line as a tracing event, for the app's own subscriber.
fn write_event(entry: &Entry<'_>, repeated: u64) {
    let status = entry.status.as_u16();
    let latency_us = u64::try_from(entry.latency.as_micros()).unwrap_or(u64::MAX);
    let (request_id, method, path, client) =
        (entry.request_id, entry.method, entry.path, entry.client);
    let client_request_id = entry.client_request_id.unwrap_or("");
    let cause = entry.cause.unwrap_or("");
    if status == 503 {
        tracing::warn!(request_id, client_request_id, method, path, status, latency_us, %client, cause, repeated, "request refused");
    } else if status >= 500 {
        tracing::error!(request_id, client_request_id, method, path, status, latency_us, %client, cause, repeated, "request failed");
    } else {
        tracing::info!(request_id, client_request_id, method, path, status, latency_us, %client, "request");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What tracing's JSON formatter, set up as `telemetry::init` sets it up, writes for
    /// `entry`.
    fn through_tracing(entry: &Entry<'_>, repeated: u64) -> String {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_target(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || write_event(entry, repeated));
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn formatted_here(entry: &Entry<'_>, repeated: u64) -> String {
        let mut line = Vec::new();
        format_json(&mut line, entry, repeated);
        String::from_utf8(line).unwrap()
    }

    /// Collects a JSON object's field names in the order written.
    struct Names<'a>(&'a mut Vec<String>);

    impl<'de> serde::de::Visitor<'de> for Names<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(name) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                self.0.push(name);
            }
            Ok(())
        }
    }

    /// The names of a JSON object's fields in the order written.
    fn field_order(line: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut deserializer = serde_json::Deserializer::from_str(line);
        serde::Deserializer::deserialize_map(&mut deserializer, Names(&mut names)).unwrap();
        names
    }

    #[test]
    fn lines_formatted_here_are_the_lines_tracing_writes() {
        let (get, post) = ("GET", "POST");
        let cases = [
            (
                Entry {
                    request_id: "01a2478d-d9aa-741f-b7ec-8c17089c959c",
                    client_request_id: None,
                    method: get,
                    path: "/health",
                    status: StatusCode::OK,
                    latency: Duration::from_micros(68),
                    client: IpAddr::from([127, 0, 0, 1]),
                    cause: None,
                },
                0,
            ),
            (
                Entry {
                    request_id: "01a2478d-d9aa-741f-b7ec-8c17089c959d",
                    client_request_id: Some("client.chosen-id:7"),
                    method: post,
                    // Characters a path may hold that JSON must escape or keep whole.
                    path: "/v1/\"quoted\"\\back/\u{e9}t\u{e9}/\u{1}",
                    status: StatusCode::NOT_FOUND,
                    latency: Duration::from_secs(3),
                    client: "2001:db8::7".parse().unwrap(),
                    cause: None,
                },
                0,
            ),
            (
                Entry {
                    request_id: "r-503",
                    client_request_id: None,
                    method: get,
                    path: "/v1/items",
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    latency: Duration::from_millis(12),
                    client: IpAddr::from([10, 0, 0, 9]),
                    cause: Some("database error: pool timed out \"after\" 5 s\nnext line"),
                },
                41,
            ),
            (
                Entry {
                    request_id: "r-500",
                    client_request_id: None,
                    method: post,
                    path: "/v1/items",
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    latency: Duration::ZERO,
                    client: IpAddr::from([10, 0, 0, 9]),
                    cause: None,
                },
                0,
            ),
        ];
        for (entry, repeated) in &cases {
            let theirs = through_tracing(entry, *repeated);
            let ours = formatted_here(entry, *repeated);
            assert!(
                ours.ends_with("}\n") && !ours.trim_end().contains('\n'),
                "{ours}"
            );
            let parse = |line: &str| {
                let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
                let timestamp = value["timestamp"].take();
                (value, timestamp.as_str().unwrap().to_owned())
            };
            let ((their_fields, their_time), (our_fields, our_time)) =
                (parse(&theirs), parse(&ours));
            assert_eq!(our_fields, their_fields, "\nours:   {ours}theirs: {theirs}");
            assert_eq!(field_order(&ours), field_order(&theirs));
            // The same shape of timestamp: RFC 3339, UTC, microseconds.
            assert_eq!(
                our_time.len(),
                their_time.len(),
                "{our_time} / {their_time}"
            );
            let parsed = time::OffsetDateTime::parse(
                &our_time,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            assert!((time::OffsetDateTime::now_utc() - parsed).abs() < time::Duration::minutes(1));
        }
    }

    #[test]
    fn only_printable_ascii_but_quote_and_backslash_skips_the_escaper() {
        for b in 0..=u8::MAX {
            let plain = (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
            assert_eq!(is_plain(&[b]), plain, "byte {b:#04x}");
            let mut long = b"x".repeat(70);
            long.push(b);
            assert_eq!(is_plain(&long), plain, "byte {b:#04x} after 70 plain ones");
        }
    }

    #[test]
    fn characters_a_log_reader_would_misread_are_escaped_and_long_paths_cut() {
        let path =
            "/a\u{85}b\u{2028}c\u{2029}d\u{202e}e\u{2067}f\u{feff}g\u{7f}h\u{9b}i\"j\\k\u{e9}";
        let entry = Entry {
            request_id: "r",
            client_request_id: None,
            method: "GET",
            path,
            status: StatusCode::OK,
            latency: Duration::ZERO,
            client: IpAddr::from([127, 0, 0, 1]),
            cause: None,
        };
        let line = formatted_here(&entry, 0);
        for raw in [
            '\u{85}', '\u{2028}', '\u{2029}', '\u{202e}', '\u{2067}', '\u{feff}', '\u{7f}',
            '\u{9b}',
        ] {
            assert!(!line.contains(raw), "{raw:?} written raw: {line}");
        }
        assert!(
            line.contains("\u{e9}"),
            "ordinary text stays as it is: {line}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["path"], path, "the escapes read back as the path");

        let long = format!("/{}", "\u{e9}".repeat(5_000));
        let cut = bounded(&long, MAX_LOGGED_PATH);
        assert!(cut.len() <= MAX_LOGGED_PATH + 24, "{}", cut.len());
        assert!(cut.ends_with("...(10001 bytes)"), "{cut}");
        assert_eq!(bounded("/health", MAX_LOGGED_PATH), "/health");
    }
}
