//! The auditor against an API that attacks it, as an outside tester did: its document names a
//! logout and a login whose dot segments lead to an admin reset and to account creation,
//! destructive GETs spelled to slip past a word list, a docs page naming a destructive URL as
//! its document, list ids that are paths, pages that echo the operator's token and users'
//! passwords back, and escape sequences meant for the operator's terminal. Only reads and the
//! one login route may be reached, and nothing secret or raw may reach the report.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use rampart_audit::{audit, paths, AuditArgs, Format, Severity};
use serde_json::{json, Value};

const TOKEN: &str = "tok+ALICE/SECRET=0123456789abcdef";
const PASSWORD: &str = "p@ss<w0rd>&\"x/y";
const LEAKED: &str = "PlainPass-LEAK-1";
const ESCAPE: &str = "\u{1b}]52;c;cHduZWQ=\u{7}\u{1b}[2J\rFAKE";

type Log = Arc<Mutex<Vec<(Method, String)>>>;

/// `text` in lower-case hex, as a target may echo a credential.
fn hex(text: &str) -> String {
    use std::fmt::Write as _;
    text.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn spec() -> Value {
    let body = json!({"content": {"application/json": {"schema": {"properties": {
        "username": {}, "password": {}}}}}});
    let secured = json!([{"bearer": []}]);
    json!({
        "openapi": "3.0.3",
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/auth/login/../../../v1/users": {"post": {"requestBody": body}},
            "/v1/auth/login/.\t./.\t./.\t./v1/users": {"post": {"requestBody": body}},
            "/v1/auth/logout/../../admin/reset": {"post": {}},
            "/v1/auth/logout/%2e%2e/%2e%2e/createdb": {"post": {}},
            "/v1/auth/logout/.\t./.\t./admin/reset": {"post": {}},
            "/v1/auth/logout/..;/..;/admin/reset": {"post": {}},
            "/v1/admin/reset#/v1/auth/logout": {"post": {}},
            "/v1/admin/reset%00/v1/auth/logout": {"post": {}},
            "/v1/admin/reset%3F/v1/auth/logout": {"post": {}},
            "/v1/auth/login-history/purge": {"post": {"requestBody": body}},
            "/v1/admin/login-as": {"post": {"requestBody": body}},
            "/v1/nuke": {"get": {}},
            "/v1/maintenance": {"get": {"operationId": "dropAllTables", "summary": "Drops every table"}},
            "/v1/admin/reset?next=/v1/auth/logout": {"post": {}},
            "/cre\tatedb": {"get": {}},
            "/logoff": {"get": {}},
            "/transfer": {"get": {"parameters": [{"name": "amount", "in": "query"}]}},
            "/v1/things": {"get": {}},
            "/v1/things/{id}": {"get": {"parameters": [{"name": "id", "in": "path", "required": true}]}},
            "/del%65te": {"get": {}},
            "/de;lete": {"get": {}},
            "/api/cache/flush": {"get": {}},
            "/d\u{435}lete": {"get": {}},
            "/index.php?action=delete": {"get": {}},
            "/users/v1": {"get": {"security": secured}},
            "/v1/items": {"get": {"security": secured}},
            "/v1/items/{id}": {"get": {"security": secured,
                "parameters": [{"name": "id", "in": "path", "required": true}]}},
            format!("/reports/{ESCAPE}"): {"get": {}},
            "/v1/pub\u{202e}evil": {"get": {}},
        }
    })
}

async fn record(State(log): State<Log>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(String::new, ToString::to_string);
    log.lock().unwrap().push((method, path));
    StatusCode::NOT_FOUND.into_response()
}

async fn serve(log: Log) -> std::net::SocketAddr {
    let logged = |log: &Log| {
        let log = Arc::clone(log);
        axum::middleware::from_fn(move |request: Request, next: axum::middleware::Next| {
            let log = Arc::clone(&log);
            async move {
                let path = request
                    .uri()
                    .path_and_query()
                    .map_or_else(String::new, ToString::to_string);
                log.lock().unwrap().push((request.method().clone(), path));
                next.run(request).await
            }
        })
    };
    let app = Router::new()
        .route(
            "/docs",
            get(|| async {
                Html("<div id=\"swagger-ui\"></div><script>SwaggerUIBundle({url: \"/createdb?spec=openapi.json\", urls: [{url: \"/openapi.json\"}]})</script>")
            }),
        )
        .route("/openapi.json", get(|| async { Json(spec()) }))
        .route(
            "/login",
            post(|body: String| async move {
                if serde_json::from_str::<Value>(&body).is_ok_and(|b| b["password"] == PASSWORD) {
                    Json(json!({"access_token": TOKEN})).into_response()
                } else {
                    (StatusCode::UNAUTHORIZED, Json(json!({"detail": "no"}))).into_response()
                }
            }),
        )
        // Secured in the document, open in fact, with users' passwords and sessions in it.
        .route(
            "/users/v1",
            get(|| async {
                Json(json!({"users": [{"username": "bob\u{202e}", "password": LEAKED,
                    "sessionid": "SESSID-LEAK", "pin": "4821",
                    "note": "password='USERSEC-A1' <password>USERSEC-C3</password> api_key: USERSEC-E5"}]}))
            }),
        )
        .route(
            "/v1/things",
            // Ids that are the operator's own credentials, echoed back to be sent in a URL.
            get(|| async {
                Json(json!([{"id": "delete"}, {"id": "logoff"}, {"id": "..;"}, {"id": PASSWORD}, {"id": TOKEN}]))
            }),
        )
        .route(
            "/v1/items",
            get(|| async {
                Json(json!([{"id": "..%2F..%2Fadmin%2Freset"}, {"id": "1/delete"}, {"id": "7"}]))
            }),
        )
        // Every item page is a traceback that echoes the request's credentials.
        .route(
            "/v1/items/{id}",
            get(|headers: HeaderMap| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let json = serde_json::to_string(&auth).unwrap().replace('/', "\\/");
                let url: String = auth
                    .bytes()
                    .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
                    .collect();
                let b64 = {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(format!("Authorization: {auth}"))
                };
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Traceback (most recent call last):\n  File \"/srv/app.py\", line 3\nKeyError: headers={{'Authorization': '{auth}'}} json={json} url={url} b64={b64} hex={}", hex(PASSWORD)),
                )
                    .into_response()
            }),
        )
        .fallback(any(record))
        .layer(logged(&log))
        .with_state(Arc::clone(&log));
    common::serve(app).await
}

#[tokio::test]
async fn a_hostile_api_gets_only_reads_and_one_login_and_nothing_secret_or_raw_is_reported() {
    let log: Log = Arc::default();
    let addr = serve(Arc::clone(&log)).await;
    let report = audit(&AuditArgs {
        username: Some("alice".into()),
        password: Some(PASSWORD.into()),
        login_path: None,
        logout_path: None,
        fail_on: Severity::Medium,
        max_requests: 400,
        ..common::args(addr)
    })
    .await
    .unwrap();
    assert!(
        report.logged_in,
        "the usual /login is found: {:?}",
        report.notes
    );

    let log = log.lock().unwrap().clone();
    for (method, path) in &log {
        let decoded = paths::percent_decode(path);
        assert!(
            !decoded.contains(PASSWORD) && !decoded.contains(TOKEN),
            "{method} {path}: a credential in a URL"
        );
        match *method {
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE => {}
            // The usual login paths are tried in turn until one is there.
            Method::POST => assert!(
                ["/v1/auth/login", "/login"].contains(&path.as_str()),
                "POST {path}: only logins are posted to"
            ),
            _ => panic!("{method} {path} was sent"),
        }
        for forbidden in [
            "admin/reset",
            "createdb",
            "delete",
            "de;lete",
            "flush",
            "d\u{435}lete",
            "logoff",
            "transfer",
            "..;",
            "purge",
            "login-as",
            "nuke",
            "maintenance",
        ] {
            assert!(
                !decoded.contains(forbidden),
                "{method} {path} reached a route the read-only run must not"
            );
        }
    }

    // The operator's token and password, echoed by the target, and the users' passwords the
    // target served: in no format.
    for format in [Format::Table, Format::Json, Format::Sarif] {
        let text = report.render(format);
        // The middle of the echoed header's base64: letters that encode the token alone.
        let header_b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .encode(format!("Authorization: Bearer {TOKEN}"))
        };
        let url_token: String = TOKEN
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        for secret in [
            TOKEN,
            &TOKEN[..20],
            &TOKEN.replace('/', "\\/"),
            &url_token,
            &header_b64[32..56],
            PASSWORD,
            LEAKED,
            "SESSID-LEAK",
            "4821",
            "USERSEC-A1",
            "USERSEC-C3",
            "USERSEC-E5",
            &hex(PASSWORD),
        ] {
            assert!(
                !text.contains(secret),
                "{format:?} shows `{secret}`: {text}"
            );
        }
    }
    // Terminal control from the target stays escaped in the table.
    let table = report.render(Format::Table);
    assert!(
        !table.contains(['\u{1b}', '\u{7}', '\r', '\t', '\u{202e}']),
        "raw control characters reach the terminal: {table:?}"
    );
    assert!(
        !report.render(Format::Json).contains('\u{202e}'),
        "nor direction overrides a report viewer"
    );
    // The echo itself was seen and reported, with the credential replaced.
    let leak = common::finding(&report, "RA-ERR-1");
    assert!(
        leak.evidence.contains("[the run's own credential]"),
        "{}",
        leak.evidence
    );
}
