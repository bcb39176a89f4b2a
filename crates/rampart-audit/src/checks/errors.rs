//! Error leakage: malformed input sent only to the login route and to read-only routes, and
//! every answer searched for debug pages, SQL errors, stack traces, file paths and framework
//! internals (the fragments are in [`super::signatures`]); also files what other checks find.

use std::fmt::Write as _;

use http::Method;

use super::signatures::{self, Leak};
use super::{params, Ctx};
use crate::client::{Answer, ProbeError, Req};
use crate::findings::{self, Finding, Severity};

/// Evidence items listed per finding, at most; the rest are counted.
const MAX_EVIDENCE: usize = 4;

/// The leaks one check saw, sorted into the findings they make.
#[derive(Debug, Default)]
pub(crate) struct Leaks {
    debug_pages: Vec<String>,
    /// Evidence, and whether a lone quote or backslash caused it.
    sql: Vec<(String, bool)>,
    internals: Vec<String>,
}

impl Leaks {
    /// Files what `body` reveals, if anything. `quote` says the request's only oddity was a
    /// quote or a backslash: SQL text then means the input reached the query unescaped.
    pub(crate) fn record(&mut self, request: &str, answer: &Answer, quote: bool) {
        let found = signatures::scan(&answer.body);
        let debug_page = found.iter().any(|f| f.signature.leak == Leak::DebugPage);
        for hit in found {
            let item = format!(
                "{request} -> {} shows {}: \"{}\"",
                answer.status,
                hit.signature.what,
                hit.excerpt(&answer.body, 160)
            );
            match hit.signature.leak {
                Leak::DebugPage => self.debug_pages.push(item),
                Leak::Sql => self.sql.push((item, quote)),
                // A debug page is a stack trace and more: reported once, as the page.
                Leak::Internals if debug_page => {}
                Leak::Internals => self.internals.push(item),
            }
        }
    }

    /// Turns what was filed into at most one finding per check.
    pub(crate) fn report(self, ctx: &mut Ctx<'_>) {
        if !self.debug_pages.is_empty() {
            ctx.report(Finding::new(
                &findings::DEBUG_PAGE,
                Severity::High,
                joined(&self.debug_pages),
            ));
        }
        if !self.sql.is_empty() {
            let by_quote = self.sql.iter().any(|(_, quote)| *quote);
            let why = if by_quote {
                "a lone quote or backslash broke the query, so input reaches SQL text unescaped (injectable)"
            } else {
                "malformed input reached a query the application should have refused first; the error shows the schema and the database"
            };
            let items: Vec<String> = self.sql.into_iter().map(|(item, _)| item).collect();
            ctx.report(Finding::new(
                &findings::SQL_ERROR,
                if by_quote {
                    Severity::High
                } else {
                    Severity::Medium
                },
                format!("{why}: {}", joined(&items)),
            ));
        }
        if !self.internals.is_empty() {
            ctx.report(Finding::new(
                &findings::ERROR_LEAK,
                Severity::Medium,
                joined(&self.internals),
            ));
        }
    }
}

fn joined(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(MAX_EVIDENCE)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > MAX_EVIDENCE {
        let _ = write!(text, "; and {} more", items.len() - MAX_EVIDENCE);
    }
    text
}

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let login = ctx.login_path.clone();
    let probes = [
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
        // The auditor's own probe, the one path allowed dot segments.
        Req::get("/%ff%fe/..%2f..%2fetc%2fpasswd").auditor_made(),
    ];
    let mut leaks = Leaks::default();
    let outcome = send_all(ctx, &probes, &mut leaks).await;
    // What was seen before a spent budget or a broken connection still counts.
    leaks.report(ctx);
    outcome
}

async fn send_all(ctx: &mut Ctx<'_>, probes: &[Req], leaks: &mut Leaks) -> Result<(), ProbeError> {
    for req in probes {
        let answer = ctx.send(req).await?;
        // None of these is a lone quote: SQL text here is judged as a leak, not an injection.
        leaks.record(&req.line(), &answer, false);
    }
    params::probe(ctx, leaks).await
}

#[cfg(test)]
mod tests {
    use super::Leaks;
    use crate::client::Answer;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: http::HeaderMap::new(),
            body: body.to_owned(),
            elapsed: std::time::Duration::ZERO,
            credentialed: false,
        }
    }

    #[test]
    fn a_debug_page_is_filed_once_as_a_page_and_its_sql_beside_it() {
        let mut leaks = Leaks::default();
        let page = "<title>sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) unrecognized token // Werkzeug Debugger</title> Traceback (most recent call last)";
        leaks.record("GET /users/v1/1%27", &answer(500, page), true);
        leaks.record(
            "GET /items?limit=x",
            &answer(
                500,
                "Traceback (most recent call last):\n  File \"/app/main.py\", line 3",
            ),
            false,
        );
        leaks.record("GET /ok", &answer(404, r#"{"detail":"Not Found"}"#), true);
        assert_eq!(leaks.debug_pages.len(), 1);
        assert!(leaks.debug_pages[0]
            .starts_with("GET /users/v1/1%27 -> 500 shows the Werkzeug interactive debugger"));
        assert_eq!(leaks.sql.len(), 1);
        assert!(leaks.sql[0].1, "caused by a quote");
        assert!(leaks.sql[0].0.contains("sqlite3.OperationalError"));
        assert_eq!(
            leaks.internals.len(),
            1,
            "the page's traceback is not filed twice"
        );
        assert!(leaks.internals[0].contains("a Python traceback"));
    }
}
