//! The login route: logging in with the operator's credentials, user enumeration (status, body
//! and timing of a failed login for an account that exists against one that does not, with a
//! rank test over interleaved samples), and whether failed logins are limited at all, or only
//! until the client claims another address in `X-Forwarded-For`.
//!
//! Safe for the account: at most seven failed logins are spent on the known name (below the
//! usual lockout thresholds), and a correct login afterwards resets any backoff.

use std::time::Duration;

use http::Method;
use serde_json::Value;

use super::{excerpt, random_hex, Ctx};
use crate::client::{Answer, Probe, ProbeError, Req};
use crate::findings::{self, Finding, Severity};
use crate::stats::{mann_whitney_p, median};

const SAMPLES: usize = 7;
/// Longest the enumeration check waits out 429s in total.
const MAX_WAIT: Duration = Duration::from_secs(90);
const BURST: usize = 15;

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

fn login_request(path: &str, format: Format, username: &str, password: &str) -> Req {
    match format {
        Format::Json => Req::new(Method::POST, path)
            .json(&serde_json::json!({"username": username, "password": password})),
        Format::Form => {
            let body = format!(
                "grant_type=password&username={}&password={}",
                form_encode(username),
                form_encode(password)
            );
            Req::new(Method::POST, path)
                .body("application/x-www-form-urlencoded", body.into_bytes())
        }
    }
}

fn form_encode(text: &str) -> String {
    use std::fmt::Write as _;
    text.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// A successful login: the access token, and the request and answer that gave it.
#[derive(Debug)]
pub(crate) struct LoggedIn {
    pub(crate) token: String,
    pub(crate) request: String,
    pub(crate) answer: Answer,
}

/// Logs in with JSON, then with the OAuth2 password form; the token, or what went wrong.
pub(crate) async fn log_in(
    probe: &mut Probe,
    path: &str,
    username: &str,
    password: &str,
) -> Result<Result<LoggedIn, String>, ProbeError> {
    let mut tried = Vec::new();
    for format in [Format::Json, Format::Form] {
        let req = login_request(path, format, username, password);
        let answer = probe.send(&req).await?;
        let token = answer.json().and_then(|j| {
            j.get("access_token")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        if let (true, Some(token)) = (answer.is_success(), token) {
            return Ok(Ok(LoggedIn {
                token,
                request: req.line(),
                answer,
            }));
        }
        tried.push(format!(
            "{} -> {}",
            if format == Format::Json {
                "JSON"
            } else {
                "OAuth2 form"
            },
            answer.status
        ));
        if answer.status == 429 {
            break;
        }
    }
    Ok(Err(format!(
        "login at {path} failed ({})",
        tried.join(", ")
    )))
}

/// Which format the login route takes, learned from a failed login for a made-up name.
async fn login_format(ctx: &mut Ctx<'_>) -> Result<Option<Format>, ProbeError> {
    let path = ctx.login_path.clone();
    for format in [Format::Json, Format::Form] {
        let answer = ctx
            .send(&login_request(
                &path,
                format,
                &made_up_name(),
                &random_hex(12),
            ))
            .await?;
        match answer.status {
            401 | 403 | 429 => return Ok(Some(format)),
            404 | 405 => {
                ctx.note(format!("POST {path} -> {}: no login route there (set --login-path); login checks were not run", answer.status));
                return Ok(None);
            }
            _ => {}
        }
    }
    ctx.note(format!("POST {path} refused both JSON and form logins for an unknown user with an unexpected status; login checks were not run"));
    Ok(None)
}

fn made_up_name() -> String {
    format!("rampart-audit-{}", random_hex(5))
}

/// Sends a login, waiting out 429s while `waited` stays under [`MAX_WAIT`]; `None` when the
/// wait would be exceeded.
async fn attempt(
    ctx: &mut Ctx<'_>,
    req: &Req,
    waited: &mut Duration,
) -> Result<Option<Answer>, ProbeError> {
    loop {
        let answer = ctx.send(req).await?;
        if answer.status != 429 {
            return Ok(Some(answer));
        }
        let retry = answer
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(5), Duration::from_secs)
            .max(Duration::from_millis(200));
        if *waited + retry > MAX_WAIT {
            return Ok(None);
        }
        super::progress(
            &format!(
                "  rate limited; waiting {} s as Retry-After asks",
                retry.as_secs()
            ),
            ctx.probe.is_quiet(),
        );
        tokio::time::sleep(retry).await;
        *waited += retry;
    }
}

pub(crate) async fn enumeration(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let Some(credentials) = ctx.credentials.clone() else {
        ctx.note(
            "no --username: login enumeration needs one account that exists and was not checked",
        );
        return Ok(());
    };
    let Some(format) = login_format(ctx).await? else {
        return Ok(());
    };
    let path = ctx.login_path.clone();
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let mut waited = Duration::ZERO;
    'sampling: for round in 0..SAMPLES {
        // Interleaved, alternating which goes first, so drift hits both sides alike.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for is_known in order {
            let name = if is_known {
                credentials.username.clone()
            } else {
                made_up_name()
            };
            let req = login_request(&path, format, &name, &format!("wrong-{}", random_hex(10)));
            let Some(answer) = attempt(ctx, &req, &mut waited).await? else {
                break 'sampling;
            };
            if is_known {
                known.push(answer);
            } else {
                unknown.push(answer);
            }
        }
    }
    if let Some(password) = &credentials.password {
        // A correct login ends any backoff the failures above started.
        let _ = log_in(ctx.probe, &path, &credentials.username, password).await?;
    }
    if known.len() < 5 || unknown.len() < 5 {
        ctx.note(format!(
            "login enumeration inconclusive: only {} samples per side before the rate limit's waits exceeded {} s",
            known.len().min(unknown.len()),
            MAX_WAIT.as_secs()
        ));
        return Ok(());
    }
    let mut differences = Vec::new();
    let statuses = |answers: &[Answer]| {
        let mut s: Vec<u16> = answers.iter().map(|a| a.status).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let (ks, us) = (statuses(&known), statuses(&unknown));
    if ks != us {
        differences.push(format!(
            "status: existing account {ks:?}, unknown account {us:?}"
        ));
    }
    let bodies = |answers: &[Answer]| {
        let mut b: Vec<String> = answers.iter().map(|a| normalise(&a.body)).collect();
        b.sort();
        b.dedup();
        b
    };
    let (kb, ub) = (bodies(&known), bodies(&unknown));
    if ks == us && kb != ub {
        differences.push(format!(
            "body: existing account `{}`, unknown account `{}`",
            excerpt(&known[0].body, 120),
            excerpt(&unknown[0].body, 120)
        ));
    }
    let ms = |answers: &[Answer]| {
        answers
            .iter()
            .map(|a| a.elapsed.as_secs_f64() * 1000.0)
            .collect::<Vec<f64>>()
    };
    let (kt, ut) = (ms(&known), ms(&unknown));
    let p = mann_whitney_p(&kt, &ut);
    let (km, um) = (median(&kt), median(&ut));
    let gap = (km - um).abs();
    if p < 0.01 && gap > 10.0_f64.max(0.25 * km.min(um)) {
        differences.push(format!(
            "timing: median {km:.1} ms for the existing account, {um:.1} ms for an unknown one ({} samples each, Mann-Whitney p = {p:.4})",
            kt.len()
        ));
    }
    if !differences.is_empty() {
        ctx.report(Finding::new(
            &findings::ENUMERATION,
            Severity::Medium,
            format!(
                "failed logins at POST {path} for `{}` and made-up names differ in {}",
                credentials.username,
                differences.join("; ")
            ),
        ));
    }
    Ok(())
}

/// A body with what legitimately varies per request (ids, times, digits) taken out.
fn normalise(body: &str) -> String {
    const VOLATILE: [&str; 7] = [
        "request_id",
        "requestid",
        "trace_id",
        "traceid",
        "timestamp",
        "time",
        "instance",
    ];
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(mut fields)) => {
            fields.retain(|k, _| !VOLATILE.contains(&k.to_ascii_lowercase().as_str()));
            Value::Object(fields).to_string()
        }
        _ => body
            .chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect(),
    }
}

pub(crate) async fn rate_limit(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let Some(format) = login_format(ctx).await? else {
        return Ok(());
    };
    let path = ctx.login_path.clone();
    let burst = BURST.min(ctx.probe.remaining().saturating_sub(6) as usize);
    let started = std::time::Instant::now();
    let mut limited = false;
    let mut sent = 1; // login_format's attempt
    for _ in 0..burst {
        let answer = ctx
            .send(&login_request(
                &path,
                format,
                &made_up_name(),
                &random_hex(12),
            ))
            .await?;
        sent += 1;
        if answer.status == 429 {
            limited = true;
            break;
        }
    }
    if !limited {
        if burst < BURST {
            ctx.note("too little request budget left to test the login rate limit (raise --max-requests)");
            return Ok(());
        }
        ctx.report(Finding::new(
            &findings::NO_LOGIN_LIMIT,
            Severity::High,
            format!("{sent} failed logins at POST {path} from one address in {:.1} s: none was refused with 429", started.elapsed().as_secs_f64()),
        ));
        return Ok(());
    }
    // Limited: does claiming another address reset it?
    for _ in 0..5 {
        let address = format!(
            "203.0.113.{}",
            u8::from_str_radix(&random_hex(1), 16).unwrap_or(7)
        );
        let req = login_request(&path, format, &made_up_name(), &random_hex(12))
            .header("x-forwarded-for", address.clone());
        let answer = ctx.send(&req).await?;
        if answer.status != 429 {
            ctx.report(Finding::new(
                &findings::FORWARDED_BYPASS,
                Severity::High,
                format!("after 429 at POST {path}, the same client sending X-Forwarded-For: {address} -> {}", answer.status),
            ));
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volatile_fields_do_not_make_bodies_differ() {
        let a = r#"{"title":"Unauthorized","status":401,"request_id":"01a2"}"#;
        let b = r#"{"title":"Unauthorized","status":401,"request_id":"99ff"}"#;
        assert_eq!(normalise(a), normalise(b));
        let c = r#"{"detail":"Incorrect password"}"#;
        let d = r#"{"detail":"User not found"}"#;
        assert_ne!(normalise(c), normalise(d));
        assert_eq!(form_encode("a b&c"), "a%20b%26c");
    }
}
