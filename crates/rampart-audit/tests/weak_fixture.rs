//! The auditor against a deliberately weak API, written here to make every check fire: each
//! test asserts the finding, its severity and that the evidence names what was seen. Two
//! variants are needed because some weaknesses exclude each other (a login with no limit at
//! all cannot also show a limit bypassed by X-Forwarded-For).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rampart_audit::{audit, AuditArgs, Format, Severity};
use serde_json::{json, Value};

const SECRET: &[u8] = b"secret";
/// The fixture's published Ed25519 public key (any 32 bytes serve: nothing verifies with it).
const PUBLIC_X: [u8; 32] = [42; 32];

#[derive(Clone, Copy)]
struct Weaknesses {
    /// Reflect any Origin with credentials (else `*` with credentials).
    reflect_origin: bool,
    /// Limit logins per X-Forwarded-For value (else no limit at all).
    limit_by_forwarded_for: bool,
    /// Accept tokens without checking signatures (else check HS256 with the real secret or,
    /// the confusion bug, with the PEM of the published public key).
    skip_signature: bool,
}

#[derive(Clone)]
struct Fixture {
    weak: Weaknesses,
    attempts: Arc<Mutex<HashMap<String, u32>>>,
}

fn public_pem() -> String {
    let der = [
        &[
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ][..],
        &PUBLIC_X,
    ]
    .concat();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(der)
    )
}

fn issue() -> String {
    let header = json!({"alg": "HS256", "typ": "JWT"});
    // A week-long token holding the user's email: two findings on its own.
    let claims = json!({"sub": "alice", "email": "alice@example.com", "iat": common::now(), "exp": common::now() + 7 * 86_400});
    let input = format!("{}.{}", common::b64(&header), common::b64(&claims));
    format!("{input}.{}", common::hs256(&input, SECRET))
}

impl Fixture {
    fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(token) = common::bearer(headers) else {
            return false;
        };
        let parts: Vec<&str> = token.split('.').collect();
        let [h, c, s] = parts[..] else { return false };
        let Some(header) = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            return false;
        };
        if URL_SAFE_NO_PAD.decode(c).is_err() {
            return false;
        }
        let input = format!("{h}.{c}");
        if self.weak.skip_signature {
            return true;
        }
        header["alg"] == "HS256"
            && (s == common::hs256(&input, SECRET)
                || s == common::hs256(&input, public_pem().as_bytes()))
    }
}

async fn weak_headers(State(fixture): State<Fixture>, request: Request, next: Next) -> Response {
    let origin = request.headers().get("origin").cloned();
    let preflight = request.method() == Method::OPTIONS;
    let mut response = if preflight {
        StatusCode::OK.into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert("server", HeaderValue::from_static("uvicorn/0.23.2"));
    headers.insert("x-powered-by", HeaderValue::from_static("Express 4.17.1"));
    if let Some(origin) = origin {
        let allowed = if fixture.weak.reflect_origin {
            origin
        } else {
            HeaderValue::from_static("*")
        };
        headers.insert("access-control-allow-origin", allowed);
        headers.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
        headers.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("*"),
        );
        headers.insert(
            "access-control-allow-headers",
            HeaderValue::from_static("*"),
        );
    }
    response
}

async fn login(State(fixture): State<Fixture>, headers: HeaderMap, body: Bytes) -> Response {
    if fixture.weak.limit_by_forwarded_for {
        let key = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("direct")
            .to_owned();
        let mut attempts = fixture.attempts.lock().unwrap();
        let count = attempts.entry(key).or_default();
        *count += 1;
        if *count > 24 {
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "60")]).into_response();
        }
    }
    let Ok(form) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Traceback (most recent call last):\n  File \"/app/main.py\", line 42, in login\n    data = json.loads(body)\njson.decoder.JSONDecodeError: Expecting value",
        )
            .into_response();
    };
    match (form["username"].as_str(), form["password"].as_str()) {
        (Some("alice"), Some("correct horse battery staple")) => (
            [("set-cookie", "session=abc123; Path=/")],
            axum::Json(json!({"access_token": issue(), "token_type": "bearer"})),
        )
            .into_response(),
        (Some("alice"), _) => {
            // Only a known user's password is checked: the slow path gives the account away.
            tokio::time::sleep(Duration::from_millis(40)).await;
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"detail": "Incorrect password"})),
            )
                .into_response()
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"detail": "User not found"})),
        )
            .into_response(),
    }
}

async fn me(State(fixture): State<Fixture>, headers: HeaderMap) -> Response {
    if fixture.accepts(&headers) {
        axum::Json(json!({"sub": "alice"})).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

async fn items(
    State(fixture): State<Fixture>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !fixture.accepts(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10);
    let items: Vec<Value> = (0..limit.min(150)).map(|i| json!({"id": i})).collect();
    axum::Json(json!({"items": items})).into_response()
}

async fn root(method: Method, headers: HeaderMap) -> Response {
    if method == Method::TRACE {
        let echoed = headers.iter().fold(String::new(), |mut out, (k, v)| {
            out.push_str(k.as_str());
            out.push_str(": ");
            out.push_str(v.to_str().unwrap_or(""));
            out.push('\n');
            out
        });
        return (StatusCode::OK, format!("TRACE / HTTP/1.1\n{echoed}")).into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

fn spec() -> Value {
    let secured = json!([{"bearer": []}]);
    json!({
        "openapi": "3.0.3",
        "info": {"title": "weak", "version": "1"},
        "paths": {
            "/health": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/login": {"post": {"responses": {"200": {"description": "token"}}}},
            "/users/me": {"get": {"security": secured, "responses": {}}},
            "/items": {"get": {"security": secured, "parameters": [{"name": "limit", "in": "query"}], "responses": {}}},
            "/reports/secret": {"get": {"security": secured, "responses": {}}},
        }
    })
}

async fn start(weak: Weaknesses) -> SocketAddr {
    let fixture = Fixture {
        weak,
        attempts: Arc::default(),
    };
    let app = Router::new()
        .route("/", any(root))
        .route("/health", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/openapi.json", get(|| async { axum::Json(spec()) }))
        .route(
            "/docs",
            get(|| async { axum::response::Html("<html><div id=\"swagger-ui\"></div></html>") }),
        )
        .route(
            "/.well-known/jwks.json",
            get(|| async {
                axum::Json(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": URL_SAFE_NO_PAD.encode(PUBLIC_X)}]}))
            }),
        )
        .route("/login", post(login))
        .route("/users/me", get(me))
        .route("/items", get(items))
        // Marked secured in the document, forgotten in the code.
        .route(
            "/reports/secret",
            get(|| async { axum::Json(json!({"revenue": 1_000_000})) }),
        )
        .layer(axum::middleware::from_fn_with_state(
            fixture.clone(),
            weak_headers,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(fixture);
    common::serve(app).await
}

fn args(addr: SocketAddr) -> AuditArgs {
    AuditArgs {
        logout_path: Some("/v1/auth/logout".into()),
        ..common::args(addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_fires_on_a_weak_api() {
    let addr = start(Weaknesses {
        reflect_origin: true,
        limit_by_forwarded_for: true,
        skip_signature: true,
    })
    .await;
    let report = audit(&args(addr)).await.unwrap();
    assert!(report.authenticated, "the login must have worked");

    // (check, severity, what the evidence must name)
    let expected = [
        (
            "RA-HDR-1",
            Severity::Low,
            "GET /health -> 200: missing X-Content-Type-Options",
        ),
        ("RA-HDR-2", Severity::Low, "-> 404: missing"),
        ("RA-TLS-1", Severity::Info, "loopback"),
        ("RA-BANNER-1", Severity::Low, "uvicorn/0.23.2"),
        (
            "RA-CORS-1",
            Severity::High,
            "Access-Control-Allow-Credentials: true",
        ),
        ("RA-CORS-2", Severity::High, "Origin: null"),
        ("RA-CORS-4", Severity::Medium, "allow-methods *"),
        ("RA-DOCS-1", Severity::Low, "GET /docs -> 200"),
        ("RA-DOCS-2", Severity::Low, "GET /openapi.json -> 200"),
        (
            "RA-AUTH-1",
            Severity::High,
            "GET /reports/secret without credentials -> 200",
        ),
        (
            "RA-AUTH-2",
            Severity::Low,
            "-> 404 but secured routes -> 401",
        ),
        ("RA-ERR-1", Severity::Medium, "a Python traceback"),
        ("RA-ENUM-1", Severity::Medium, "timing: median"),
        ("RA-RATE-2", Severity::High, "X-Forwarded-For: 203.0.113."),
        ("RA-JWT-1", Severity::High, "10080 minutes"),
        ("RA-JWT-2", Severity::Medium, "email"),
        ("RA-JWT-3", Severity::Critical, "alg \"none\""),
        ("RA-JWT-4", Severity::Critical, "empty signature"),
        (
            "RA-JWT-5",
            Severity::Critical,
            "under the original signature",
        ),
        ("RA-JWT-7", Severity::Critical, "`s****t` (length 6)"),
        ("RA-BODY-1", Severity::Medium, "2 MiB"),
        ("RA-PAGE-1", Severity::Medium, "150 records"),
        ("RA-TRACE-1", Severity::Low, "echoed"),
        (
            "RA-COOKIE-1",
            Severity::Medium,
            "`session` lacks Secure, HttpOnly, SameSite",
        ),
    ];
    for (id, severity, evidence) in expected {
        common::assert_fires(&report, id, severity, &[evidence]);
    }
    assert!(
        common::finding(&report, "RA-ENUM-1")
            .evidence
            .contains("body:"),
        "the bodies differ too"
    );
    assert!(report.requests_sent <= 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_weaknesses_fire_on_the_second_variant() {
    let addr = start(Weaknesses {
        reflect_origin: false,
        limit_by_forwarded_for: false,
        skip_signature: false,
    })
    .await;
    let report = audit(&args(addr)).await.unwrap();
    common::assert_fires(
        &report,
        "RA-CORS-3",
        Severity::Medium,
        &["Access-Control-Allow-Origin: *"],
    );
    common::assert_fires(
        &report,
        "RA-RATE-1",
        Severity::Medium,
        &["none was refused with 429"],
    );
    common::assert_fires(&report, "RA-JWT-6", Severity::Critical, &["PEM public key"]);
    common::assert_fires(
        &report,
        "RA-JWT-7",
        Severity::Critical,
        &["was accepted: GET /items -> 200"],
    );
    // Signatures are checked here, so the plain forgeries must not be reported.
    for id in ["RA-JWT-3", "RA-JWT-4", "RA-JWT-5", "RA-RATE-2", "RA-CORS-1"] {
        assert!(
            report.findings.iter().all(|f| f.id != id),
            "{id} is a false positive"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sarif_has_every_field_its_schema_requires() {
    let addr = start(Weaknesses {
        reflect_origin: true,
        limit_by_forwarded_for: true,
        skip_signature: true,
    })
    .await;
    let mut arguments = args(addr);
    arguments.max_requests = 40;
    let report = audit(&arguments).await.unwrap();
    assert!(
        report.notes.iter().any(|n| n.contains("--max-requests")),
        "a spent budget is reported: {:?}",
        report.notes
    );
    assert!(report.requests_sent <= 40);
    let sarif: Value = serde_json::from_str(&report.render(Format::Sarif)).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert!(sarif["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &sarif["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "rampart-audit");
    let rules = driver["rules"].as_array().unwrap();
    assert!(rules
        .iter()
        .all(|r| r["id"].is_string() && r["shortDescription"]["text"].is_string()));
    let results = run["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for result in results {
        assert!(result["message"]["text"].is_string());
        assert!(["error", "warning", "note", "none"].contains(&result["level"].as_str().unwrap()));
        let index = usize::try_from(result["ruleIndex"].as_u64().unwrap()).unwrap();
        assert_eq!(
            rules[index]["id"], result["ruleId"],
            "ruleIndex must point at its rule"
        );
        assert!(result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].is_string());
        assert!(result["properties"]["cwe"]
            .as_str()
            .unwrap()
            .starts_with("CWE-"));
        assert!(result["properties"]["owasp"]
            .as_str()
            .unwrap()
            .starts_with("API"));
    }
    let json: Value = serde_json::from_str(&report.render(Format::Json)).unwrap();
    assert_eq!(json["target"], format!("http://{addr}/"));
    for f in json["findings"].as_array().unwrap() {
        for field in [
            "id",
            "severity",
            "title",
            "evidence",
            "fix",
            "checklist",
            "cwe",
            "owasp",
        ] {
            assert!(f[field].is_string(), "finding without {field}: {f}");
        }
    }
}
