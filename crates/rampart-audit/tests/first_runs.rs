//! The auditor as a newcomer first runs it: against an API that answers 401 to every path it
//! does not know, against a login limit left spent by the previous run, and against nothing at
//! all. Each must end in a report or an error that names the real cause, never a finding about
//! a route that does not exist or a complaint about the credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rampart_audit::{audit, AuditArgs, AuditError};
use serde_json::json;

fn args(target: String, password: Option<&str>) -> AuditArgs {
    AuditArgs {
        target,
        username: password.map(|_| "alice".into()),
        password: password.map(str::to_owned),
        ..common::args(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/problem+json")],
        r#"{"title":"Unauthorized","status":401}"#,
    )
        .into_response()
}

#[tokio::test]
async fn a_default_deny_api_without_that_login_route_gets_no_rate_limit_finding() {
    // Every unknown path, POST included, is 401: a login burst to a path that is not there
    // looks exactly like 20 failed logins that were never limited.
    let app = Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .fallback(|| async { unauthorized() });
    let addr = common::serve(app).await;
    let report = audit(&args(format!("http://{addr}"), None)).await.unwrap();
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
}

/// A login that answers 429 to its first `refusals` attempts, then a token.
fn limited_login(refusals: u32, retry_after: &'static str) -> Router {
    let attempts = Arc::new(AtomicU32::new(0));
    Router::new()
        .route(
            "/login",
            post(move || {
                let attempts = attempts.clone();
                async move {
                    if attempts.fetch_add(1, Ordering::SeqCst) < refusals {
                        return (
                            StatusCode::TOO_MANY_REQUESTS,
                            [(header::RETRY_AFTER, retry_after)],
                        )
                            .into_response();
                    }
                    axum::Json(json!({"access_token": "opaque", "token_type": "bearer"}))
                        .into_response()
                }
            }),
        )
        .fallback(|| async { unauthorized() })
}

#[tokio::test]
async fn a_login_limit_left_by_the_previous_run_is_waited_out() {
    let addr = common::serve(limited_login(2, "1")).await;
    let started = std::time::Instant::now();
    let report = audit(&args(format!("http://{addr}"), Some("pw")))
        .await
        .unwrap();
    assert!(report.logged_in, "{:?}", report.notes);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "both 1 s waits were kept"
    );
}

#[tokio::test]
async fn a_login_limit_too_long_to_wait_is_named_not_blamed_on_the_credentials() {
    let addr = common::serve(limited_login(u32::MAX, "600")).await;
    let err = audit(&args(format!("http://{addr}"), Some("pw")))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, AuditError::RateLimited(_)), "{message}");
    assert!(
        message.contains("limiting logins") && message.contains("600 s"),
        "{message}"
    );
    assert!(!message.contains("--username"), "{message}");
}

#[tokio::test]
async fn a_target_that_is_not_there_is_called_unreachable_with_the_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    for password in [None, Some("pw")] {
        let err = audit(&args(format!("http://{addr}"), password))
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, AuditError::Unreachable { .. }), "{message}");
        assert!(
            message.contains("connection failed") && message.contains("refused"),
            "{message}"
        );
        assert!(!message.contains("rate limit"), "{message}");
    }
}

#[tokio::test]
async fn the_sessions_its_logins_opened_are_ended() {
    let live = Arc::new(AtomicU32::new(0));
    let (opened, ended) = (live.clone(), live.clone());
    let app = Router::new()
        .route(
            "/login",
            post(move |body: String| {
                let opened = opened.clone();
                async move {
                    if !body.contains("\"pw\"") {
                        return unauthorized();
                    }
                    opened.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"access_token": "opaque"})).into_response()
                }
            }),
        )
        .route(
            "/logout",
            post(move || {
                let ended = ended.clone();
                async move {
                    ended.fetch_sub(1, Ordering::SeqCst);
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .fallback(|| async { unauthorized() });
    let addr = common::serve(app).await;
    let report = audit(&args(format!("http://{addr}"), Some("pw")))
        .await
        .unwrap();
    assert!(
        report.sessions_opened >= 2,
        "the enumeration check logs in again"
    );
    assert_eq!(report.sessions_ended, report.sessions_opened);
    assert_eq!(live.load(Ordering::SeqCst), 0, "no session left open");
}

/// A login limit asking to wait a minute: the run neither waits it out nor blames anyone. It
/// ends well within a minute, the enumeration check says it was rate limited, and `--patient`
/// is what would wait.
#[tokio::test]
async fn a_target_asking_to_wait_a_minute_is_reported_rate_limited_within_the_minute() {
    let attempts = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route(
            "/login",
            post(move |body: String| {
                let attempts = attempts.clone();
                async move {
                    if body.contains("\"password\":\"pw\"") {
                        return axum::Json(json!({"access_token": "opaque-token"})).into_response();
                    }
                    if attempts.fetch_add(1, Ordering::SeqCst) >= 3 {
                        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "60")])
                            .into_response();
                    }
                    unauthorized()
                }
            }),
        )
        .fallback(|| async { unauthorized() });
    let addr = common::serve(app).await;
    let started = std::time::Instant::now();
    let report = audit(&args(format!("http://{addr}"), Some("pw")))
        .await
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    assert!(report.logged_in);
    let note = report
        .notes
        .iter()
        .find(|n| n.contains("enumeration"))
        .unwrap_or_else(|| panic!("{:?}", report.notes));
    assert!(
        note.contains("not checked") && note.contains("rate limited") && note.contains("60 s"),
        "{note}"
    );
    assert!(note.contains("--patient"), "{note}");
    assert!(report.findings.iter().all(|f| f.id != "RA-RATE-1"));
}
