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
        username: Some("auditor".into()),
        password: Some(password),
        login_path: Some("/v1/auth/login".into()),
        logout_path: Some("/v1/auth/logout".into()),
        format: Format::Json,
        fail_on: Severity::High,
        rate: 200.0,
        quiet: true,
        ..AuditArgs::new(app.url("/"))
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
    // It leaves no session of its own behind: its login and the enumeration check's resetting
    // logins are all logged out.
    assert!(report.sessions_opened >= 2, "{}", report.sessions_opened);
    assert_eq!(report.sessions_ended, report.sessions_opened);
    assert_eq!(live_sessions(&app, "auditor").await, 0);
}

async fn live_sessions(app: &TestApp, username: &str) -> i64 {
    app.raw_database()
        .await
        .count(&format!(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE u.username = '{username}' AND s.revoked_at IS NULL"
        ))
        .await
}

/// The newcomer's run: the base URL given with the API's `/v1` prefix. Probes that already
/// name the prefix (the login route) are not sent to `/v1/v1/...`, and a login burst that is
/// not limited is never reported against a route the auditor cannot tell from a missing one
/// (rampart answers a failed login exactly as it answers an unknown path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_with_the_api_prefix_reaches_the_same_routes() {
    // A limit above the burst, so only the route check can keep the finding away.
    let app = TestApp::spawn_with_shipped_limits(&[("RAMPART_LIMIT_AUTH", "100/minute")]).await;
    let password = app.register("newcomer").await;
    let mut args = AuditArgs {
        username: None,
        password: None,
        login_path: Some("/v1/auth/login".into()),
        logout_path: Some("/v1/auth/logout".into()),
        format: Format::Json,
        fail_on: Severity::High,
        rate: 200.0,
        quiet: true,
        ..AuditArgs::new(app.url("/v1"))
    };
    let report = rampart_audit::audit(&args).await.unwrap();
    let ids: Vec<&str> = report.findings.iter().map(|f| f.id).collect();
    assert!(!ids.contains(&"RA-RATE-1"), "{ids:?}");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("no login route is confirmed")),
        "{:?}",
        report.notes
    );
    // With the account: the login reaches /v1/auth/login, and its sessions are ended.
    args.username = Some("newcomer".into());
    args.password = Some(password);
    let report = rampart_audit::audit(&args).await.unwrap();
    assert!(
        report.logged_in && report.authenticated,
        "{:?}",
        report.notes
    );
    assert_eq!(live_sessions(&app, "newcomer").await, 0);
}
