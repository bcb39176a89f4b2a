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

/// A login with `name_field` (`username`, `email`, ...) set to `username`. The OAuth2 password
/// form always names it `username`.
pub(crate) fn login_request(
    path: &str,
    format: Format,
    name_field: &str,
    username: &str,
    password: &str,
) -> Req {
    match format {
        Format::Json => {
            let mut body = serde_json::Map::new();
            body.insert(name_field.to_owned(), username.into());
            body.insert("password".to_owned(), password.into());
            Req::new(Method::POST, path).json(&Value::Object(body))
        }
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

/// Where APIs put the access token in a login answer, in order of preference, compared with
/// case, `_` and `-` ignored (`access_token`, `accessToken` and `Access-Token` alike).
const TOKEN_FIELDS: [&str; 8] = [
    "accesstoken",
    "authtoken",
    "token",
    "jwt",
    "idtoken",
    "bearertoken",
    "sessiontoken",
    "authorization",
];
/// Objects a login answer nests its token under.
const TOKEN_WRAPPERS: [&str; 7] = [
    "data", "result", "tokens", "token", "auth", "session", "user",
];

/// Where a login answer carried its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// In the body: sent back as `Authorization: Bearer`.
    Body,
    /// In a cookie of this name: sent back as that cookie.
    Cookie(String),
}

/// The access token in a login answer: a token-named string field at the top level or nested
/// under a wrapper (`data`, `result`, ...), else a cookie holding a JWT or named like a token.
/// A refresh token is never taken for the access token.
pub(crate) fn token_in(answer: &Answer) -> Option<String> {
    token_and_carrier(answer).map(|(token, _)| token)
}

pub(crate) fn token_and_carrier(answer: &Answer) -> Option<(String, Carrier)> {
    if let Some(token) = answer
        .json()
        .as_ref()
        .and_then(|json| token_in_json(json, 0))
    {
        return Some((token, Carrier::Body));
    }
    token_cookie(answer).map(|(name, value)| (value, Carrier::Cookie(name)))
}

fn flat(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase()
}

fn token_in_json(value: &Value, depth: usize) -> Option<String> {
    let object = value.as_object()?;
    let direct = TOKEN_FIELDS.iter().find_map(|wanted| {
        object.iter().find_map(|(key, v)| {
            let value = v
                .as_str()
                .filter(|t| t.len() >= 4 && !t.contains(char::is_whitespace))?;
            (flat(key) == *wanted).then(|| value.to_owned())
        })
    });
    if direct.is_some() || depth >= 3 {
        return direct;
    }
    TOKEN_WRAPPERS.iter().find_map(|wrapper| {
        object
            .iter()
            .find(|(key, _)| flat(key) == *wrapper)
            .and_then(|(_, nested)| token_in_json(nested, depth + 1))
    })
}

/// A cookie set by the login that carries the session: a JWT, or a name saying token,
/// session, jwt or auth (never a CSRF cookie).
fn token_cookie(answer: &Answer) -> Option<(String, String)> {
    answer
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|cookie| {
            let pair = cookie.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            Some((
                name.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            ))
        })
        .filter(|(name, value)| {
            value.len() >= 16 && !flat(name).contains("csrf") && !flat(name).contains("xsrf")
        })
        .find(|(name, value)| {
            let name = flat(name);
            value.split('.').count() == 3
                || ["token", "session", "jwt", "auth", "sid"]
                    .iter()
                    .any(|w| name.contains(w))
        })
}

/// Whether a 2xx login answer without a token says it failed: `{"status": "fail"}`,
/// `{"success": false}`, an `error` field, or a message saying the credentials were wrong.
/// Such APIs answer 200 to everything; their failed logins still count as failed.
pub(crate) fn says_login_failed(answer: &Answer) -> bool {
    if token_and_carrier(answer).is_some() {
        return false;
    }
    let Some(json) = answer.json() else {
        return false;
    };
    let field = |name: &str| {
        json.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    };
    let failed_status = field("status").and_then(Value::as_str).is_some_and(|s| {
        matches!(
            s.to_ascii_lowercase().as_str(),
            "fail" | "failed" | "failure" | "error"
        )
    });
    let unsuccessful = field("success").and_then(Value::as_bool) == Some(false)
        || field("ok").and_then(Value::as_bool) == Some(false);
    let error = field("error").is_some_and(|e| !e.is_null() && e != &Value::Bool(false))
        || field("errors").is_some_and(|e| e.as_array().is_some_and(|a| !a.is_empty()));
    let message = ["message", "msg", "detail"].iter().any(|name| {
        field(name).and_then(Value::as_str).is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            [
                "incorrect",
                "invalid",
                "not exist",
                "wrong",
                "fail",
                "denied",
                "not found",
                "unauthori",
                "bad credentials",
                "does not match",
            ]
            .iter()
            .any(|w| m.contains(w))
        })
    });
    failed_status || unsuccessful || error || message
}

/// Why the operator's login did not give a token.
#[derive(Debug)]
pub(crate) struct LoginRefused {
    /// What each format got, for the error message.
    pub(crate) summary: String,
    /// Set when the target refused for rate (429): how long it asked to wait (5 s when it did
    /// not say). Credentials are not to blame then.
    pub(crate) rate_limited: Option<Duration>,
    /// Every format was answered 404 or 405: there is no login at that path.
    pub(crate) no_route: bool,
}

/// Logs in with the formats in `formats` in turn (JSON, then the OAuth2 password form, unless
/// the document says which); the token, or what went wrong. A token that came in a cookie is
/// sent back the same way for the rest of the run.
pub(crate) async fn log_in(
    probe: &mut Probe,
    path: &str,
    formats: &[Format],
    name_field: &str,
    credentials: (&str, &str),
) -> Result<Result<LoggedIn, LoginRefused>, ProbeError> {
    let (username, password) = credentials;
    let mut tried = Vec::new();
    let mut rate_limited = None;
    let mut no_route = true;
    for format in formats {
        let req = login_request(path, *format, name_field, username, password);
        let answer = probe.send(&req).await?;
        let label = if *format == Format::Json {
            "JSON"
        } else {
            "OAuth2 form"
        };
        no_route &= matches!(answer.status, 404 | 405);
        match (answer.is_success(), token_and_carrier(&answer)) {
            (true, Some((token, carrier))) => {
                if let Carrier::Cookie(name) = &carrier {
                    probe.send_token_as_cookie(name);
                }
                return Ok(Ok(LoggedIn {
                    token,
                    format: *format,
                    request: req.line(),
                    answer,
                }));
            }
            (true, None) if says_login_failed(&answer) => tried.push(format!(
                "{label} -> {} saying the login failed: {}",
                answer.status,
                super::excerpt(&answer.body, 100)
            )),
            (true, None) => tried.push(format!(
                "{label} -> {} but no token in the body (looked for access_token, auth_token, token, jwt, id_token and the like, also under data or result) or in a cookie",
                answer.status
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
        no_route,
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
pub(crate) async fn end_sessions(ctx: &mut Ctx<'_>, logout_path: Option<&str>) -> usize {
    let opened = std::mem::take(&mut ctx.opened);
    if opened.is_empty() {
        return 0;
    }
    let Some(logout_path) = logout_path else {
        ctx.note(format!(
            "the {} sessions the auditor's logins opened were not ended: no logout route is known (set --logout-path); they last until they expire",
            opened.len()
        ));
        return 0;
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, cookies: &[&str]) -> Answer {
        let mut headers = http::HeaderMap::new();
        for cookie in cookies {
            headers.append(http::header::SET_COOKIE, cookie.parse().unwrap());
        }
        Answer {
            status,
            headers,
            body: body.to_owned(),
            elapsed: Duration::ZERO,
            credentialed: false,
        }
    }

    #[test]
    fn the_token_is_found_wherever_real_apis_put_it() {
        for (body, token) in [
            (
                r#"{"access_token":"aaa.bbb.ccc","token_type":"bearer"}"#,
                "aaa.bbb.ccc",
            ),
            (
                r#"{"auth_token":"eyJx.y.z","message":"Successfully logged in.","status":"success"}"#,
                "eyJx.y.z",
            ),
            (
                r#"{"accessToken":"abcd1234","refreshToken":"zzzz9999"}"#,
                "abcd1234",
            ),
            (r#"{"data":{"token":"t0k3n-value"}}"#, "t0k3n-value"),
            (
                r#"{"result":{"tokens":{"refresh_token":"r-value","access_token":"a-value"}}}"#,
                "a-value",
            ),
            (r#"{"jwt":"j.w.t"}"#, "j.w.t"),
            (r#"{"id_token":"id.to.ken"}"#, "id.to.ken"),
        ] {
            let found = token_and_carrier(&answer(200, body, &[]));
            assert_eq!(found, Some((token.to_owned(), Carrier::Body)), "{body}");
        }
        // A refresh token alone is not an access token; nor is a token type.
        assert_eq!(
            token_in(&answer(
                200,
                r#"{"refresh_token":"r-value","token_type":"bearer"}"#,
                &[]
            )),
            None
        );
        // A session cookie, not the CSRF one beside it.
        let cookies = [
            "csrftoken=abcdefghijklmnopqrstuvwxyz; Path=/",
            "session=s3ss10n-0123456789abcdef; HttpOnly; Path=/",
        ];
        assert_eq!(
            token_and_carrier(&answer(200, r#"{"ok":true}"#, &cookies)),
            Some((
                "s3ss10n-0123456789abcdef".to_owned(),
                Carrier::Cookie("session".to_owned())
            ))
        );
    }

    #[test]
    fn a_200_saying_the_login_failed_is_a_failed_login() {
        for body in [
            r#"{ "status": "fail", "message": "Password is not correct for the given username."}"#,
            r#"{"success": false}"#,
            r#"{"error": "invalid_grant"}"#,
            r#"{"message": "Invalid credentials"}"#,
            r#"{"detail": "Incorrect email or password"}"#,
        ] {
            assert!(says_login_failed(&answer(200, body, &[])), "{body}");
        }
        for body in [
            r#"{"auth_token":"eyJx.y.z","status":"success","message":"Successfully logged in."}"#,
            r#"{"status":"ok"}"#,
            "<html>welcome</html>",
        ] {
            assert!(!says_login_failed(&answer(200, body, &[])), "{body}");
        }
    }

    #[test]
    fn logins_name_the_account_in_the_field_the_api_reads() {
        let req = login_request("/login", Format::Json, "email", "a@example.com", "pw");
        let (_, body) = req.body.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"email": "a@example.com", "password": "pw"})
        );
    }
}
