//! `rampart audit <url>`: the API security checklist as a black-box scanner for any HTTP API
//! (rampart, FastAPI, Express, Spring, ...), for developers before shipping and for CI.
//!
//! Safe by default: it contacts only the origin it is given, sends at most `--max-requests`
//! requests at `--rate` per second, never follows redirects, and sends nothing destructive:
//! only GET, HEAD, OPTIONS and TRACE, plus logins (for made-up users, and with the credentials
//! given), one oversized body to the login route, and at the end a logout for each session its
//! own logins opened. Every request is printed as it is sent.
//! Findings carry evidence, the fix, their CWE and OWASP API Top 10 (2023) category, and the
//! checklist item they verify.

mod checks;
pub mod client;
pub mod discover;
pub mod findings;
mod operator;
pub mod paths;
pub mod report;
pub mod spec;
mod stats;
pub mod triage;
mod yaml;

use std::path::PathBuf;
use std::process::ExitCode;

pub use findings::{Finding, Severity};
pub use report::{Format, Report};

/// The options of `rampart audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// The API's base URL, e.g. http://127.0.0.1:8080. Only this origin is contacted.
    pub target: String,
    /// An existing account, for the login, token and enumeration checks.
    #[arg(long, env = "RAMPART_AUDIT_USERNAME")]
    pub username: Option<String>,
    /// Its password. Prefer the environment variable: arguments are visible to other local users.
    #[arg(long, env = "RAMPART_AUDIT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Where to log in. By default, the login the OpenAPI document describes (a POST taking a
    /// password), else the usual paths (/v1/auth/login, /login, /api/login, /auth/login, ...).
    /// A JSON body is tried, then the OAuth2 password form, unless the document says which.
    #[arg(long)]
    pub login_path: Option<String>,
    /// Where the sessions the run's logins opened are ended at the end (POST with the token).
    /// By default, the logout the document describes.
    #[arg(long)]
    pub logout_path: Option<String>,
    /// A second account of your own, for reading the first one's objects as it (BOLA). Only
    /// GETs are sent as it, and at the end the logout of the session its login opened.
    #[arg(long, env = "RAMPART_AUDIT_USERNAME2")]
    pub username2: Option<String>,
    /// The second account's password (prefer the environment variable).
    #[arg(long, env = "RAMPART_AUDIT_PASSWORD2", hide_env_values = true)]
    pub password2: Option<String>,
    /// An access token to use instead of logging in (never logged out).
    #[arg(long, env = "RAMPART_AUDIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// An OpenAPI document (JSON or YAML) to aim the checks; by default it is looked for on the
    /// target (docs pages, usual paths and prefixes).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Accepted findings (YAML or JSON): a list of `{id, route, reason, expires}`. They are
    /// listed apart with their reason and do not fail the run until they expire.
    #[arg(long)]
    pub suppress: Option<PathBuf>,
    /// A previous report (`--format json`): findings it already held are left out, so only
    /// what is new is reported and can fail the run.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Exit 1 when a finding at or above this severity exists.
    #[arg(long, value_enum, default_value_t = Severity::Medium)]
    pub fail_on: Severity,
    /// The most requests the run may send.
    #[arg(long, default_value_t = 300)]
    pub max_requests: u32,
    /// Requests per second, at most.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Wait as long as the target's `Retry-After` asks (up to 15 minutes in all). By default
    /// waiting takes at most 30 s of the run, and a check that would have to wait longer is
    /// reported as not checked (rate limited).
    #[arg(long)]
    pub patient: bool,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl AuditArgs {
    /// A run against `target` with the command line's defaults (no credentials, the document
    /// and login found on the target, 300 requests at 20 a second, failing at medium), for
    /// programs that run the auditor as a library.
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            username: None,
            password: None,
            login_path: None,
            logout_path: None,
            username2: None,
            password2: None,
            token: None,
            spec: None,
            format: Format::Table,
            suppress: None,
            baseline: None,
            fail_on: Severity::Medium,
            max_requests: 300,
            rate: 20.0,
            patient: false,
            quiet: false,
        }
    }
}

/// Why a run could not produce a report (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Usage(String),
    /// The target kept refusing the operator's login for rate.
    #[error("{0}")]
    RateLimited(String),
    #[error("cannot reach {target}: {reason}")]
    Unreachable { target: String, reason: String },
}

/// Runs every check against `args.target`.
pub async fn audit(args: &AuditArgs) -> Result<Report, AuditError> {
    let mut probe = client::Probe::new(&args.target, args.max_requests, args.rate, args.quiet)
        .map_err(AuditError::Usage)?;
    let target = probe.target();
    if args.patient {
        probe.set_wait_budget(client::PATIENT_WAIT_BUDGET);
    }
    let suppressions = match &args.suppress {
        Some(path) => triage::load_suppressions(path).map_err(AuditError::Usage)?,
        None => Vec::new(),
    };
    let baseline = match &args.baseline {
        Some(path) => Some(triage::load_baseline(path).map_err(AuditError::Usage)?),
        None => None,
    };
    for secret in [&args.password, &args.password2, &args.token]
        .into_iter()
        .flatten()
    {
        probe.add_secret(secret);
    }
    let given = match &args.spec {
        Some(path) => {
            let size = std::fs::metadata(path).map_or(0, |m| m.len());
            if size > MAX_SPEC_FILE {
                return Err(AuditError::Usage(format!(
                    "{} is {} MiB; an OpenAPI document of at most {} MiB is read",
                    path.display(),
                    size / (1024 * 1024),
                    MAX_SPEC_FILE / (1024 * 1024)
                )));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| AuditError::Usage(format!("cannot read {}: {e}", path.display())))?;
            let doc = spec::parse_document(&text).ok_or_else(|| {
                AuditError::Usage(format!(
                    "{} is not an OpenAPI or Swagger document (JSON or YAML with an `openapi` or `swagger` version field)",
                    path.display()
                ))
            })?;
            Some(spec::operations(&doc))
        }
        None => None,
    };
    checks::progress(
        "looking for the API's docs and OpenAPI document",
        args.quiet,
    );
    let discovered = discover::discover(&mut probe)
        .await
        .map_err(|err| match err {
            client::ProbeError::Network(reason) => AuditError::Unreachable {
                target: target.clone(),
                reason,
            },
            err => AuditError::Usage(err.to_string()),
        })?;
    let operations = given.unwrap_or_else(|| {
        discovered
            .spec
            .as_ref()
            .map(|s| s.operations.clone())
            .unwrap_or_default()
    });
    let login = operator::Login::choose(args, &operations);
    let mut notes = Vec::new();
    if operations.len() >= spec::MAX_OPERATIONS {
        notes.push(format!(
            "the OpenAPI document describes more than {} operations: only the first {} aim the checks",
            spec::MAX_OPERATIONS,
            spec::MAX_OPERATIONS
        ));
    }
    if let (None, None, Some(path)) = (&args.spec, &discovered.spec, &discovered.too_large) {
        notes.push(format!(
            "the OpenAPI document at {path} is larger than the auditor reads from a target: give it with --spec"
        ));
    }
    let unreachable = |reason: String| AuditError::Unreachable {
        target: target.clone(),
        reason,
    };

    let credentials = args.username.clone().map(|username| checks::Credentials {
        username,
        password: args.password.clone(),
    });
    let mut login_answer = None;
    let mut login_format = None;
    let mut opened = Vec::new();
    let mut login_path = None;
    let token = match (&args.token, &credentials) {
        (Some(token), _) => Some(token.clone()),
        (
            None,
            Some(checks::Credentials {
                username,
                password: Some(password),
            }),
        ) => {
            // Kept back for logging out the sessions this run opens: one login here and up to
            // three resetting logins in the enumeration check.
            probe.reserve(4);
            let logged_in =
                operator::log_in_waiting(&mut probe, args, &login, (username, password))
                    .await
                    .map_err(|err| match err {
                        client::ProbeError::Network(reason) => unreachable(reason),
                        err => AuditError::Usage(err.to_string()),
                    })??;
            login_answer = Some((logged_in.answer_line.clone(), logged_in.session.answer));
            login_format = Some(logged_in.session.format);
            opened.push(logged_in.session.token.clone());
            probe.add_secret(&logged_in.session.token);
            login_path = Some(logged_in.path);
            Some(logged_in.session.token)
        }
        (None, Some(_)) => {
            notes.push("--username without --password: the login enumeration check runs, the token checks do not".to_owned());
            None
        }
        (None, None) => None,
    };
    let login_worked = login_answer.is_some();
    let second_token = match (&args.username2, &args.password2, &login_path) {
        (Some(username), Some(password), Some(path)) => {
            let second = operator::Login {
                paths: vec![path.clone()],
                formats: login_format.into_iter().collect(),
                name_field: login.name_field,
            };
            let logged_in =
                operator::log_in_waiting(&mut probe, args, &second, (username, password))
                    .await
                    .map_err(|err| AuditError::Usage(err.to_string()))?
                    .map_err(|err| AuditError::Usage(format!("the second identity: {err}")))?;
            opened.push(logged_in.session.token.clone());
            probe.add_secret(&logged_in.session.token);
            Some(logged_in.session.token)
        }
        (Some(_), _, None) => {
            notes.push("--username2 needs the first identity's login too (--username and --password): BOLA was not checked".to_owned());
            None
        }
        (Some(_), None, _) => {
            notes.push(
                "--username2 without RAMPART_AUDIT_PASSWORD2: BOLA was not checked".to_owned(),
            );
            None
        }
        _ => None,
    };
    let mut ctx = checks::Ctx {
        probe: &mut probe,
        findings: Vec::new(),
        notes,
        operations,
        token: token.clone(),
        second_token,
        second_username: args.username2.clone(),
        own_secrets: [&args.password, &args.password2]
            .into_iter()
            .flatten()
            .cloned()
            .collect(),
        credentials,
        login_path: login_path.unwrap_or_else(|| login.paths[0].clone()),
        login_name_field: login.name_field,
        login_formats: login.formats.clone(),
        discovered,
        seen: login_answer.into_iter().collect(),
        token_route: None,
        login_format,
        unknown: None,
        login_confirmed: login_worked,
        opened,
    };
    checks::run_all(&mut ctx).await;
    let sessions_opened = ctx.opened.len();
    let logout_path = args
        .logout_path
        .clone()
        .or_else(|| spec::logout_operation(&ctx.operations).map(|o| o.path.clone()))
        .or_else(|| {
            (ctx.login_path == operator::DEFAULT_LOGIN).then(|| "/v1/auth/logout".to_owned())
        });
    let sessions_ended = checks::end_sessions(&mut ctx, logout_path.as_deref()).await;
    if ctx.seen.is_empty() {
        // Not one answer: the target is down or not HTTP, and a report would be all "not checked".
        let reason = ctx
            .probe
            .first_failure()
            .unwrap_or("no request could be sent")
            .to_owned();
        return Err(unreachable(reason));
    }
    let token_route = ctx.token_route.take();
    let (mut findings, mut notes) = (ctx.findings, ctx.notes);
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    let triaged = triage::triage(
        findings,
        &suppressions,
        baseline.as_deref(),
        &triage::today(),
    );
    for expired in &triaged.expired {
        notes.push(format!(
            "the suppression of {} on {} expired on {} and no longer applies ({})",
            expired.id,
            expired.route.as_deref().unwrap_or("every route"),
            expired.expires,
            expired.reason
        ));
    }
    let findings = triaged.kept;
    Ok(Report {
        target,
        findings,
        logged_in: login_worked,
        authenticated: token_route.is_some(),
        token_route,
        fail_on: args.fail_on,
        requests_sent: probe.sent(),
        sessions_opened,
        sessions_ended,
        notes,
        budget_spent: probe.ran_out(),
        suppressed: triaged.suppressed,
        baselined: triaged.baselined.len(),
    })
}

/// The largest `--spec` file read (real documents of the largest APIs are around 10 MiB).
const MAX_SPEC_FILE: u64 = 32 * 1024 * 1024;

/// `rampart audit`: prints the report on stdout; exit 1 when a finding reaches `--fail-on`, 2
/// on a usage or connection error, else 0.
pub fn main(args: &AuditArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(audit(args)) {
        Ok(report) => {
            println!("{}", report.render(args.format));
            if report.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(err) => {
            eprintln!("error: {}", report::printable(&err.to_string(), false));
            ExitCode::from(2)
        }
    }
}
