//! The login route: user enumeration (status, body
//! and timing of a failed login for an account that exists against one that does not, with a
//! rank test over interleaved samples), and whether failed logins are limited at all, or only
//! until the client claims another address in `X-Forwarded-For`.
//!
//! Safe for the account: at most three failed logins in a row are spent on the known name (below
//! the lockout thresholds of common frameworks, the lowest being three), each run of three is
//! followed by a correct login that resets the count, and without the password only three are
//! sent at all. Every other attempt uses a made-up name.

use std::time::Duration;

use http::Method;
use serde_json::Value;

use super::session::{
    login_request, refused_for_rate, retry_after, says_login_failed, token_in, Credentials, Format,
};
use super::{excerpt, random_hex, Ctx};
use crate::client::{Answer, ProbeError, Req};
use crate::findings::{self, Finding, Severity};
use crate::stats::{mann_whitney_p, median};

const SAMPLES: usize = 7;
/// Failed logins on the real account before a correct one resets its counters.
const FAILURES_BETWEEN_RESETS: usize = 3;
const BURST: usize = 20;
/// Spoofed addresses that must each get through, with a refused control between, before the
/// limit counts as bypassed.
const BYPASS_ROUNDS: usize = 3;

/// Which format the login route takes: the one the operator's login used, else learned from
/// a failed login for a made-up name (401, 403 or 400 as FastAPI's OAuth2 form answers, or a
/// 2xx saying it failed, as APIs that answer 200 to everything do).
async fn login_format(ctx: &mut Ctx<'_>) -> Result<Option<Format>, ProbeError> {
    if let Some(format) = ctx.login_format {
        return Ok(Some(format));
    }
    let path = ctx.login_path.clone();
    for format in ctx.login_formats.clone() {
        let answer = ctx
            .send(&failed_login(
                &path,
                format,
                ctx.login_name_field,
                &made_up_name(),
            ))
            .await?;
        match answer.status {
            400 | 401 | 403 | 429 => {
                ctx.login_format = Some(format);
                return Ok(Some(format));
            }
            200..=299 if says_login_failed(&answer) => {
                ctx.login_format = Some(format);
                return Ok(Some(format));
            }
            404 | 405 => {
                ctx.note(format!("POST {path} -> {}: no login route there (set --login-path); login checks were not run", answer.status));
                return Ok(None);
            }
            _ => {}
        }
    }
    ctx.note(format!("POST {path} refused every login format for an unknown user with an unexpected answer; login checks were not run"));
    Ok(None)
}

/// A login for `name` (in the login's `field`) with a random password: it fails on any API.
fn failed_login(path: &str, format: Format, field: &str, name: &str) -> Req {
    login_request(
        path,
        format,
        field,
        name,
        &format!("wrong-{}", random_hex(10)),
    )
}

fn made_up_name() -> String {
    format!("rampart-audit-{}", random_hex(5))
}

/// Sends a login, waiting out 429s while the run's wait budget lasts; `None` when the wait
/// asked for does not fit (the last wait asked for is kept in `asked`).
async fn attempt(
    ctx: &mut Ctx<'_>,
    req: &Req,
    asked: &mut Duration,
) -> Result<Option<Answer>, ProbeError> {
    loop {
        let answer = ctx.send(req).await?;
        if answer.status != 429 {
            return Ok(Some(answer));
        }
        // A wait that does not fit what is left is not begun at all (waiting part of what the
        // target asked for would only waste the run); a huge Retry-After never fits.
        let retry = retry_after(&answer);
        *asked = retry;
        if !ctx.probe.take_wait(retry) {
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
    // One made-up name for every unknown sample: per-name backoff then treats both sides alike.
    let stranger = made_up_name();
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let mut asked = Duration::ZERO;
    let most_known = if credentials.password.is_some() {
        SAMPLES
    } else {
        FAILURES_BETWEEN_RESETS
    };
    'sampling: for round in 0..SAMPLES {
        // Interleaved, alternating which goes first, so drift hits both sides alike.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for is_known in order {
            if is_known && known.len() >= most_known {
                continue;
            }
            let name = if is_known {
                credentials.username.as_str()
            } else {
                stranger.as_str()
            };
            let Some(answer) = attempt(
                ctx,
                &failed_login(&path, format, ctx.login_name_field, name),
                &mut asked,
            )
            .await?
            else {
                break 'sampling;
            };
            if is_known {
                known.push(answer);
                if known.len() % FAILURES_BETWEEN_RESETS == 0
                    && !reset(ctx, &credentials, format, &mut asked).await?
                {
                    break 'sampling;
                }
            } else {
                unknown.push(answer);
            }
        }
    }
    if known.len() % FAILURES_BETWEEN_RESETS != 0 {
        reset(ctx, &credentials, format, &mut asked).await?;
    }
    if known.len() < 5 || unknown.len() < 5 {
        let why = if asked.is_zero() {
            format!("without --password only {FAILURES_BETWEEN_RESETS} are spent on the account")
        } else {
            format!(
                "rate limited: the target asked to wait {} s, past what is left of the run's {} s for waiting (--patient waits)",
                asked.as_secs().max(1),
                ctx.probe.wait_budget().as_secs()
            )
        };
        ctx.note(format!(
            "login enumeration not checked: {} samples for the account and {} for a made-up name (it needs 5 each; {why})",
            known.len(),
            unknown.len(),
        ));
        return Ok(());
    }
    let differences = compare(&known, &unknown, &credentials.username, &stranger);
    if !differences.is_empty() {
        ctx.report(Finding::new(
            &findings::ENUMERATION,
            Severity::Medium,
            format!(
                "failed logins at POST {path} for `{}` and a made-up name differ in {}",
                credentials.username,
                differences.join("; ")
            ),
        ));
    }
    Ok(())
}

/// A correct login, which ends the failure count and any backoff on the operator's account;
/// `false` (with a note) when it does not succeed, and sampling must stop.
async fn reset(
    ctx: &mut Ctx<'_>,
    credentials: &Credentials,
    format: Format,
    asked: &mut Duration,
) -> Result<bool, ProbeError> {
    let Some(password) = &credentials.password else {
        return Ok(true);
    };
    let req = login_request(
        &ctx.login_path.clone(),
        format,
        ctx.login_name_field,
        &credentials.username,
        password,
    );
    match attempt(ctx, &req, asked).await? {
        Some(answer) if answer.is_success() => {
            if let Some(token) = token_in(&answer) {
                ctx.probe.add_secret(&token);
                ctx.opened.push(token);
            }
            Ok(true)
        }
        outcome => {
            ctx.note(format!(
                "the correct login for `{}` after failed ones did not succeed ({}): enumeration sampling stopped; check the account is not locked",
                credentials.username,
                outcome.map_or_else(|| "still rate limited".to_owned(), |a| a.status.to_string())
            ));
            Ok(false)
        }
    }
}

/// How the answers for an existing account and a made-up name differ: status, body (when each
/// side answers one body consistently) and timing (rank test and a real gap).
fn compare(
    known: &[Answer],
    unknown: &[Answer],
    known_name: &str,
    unknown_name: &str,
) -> Vec<String> {
    let mut differences = Vec::new();
    let statuses = |answers: &[Answer]| {
        let mut s: Vec<u16> = answers.iter().map(|a| a.status).collect();
        s.sort_unstable();
        s.dedup();
        s
    };
    let (ks, us) = (statuses(known), statuses(unknown));
    if ks != us {
        differences.push(format!(
            "status: existing account {ks:?}, unknown account {us:?}"
        ));
    }
    let bodies = |answers: &[Answer], name: &str| {
        let mut b: Vec<String> = answers.iter().map(|a| normalise(&a.body, name)).collect();
        b.sort();
        b.dedup();
        b
    };
    let (kb, ub) = (bodies(known, known_name), bodies(unknown, unknown_name));
    // Only a consistent difference counts: bodies that vary on their own prove nothing.
    if ks == us && kb.len() == 1 && ub.len() == 1 && kb != ub {
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
    let (kt, ut) = (ms(known), ms(unknown));
    let p = mann_whitney_p(&kt, &ut);
    let (km, um) = (median(&kt), median(&ut));
    if p < 0.01 && (km - um).abs() > 10.0_f64.max(0.25 * km.min(um)) {
        differences.push(format!(
            "timing: median {km:.1} ms for the existing account, {um:.1} ms for an unknown one ({} and {} samples, Mann-Whitney p = {p:.4})",
            kt.len(),
            ut.len()
        ));
    }
    differences
}

/// A body with what legitimately varies per request taken out: the submitted name, every run
/// of digits, and the usual id and time fields at any depth.
fn normalise(body: &str, name: &str) -> String {
    const VOLATILE: [&str; 7] = [
        "request_id",
        "requestid",
        "trace_id",
        "traceid",
        "timestamp",
        "time",
        "instance",
    ];
    fn strip(value: &mut Value) {
        match value {
            Value::Object(fields) => {
                fields.retain(|k, _| !VOLATILE.contains(&k.to_ascii_lowercase().as_str()));
                fields.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let text = match serde_json::from_str::<Value>(body) {
        Ok(mut value) => {
            strip(&mut value);
            value.to_string()
        }
        Err(_) => body.to_owned(),
    };
    let text = if name.is_empty() {
        text
    } else {
        text.replace(name, "<name>")
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('0') {
                out.push('0');
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) async fn rate_limit(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let Some(format) = login_format(ctx).await? else {
        return Ok(());
    };
    let path = ctx.login_path.clone();
    let burst = BURST.min(ctx.probe.remaining().saturating_sub(10) as usize);
    let started = std::time::Instant::now();
    let mut limited = false;
    let mut sent = 0;
    let mut last = None;
    for _ in 0..burst {
        let name = made_up_name();
        let answer = ctx
            .send(&failed_login(&path, format, ctx.login_name_field, &name))
            .await?;
        sent += 1;
        if refused_for_rate(&answer) {
            limited = true;
            break;
        }
        last = Some((name, answer));
    }
    if !limited {
        if burst < BURST {
            ctx.note("too little request budget left to test the login rate limit (raise --max-requests)");
            return Ok(());
        }
        if let Some((name, answer)) = &last {
            if !login_route_confirmed(ctx, &path, format, name, answer).await? {
                return Ok(());
            }
        }
        ctx.report(Finding::new(
            &findings::NO_LOGIN_LIMIT,
            Severity::Medium,
            format!("{sent} failed logins at POST {path} from one address in {:.1} s: none was refused with 429 (or 403/503 with Retry-After)", started.elapsed().as_secs_f64()),
        ));
        return Ok(());
    }
    // Limited: does claiming another address lift it, while the same client without the header
    // is still refused? Three times in a row, each with a new address and a control between:
    // a limiter that refilled one slot meanwhile lets one request through, not three.
    let mut evidence = Vec::new();
    for _ in 0..BYPASS_ROUNDS {
        let address = format!(
            "203.0.113.{}",
            u8::from_str_radix(&random_hex(1), 16).unwrap_or(7)
        );
        let spoofed = failed_login(&path, format, ctx.login_name_field, &made_up_name())
            .header("x-forwarded-for", address.clone());
        let answer = ctx.send(&spoofed).await?;
        if refused_for_rate(&answer) {
            return Ok(());
        }
        let control = ctx
            .send(&failed_login(
                &path,
                format,
                ctx.login_name_field,
                &made_up_name(),
            ))
            .await?;
        if !refused_for_rate(&control) {
            return Ok(());
        }
        evidence.push(format!(
            "X-Forwarded-For: {address} -> {}, without it -> {}",
            answer.status, control.status
        ));
    }
    ctx.report(Finding::new(
        &findings::FORWARDED_BYPASS,
        Severity::High,
        format!(
            "after 429 at POST {path}, the same client claiming a new address each time got through {BYPASS_ROUNDS} times in a row while refused without the header in between: {}",
            evidence.join("; ")
        ),
    ));
    Ok(())
}

/// Whether `path` is known to be a login route rather than a path that does not exist: the
/// operator logged in there, the OpenAPI document lists it, or a failed login there is answered
/// differently from the same body sent to a made-up path. An API that answers 401 to every
/// unknown path (default-deny) would otherwise pass for a login route with no limit. Notes why
/// when it is not.
async fn login_route_confirmed(
    ctx: &mut Ctx<'_>,
    path: &str,
    format: Format,
    name: &str,
    answer: &Answer,
) -> Result<bool, ProbeError> {
    if ctx.login_confirmed
        || ctx
            .operations
            .iter()
            .any(|o| o.method == Method::POST && o.path == path)
    {
        return Ok(true);
    }
    let nowhere = format!("/rampart-audit-{}/{}", random_hex(4), random_hex(4));
    let control_name = made_up_name();
    let control = ctx
        .send(&failed_login(
            &nowhere,
            format,
            ctx.login_name_field,
            &control_name,
        ))
        .await?;
    if control.status != answer.status
        || normalise(&control.body, &control_name) != normalise(&answer.body, name)
    {
        return Ok(true);
    }
    ctx.note(format!(
        "POST {path} answers a failed login exactly as the made-up POST {nowhere} does ({}): no login route is confirmed there, so its rate limit was not judged (give --login-path, --username with --password, or --spec)",
        answer.status
    ));
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, ms: u64) -> Answer {
        Answer {
            status,
            headers: http::HeaderMap::new(),
            body: body.to_owned(),
            elapsed: Duration::from_millis(ms),
            credentialed: false,
        }
    }

    #[test]
    fn only_consistent_differences_are_reported() {
        let same = |body: &str, ms: u64| {
            (0..7)
                .map(|i| answer(401, body, ms + i))
                .collect::<Vec<_>>()
        };
        // Bodies that vary on their own (a counter) say nothing, on either side.
        let varying: Vec<Answer> = (b'a'..b'h')
            .map(|c| answer(401, &format!(r#"{{"nonce":"{}"}}"#, char::from(c)), 20))
            .collect();
        let other: Vec<Answer> = (b'h'..b'o')
            .map(|c| answer(401, &format!(r#"{{"nonce":"{}"}}"#, char::from(c)), 20))
            .collect();
        assert!(compare(&varying, &other, "bob", "eve").is_empty());
        let known = same(r#"{"detail":"Incorrect password for bob"}"#, 60);
        let unknown = same(r#"{"detail":"Incorrect password for eve"}"#, 2);
        let found = compare(&known, &unknown, "bob", "eve");
        assert_eq!(
            found.len(),
            1,
            "the name is masked, only timing differs: {found:?}"
        );
        assert!(found[0].starts_with("timing"));
        let unknown = same(r#"{"detail":"No such user"}"#, 60);
        let found = compare(&known, &unknown, "bob", "eve");
        assert!(
            found.len() == 1 && found[0].starts_with("body"),
            "{found:?}"
        );
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn volatile_fields_do_not_make_bodies_differ() {
        let a = r#"{"title":"Unauthorized","status":401,"request_id":"01a2"}"#;
        let b = r#"{"title":"Unauthorized","status":401,"request_id":"99ff"}"#;
        assert_eq!(normalise(a, "bob"), normalise(b, "bob"));
        let c = r#"{"detail":"Incorrect password"}"#;
        let d = r#"{"detail":"User not found"}"#;
        assert_ne!(normalise(c, "bob"), normalise(d, "bob"));
        let e = r#"{"error":{"detail":"no user bob","trace_id":"1","at":1700000000}}"#;
        let f = r#"{"error":{"detail":"no user eve","trace_id":"2","at":1700000555}}"#;
        assert_eq!(normalise(e, "bob"), normalise(f, "eve"));
        let Some((_, bytes)) =
            login_request("/login", Format::Form, "username", "a b&c", "p=1%").body
        else {
            panic!("a form login has a body");
        };
        let sent: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap();
        assert_eq!(sent[1], ("username".into(), "a b&c".into()));
        assert_eq!(sent[2], ("password".into(), "p=1%".into()));
    }
}
