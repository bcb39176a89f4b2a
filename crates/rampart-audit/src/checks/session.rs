//! Logging in and out as the operator: the login request in either body format, finding the
//! token in the answer, waiting on a refusal for rate, and ending the sessions the run opened.
//!
//! Defends the operator's account and the target: a login refused for rate is reported as
//! such (never as bad credentials), and every session a run's logins open is logged out at the
//! end, so audits in CI do not pile up live sessions on the account.

use std::time::Duration;

use http::Method;
use serde_json::Value;

use super::Ctx;
use crate::client::{Answer, Probe, ProbeError, Req};

/// What the operator gave to log in with.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) password: Option<String>,
}

/// The two body formats logins come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Form,
}

pub(crate) fn login_request(path: &str, format: Format, username: &str, password: &str) -> Req {
    match format {
        Format::Json => Req::new(Method::POST, path)
            .json(&serde_json::json!({"username": username, "password": password})),
        Format::Form => {
            let body = serde_urlencoded::to_string([
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ])
            .unwrap_or_default();
            Req::new(Method::POST, path)
                .body("application/x-www-form-urlencoded", body.into_bytes())
        }
    }
}

/// A successful login: the access token, the format that worked, and the request and answer.
#[derive(Debug)]
pub(crate) struct LoggedIn {
    pub(crate) token: String,
    pub(crate) format: Format,
    pub(crate) request: String,
    pub(crate) answer: Answer,
}

/// Where APIs put the access token in a login answer, in order of preference.
const TOKEN_FIELDS: [&str; 5] = ["access_token", "accessToken", "token", "jwt", "id_token"];

/// The access token in a login answer: a known field at the top level or under `data`.
pub(crate) fn token_in(answer: &Answer) -> Option<String> {
    let json = answer.json()?;
    let token = [Some(&json), json.get("data")]
        .into_iter()
        .flatten()
        .find_map(|object| {
            TOKEN_FIELDS
                .iter()
                .find_map(|field| object.get(*field).and_then(Value::as_str))
        })
        .map(str::to_owned);
    token
}

/// Why the operator's login did not give a token.
#[derive(Debug)]
pub(crate) struct LoginRefused {
    /// What each format got, for the error message.
    pub(crate) summary: String,
    /// Set when the target refused for rate (429): how long it asked to wait (5 s when it did
    /// not say). Credentials are not to blame then.
    pub(crate) rate_limited: Option<Duration>,
}

/// Logs in with JSON, then with the OAuth2 password form; the token, or what went wrong.
pub(crate) async fn log_in(
    probe: &mut Probe,
    path: &str,
    username: &str,
    password: &str,
) -> Result<Result<LoggedIn, LoginRefused>, ProbeError> {
    let mut tried = Vec::new();
    let mut rate_limited = None;
    for format in [Format::Json, Format::Form] {
        let req = login_request(path, format, username, password);
        let answer = probe.send(&req).await?;
        let label = if format == Format::Json {
            "JSON"
        } else {
            "OAuth2 form"
        };
        match (answer.is_success(), token_in(&answer)) {
            (true, Some(token)) => {
                return Ok(Ok(LoggedIn {
                    token,
                    format,
                    request: req.line(),
                    answer,
                }));
            }
            (true, None) => tried.push(format!(
                "{label} -> {} but no token in {}",
                answer.status,
                TOKEN_FIELDS.join(", ")
            )),
            (false, _) => tried.push(format!("{label} -> {}", answer.status)),
        }
        if refused_for_rate(&answer) {
            rate_limited = Some(retry_after(&answer));
            break;
        }
    }
    Ok(Err(LoginRefused {
        summary: format!("login at {path} failed ({})", tried.join(", ")),
        rate_limited,
    }))
}

/// The wait a refusal for rate asks for: `Retry-After` in seconds, 5 s when absent or not a
/// number, never under 200 ms.
pub(crate) fn retry_after(answer: &Answer) -> Duration {
    answer
        .header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(5), Duration::from_secs)
        .max(Duration::from_millis(200))
}

/// Ends the sessions the run's own logins opened (never a `--token` given to it), from the
/// requests kept in reserve. Returns how many it ended.
pub(crate) async fn end_sessions(ctx: &mut Ctx<'_>, logout_path: &str) -> usize {
    let opened = std::mem::take(&mut ctx.opened);
    let mut ended = 0;
    for token in &opened {
        let req = Req::new(Method::POST, logout_path).bearer(token);
        let why = match ctx.probe.send_reserved(&req).await {
            // 401: the session had already ended (revoked by a later login, or expired).
            Ok(answer) if answer.is_success() || answer.status == 401 => {
                ended += 1;
                continue;
            }
            Ok(answer) => format!("POST {logout_path} -> {}", answer.status),
            Err(err) => format!("POST {logout_path}: {err}"),
        };
        ctx.note(format!(
            "{} of the {} sessions the auditor's logins opened could not be ended ({why}; set --logout-path): they last until they expire",
            opened.len() - ended,
            opened.len()
        ));
        break;
    }
    ended
}

/// A refusal for rate: 429, or 403/503 carrying Retry-After (as some gateways answer).
pub(crate) fn refused_for_rate(answer: &Answer) -> bool {
    answer.status == 429
        || (matches!(answer.status, 403 | 503) && answer.header("retry-after").is_some())
}
