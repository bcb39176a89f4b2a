//! What every fixture test of the auditor shares: a fixture served on port 0, the run's
//! arguments, and asserting a finding with its evidence.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a part

use std::net::SocketAddr;

use axum::Router;
use rampart_audit::{AuditArgs, Finding, Format, Report, Severity};

/// Serves `app` on a free loopback port.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A run against `addr` as `alice`, logging in at `/login`, fast and quiet; tests change what
/// they need with `..args(addr)`.
pub(crate) fn args(addr: SocketAddr) -> AuditArgs {
    AuditArgs {
        target: format!("http://{addr}"),
        username: Some("alice".into()),
        password: Some("correct horse battery staple".into()),
        login_path: Some("/login".into()),
        username2: None,
        password2: None,
        logout_path: Some("/logout".into()),
        token: None,
        spec: None,
        format: Format::Json,
        suppress: None,
        baseline: None,
        fail_on: Severity::High,
        max_requests: 300,
        rate: 500.0,
        patient: false,
        quiet: true,
    }
}

/// The finding `id`, or a panic listing what the run found and noted instead.
pub(crate) fn finding<'r>(report: &'r Report, id: &str) -> &'r Finding {
    let found = report.findings.iter().find(|f| f.id == id);
    let Some(finding) = found else {
        panic!(
            "{id} did not fire; findings: {:?}; notes: {:?}",
            report
                .findings
                .iter()
                .map(|f| (f.id, &f.evidence))
                .collect::<Vec<_>>(),
            report.notes
        );
    };
    finding
}

/// `id` fired at `severity`, its evidence naming each of `evidence`, with its CWE, OWASP
/// category, fix and checklist item.
pub(crate) fn assert_fires(report: &Report, id: &str, severity: Severity, evidence: &[&str]) {
    let f = finding(report, id);
    assert_eq!(f.severity, severity, "{id}: {}", f.evidence);
    for part in evidence {
        assert!(
            f.evidence.contains(part),
            "{id}: evidence `{}` should mention `{part}`",
            f.evidence
        );
    }
    assert!(
        f.cwe.starts_with("CWE-") && f.owasp.starts_with("API"),
        "{id}"
    );
    assert!(!f.fix.is_empty() && !f.checklist.is_empty(), "{id}");
}

/// The ids found at or above `severity`.
pub(crate) fn ids_at_or_above(report: &Report, severity: Severity) -> Vec<&'static str> {
    report
        .findings
        .iter()
        .filter(|f| f.severity >= severity)
        .map(|f| f.id)
        .collect()
}
