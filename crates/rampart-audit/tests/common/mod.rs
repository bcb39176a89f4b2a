//! What every fixture test of the auditor shares: a fixture served on port 0, the run's
//! arguments, and asserting a finding with its evidence.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a part

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rampart_audit::{AuditArgs, Finding, Format, Report, Severity};
use serde_json::Value;
use sha2::Sha256;

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
        username: Some("alice".into()),
        password: Some("correct horse battery staple".into()),
        login_path: Some("/login".into()),
        logout_path: Some("/logout".into()),
        format: Format::Json,
        fail_on: Severity::High,
        rate: 500.0,
        quiet: true,
        ..AuditArgs::new(format!("http://{addr}"))
    }
}

/// A run as it is meant to be used on an API it knows nothing of: two accounts' credentials
/// (`(name, password)`), no login path, document or logout given, failing at medium.
pub(crate) fn two_accounts(
    addr: SocketAddr,
    first: (&str, &str),
    second: (&str, &str),
) -> AuditArgs {
    AuditArgs {
        username: Some(first.0.into()),
        password: Some(first.1.into()),
        login_path: None,
        username2: Some(second.0.into()),
        password2: Some(second.1.into()),
        logout_path: None,
        fail_on: Severity::Medium,
        max_requests: 400,
        ..args(addr)
    }
}

/// Seconds since the epoch, for token claims.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JSON value as a JWT part.
pub(crate) fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The HS256 signature of `input` under `key`, as a JWT part.
pub(crate) fn hs256(input: &str, key: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(input.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
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

/// A hardened twin's run: logged in, nothing at medium or above, so it passes.
pub(crate) fn assert_nothing_at_medium_or_above(report: &Report) {
    assert!(report.logged_in, "{:?}", report.notes);
    assert_eq!(
        ids_at_or_above(report, Severity::Medium),
        Vec::<&str>::new(),
        "{:#?}",
        report.findings
    );
    assert!(!report.failed());
}

/// The headers a hardened API sends on every answer (the auditor's header checks pass).
pub(crate) fn harden(headers: &mut axum::http::HeaderMap) {
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
}

/// The bearer token a request carries.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
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
