//! `rampart audit` against rampart itself: with the shipped defaults (docs on in development,
//! the shipped limits, only the auth limit raised so the enumeration samples fit in a minute)
//! the auditor logs in, aims every check through the served OpenAPI document, and finds nothing
//! above low.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::TestApp;
use rampart_audit::{AuditArgs, Format, Severity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rampart_passes_its_own_audit() {
    let app = TestApp::spawn_with_shipped_limits(&[("RAMPART_LIMIT_AUTH", "30/minute")]).await;
    let password = app.register("auditor").await;
    let args = AuditArgs {
        target: app.url("/"),
        username: Some("auditor".into()),
        password: Some(password),
        login_path: "/v1/auth/login".into(),
        token: None,
        spec: None,
        format: Format::Json,
        fail_on: Severity::High,
        max_requests: 300,
        rate: 200.0,
        quiet: true,
    };
    let report = rampart_audit::audit(&args).await.unwrap();
    assert!(report.authenticated, "the auditor must have logged in");
    let above_low: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity > Severity::Low)
        .collect();
    assert!(above_low.is_empty(), "{above_low:#?}");
    // Every check had what it needs: the token, the document, a probe route, the JWKS, the
    // login route and enough samples.
    for skipped in [
        "no access token",
        "no OpenAPI document",
        "forged-token checks were not run",
        "no JWKS",
        "login checks were not run",
        "inconclusive",
        "--max-requests",
    ] {
        assert!(
            !report.notes.iter().any(|n| n.contains(skipped)),
            "a check was skipped: {:?}",
            report.notes
        );
    }
    // What it does report in development: the docs (off in production) and plain HTTP on
    // loopback.
    let ids: Vec<&str> = report.findings.iter().map(|f| f.id).collect();
    assert!(
        ids.contains(&"RA-DOCS-1") && ids.contains(&"RA-DOCS-2"),
        "{ids:?}"
    );
}
