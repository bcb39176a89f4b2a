//! Error leakage: malformed input sent only to the login route and to read-only routes, and
//! every answer searched for stack traces, file paths, SQL and framework internals.

use http::Method;

use super::{excerpt, Ctx};
use crate::client::{ProbeError, Req};
use crate::findings::{self, Finding, Severity};

/// (what it reveals, a fragment that shows it). Fragments are specific enough not to match an
/// ordinary JSON error message.
const LEAKS: &[(&str, &str)] = &[
    ("a Python traceback", "Traceback (most recent call last)"),
    ("a Python source path", ".py\", line "),
    ("a Java stack trace", "\tat java."),
    ("a Java exception", "java.lang."),
    ("a .NET stack trace", "   at System."),
    ("a Node.js stack trace", "    at Object."),
    ("a Node.js module path", "node_modules/"),
    ("a Rust panic", "panicked at"),
    ("a Go panic", "goroutine 1 ["),
    ("a PHP error", "Fatal error: "),
    ("a Ruby backtrace", ".rb:"),
    ("a server file path", "/home/"),
    ("a server file path", "/usr/lib/python"),
    ("a server file path", "/var/www/"),
    ("a server file path", "C:\\\\"),
    ("SQL", "SQLSTATE"),
    ("SQL", "syntax error at or near"),
    ("SQL", "You have an error in your SQL syntax"),
    ("SQL", "sqlite3."),
    ("SQL", "psycopg2."),
    ("SQL", "sqlalchemy."),
    ("SQL", "ORA-0"),
    ("a framework name", "Werkzeug"),
    ("a framework name", "pydantic_core"),
    ("a framework name", "starlette."),
    ("a framework name", "django."),
    ("a framework name", "Express</"),
    ("a framework name", "org.springframework"),
];

/// What the body reveals, if anything.
pub(crate) fn leaks(body: &str) -> Option<&'static str> {
    LEAKS
        .iter()
        .find(|(_, fragment)| body.contains(fragment))
        .map(|(what, _)| *what)
}

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let login = ctx.login_path.clone();
    let mut probes = vec![
        Req::new(Method::POST, &login).body(
            "application/json",
            b"{\"username\": \"x\", \"password\": ".to_vec(),
        ),
        // Wrong types only in the password: an operator such as `{"$gt": ""}` as the name could
        // match a real account on a document store, and the auditor never tries real accounts.
        Req::new(Method::POST, &login).json(&serde_json::json!({
            "username": format!("rampart-audit-{}", super::random_hex(5)),
            "password": {"$gt": [1, {"a": null}]}
        })),
        Req::get("/%ff%fe/..%2f..%2fetc%2fpasswd"),
    ];
    let token = ctx.token.clone();
    let list = ctx
        .operations
        .iter()
        .find(|o| o.method == Method::GET && o.path_params.is_empty() && !o.query_params.is_empty())
        .map(|o| (o.path.clone(), o.query_params[0].clone(), o.secured));
    if let Some((path, param, secured)) = list {
        let mut req = Req::get(format!("{path}?{param}=%27%20OR%201%3D1--%22%5C"));
        if let (true, Some(token)) = (secured, &token) {
            req = req.bearer(token);
        }
        probes.push(req);
    }
    let mut found = Vec::new();
    for req in &probes {
        let answer = ctx.send(req).await?;
        if let Some(what) = leaks(&answer.body) {
            found.push(format!(
                "{} -> {} reveals {what}: {}",
                req.line(),
                answer.status,
                excerpt(&answer.body, 200)
            ));
        }
    }
    if !found.is_empty() {
        ctx.report(Finding::new(
            &findings::ERROR_LEAK,
            Severity::Medium,
            found.join("; "),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::leaks;

    #[test]
    fn internals_are_recognised_and_plain_errors_are_not() {
        assert_eq!(
            leaks("Traceback (most recent call last):\n  File \"/app/main.py\", line 3"),
            Some("a Python traceback")
        );
        assert_eq!(leaks("ERROR: syntax error at or near \"OR\""), Some("SQL"));
        assert_eq!(
            leaks(
                r#"{"type":"about:blank","title":"Bad Request","status":400,"detail":"The request body is not valid JSON (line 1, column 31)."}"#
            ),
            None
        );
    }
}
