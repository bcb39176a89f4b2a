//! Logging in as the operator: where (the given path, the login the document describes, or
//! the usual paths in turn), in which body format and name field, and waiting out a refusal for
//! rate within the run's budget for waiting.
//!
//! Defends the operator's credentials and account: the password goes only to a login route,
//! a refusal for rate is never blamed on the credentials, and a route that is not there (404,
//! 405) is passed over rather than retried.

use crate::{checks, client, spec, AuditArgs, AuditError};

/// rampart's own login, the first of the usual paths tried.
pub(crate) const DEFAULT_LOGIN: &str = "/v1/auth/login";
/// Where logins usually are, when neither `--login-path` nor the document says.
const USUAL_LOGINS: [&str; 8] = [
    DEFAULT_LOGIN,
    "/login",
    "/api/login",
    "/auth/login",
    "/api/auth/login",
    "/api/v1/auth/login",
    "/users/login",
    "/token",
];

/// Where and how the run logs in.
#[derive(Debug)]
pub(crate) struct Login {
    /// Tried in turn while each answers 404 or 405.
    pub(crate) paths: Vec<String>,
    pub(crate) formats: Vec<checks::LoginFormat>,
    pub(crate) name_field: &'static str,
}

impl Login {
    /// `--login-path`, else the document's login operation, else the usual paths.
    pub(crate) fn choose(args: &AuditArgs, operations: &[spec::Operation]) -> Self {
        let described = spec::login_operation(operations);
        let formats = match described {
            Some(op) if spec::takes_form(op) => vec![checks::LoginFormat::Form],
            Some(op) if op.body_types.iter().any(|t| t.contains("json")) => {
                vec![checks::LoginFormat::Json]
            }
            _ => vec![checks::LoginFormat::Json, checks::LoginFormat::Form],
        };
        let paths = match (&args.login_path, described) {
            (Some(path), _) => vec![path.clone()],
            (None, Some(op)) => vec![op.path.clone()],
            (None, None) => USUAL_LOGINS.iter().map(|p| (*p).to_owned()).collect(),
        };
        Self {
            paths,
            formats,
            name_field: described.map_or("username", spec::login_name_field),
        }
    }
}

/// The operator's login and where it worked.
pub(crate) struct OperatorLogin {
    pub(crate) session: checks::LoggedIn,
    pub(crate) path: String,
    pub(crate) answer_line: String,
}

/// The operator's login, at each of the login's paths until one is there. A refusal for rate
/// (the previous run's login burst, most often) is waited out as `Retry-After` asks while the
/// run's wait budget lasts (`--patient` lengthens it), and is never blamed on the credentials.
pub(crate) async fn log_in_waiting(
    probe: &mut client::Probe,
    args: &AuditArgs,
    login: &Login,
    credentials: (&str, &str),
) -> Result<Result<OperatorLogin, AuditError>, client::ProbeError> {
    let mut paths = login.paths.iter().peekable();
    let mut missing = Vec::new();
    while let Some(path) = paths.peek() {
        checks::progress(
            &format!("logging in as {} at {path}", credentials.0),
            args.quiet,
        );
        let refused =
            match checks::log_in(probe, path, &login.formats, login.name_field, credentials).await?
            {
                Ok(session) => {
                    let answer_line = session.request.clone();
                    return Ok(Ok(OperatorLogin {
                        session,
                        path: (*path).clone(),
                        answer_line,
                    }));
                }
                Err(refused) => refused,
            };
        if refused.no_route && login.paths.len() > 1 {
            missing.push((*path).clone());
            paths.next();
            continue;
        }
        let Some(retry) = refused.rate_limited else {
            return Ok(Err(AuditError::Usage(format!(
                "{}: check --username, --password and --login-path",
                refused.summary
            ))));
        };
        if !probe.take_wait(retry) {
            let patience = if args.patient {
                ""
            } else {
                ", or add --patient to wait as long as it asks"
            };
            return Ok(Err(AuditError::RateLimited(format!(
                "{}: the target is limiting logins from this address and asks to wait {} s; run again later (a run's own login checks leave the limit spent for a while){patience}",
                refused.summary,
                retry.as_secs().max(1)
            ))));
        }
        checks::progress(
            &format!(
                "  login rate limited; waiting {} s as Retry-After asks",
                retry.as_secs().max(1)
            ),
            args.quiet,
        );
        tokio::time::sleep(retry).await;
    }
    Ok(Err(AuditError::Usage(format!(
        "no login route found (tried {}, each answered 404 or 405, and no OpenAPI document describes one): give --login-path",
        missing.join(", ")
    ))))
}
