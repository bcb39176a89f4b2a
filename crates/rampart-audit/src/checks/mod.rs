//! The checks, run in an order that keeps them from disturbing each other: passive reads first,
//! then token forgeries, then login probes, and the login burst (which exhausts the target's
//! limit for a while) last.

mod access;
mod confusion;
mod cors;
mod errors;
mod exposure;
mod jwt;
mod jwt_secrets;
mod limits;
mod login;
mod objects;
mod params;
mod sensitive;
mod session;
mod signatures;
mod surface;
mod tokens;

use crate::client::{Answer, Probe, ProbeError, Req};
use crate::findings::Finding;
use crate::spec::Operation;

pub(crate) use session::{end_sessions, log_in, Credentials, Format as LoginFormat, LoggedIn};

/// What the checks share during one run.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) probe: &'a mut Probe,
    pub(crate) findings: Vec<Finding>,
    /// What could not be checked, and why; printed with the report.
    pub(crate) notes: Vec<String>,
    pub(crate) operations: Vec<Operation>,
    pub(crate) token: Option<String>,
    /// A second identity's access token (`--username2`), for reading the first one's objects.
    pub(crate) second_token: Option<String>,
    /// The second account's name (`--username2`).
    pub(crate) second_username: Option<String>,
    /// The operator's passwords: never printed in evidence, whatever a target echoes.
    pub(crate) own_secrets: Vec<String>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) login_path: String,
    /// The field the login names the account with (`username`, `email`, ...).
    pub(crate) login_name_field: &'static str,
    /// The body formats the login may take, in the order to try them.
    pub(crate) login_formats: Vec<LoginFormat>,
    /// The docs page and document found before the checks ran.
    pub(crate) discovered: crate::discover::Discovered,
    /// Every response seen, kept small: status, request line and the headers the passive
    /// checks read.
    pub(crate) seen: Vec<(String, Answer)>,
    /// The route that answered 2xx to the token and 401/403 to garbage: proof the token works.
    pub(crate) token_route: Option<String>,
    /// The body format the login route takes, once known.
    pub(crate) login_format: Option<session::Format>,
    /// An anonymous GET of a path no API has, asked once: the error answer the header check
    /// judges and the control the access check compares secured routes against.
    pub(crate) unknown: Option<(String, Answer)>,
    /// Whether the operator's login worked at `login_path`: proof a login route is there.
    pub(crate) login_confirmed: bool,
    /// Access tokens of the sessions this run's logins opened, to be ended when it finishes.
    pub(crate) opened: Vec<String>,
}

impl Ctx<'_> {
    /// Sends a request and remembers the answer for the passive checks.
    pub(crate) async fn send(&mut self, req: &Req) -> Result<Answer, ProbeError> {
        let answer = self.probe.send(req).await?;
        if self.seen.len() < 200 {
            let mut kept = answer.clone();
            let mut cut = kept.body.len().min(4096);
            while !kept.body.is_char_boundary(cut) {
                cut -= 1;
            }
            kept.body.truncate(cut);
            self.seen.push((req.line(), kept));
        }
        Ok(answer)
    }

    /// The anonymous answer for a made-up path (sent on first use).
    pub(crate) async fn unknown_path(&mut self) -> Result<(String, Answer), ProbeError> {
        if let Some(known) = &self.unknown {
            return Ok(known.clone());
        }
        let path = format!("/rampart-audit-{}/{}", random_hex(4), random_hex(4));
        let answer = self.send(&Req::get(&path)).await?;
        self.unknown = Some((path.clone(), answer.clone()));
        Ok((path, answer))
    }

    /// Files a finding, its evidence redacted (see [`sensitive::redact`]).
    pub(crate) fn report(&mut self, mut finding: Finding) {
        let own: Vec<&str> = self
            .own_secrets
            .iter()
            .map(String::as_str)
            .chain(self.token.as_deref())
            .chain(self.second_token.as_deref())
            .chain(self.opened.iter().map(String::as_str))
            .collect();
        let redacted = sensitive::redact(&finding.evidence, &own);
        finding.evidence = crate::report::printable(&redacted, false);
        finding.route = crate::triage::route_in(&finding.evidence);
        self.findings.push(finding);
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes
            .push(crate::report::printable(&note.into(), false));
    }

    /// GET operations without path parameters, public or secured, except those whose path
    /// reads as state-changing ([`is_state_changing_path`]).
    pub(crate) fn plain_gets(&self, secured: bool) -> impl Iterator<Item = &Operation> {
        self.operations.iter().filter(move |o| {
            o.method == http::Method::GET
                && o.secured == secured
                && o.path_params.is_empty()
                && !is_state_changing_path(&o.path)
        })
    }
}

/// Runs every check in order, then judges every answer seen for sensitive data (that sends
/// nothing, so it runs even when the budget ran out).
pub(crate) async fn run_all(ctx: &mut Ctx<'_>) {
    run_probes(ctx).await;
    exposure::judge_seen(ctx);
}

/// The checks that send requests, in order; a spent budget ends them early with a note.
async fn run_probes(ctx: &mut Ctx<'_>) {
    macro_rules! step {
        ($name:literal, $check:path) => {
            progress(concat!("checking ", $name), ctx.probe.is_quiet());
            match $check(ctx).await {
                Ok(()) => {}
                Err(ProbeError::Budget) => {
                    ctx.note(concat!(
                        "the request budget (--max-requests) ran out during the ",
                        $name,
                        " checks; later checks did not run"
                    ));
                    return;
                }
                // Not one answer yet and the network failed: the target is not there, and
                // every later check would only fail the same way.
                Err(ProbeError::Network(_)) if ctx.seen.is_empty() => return,
                // One check's failure (a reset connection, a timeout, a path that would leave
                // the origin) ends that check, not the run: the findings so far stand.
                Err(err) => ctx.note(format!(
                    concat!("the ", $name, " checks stopped early: {}"),
                    err
                )),
            }
        };
    }
    step!(
        "security headers, banners, TLS, TRACE and docs",
        surface::run
    );
    step!("CORS", cors::run);
    step!("anonymous access and the route map", access::run);
    step!(
        "error leakage (login route and GET parameters)",
        errors::run
    );
    step!("excessive data exposure", exposure::run);
    step!("access token", tokens::run);
    step!("access to another user's objects", objects::run);
    step!("body and page size limits", limits::run);
    step!("login enumeration", login::enumeration);
    step!("account lookups by name", objects::account_lookups);
    step!("login rate limit", login::rate_limit);
    step!("cookies", surface::cookies);
}

pub(crate) use crate::paths::{id_segment, is_state_changing_path};

pub(crate) fn progress(message: &str, quiet: bool) {
    if !quiet {
        eprintln!("{}", crate::report::printable(message, false));
    }
}

/// Random bytes, for names no real account or route has and for the auditor's throwaway keys.
/// Randomness only makes them unlikely to collide with anything real; a failure leaves zeros,
/// which still make valid names and keys.
pub(crate) fn random_bytes(len: usize) -> Vec<u8> {
    let mut raw = vec![0u8; len];
    let _ = getrandom::fill(&mut raw);
    raw
}

/// A random lower-case hex string, for names no real account or route has.
pub(crate) fn random_hex(bytes: usize) -> String {
    use std::fmt::Write as _;
    random_bytes(bytes).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A random UUID-shaped id, for path parameters that should name nothing.
pub(crate) fn random_id() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Shortens a body for evidence.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    // Line breaks and tabs part words; any other control character is dropped, so nothing a
    // target puts inside a word splits it (a credential split by a NUL would escape redaction).
    let flat: String = text
        .chars()
        .filter_map(|c| match c {
            '\n' | '\t' => Some(' '),
            _ if c.is_control() => None,
            _ => Some(c),
        })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}...")
    }
}
