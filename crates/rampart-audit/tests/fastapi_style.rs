//! The auditor against an API shaped like FastAPI's full-stack template as teams run it: the
//! routes under `/api/v1`, the document at `/api/v1/openapi.json` (named by the Swagger UI page
//! at `/docs`, not at the root), an OAuth2 password-form login answering 400 with one message
//! for every failure, HS256 tokens for eight days signed with the template's `changethis`, no
//! login limit and no body limit, items readable only by their owner (403 for another's).
//! Only the credentials are given: the run must find the document, the form login and the
//! weak secret, and must not call the owner check a BOLA. A hardened twin (random secret,
//! 15-minute tokens, a login limit, a body limit, security headers) gives nothing at medium or
//! above.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rampart_audit::{audit, AuditArgs, Severity};
use serde_json::{json, Value};

const USERS: [(&str, &str, &str); 2] = [
    (
        "4a944f70-fb57-4876-bcbc-17a17ae04548",
        "user1@example.com",
        "user1Pass!23",
    ),
    (
        "4684bb77-fc5a-4ade-98c8-8ac957c22f01",
        "user2@example.com",
        "user2Pass!23",
    ),
];
const ITEMS: [(&str, &str); 2] = [
    (
        "941aeeef-a036-49fb-a14e-660188c3e795",
        "4a944f70-fb57-4876-bcbc-17a17ae04548",
    ),
    (
        "8b1449f8-39ce-45a7-9a1b-b17312ea0408",
        "4684bb77-fc5a-4ade-98c8-8ac957c22f01",
    ),
];

#[derive(Clone)]
struct Api {
    hardened: bool,
    secret: Vec<u8>,
    lifetime: u64,
    /// Failed logins in the current one-second window (the twin's limit).
    failures: Arc<Mutex<(u32, Option<Instant>)>>,
}

impl Api {
    fn token(&self, sub: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
        let claims = URL_SAFE_NO_PAD
            .encode(json!({"exp": common::now() + self.lifetime, "sub": sub}).to_string());
        let input = format!("{header}.{claims}");
        format!("{input}.{}", common::hs256(&input, &self.secret))
    }

    /// PyJWT as the template calls it: HS256 only, signature and `exp` required.
    fn caller(&self, headers: &HeaderMap) -> Option<String> {
        let token = common::bearer(headers)?;
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        if header["alg"] != "HS256" || header.get("kid").is_some() || header.get("jwk").is_some() {
            return None;
        }
        if common::hs256(&format!("{h}.{c}"), &self.secret) != s {
            return None;
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
        (claims["exp"].as_u64()? > common::now())
            .then(|| claims["sub"].as_str().map(str::to_owned))?
    }

    fn finish(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        if self.hardened {
            common::harden(headers);
        } else {
            headers.insert("server", "uvicorn".parse().unwrap());
        }
        response
    }

    fn detail(&self, status: StatusCode, detail: &str) -> Response {
        self.finish((status, Json(json!({"detail": detail}))).into_response())
    }
}

fn spec() -> Value {
    let secured = json!([{"OAuth2PasswordBearer": []}]);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Full Stack FastAPI Project", "version": "0.1.0"},
        "paths": {
            "/api/v1/login/access-token": {"post": {
                "requestBody": {"content": {"application/x-www-form-urlencoded": {
                    "schema": {"$ref": "#/components/schemas/Body_login-login_access_token"}}}}}},
            "/api/v1/users/me": {"get": {"security": secured}},
            "/api/v1/items/": {"get": {"security": secured, "parameters": [
                {"name": "skip", "in": "query", "schema": {"type": "integer"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer"}}]}},
            "/api/v1/items/{id}": {"get": {"security": secured, "parameters": [
                {"name": "id", "in": "path", "required": true,
                 "schema": {"type": "string", "format": "uuid"}}]}},
            "/api/v1/utils/health-check/": {"get": {}},
        },
        "components": {
            "schemas": {"Body_login-login_access_token": {"properties": {
                "grant_type": {}, "username": {}, "password": {}, "scope": {}}}},
            "securitySchemes": {"OAuth2PasswordBearer": {"type": "oauth2", "flows": {
                "password": {"tokenUrl": "/api/v1/login/access-token", "scopes": {}}}}},
        }
    })
}

const SWAGGER_UI: &str = "<!DOCTYPE html><html><head><title>Full Stack FastAPI Project - Swagger UI</title></head><body>\
<div id=\"swagger-ui\"></div><script>const ui = SwaggerUIBundle({\n        url: '/api/v1/openapi.json',\n\"dom_id\": \"#swagger-ui\",\n\
oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect',\n})</script></body></html>";

async fn login(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    if api.hardened && body.len() > 64 * 1024 {
        return api.detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    }
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (Some(email), Some(password)) = (field("username"), field("password")) else {
        return api.detail(StatusCode::UNPROCESSABLE_ENTITY, "Field required");
    };
    if let Some((id, _, _)) = USERS.iter().find(|(_, e, p)| *e == email && *p == password) {
        return api.finish(
            Json(json!({"access_token": api.token(id), "token_type": "bearer"})).into_response(),
        );
    }
    if api.hardened {
        let mut failures = api.failures.lock().unwrap();
        let at = Instant::now();
        if failures
            .1
            .is_none_or(|start| at.duration_since(start).as_secs() >= 1)
        {
            *failures = (0, Some(at));
        }
        failures.0 += 1;
        if failures.0 > 5 {
            let mut refused = api.detail(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            refused
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
            return refused;
        }
    }
    api.detail(StatusCode::BAD_REQUEST, "Incorrect email or password")
}

async fn me(State(api): State<Api>, headers: HeaderMap) -> Response {
    let Some(id) = api.caller(&headers) else {
        return api.detail(StatusCode::FORBIDDEN, "Could not validate credentials");
    };
    let email = USERS.iter().find(|(u, _, _)| *u == id).map_or("", |u| u.1);
    api.finish(Json(json!({"id": id, "email": email, "is_active": true})).into_response())
}

async fn items(State(api): State<Api>, headers: HeaderMap) -> Response {
    let Some(id) = api.caller(&headers) else {
        return api.detail(StatusCode::FORBIDDEN, "Could not validate credentials");
    };
    let data: Vec<Value> = ITEMS
        .iter()
        .filter(|(_, owner)| *owner == id)
        .map(|(item, owner)| json!({"id": item, "owner_id": owner, "title": "private item"}))
        .collect();
    api.finish(Json(json!({"data": data, "count": data.len()})).into_response())
}

async fn item(State(api): State<Api>, Path(item): Path<String>, headers: HeaderMap) -> Response {
    let Some(caller) = api.caller(&headers) else {
        return api.detail(StatusCode::FORBIDDEN, "Could not validate credentials");
    };
    if uuid_like(&item).is_none() {
        return api.finish(
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(
                    json!({"detail": [{"type": "uuid_parsing", "loc": ["path", "id"],
                    "msg": "Input should be a valid UUID"}]}),
                ),
            )
                .into_response(),
        );
    }
    match ITEMS.iter().find(|(i, _)| *i == item) {
        Some((i, owner)) if *owner == caller => api.finish(
            Json(json!({"id": i, "owner_id": owner, "title": "private item"})).into_response(),
        ),
        Some(_) => api.detail(StatusCode::FORBIDDEN, "Not enough permissions"),
        None => api.detail(StatusCode::NOT_FOUND, "Item not found"),
    }
}

fn uuid_like(text: &str) -> Option<()> {
    (text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(())
}

async fn serve(hardened: bool) -> std::net::SocketAddr {
    let api = Api {
        hardened,
        secret: if hardened {
            (0..64).map(|_| rand_byte()).collect()
        } else {
            b"changethis".to_vec()
        },
        lifetime: if hardened { 15 * 60 } else { 8 * 24 * 3600 },
        failures: Arc::default(),
    };
    let app = Router::new()
        .route("/docs", get(|| async { Html(SWAGGER_UI) }))
        .route("/api/v1/openapi.json", get(|| async { Json(spec()) }))
        .route("/api/v1/login/access-token", post(login))
        .route("/api/v1/users/me", get(me))
        .route("/api/v1/items/", get(items))
        .route("/api/v1/items/{id}", get(item))
        .route("/api/v1/utils/health-check/", get(|| async { Json(true) }))
        .fallback({
            let api = api.clone();
            move || async move { api.detail(StatusCode::NOT_FOUND, "Not Found") }
        })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(api);
    common::serve(app).await
}

/// A random byte for the twin's secret (the fixture's own, not the auditor's randomness).
fn rand_byte() -> u8 {
    let mut byte = [0u8];
    getrandom::fill(&mut byte).unwrap();
    byte[0]
}

fn args(addr: std::net::SocketAddr) -> AuditArgs {
    common::two_accounts(
        addr,
        ("user1@example.com", "user1Pass!23"),
        ("user2@example.com", "user2Pass!23"),
    )
}

#[tokio::test]
async fn a_fastapi_template_api_is_found_under_its_prefix_and_its_flaws_reported() {
    let addr = serve(false).await;
    let report = audit(&args(addr)).await.unwrap();
    assert!(report.logged_in, "{:?}", report.notes);
    assert!(
        report
            .token_route
            .as_deref()
            .is_some_and(|r| r.starts_with("/api/v1/")),
        "the token is proved on a route under the prefix: {:?}",
        report.token_route
    );
    common::assert_fires(&report, "RA-DOCS-1", Severity::Low, &["GET /docs"]);
    common::assert_fires(
        &report,
        "RA-DOCS-2",
        Severity::Low,
        &["GET /api/v1/openapi.json"],
    );
    common::assert_fires(
        &report,
        "RA-JWT-7",
        Severity::Critical,
        &["c********s", "accepted"],
    );
    common::assert_fires(&report, "RA-JWT-1", Severity::High, &["minutes"]);
    common::assert_fires(
        &report,
        "RA-RATE-1",
        Severity::Medium,
        &["POST /api/v1/login/access-token"],
    );
    common::assert_fires(
        &report,
        "RA-BODY-1",
        Severity::Medium,
        &["form body", "Incorrect email or password"],
    );
    common::assert_fires(&report, "RA-BANNER-1", Severity::Info, &["uvicorn"]);
    // The template's owner check holds (403 for another's item), and its one login message
    // tells no one which accounts exist.
    for absent in [
        "RA-BOLA-1",
        "RA-ENUM-1",
        "RA-SQL-1",
        "RA-ERR-2",
        "RA-DATA-1",
    ] {
        assert!(
            report.findings.iter().all(|f| f.id != absent),
            "{absent}: {:#?}",
            report.findings
        );
    }
    assert!(report.failed());
}

#[tokio::test]
async fn its_hardened_twin_gives_nothing_at_medium_or_above() {
    let addr = serve(true).await;
    let report = audit(&args(addr)).await.unwrap();
    common::assert_nothing_at_medium_or_above(&report);
}
