//! The three ways a report is written: a table for people (grouped by severity, with a one-line
//! verdict), JSON for scripts, and SARIF 2.1.0 for CI systems that display findings.

use serde::Serialize;
use serde_json::{json, Value};

use crate::findings::{Finding, Severity, CATALOGUE};
use crate::triage::Suppressed;

/// Output format of `rampart audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Sarif,
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub findings: Vec<Finding>,
    /// Whether the login with the given credentials worked.
    pub logged_in: bool,
    /// Whether a token was obtained (or given) and a route accepted it: the authenticated
    /// checks really ran as a user.
    pub authenticated: bool,
    /// The route that proved the token works.
    pub token_route: Option<String>,
    pub requests_sent: u32,
    /// Sessions the run's own logins opened, and how many of them it ended at the end.
    pub sessions_opened: usize,
    pub sessions_ended: usize,
    /// What was not checked, and why.
    pub notes: Vec<String>,
    /// The request budget ran out before every check ran: the run fails, since what it did
    /// not check may be what matters.
    pub budget_spent: bool,
    /// Findings a suppression file set aside (with its reason); they do not fail the run.
    pub suppressed: Vec<Suppressed>,
    /// Findings left out because the `--baseline` report already held them.
    pub baselined: usize,
    /// The severity at which the run counts as failed.
    pub fail_on: Severity,
}

impl Report {
    /// Whether a finding reaches `--fail-on` (exit code 1).
    pub fn failed(&self) -> bool {
        self.budget_spent || self.worst().is_some_and(|worst| worst >= self.fail_on)
    }

    /// The worst severity found, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table(),
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default(),
            Format::Sarif => serde_json::to_string_pretty(&self.sarif()).unwrap_or_default(),
        }
    }

    /// The report for a terminal: every control character a target put into evidence, a path
    /// or a note (escape sequences that rewrite the screen or the clipboard, a carriage return
    /// that overwrites a line) shown as an escape, never sent raw.
    fn table(&self) -> String {
        printable(&self.table_text(), true)
    }

    fn table_text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "rampart audit of {}", self.target);
        let session = match (&self.token_route, self.logged_in) {
            (Some(route), true) => format!("logged in; the token was accepted by GET {route} and used for the authenticated checks"),
            (Some(route), false) => format!("the given token was accepted by GET {route} and used for the authenticated checks"),
            (None, true) => "logged in, but no route accepted the token: the authenticated checks are limited".to_owned(),
            (None, false) => "anonymous: no credentials, so only the unauthenticated checks ran".to_owned(),
        };
        let _ = write!(out, "{} requests sent; {session}", self.requests_sent);
        if self.sessions_opened > 0 {
            let _ = write!(
                out,
                "; {} of the {} sessions its logins opened were ended",
                self.sessions_ended, self.sessions_opened
            );
        }
        let _ = writeln!(out);
        for severity in [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Info,
        ] {
            let group: Vec<&Finding> = self
                .findings
                .iter()
                .filter(|f| f.severity == severity)
                .collect();
            if group.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "\n{} ({})",
                severity.as_str().to_ascii_uppercase(),
                group.len()
            );
            for f in group {
                let _ = writeln!(out, "  {:<12} {}", f.id, f.title);
                let _ = writeln!(out, "               evidence:  {}", f.evidence);
                let _ = writeln!(out, "               fix:       {}", f.fix);
                let _ = writeln!(
                    out,
                    "               {} · {} · checklist {}",
                    f.cwe, f.owasp, f.checklist
                );
            }
        }
        if !self.suppressed.is_empty() {
            let _ = writeln!(out, "\nSUPPRESSED ({})", self.suppressed.len());
            for s in &self.suppressed {
                let _ = writeln!(
                    out,
                    "  {:<12} {} (until {}: {})",
                    s.finding.id,
                    s.finding.route.as_deref().unwrap_or("every route"),
                    s.expires,
                    s.reason
                );
            }
        }
        if self.baselined > 0 {
            let _ = writeln!(
                out,
                "\n{} finding(s) left out: already in the --baseline report",
                self.baselined
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nnot checked");
            for note in &self.notes {
                let _ = writeln!(out, "  - {note}");
            }
        }
        let count = |s: Severity| self.findings.iter().filter(|f| f.severity == s).count();
        let _ = writeln!(
            out,
            "\nverdict: {} (critical {}, high {}, medium {}, low {}, info {})",
            if self.worst().is_some_and(|worst| worst >= self.fail_on) {
                format!("FAIL, findings at or above {}", self.fail_on.as_str())
            } else if self.budget_spent {
                "FAIL, the request budget ran out before every check ran (raise --max-requests)"
                    .to_owned()
            } else {
                format!("pass, nothing at or above {}", self.fail_on.as_str())
            },
            count(Severity::Critical),
            count(Severity::High),
            count(Severity::Medium),
            count(Severity::Low),
            count(Severity::Info),
        );
        out
    }

    /// One SARIF result: located at the route's URL on the target (the target itself for
    /// findings about every answer), with a fingerprint that is the same in every run, and
    /// marked suppressed with its reason when a suppression set it aside.
    fn sarif_result(&self, f: &Finding, suppressed: Option<&str>) -> Value {
        let rule_index = CATALOGUE.iter().position(|c| c.id == f.id).unwrap_or(0);
        let path = f
            .route
            .as_deref()
            .and_then(|r| r.split_once(' '))
            .map_or("", |(_, path)| path.trim_start_matches('/'));
        let uri = format!("{}{path}", self.target);
        let mut result = json!({
            "ruleId": f.id,
            "ruleIndex": rule_index,
            "level": level(f.severity),
            "message": {"text": format!("{}: {}", f.title, f.evidence)},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": uri}},
                "logicalLocations": [{"name": f.route.as_deref().unwrap_or("every response"), "kind": "resource"}],
            }],
            "partialFingerprints": {
                "rampartFinding/v1": format!("{}|{}", f.id, f.route.as_deref().unwrap_or("")),
            },
            "properties": {
                "severity": f.severity.as_str(),
                "security-severity": security_severity(f.severity),
                "cwe": f.cwe,
                "owasp": f.owasp,
                "checklist": f.checklist,
                "fix": f.fix,
            }
        });
        if let Some(reason) = suppressed {
            result["suppressions"] = json!([{"kind": "external", "justification": reason}]);
        }
        result
    }

    /// SARIF 2.1.0: one run, every check as a rule (with CWE and OWASP tags), one result per
    /// finding located at the target URL.
    pub fn sarif(&self) -> Value {
        let rules: Vec<Value> = CATALOGUE
            .iter()
            .map(|c| {
                let cwe = format!("CWE-{}", c.cwe);
                json!({
                    "id": c.id,
                    "name": c.title,
                    "shortDescription": {"text": c.title},
                    "fullDescription": {"text": format!("{} ({}, {}; checklist {})", c.title, cwe, c.owasp, c.checklist)},
                    "help": {"text": c.fix},
                    "properties": {
                        "tags": ["security", cwe, c.owasp],
                        "cwe": cwe,
                        "owasp": c.owasp,
                        "checklist": c.checklist,
                    }
                })
            })
            .collect();
        let suppressed = self
            .suppressed
            .iter()
            .map(|s| (&s.finding, Some(s.reason.as_str())));
        let results: Vec<Value> = self
            .findings
            .iter()
            .map(|f| (f, None))
            .chain(suppressed)
            .map(|(f, reason)| self.sarif_result(f, reason))
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "rampart-audit",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://example.invalid/rampart",
                    "rules": rules,
                }},
                "invocations": [{"executionSuccessful": true, "toolExecutionNotifications":
                    self.notes.iter().map(|n| json!({"level": "note", "message": {"text": n}})).collect::<Vec<_>>()}],
                "results": results,
                "properties": {"target": self.target, "requestsSent": self.requests_sent, "authenticated": self.authenticated},
            }]
        })
    }
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub's `security-severity` scale (0.0 to 10.0).
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// `text` with its control characters written as `\u{..}` escapes (line breaks kept when
/// `keep_lines`), and the invisible and direction-changing characters too (U+202E and its kin
/// reorder what a terminal, a CI log or a code-scanning page shows), so text a target chose
/// cannot drive or disguise what the operator reads.
pub fn printable(text: &str, keep_lines: bool) -> String {
    text.chars()
        .map(|c| {
            if (c.is_control() && !(keep_lines && c == '\n')) || is_invisible(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Characters that show nothing or turn text around (zero-width spaces and joiners, the soft
/// hyphen, the direction marks and overrides, the byte-order mark).
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}
