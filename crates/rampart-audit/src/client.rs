//! The only way checks reach the target: one origin, a request budget, a pace, and a log.
//!
//! Defends the *target* against the auditor: every request goes to the origin given on the
//! command line (a path that would leave it is refused, redirects are not followed), the total
//! is capped by `--max-requests`, requests are spaced by `--rate`, bodies read back are capped,
//! and every request is printed as it is sent so the operator sees exactly what the tool did.

use std::io::Write as _;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use reqwest::Url;

/// Waiting out `Retry-After` may take this long in all, unless the operator is patient: with
/// the default pace and budget a run then ends within a minute.
pub const DEFAULT_WAIT_BUDGET: Duration = Duration::from_secs(30);
/// `--patient`: as long as the target asks, up to this in all.
pub const PATIENT_WAIT_BUDGET: Duration = Duration::from_secs(15 * 60);

/// Response bodies are read up to this much; the rest is discarded.
pub const MAX_BODY: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(15);

/// A request a check wants to send.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    /// Path and query, starting with `/`, relative to the target's origin.
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<(&'static str, Vec<u8>)>,
    /// A path the auditor wrote itself as a probe (dot segments allowed), never one the target
    /// supplied (see [`crate::paths`]).
    pub auditor_made: bool,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
            auditor_made: false,
        }
    }

    #[must_use]
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    #[must_use]
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    #[must_use]
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(("application/json", body.to_string().into_bytes()));
        self
    }

    #[must_use]
    pub fn body(mut self, content_type: &'static str, bytes: Vec<u8>) -> Self {
        self.body = Some((content_type, bytes));
        self
    }

    /// Marks the path as the auditor's own probe, which may keep `.` and `..` segments.
    #[must_use]
    pub fn auditor_made(mut self) -> Self {
        self.auditor_made = true;
        self
    }

    /// `METHOD /path`, for evidence.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
    /// From sending the request to the end of the (capped) body.
    pub elapsed: Duration,
    /// Whether the request carried credentials (an Authorization or Cookie header).
    pub credentialed: bool,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `--max-requests` is spent; checks stop and the report says what was not checked.
    #[error("the request budget (--max-requests) is spent")]
    Budget,
    /// The target could not be reached or did not answer in time.
    #[error("{0}")]
    Network(String),
    /// A check asked for a request outside the target's origin (a bug in the check).
    #[error("refused to send a request outside the target's origin: {0}")]
    OffOrigin(String),
    /// A path that would reach another route than the one named (dot segments, characters the
    /// URL parser drops), or a read of a path that reads as a change: a path the target
    /// supplied, in a document or an answer.
    #[error("refused to send {0}: the path could reach another route or change something")]
    Unsafe(String),
}

/// The target and the limits the run keeps to.
#[derive(Debug)]
pub struct Probe {
    client: reqwest::Client,
    origin: Url,
    /// The target URL's own path (`/api` for `https://host/api`), prefixed to every request.
    base: String,
    budget: u32,
    sent: u32,
    /// Requests kept back from the checks for ending the sessions the run opened.
    reserved: u32,
    /// Why the first request that got no answer failed: the reason a run that saw no answer
    /// at all gives for the target being unreachable.
    first_failure: Option<String>,
    interval: Duration,
    last: Option<Instant>,
    quiet: bool,
    /// Time the run may spend waiting out refusals for rate (`Retry-After`), in all, and how
    /// much it has spent: a target cannot stretch a run past its budget by asking it to wait.
    wait_budget: Duration,
    waited: Duration,
    /// A check wanted a request after the budget was spent.
    ran_out: bool,
    /// The run's own credentials: never put in a URL (a target that echoes one back as an id
    /// in a list would have it sent in a path and printed on stderr).
    secrets: Vec<String>,
    /// Set when the login handed its token over in this cookie: every `Authorization:
    /// Bearer` a check adds is sent as this cookie instead, forgeries included.
    token_cookie: Option<String>,
}

impl Probe {
    /// `target` must be an `http` or `https` URL; only its scheme, host and port are used.
    pub fn new(target: &str, budget: u32, rate: f64, quiet: bool) -> Result<Self, String> {
        let mut origin = Url::parse(target).map_err(|e| format!("`{target}` is not a URL: {e}"))?;
        if !matches!(origin.scheme(), "http" | "https") || origin.host().is_none() {
            return Err(format!(
                "`{target}` must be an http:// or https:// URL with a host"
            ));
        }
        if !(0.01..=1000.0).contains(&rate) {
            return Err(format!(
                "--rate {rate} must be between 0.01 and 1000 requests per second"
            ));
        }
        let base = origin.path().trim_end_matches('/').to_owned();
        origin.set_path("/");
        origin.set_query(None);
        origin.set_fragment(None);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent(concat!("rampart-audit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let interval = Duration::from_secs_f64(1.0 / rate);
        Ok(Self {
            client,
            origin,
            base,
            budget,
            sent: 0,
            reserved: 0,
            first_failure: None,
            interval,
            last: None,
            quiet,
            wait_budget: DEFAULT_WAIT_BUDGET,
            waited: Duration::ZERO,
            ran_out: false,
            secrets: Vec::new(),
            token_cookie: None,
        })
    }

    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// The target as given: origin and base path.
    pub fn target(&self) -> String {
        format!(
            "{}{}/",
            self.origin.as_str().trim_end_matches('/'),
            self.base
        )
    }

    pub fn is_https(&self) -> bool {
        self.origin.scheme() == "https"
    }

    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    pub fn sent(&self) -> u32 {
        self.sent
    }

    /// What the checks may still send (the reserve for ending sessions not counted).
    pub fn remaining(&self) -> u32 {
        self.budget.saturating_sub(self.sent + self.reserved)
    }

    /// Keeps up to `requests` of the budget (never all of it) for [`Probe::send_reserved`].
    pub fn reserve(&mut self, requests: u32) {
        self.reserved = requests.min(self.budget / 2);
    }

    /// Adds one of the run's own credentials (a password, a token), which no URL may carry.
    pub fn add_secret(&mut self, secret: &str) {
        if secret.chars().count() >= 6 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_owned());
        }
    }

    /// Whether a check was refused a request because `--max-requests` was spent: the run did
    /// not check everything it would have.
    pub fn ran_out(&self) -> bool {
        self.ran_out
    }

    /// How long the run may wait out refusals for rate, in all (see [`DEFAULT_WAIT_BUDGET`]).
    pub fn set_wait_budget(&mut self, budget: Duration) {
        self.wait_budget = budget;
    }

    pub fn wait_budget(&self) -> Duration {
        self.wait_budget
    }

    /// Takes `wait` from the wait budget when it fits what is left; `false` (nothing taken)
    /// when it does not, and the check must report that it was rate limited.
    pub fn take_wait(&mut self, wait: Duration) -> bool {
        let fits = self.waited.saturating_add(wait) <= self.wait_budget;
        if fits {
            self.waited += wait;
        }
        fits
    }

    /// Sends tokens as the cookie `name` from now on (see [`Probe::token_cookie`]).
    pub fn send_token_as_cookie(&mut self, name: &str) {
        self.token_cookie = Some(name.to_owned());
    }

    /// The cookie tokens are sent in, when the login used one.
    pub fn token_cookie(&self) -> Option<&str> {
        self.token_cookie.as_deref()
    }

    /// Why the first unanswered request failed, if one did.
    pub fn first_failure(&self) -> Option<&str> {
        self.first_failure.as_deref()
    }

    /// The URL for `path`: on the target's origin, below its base path unless `path` already
    /// starts with it (so `--login-path /v1/auth/login` against `https://host/v1` is not sent
    /// to `/v1/v1/auth/login`). The `./` keeps `users:batch` from reading as a scheme, and
    /// leading slashes or backslashes cannot turn it into a network path to another host.
    fn resolve(&self, path: &str) -> Option<Url> {
        let path = path.trim_start_matches(['/', '\\']);
        let base = self.base.trim_start_matches('/');
        let has_base = !base.is_empty()
            && path.strip_prefix(base).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')
            });
        let relative = if has_base {
            format!("./{path}")
        } else {
            format!(".{}/{path}", self.base)
        };
        self.origin
            .join(&relative)
            .ok()
            .filter(|u| u.origin() == self.origin.origin())
    }

    /// Sends `req` for a check, pacing to the rate and counting against the budget.
    pub async fn send(&mut self, req: &Req) -> Result<Answer, ProbeError> {
        if self.remaining() == 0 {
            self.ran_out = true;
            return Err(ProbeError::Budget);
        }
        self.dispatch(req).await
    }

    /// Sends `req` from the reserve: only for ending the run's own sessions.
    pub async fn send_reserved(&mut self, req: &Req) -> Result<Answer, ProbeError> {
        if self.sent >= self.budget {
            return Err(ProbeError::Budget);
        }
        self.reserved = self.reserved.saturating_sub(1);
        self.dispatch(req).await
    }

    async fn dispatch(&mut self, req: &Req) -> Result<Answer, ProbeError> {
        // The last guard for paths the target supplied, whatever check asked for them: the
        // checks filter first, this makes sure.
        // A whole segment or query value that is a credential, or holds one long enough not to
        // be an ordinary word (a password such as `health` must not block `/health`).
        let decoded = crate::paths::percent_decode(&req.path);
        let carries = |secret: &str| {
            decoded
                .split(['/', '?', '&', '='])
                .any(|part| part == secret || (secret.len() >= 12 && part.contains(secret)))
        };
        if self.secrets.iter().any(|s| carries(s)) {
            return Err(ProbeError::Unsafe(
                "a request whose URL would carry the run's own credential".into(),
            ));
        }
        let reads = matches!(req.method, Method::GET | Method::HEAD);
        if !req.auditor_made
            && (!crate::paths::is_sendable(&req.path)
                || (reads && crate::paths::is_state_changing_path(&req.path)))
        {
            return Err(ProbeError::Unsafe(req.line()));
        }
        let url = self
            .resolve(&req.path)
            .ok_or_else(|| ProbeError::OffOrigin(req.path.clone()))?;
        if let Some(last) = self.last {
            let wait = (last + self.interval).saturating_duration_since(Instant::now());
            tokio::time::sleep(wait).await;
        }
        self.sent += 1;
        self.last = Some(Instant::now());
        let mut builder = self.client.request(req.method.clone(), url);
        for (name, value) in &req.headers {
            let as_cookie = self
                .token_cookie
                .as_ref()
                .filter(|_| name.eq_ignore_ascii_case("authorization"))
                .and_then(|cookie| Some((cookie, value.strip_prefix("Bearer ")?)));
            builder = match as_cookie {
                Some((cookie, token)) => builder.header("cookie", format!("{cookie}={token}")),
                None => builder.header(*name, value),
            };
        }
        if let Some((content_type, bytes)) = &req.body {
            builder = builder
                .header("content-type", *content_type)
                .body(bytes.clone());
        }
        let credentialed = req.headers.iter().any(|(name, _)| {
            name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie")
        });
        let started = Instant::now();
        let result = read(builder).await;
        let status = result
            .as_ref()
            .map_or_else(|e| format!("error: {e}"), |a| a.0.to_string());
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "  [{:>4}/{}] {} -> {}",
                self.sent,
                self.budget,
                crate::report::printable(&req.line(), false),
                crate::report::printable(&status, false)
            );
        }
        if let Err(ProbeError::Network(reason)) = &result {
            self.first_failure.get_or_insert_with(|| reason.clone());
        }
        result.map(|(status, headers, body)| Answer {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
            credentialed,
        })
    }
}

async fn read(builder: reqwest::RequestBuilder) -> Result<(u16, HeaderMap, String), ProbeError> {
    let mut response = builder
        .send()
        .await
        .map_err(|e| ProbeError::Network(describe(&e)))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProbeError::Network(describe(&e)))?
    {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

/// What went wrong, with the operating system's reason when there is one ("connection
/// refused", a name that does not resolve), never the URL or anything the target sent.
fn describe(err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        return "no answer within 15 s".into();
    } else if err.is_connect() {
        "connection failed"
    } else {
        "the connection broke"
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return format!("{what}: {io}");
        }
        source = cause.source();
    }
    what.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_stays_below_the_target() {
        let probe = Probe::new("https://api.example.com/base/", 10, 20.0, true).unwrap();
        let at = |p: &str| probe.resolve(p).map(|u| u.to_string());
        assert_eq!(
            at("/v1/items?limit=5").as_deref(),
            Some("https://api.example.com/base/v1/items?limit=5")
        );
        assert_eq!(
            at("/users:batchGet").as_deref(),
            Some("https://api.example.com/base/users:batchGet")
        );
        assert_eq!(
            at("//evil.example/x").as_deref(),
            Some("https://api.example.com/base/evil.example/x")
        );
        assert_eq!(
            at("\\\\evil.example/x").as_deref(),
            Some("https://api.example.com/base/evil.example/x")
        );
        assert_eq!(probe.target(), "https://api.example.com/base/");
        // A path that already names the base is not given it twice; one that merely starts
        // with the same letters is.
        let v1 = Probe::new("https://api.example.com/v1/", 10, 20.0, true).unwrap();
        let at = |p: &str| v1.resolve(p).map(|u| u.to_string());
        for (path, sent) in [
            ("/v1/auth/login", "https://api.example.com/v1/auth/login"),
            ("/v1", "https://api.example.com/v1"),
            ("/v1?x=1", "https://api.example.com/v1?x=1"),
            ("/v10/items", "https://api.example.com/v1/v10/items"),
            ("/health", "https://api.example.com/v1/health"),
        ] {
            assert_eq!(at(path).as_deref(), Some(sent), "{path}");
        }
        assert!(Probe::new("https://api.example.com", 10, 0.0, true).is_err());
        assert!(Probe::new("https://api.example.com", 10, f64::NAN, true).is_err());
        assert!(Probe::new("ftp://api.example.com", 10, 1.0, true).is_err());
    }

    #[tokio::test]
    async fn no_url_carries_a_credential_or_reaches_another_route() {
        // Nothing listens there: a request the guard let through would fail as a network error.
        let mut probe = Probe::new("http://127.0.0.1:9", 50, 1000.0, true).unwrap();
        probe.add_secret("pw-alice-SECRET");
        for req in [
            Req::get("/v1/users/pw-alice-SECRET"),
            Req::get("/v1/users?id=pw%2Dalice%2DSECRET"),
            Req::get("/v1/items/..%2F..%2Fadmin"),
            Req::get("/cre\tatedb"),
            Req::get("/v1/del%65te"),
            Req::new(Method::POST, "/v1/auth/logout/../../admin/reset"),
        ] {
            let refused = probe.send(&req).await;
            assert!(
                matches!(refused, Err(ProbeError::Unsafe(_))),
                "{}: {refused:?}",
                req.line()
            );
        }
        assert_eq!(probe.sent(), 0, "nothing was sent");
        // A password that is an ordinary word does not block the route of that name.
        probe.add_secret("health");
        assert!(matches!(
            probe.send(&Req::get("/healthz")).await,
            Err(ProbeError::Network(_))
        ));
    }
}
