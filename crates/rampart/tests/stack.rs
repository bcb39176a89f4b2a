//! The whole hardening stack, attacked through `oneshot`: every status path a handler, an
//! extractor, the policy or a layer can produce carries the security headers, a request id and
//! a problem document that leaks nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use rampart::http::Hardening;
use rampart::settings::{CorsOrigins, CorsSettings, HttpLimits};
use rampart::{ApiError, Authenticator, CurrentUser, Json, Principal, Role, SecureRouter};
use serde::Deserialize;
use tower::ServiceExt;

struct TokenIsUser;
impl Authenticator for TokenIsUser {
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> rampart::policy::AuthFuture<'a> {
        let result = match headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            Some("Bearer good") => Ok(Principal {
                user_id: "u1".into(),
                session_id: "s1".into(),
                role: Role::User,
            }),
            _ => Err(ApiError::Unauthorized),
        };
        Box::pin(std::future::ready(result))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    title: String,
}

async fn explode() -> &'static str {
    panic!("secret panic payload at /srv/app.rs")
}

const LIMIT: usize = 64 * 1024;

fn app() -> Router {
    let routes =
        SecureRouter::new()
            .public(
                "/ok",
                get(|| async { Json(serde_json::json!({"ok": true})) }),
            )
            .public(
                "/notes",
                post(|Json(note): Json<Note>| async move {
                    Json(serde_json::json!({"title": note.title}))
                }),
            )
            .public("/panic", get(explode))
            .public(
                "/internal",
                get(|| async {
                    Err::<(), _>(ApiError::internal(std::io::Error::other(
                        "SELECT password_hash FROM users -- sqlx at /srv/store.rs",
                    )))
                }),
            )
            .public(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .authenticated(
                "/me",
                get(|CurrentUser(p): CurrentUser| async move { p.user_id }),
            );
    Hardening {
        limits: HttpLimits {
            body_limit: LIMIT,
            request_timeout: Duration::from_millis(300),
            body_timeout: Duration::from_millis(300),
            max_in_flight: 100,
            json_max_depth: 16,
        },
        cors: CorsSettings {
            origins: "https://app.example".parse().unwrap_or(CorsOrigins::None),
            credentials: false,
        },
        trusted_proxies: Vec::new(),
        forwarded_header: rampart::http::client_ip::ForwardedHeader::XForwardedFor,
        metrics: None,
        preflight_limit: None,
        json_log: None,
    }
    .apply_secured(routes, Arc::new(TokenIsUser), ())
}

async fn send(request: Request<Body>) -> (Response<()>, serde_json::Value) {
    let response = app().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (Response::from_parts(parts, ()), json)
}

fn get_req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn json_req(body: impl Into<Body>, content_type: &str) -> Request<Body> {
    Request::post("/notes")
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn assert_hardened(response: &Response<()>, what: &str) {
    let h = response.headers();
    let expected = [
        (
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ];
    for (name, value) in expected {
        assert_eq!(
            h.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{what}: {name}"
        );
    }
    assert!(
        h.get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .is_some_and(
                |v| v.contains("default-src 'none'") && v.contains("frame-ancestors 'none'")
            ),
        "{what}: csp"
    );
    assert!(
        h.contains_key("permissions-policy"),
        "{what}: permissions-policy"
    );
    assert!(h.contains_key("x-request-id"), "{what}: x-request-id");
    assert!(!h.contains_key("server"), "{what}: server banner");
}

fn assert_problem(response: &Response<()>, body: &serde_json::Value, status: u16, what: &str) {
    assert_eq!(response.status().as_u16(), status, "{what}: {body}");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json",
        "{what}"
    );
    assert_eq!(body["status"], status, "{what}: {body}");
    assert!(
        body["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{what}: {body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{what}: {body}"
    );
    assert_eq!(
        body["request_id"].as_str(),
        response.headers()["x-request-id"].to_str().ok(),
        "{what}: request_id must equal x-request-id"
    );
}

#[tokio::test]
async fn every_status_path_is_hardened() {
    let (ok, _) = send(get_req("/ok")).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_hardened(&ok, "200");

    let two_kib_over = vec![b'a'; LIMIT + 2048];
    let cases: Vec<(&str, Request<Body>, u16)> = vec![
        ("401 anonymous", get_req("/me"), 401),
        ("401 unknown path", get_req("/admin/secret"), 401),
        (
            "404 authenticated unknown path",
            Request::get("/nope")
                .header(header::AUTHORIZATION, "Bearer good")
                .body(Body::empty())
                .unwrap(),
            404,
        ),
        (
            "405",
            Request::delete("/ok").body(Body::empty()).unwrap(),
            405,
        ),
        (
            "413 declared",
            Request::post("/notes")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, two_kib_over.len())
                .body(Body::from(two_kib_over.clone()))
                .unwrap(),
            413,
        ),
        ("415", json_req(r#"{"title":"x"}"#, "text/plain"), 415),
        (
            "400 malformed",
            json_req(r#"{"title":"#, "application/json"),
            400,
        ),
        (
            "422 unknown field",
            json_req(r#"{"title":"x","role":"admin"}"#, "application/json"),
            422,
        ),
        ("500 internal", get_req("/internal"), 500),
        ("500 panic", get_req("/panic"), 500),
        ("408 slow handler", get_req("/slow"), 408),
    ];
    for (what, request, status) in cases {
        let (response, body) = send(request).await;
        assert_problem(&response, &body, status, what);
        if what == "413 declared" {
            assert_eq!(
                response.headers()[header::CONNECTION],
                "close",
                "the unread body must end the connection"
            );
        }
        assert_hardened(&response, what);
        let text = body.to_string();
        for leak in ["SELECT", "password_hash", "/srv", "sqlx", "panic payload"] {
            assert!(!text.contains(leak), "{what} leaked {leak}: {text}");
        }
    }
}

#[tokio::test]
async fn undeclared_oversized_body_is_cut_off_at_the_limit() {
    // No Content-Length: the body arrives as a stream and must be stopped at the limit.
    let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 4096])));
    let request = Request::post("/notes")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let (response, body) = send(request).await;
    assert_problem(&response, &body, 413, "streamed");
}

#[tokio::test]
async fn hostile_json_is_refused() {
    // 17 levels against the stack's cap of 16: below serde_json's own limit of 128.
    let deep = format!("{{\"title\":{}1{}}}", "[".repeat(16), "]".repeat(16));
    let (response, problem) = send(json_req(deep.clone(), "application/json")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("nested deeper than 16")),
        "{problem}"
    );
    let cases: Vec<(&str, Vec<u8>, &str, u16)> = vec![
        ("deep nesting", deep.into_bytes(), "application/json", 400),
        (
            "invalid utf-8",
            b"{\"title\":\"\xff\xfe\"}".to_vec(),
            "application/json",
            400,
        ),
        (
            "wrong type",
            br#"{"title":7}"#.to_vec(),
            "application/json",
            422,
        ),
        ("missing field", b"{}".to_vec(), "application/json", 422),
        (
            "form body",
            b"title=x".to_vec(),
            "application/x-www-form-urlencoded",
            415,
        ),
        ("empty", Vec::new(), "application/json", 400),
    ];
    for (what, body, content_type, status) in cases {
        let (response, problem) = send(json_req(body, content_type)).await;
        assert_problem(&response, &problem, status, what);
    }
    let (response, problem) = send(json_req(
        r#"{"title":"x","owner_id":"someone"}"#,
        "application/json",
    ))
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "owner_id", "{problem}");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("owner_id")),
        "{problem}"
    );
}

#[tokio::test]
async fn cors_allows_only_listed_origins() {
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/me")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap()
    };
    // An OPTIONS that is not a preflight meets default deny like any other method.
    let (plain_options, _) = send(
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/me")
            .header(header::ORIGIN, "https://app.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(plain_options.status(), StatusCode::UNAUTHORIZED);

    let (allowed, _) = send(preflight("https://app.example")).await;
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    assert_hardened(&allowed, "preflight");

    for evil in [
        "https://evil.example",
        "null",
        "https://app.example.evil.example",
        "http://app.example",
    ] {
        let (refused, _) = send(preflight(evil)).await;
        assert!(
            !refused
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "{evil} allowed"
        );
    }
    let (simple, _) = send(
        Request::get("/ok")
            .header(header::ORIGIN, "https://evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!simple
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn request_ids_are_echoed_only_when_sane() {
    let with_id = |id: &str| {
        Request::get("/ok")
            .header("x-request-id", id)
            .body(Body::empty())
            .unwrap()
    };
    let (response, _) = send(with_id("client-trace-123")).await;
    assert_eq!(response.headers()["x-request-id"], "client-trace-123");
    for hostile in ["<script>alert(1)</script>", "a b", &"x".repeat(200)] {
        let (response, _) = send(with_id(hostile)).await;
        let got = response.headers()["x-request-id"]
            .to_str()
            .unwrap_or_default();
        assert_ne!(got, hostile);
        assert_eq!(got.len(), 36, "a generated UUID replaces {hostile:?}");
    }
}

#[tokio::test]
async fn metrics_count_route_templates_never_the_paths_clients_send() {
    let mut registry = prometheus_client::registry::Registry::with_prefix("rampart");
    let metrics = rampart::metrics::HttpMetrics::register(&mut registry);
    let routes = SecureRouter::new()
        .public(
            "/notes/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move { id }),
        )
        .into_router(Arc::new(TokenIsUser));
    let app = Hardening::default().with_metrics(metrics).apply(routes);
    for path in [
        "/notes/alice@example.com",
        "/notes/8f14e45f-ceea-467f-a0e6-6f1e3b7a5e21",
        "/no/such/place/bob",
    ] {
        let request = Request::builder()
            .uri(path)
            .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [10, 0, 0, 7],
                5000,
            ))))
            .body(Body::empty())
            .unwrap();
        let _ = app.clone().oneshot(request).await.unwrap();
    }
    // A refusal on arrival, before any handler, is still counted under the route it was for.
    let oversized = Request::post("/notes/carol")
        .header(header::CONTENT_LENGTH, "99999999")
        .extension(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [10, 0, 0, 7],
            5000,
        ))))
        .body(Body::empty())
        .unwrap();
    let refused = app.clone().oneshot(oversized).await.unwrap();
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = rampart::metrics::encode(&registry).unwrap();
    assert!(
        text.contains(
            r#"rampart_http_requests_total{route="/notes/{id}",method="POST",status="4xx"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"rampart_http_requests_total{route="/notes/{id}",method="GET",status="2xx"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"rampart_http_requests_total{route="unmatched",method="GET",status="4xx"} 1"#
        ),
        "{text}"
    );
    for leaked in ["alice", "8f14e45f", "bob", "carol", "10.0.0.7"] {
        assert!(!text.contains(leaked), "{leaked} in {text}");
    }
}

/// The outside review's finding: axum's method router put `Allow` on the 401 of a wrong method
/// at a real path (and on CORS preflights there), so anonymous callers could map the routes.
#[tokio::test]
async fn a_wrong_method_tells_an_anonymous_caller_nothing_about_the_path() {
    let real = send(
        Request::builder()
            .method(Method::PUT)
            .uri("/me")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let made_up = send(
        Request::builder()
            .method(Method::PUT)
            .uri("/no-such-path")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(real.0.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(made_up.0.status(), StatusCode::UNAUTHORIZED);
    assert!(!real.0.headers().contains_key(header::ALLOW));
    // In the same order too: the order on the wire would otherwise tell them apart (an
    // outside review found `Allow`'s removal moving the last header into its place).
    let names = |r: &Response<()>| {
        r.headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&real.0), names(&made_up.0));
    assert_eq!(real.1["detail"], made_up.1["detail"]);

    for path in ["/me", "/no-such-path", "/ok"] {
        let preflight = send(
            Request::builder()
                .method(Method::OPTIONS)
                .uri(path)
                .header(header::ORIGIN, "https://evil.example")
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "DELETE")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert!(
            !preflight.0.headers().contains_key(header::ALLOW),
            "{path}: {:?}",
            preflight.0.headers()
        );
    }

    // A caller the policy admitted still learns the methods of a path it may use.
    let wrong_method = send(
        Request::builder()
            .method(Method::DELETE)
            .uri("/me")
            .header(header::AUTHORIZATION, "Bearer good")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(wrong_method.0.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method.0.headers().contains_key(header::ALLOW));
}

/// A body whose bytes never come.
fn stalled_body() -> Body {
    Body::from_stream(futures_util::stream::pending::<
        Result<bytes::Bytes, std::io::Error>,
    >())
}

/// The gate comes before the body: a caller it refuses is answered at once, without a byte of
/// its body read (so it spends none of the budget admitted callers' bodies need), while an
/// admitted caller's body still has to arrive within the body timeout.
#[tokio::test]
async fn a_caller_the_gate_refuses_is_answered_before_its_body_is_read() {
    for path in ["/me", "/nowhere"] {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, "100")
            .body(stalled_body())
            .unwrap();
        let response = tokio::time::timeout(Duration::from_millis(200), app().oneshot(request))
            .await
            .unwrap_or_else(|_| panic!("{path}: waited for a body the gate should not read"))
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(response.headers().contains_key("x-request-id"));
    }
    let admitted = Request::post("/notes")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "100")
        .body(stalled_body())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), app().oneshot(admitted))
        .await
        .expect("the body timeout answers")
        .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
}

/// Refuses requests to `/notes` that carry `x-deny`.
struct DenyMarked;

impl rampart::policy::Admission for DenyMarked {
    fn applies(&self, request: &axum::extract::Request) -> bool {
        request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .is_some_and(|template| template.as_str() == "/notes")
    }

    fn admit<'a>(
        &'a self,
        request: &'a mut axum::extract::Request,
    ) -> rampart::policy::AdmissionFuture<'a> {
        let denied = request.headers().contains_key("x-deny");
        Box::pin(std::future::ready(if denied {
            Err(axum::response::IntoResponse::into_response(
                ApiError::Forbidden,
            ))
        } else {
            Ok(())
        }))
    }
}

/// An app's admission runs in the gate, before the body: what it refuses is answered at once
/// (hardened like any answer), and what it admits still has its body received.
#[tokio::test]
async fn an_admission_refuses_before_the_body_and_admits_the_rest() {
    let routes = SecureRouter::new()
        .public(
            "/notes",
            post(|Json(note): Json<Note>| async move { note.title }),
        )
        .admit_before_body(Arc::new(DenyMarked));
    let app = Hardening::default().apply_secured(routes, Arc::new(TokenIsUser), ());
    let refused = Request::post("/notes")
        .header("x-deny", "1")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "100")
        .body(stalled_body())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_millis(200), app.clone().oneshot(refused))
        .await
        .expect("refused without waiting for the body")
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().contains_key("x-request-id"));
    let admitted = Request::post("/notes")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"title":"kept"}"#))
        .unwrap();
    let response = app.oneshot(admitted).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"kept");
}

/// Counts the requests it admits.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicUsize);

impl rampart::policy::Admission for Counting {
    fn applies(&self, _request: &axum::extract::Request) -> bool {
        true
    }

    fn admit<'a>(
        &'a self,
        _request: &'a mut axum::extract::Request,
    ) -> rampart::policy::AdmissionFuture<'a> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[tokio::test]
async fn admissions_run_in_the_order_added_and_the_first_refusal_answers() {
    let counting = Arc::new(Counting::default());
    let routes = SecureRouter::new()
        .public("/notes", post(|| async { "kept" }))
        .admit_before_body(Arc::new(DenyMarked))
        .admit_before_body(counting.clone());
    let app = Hardening::default().apply_secured(routes, Arc::new(TokenIsUser), ());
    let refused = Request::post("/notes")
        .header("x-deny", "1")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(refused).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    let admitted = Request::post("/notes").body(Body::empty()).unwrap();
    let response = app.oneshot(admitted).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(counting.0.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Decides from memory: `Bearer user` and `Bearer admin` are callers, anything else is refused;
/// counts what had to be awaited and the admin-route refusals it was told of.
#[derive(Default)]
struct InMemory {
    awaited: std::sync::atomic::AtomicUsize,
    denied: std::sync::atomic::AtomicUsize,
}

impl InMemory {
    fn decide(headers: &HeaderMap) -> Result<Principal, ApiError> {
        let role = match headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            Some("Bearer user") => Role::User,
            Some("Bearer admin") => Role::Admin,
            _ => return Err(ApiError::Unauthorized),
        };
        Ok(Principal {
            user_id: "u1".into(),
            session_id: "s1".into(),
            role,
        })
    }
}

impl Authenticator for InMemory {
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> rampart::policy::AuthFuture<'a> {
        self.awaited
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(std::future::ready(Self::decide(headers)))
    }

    fn authenticate_at_once(&self, headers: &HeaderMap) -> Option<Result<Principal, ApiError>> {
        Some(Self::decide(headers))
    }

    fn recheck(
        &self,
        principal: Principal,
        _charged: rampart::policy::Charged,
    ) -> rampart::policy::AuthFuture<'_> {
        self.awaited
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(std::future::ready(Ok(principal)))
    }

    fn recheck_at_once(
        &self,
        _principal: &mut Principal,
        _charged: rampart::policy::Charged,
    ) -> Option<Result<(), ApiError>> {
        Some(Ok(()))
    }

    fn denied<'a>(
        &'a self,
        _principal: &'a Principal,
        _request: &'a http::request::Parts,
    ) -> rampart::policy::DeniedFuture<'a> {
        self.denied
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    }
}

/// An authenticator that can decide from memory is not awaited, and its decisions hold as
/// they do awaited: a caller admitted with the right role, a bad token 401, a user on an admin
/// route 403 with the refusal reported.
#[tokio::test]
async fn the_gate_decides_at_once_when_the_authenticator_can() {
    let authenticator = Arc::new(InMemory::default());
    let routes = SecureRouter::new()
        .authenticated(
            "/me",
            get(|CurrentUser(p): CurrentUser| async move { format!("{:?}", p.role) }),
        )
        .admin("/admin", get(|| async { "admin" }));
    let app = Hardening::default().apply_secured(routes, authenticator.clone(), ());
    let call = |path: &str, token: &str| {
        let request = Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request)
    };
    let me = call("/me", "user").await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let body = me.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"User");
    assert_eq!(
        call("/admin", "admin").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        call("/me", "forged").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("/nowhere", "user").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call("/admin", "user").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let count = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(count(&authenticator.denied), 1, "the 403 is reported");
    // Only the admin refusal waited (to report it), and it rechecked the caller first.
    assert_eq!(count(&authenticator.awaited), 1);
}
