//! The parameter error-leak and data-exposure checks against a VAmPI-like fixture (a Werkzeug
//! debugger on a quote in a path parameter, an SQLite error on a quote in a query parameter,
//! an anonymous debug listing with plaintext passwords, a `GET /createdb` that must never be
//! called) and against its hardened twin, which must produce none of these findings.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rampart_audit::{audit, AuditArgs, Severity};
use serde_json::{json, Value};

const TOKEN: &str = "fixture-token";

#[derive(Clone)]
struct Fixture {
    hardened: bool,
    /// Every request line received.
    log: Arc<Mutex<Vec<String>>>,
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [("content-type", "application/problem+json")],
        json!({"type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(), "detail": detail})
            .to_string(),
    )
        .into_response()
}

async fn record(State(fixture): State<Fixture>, request: Request, next: Next) -> Response {
    let line = format!(
        "{} {}",
        request.method(),
        request.uri().path_and_query().map_or("", |p| p.as_str())
    );
    fixture.log.lock().unwrap().push(line);
    next.run(request).await
}

fn spec() -> Value {
    json!({
        "openapi": "3.0.1",
        "info": {"title": "leaky", "version": "1"},
        "paths": {
            "/createdb": {"get": {"responses": {"200": {"description": "drops and refills the database"}}}},
            "/users/v1": {"get": {"responses": {"200": {"description": "users"}}}},
            "/users/v1/_debug": {"get": {"responses": {"200": {"description": "users, for debugging"}}}},
            "/users/v1/login": {"post": {"responses": {"200": {"description": "token"}}}},
            "/users/v1/{username}": {
                "get": {"parameters": [{"name": "username", "in": "path", "required": true, "schema": {"type": "string"}}], "responses": {}},
                "delete": {"parameters": [{"name": "username", "in": "path", "required": true}], "security": [{"bearer": []}], "responses": {}}
            },
            "/books/v1": {"get": {"parameters": [{"name": "title", "in": "query", "schema": {"type": "string"}}], "responses": {}}},
            "/me": {"get": {"security": [{"bearer": []}], "responses": {}}},
        },
        "components": {"schemas": {"User": {"type": "object", "properties": {
            "username": {"type": "string"}, "password": {"type": "string", "example": "examplepass"}
        }}}}
    })
}

fn users(with_passwords: bool) -> Value {
    let users: Vec<Value> = [("admin", "adminpass1", true), ("name1", "name1pass", false)]
        .iter()
        .map(|(name, password, admin)| {
            let mut user =
                json!({"username": name, "email": format!("{name}@mail.test"), "admin": admin});
            if with_passwords {
                user["password"] = json!(password);
            }
            user
        })
        .collect();
    json!({"users": users})
}

const WERKZEUG_PAGE: &str = r#"<!doctype html>
<html lang=en>
  <head>
    <title>sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) unrecognized token: "'1''"
[SQL: SELECT * FROM users WHERE username = '1'']
 // Werkzeug Debugger</title>
    <link rel="stylesheet" href="?__debugger__=yes&amp;cmd=resource&amp;f=style.css">
    <script>var CONSOLE_MODE = false, EVALEX = true, SECRET = "x";</script>
  </head>
  <body><h1>OperationalError</h1><div class="traceback"><h3>Traceback <em>(most recent call last)</em>:</h3></div></body>
</html>"#;

async fn user(State(fixture): State<Fixture>, Path(username): Path<String>) -> Response {
    let odd = username.contains('\'') || username.contains('\\');
    match (fixture.hardened, odd, username.as_str()) {
        (false, true, _) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Html(WERKZEUG_PAGE)).into_response()
        }
        (false, false, "admin") => Json(json!({
            "username": "admin", "email": "admin@mail.test", "api_key": "ak_live_0123456789abcdef"
        }))
        .into_response(),
        (true, false, "admin") => {
            Json(json!({"username": "admin", "email": "admin@mail.test"})).into_response()
        }
        _ => problem(StatusCode::NOT_FOUND, "No such user."),
    }
}

async fn books(
    State(fixture): State<Fixture>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let title = query.get("title").map_or("", String::as_str);
    if title.contains('\'') {
        if fixture.hardened {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "title: only letters, digits and spaces.",
            );
        }
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({
                "error": format!("(sqlite3.OperationalError) unrecognized token: \"'{title}'\""),
                "query": format!("SELECT * FROM books WHERE title = '{title}'"),
            })),
        )
            .into_response();
    }
    Json(json!({"books": [{"book_title": "bookTitle1", "user": "name1"}]})).into_response()
}

async fn me(State(fixture): State<Fixture>, headers: HeaderMap) -> Response {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return problem(StatusCode::UNAUTHORIZED, "Authentication required.");
    }
    if fixture.hardened {
        Json(json!({"username": "alice", "password_changed_at": "2026-01-01T00:00:00Z", "has_password": true}))
            .into_response()
    } else {
        Json(json!({"username": "alice", "password_hash": "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"}))
            .into_response()
    }
}

async fn start(hardened: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let fixture = Fixture {
        hardened,
        log: Arc::default(),
    };
    let log = fixture.log.clone();
    let app = Router::new()
        .route("/openapi.json", get(|| async { Json(spec()) }))
        .route(
            "/createdb",
            get(|| async { Json(json!({"message": "Database populated."})) }),
        )
        .route("/users/v1", get(|| async { Json(users(false)) }))
        .route(
            "/users/v1/_debug",
            get(|State(fixture): State<Fixture>| async move { Json(users(!fixture.hardened)) }),
        )
        .route(
            "/users/v1/login",
            post(|| async { problem(StatusCode::UNAUTHORIZED, "Wrong username or password.") }),
        )
        .route("/users/v1/{username}", get(user))
        .route("/books/v1", get(books))
        .route("/me", get(me))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "Not found.") })
        .layer(axum::middleware::from_fn_with_state(
            fixture.clone(),
            record,
        ))
        .with_state(fixture);
    (common::serve(app).await, log)
}

fn args(addr: SocketAddr) -> AuditArgs {
    AuditArgs {
        username: None,
        password: None,
        login_path: Some("/users/v1/login".into()),
        logout_path: Some("/users/v1/logout".into()),
        token: Some(TOKEN.into()),
        ..common::args(addr)
    }
}

/// Only reads were sent, and never to the state-changing path.
fn assert_read_only(log: &Mutex<Vec<String>>) {
    let log = log.lock().unwrap();
    assert!(!log.is_empty());
    assert!(
        !log.iter()
            .any(|line| line.starts_with("GET /createdb") || line.starts_with("HEAD /createdb")),
        "GET /createdb must never be called: {log:?}"
    );
    for line in log.iter() {
        let method = line.split(' ').next().unwrap();
        assert!(
            ["GET", "HEAD", "OPTIONS", "TRACE"].contains(&method)
                || line.starts_with("POST /users/v1/login"),
            "only reads (and login probes) may be sent: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaks_and_exposed_secrets_are_reported_with_evidence() {
    let (addr, log) = start(false).await;
    let report = audit(&args(addr)).await.unwrap();

    common::assert_fires(
        &report,
        "RA-ERR-2",
        Severity::High,
        &[
            "GET /users/v1/1%27 -> 500 shows the Werkzeug interactive debugger",
            "Werkzeug Debugger",
        ],
    );
    common::assert_fires(
        &report,
        "RA-SQL-1",
        Severity::High,
        &[
            "a lone quote or backslash broke the query",
            "GET /books/v1?title=1%27 -> 500 shows an SQLite error",
            "sqlite3.OperationalError",
        ],
    );
    common::assert_fires(
        &report,
        "RA-DATA-1",
        Severity::Critical,
        &[
            "passwords in plain text",
            "GET /users/v1/_debug -> 200 (anonymous): password (password) = \"a***\" (10 chars), plaintext-looking in 2 records",
            // The id for the path parameter came from the list at /users/v1.
            "GET /users/v1/admin -> 200 (anonymous): api_key (key) = \"ak***\" (24 chars)",
        ],
    );
    common::assert_fires(
        &report,
        "RA-DATA-2",
        Severity::Medium,
        &["GET /me -> 200 (with credentials): password_hash (password hash) = \"$2***\" (60 chars)"],
    );
    let everything: String = report
        .findings
        .iter()
        .map(|f| f.evidence.as_str())
        .collect();
    for secret in [
        "adminpass1",
        "name1pass",
        "ak_live_0123456789abcdef",
        "R9h/cIPz0gi",
    ] {
        assert!(!everything.contains(secret), "{secret} printed in full");
    }
    assert!(
        !everything.contains("examplepass"),
        "a schema example is not a response"
    );
    // The debugger page is reported as a page, not a second time as a traceback.
    assert!(
        report.findings.iter().all(|f| f.id != "RA-ERR-1"),
        "{:?}",
        report.findings
    );
    assert_read_only(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardened_twin_yields_none_of_these_findings() {
    let (addr, log) = start(true).await;
    let report = audit(&args(addr)).await.unwrap();
    for id in ["RA-ERR-1", "RA-ERR-2", "RA-SQL-1", "RA-DATA-1", "RA-DATA-2"] {
        assert!(
            report.findings.iter().all(|f| f.id != id),
            "{id} is a false positive: {:?}",
            report
                .findings
                .iter()
                .find(|f| f.id == id)
                .map(|f| &f.evidence)
        );
    }
    // The same probes were sent: quote, backslash, long value and wrong type per parameter.
    let sent = log.lock().unwrap().clone();
    for line in [
        "GET /users/v1/1%27",
        "GET /users/v1/1%5C",
        "GET /books/v1?title=12345",
        "GET /users/v1/admin",
    ] {
        assert!(sent.iter().any(|l| l == line), "{line} not sent: {sent:?}");
    }
    assert!(sent
        .iter()
        .any(|l| l.starts_with("GET /books/v1?title=AAAA") && l.len() > 2000));
    assert_read_only(&log);
}
