//! The auditor against an API shaped like the Flask APIs it meets in the wild (VAmPI is the
//! model): every answer is 200, a failed login says so in `{"status": "fail"}` with a message
//! that differs for a wrong password and a missing user, the token comes back as `auth_token`,
//! the OpenAPI document is named by a Swagger UI page at `/ui/`, books are listed for everyone
//! and readable by any logged-in user, and nothing is limited. No login path, spec or format is
//! given: the run must find them. A hardened twin of the same API gives nothing at medium or
//! above.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rampart_audit::{audit, AuditArgs, Report, Severity};
use serde_json::{json, Value};

const USERS: [(&str, &str); 2] = [("user1", "user1Pass!23"), ("user2", "user2Pass!23")];

#[derive(Clone)]
struct Api {
    hardened: bool,
    /// Live tokens and their user.
    tokens: Arc<Mutex<HashMap<String, String>>>,
    /// Failed logins in the current one-second window, and when it began.
    failures: Arc<Mutex<(u32, Option<std::time::Instant>)>>,
}

fn spec() -> Value {
    let login_body = json!({"content": {"application/json": {"schema": {"properties": {
        "username": {"type": "string"}, "password": {"type": "string"}}}}}});
    json!({
        "openapi": "3.0.1",
        "info": {"title": "books", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/users/v1/login": {"post": {"requestBody": login_body}},
            "/users/v1/register": {"post": {"requestBody": login_body}},
            "/books/v1": {"get": {}},
            "/books/v1/{book_title}": {"get": {
                "security": [{"bearer": []}],
                "parameters": [{"name": "book_title", "in": "path", "required": true}]}},
            "/users/v1/{username}": {"get": {
                "parameters": [{"name": "username", "in": "path", "required": true}]}},
            "/createdb": {"get": {}},
        }
    })
}

const SWAGGER_UI: &str = "<!doctype html><html><body><div id=\"swagger-ui\"></div><script>\
window.onload = function() { const ui = SwaggerUIBundle({\n        url: \"/openapi.json\",\n        dom_id: '#swagger-ui'}) }</script></body></html>";

fn books() -> Value {
    json!([
        {"book_title": "bookTitle77", "owner": "name1", "secret": "name1-secret"},
        {"book_title": "user1-book", "owner": "user1", "secret": "user1-private-secret"},
        {"book_title": "user2-book", "owner": "user2", "secret": "user2-private-secret"},
    ])
}

impl Api {
    fn caller(&self, headers: &HeaderMap) -> Option<String> {
        let token = common::bearer(headers)?;
        self.tokens.lock().unwrap().get(token).cloned()
    }

    /// Headers the hardened twin sends on every answer; the weak one names its server.
    fn finish(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if self.hardened {
            common::harden(headers);
        } else {
            headers.insert("server", "Werkzeug/2.2.3 Python/3.11.7".parse().unwrap());
        }
        response
    }
}

async fn login(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    if api.hardened && body.len() > 64 * 1024 {
        return api.finish(StatusCode::PAYLOAD_TOO_LARGE.into_response());
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return api
            .finish((StatusCode::BAD_REQUEST, Json(json!({"status": "fail"}))).into_response());
    };
    let name = body["username"].as_str().unwrap_or_default();
    let password = body["password"].as_str().unwrap_or_default();
    let known = USERS.iter().find(|(n, _)| *n == name);
    if known.is_some_and(|(_, right)| *right == password) {
        let token = format!("tok-{name}-{}", api.tokens.lock().unwrap().len());
        api.tokens
            .lock()
            .unwrap()
            .insert(token.clone(), name.to_owned());
        return api.finish(
            Json(json!({"auth_token": token, "message": "Successfully logged in.", "status": "success"}))
                .into_response(),
        );
    }
    if api.hardened {
        let mut failures = api.failures.lock().unwrap();
        let now = std::time::Instant::now();
        if failures
            .1
            .is_none_or(|start| now.duration_since(start).as_secs() >= 1)
        {
            *failures = (0, Some(now));
        }
        failures.0 += 1;
        if failures.0 > 5 {
            let mut refused = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"status": "fail"})),
            )
                .into_response();
            refused
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
            return api.finish(refused);
        }
        return api.finish(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"status": "fail", "message": "Wrong username or password."})),
            )
                .into_response(),
        );
    }
    let message = if known.is_some() {
        "Password is not correct for the given username."
    } else {
        "Username does not exist"
    };
    api.finish(Json(json!({"status": "fail", "message": message})).into_response())
}

async fn book(State(api): State<Api>, Path(title): Path<String>, headers: HeaderMap) -> Response {
    let Some(caller) = api.caller(&headers) else {
        return api
            .finish((StatusCode::UNAUTHORIZED, Json(json!({"status": "fail"}))).into_response());
    };
    let found = books()
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["book_title"] == title.as_str())
        .cloned();
    match found {
        Some(b) if !api.hardened || b["owner"] == caller.as_str() => {
            api.finish(Json(b).into_response())
        }
        _ => api.finish((StatusCode::NOT_FOUND, Json(json!({"status": "fail"}))).into_response()),
    }
}

/// VAmPI answers a lookup of an account that exists and of one that does not differently; the
/// twin answers both alike.
async fn user(State(api): State<Api>, Path(name): Path<String>) -> Response {
    let exists = USERS.iter().any(|(n, _)| *n == name);
    if exists && !api.hardened {
        return api.finish(
            Json(json!({"username": name, "email": format!("{name}@example.com")})).into_response(),
        );
    }
    api.finish(
        (
            StatusCode::NOT_FOUND,
            Json(json!({"status": "fail", "message": "User not found"})),
        )
            .into_response(),
    )
}

async fn serve(hardened: bool, createdb_called: Arc<Mutex<bool>>) -> SocketAddr {
    let api = Api {
        hardened,
        tokens: Arc::default(),
        failures: Arc::default(),
    };
    let app = Router::new()
        .route("/users/v1/login", post(login))
        .route(
            "/users/v1/register",
            post(|| async { (StatusCode::FORBIDDEN, "the auditor must never register") }),
        )
        .route(
            "/books/v1",
            get(|State(api): State<Api>| async move {
                let listed: Vec<Value> = books()
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| json!({"book_title": b["book_title"], "user": b["owner"]}))
                    .collect();
                api.finish(Json(json!({"Books": listed})).into_response())
            }),
        )
        .route("/books/v1/{book_title}", get(book))
        .route("/users/v1/{username}", get(user))
        .route(
            "/createdb",
            get(move || async move {
                *createdb_called.lock().unwrap() = true;
                "Database populated."
            }),
        )
        .route("/ui/", get(|| async { axum::response::Html(SWAGGER_UI) }))
        .route("/openapi.json", get(|| async { Json(spec()) }))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(api);
    common::serve(app).await
}

fn args(addr: SocketAddr) -> AuditArgs {
    common::two_accounts(addr, USERS[0], USERS[1])
}

fn evidence<'r>(report: &'r Report, id: &str) -> &'r str {
    let found = report.findings.iter().find(|f| f.id == id);
    let Some(finding) = found else {
        panic!(
            "{id} did not fire: {:?} {:?}",
            common::ids_at_or_above(report, Severity::Info),
            report.notes
        );
    };
    finding.evidence.as_str()
}

#[tokio::test]
async fn a_flask_style_api_is_logged_into_and_its_flaws_are_found_without_being_told_where() {
    let createdb = Arc::new(Mutex::new(false));
    let addr = serve(false, Arc::clone(&createdb)).await;
    let report = audit(&args(addr)).await.unwrap();
    assert!(report.logged_in, "{:?}", report.notes);
    assert!(evidence(&report, "RA-DOCS-1").contains("GET /ui/"));
    assert!(evidence(&report, "RA-DOCS-2").contains("GET /openapi.json"));
    let enumeration = evidence(&report, "RA-ENUM-1");
    assert!(
        enumeration.contains("Password is not correct")
            && enumeration.contains("Username does not exist"),
        "{enumeration}"
    );
    assert!(evidence(&report, "RA-RATE-1").contains("POST /users/v1/login"));
    let lookup = evidence(&report, "RA-ENUM-2");
    assert!(
        lookup.contains("GET /users/v1/user1 -> 200") && lookup.contains("-> 404"),
        "{lookup}"
    );
    let bola = evidence(&report, "RA-BOLA-1");
    assert!(
        bola.contains("GET /books/v1/user1-book") && bola.contains(r#""owner":"user1""#),
        "{bola}"
    );
    // What the object holds is shown masked, never as read.
    assert!(
        bola.contains(r#""secret":"us*** (20 chars)""#) && !bola.contains("private-secret"),
        "{bola}"
    );
    let body = evidence(&report, "RA-BODY-1");
    assert!(
        body.contains("JSON body") && body.contains("Username does not exist"),
        "{body}"
    );
    assert!(evidence(&report, "RA-BANNER-1").contains("Werkzeug"));
    assert!(report.failed(), "a vulnerable API never ends in a pass");
    assert!(
        !*createdb.lock().unwrap(),
        "GET /createdb must never be sent"
    );
}

#[tokio::test]
async fn its_hardened_twin_gives_nothing_at_medium_or_above() {
    let createdb = Arc::new(Mutex::new(false));
    let addr = serve(true, Arc::clone(&createdb)).await;
    let report = audit(&args(addr)).await.unwrap();
    common::assert_nothing_at_medium_or_above(&report);
    assert!(!*createdb.lock().unwrap());
}

#[tokio::test]
async fn accepted_findings_are_set_apart_and_a_baseline_leaves_only_what_is_new() {
    let addr = serve(false, Arc::default()).await;
    let dir = std::env::temp_dir().join(format!("rampart-flask-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Accept the missing login limit on the login route until next year; the banner's
    // acceptance has run out.
    let suppress = dir.join("accepted.yaml");
    std::fs::write(
        &suppress,
        "- id: RA-RATE-1\n  route: POST /users/v1/login\n  reason: the gateway limits logins\n  expires: 2999-01-01\n\
         - id: RA-BANNER-1\n  reason: removed next sprint\n  expires: 2020-01-01\n",
    )
    .unwrap();
    let first = audit(&AuditArgs {
        suppress: Some(suppress.clone()),
        ..args(addr)
    })
    .await
    .unwrap();
    assert!(first.findings.iter().all(|f| f.id != "RA-RATE-1"));
    assert_eq!(first.suppressed.len(), 1);
    assert_eq!(first.suppressed[0].reason, "the gateway limits logins");
    assert!(first.findings.iter().any(|f| f.id == "RA-BANNER-1"));
    assert!(first
        .notes
        .iter()
        .any(|n| n.contains("RA-BANNER-1") && n.contains("expired")));

    // SARIF: every result located at its route on the target, with a stable fingerprint; the
    // accepted one marked suppressed with its reason.
    let sarif = first.sarif();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), first.findings.len() + 1);
    for result in results {
        let uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert!(uri.starts_with(&format!("http://{addr}/")), "{uri}");
        assert!(result["partialFingerprints"]["rampartFinding/v1"].is_string());
    }
    let accepted = results.iter().find(|r| r["ruleId"] == "RA-RATE-1").unwrap();
    assert_eq!(
        accepted["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        format!("http://{addr}/users/v1/login")
    );
    assert_eq!(
        accepted["suppressions"][0]["justification"],
        "the gateway limits logins"
    );

    // The next run against a baseline of this one: nothing new, nothing fails.
    let baseline = dir.join("previous.json");
    std::fs::write(&baseline, first.render(rampart_audit::Format::Json)).unwrap();
    let second = audit(&AuditArgs {
        suppress: Some(suppress),
        baseline: Some(baseline),
        ..args(addr)
    })
    .await
    .unwrap();
    assert_eq!(
        second
            .findings
            .iter()
            .map(|f| (f.id, &f.route))
            .collect::<Vec<_>>(),
        Vec::<(&str, &Option<String>)>::new(),
        "every finding was in the baseline"
    );
    assert_eq!(second.baselined, first.findings.len());
    assert!(!second.failed());
    std::fs::remove_dir_all(&dir).unwrap();
}
