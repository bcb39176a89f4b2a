//! Each layer of the hardening stack taken alone, on a plain axum router with no other rampart
//! layer: what an app that adopts one of them at a time relies on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http::{header, StatusCode};
use http_body_util::BodyExt;
use rampart::http::client_ip::ForwardedHeader;
use rampart::http::{
    BodyLimitLayer, BodyLimits, ClientIp, ClientIpConfig, ClientIpLayer, LoadShedLayer,
    RequestIdLayer, RequestIds, SecurityHeadersLayer, TimeoutLayer,
};
use rampart::metrics::{HttpMetrics, HttpMetricsLayer};
use tower::ServiceExt;

const PEER: &str = "198.51.100.7:40000";

/// The peer as `rampart::server::serve` records it on each request.
fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn body_json(response: axum::response::Response) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn security_headers_alone_fill_every_response_and_strip_banners() {
    let app = Router::new()
        .route(
            "/",
            get(|| async { ([(header::SERVER, "gunicorn/20.1")], "hello") }),
        )
        .layer(SecurityHeadersLayer);
    for path in ["/", "/missing"] {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let h = response.headers();
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(h[header::CACHE_CONTROL], "no-store", "{path}");
        assert!(h.contains_key(header::STRICT_TRANSPORT_SECURITY), "{path}");
        assert!(!h.contains_key(header::SERVER), "{path}: banner kept");
    }
}

#[tokio::test]
async fn request_ids_alone_echo_sane_ids_and_finish_bare_errors_as_problems() {
    let app = Router::new()
        .route(
            "/id",
            get(|Extension(ids): Extension<RequestIds>| async move {
                ids.server.to_str().unwrap().to_owned()
            }),
        )
        .layer(RequestIdLayer::new());

    let sent = Request::get("/id")
        .header("x-request-id", "trace-42")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(sent).await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42");
    let server_id = body_text(response).await;
    assert_ne!(server_id, "trace-42", "the server files under its own id");

    // A hostile id is replaced; axum's bare 405 becomes a problem document with the id.
    let hostile = Request::post("/id")
        .header("x-request-id", "a\"b<script>")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(hostile).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(id, "a\"b<script>");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem = body_json(response).await;
    assert_eq!(problem["status"], 405);
    assert_eq!(problem["request_id"], id.as_str());
}

#[tokio::test]
async fn client_ip_alone_ignores_forwarding_from_untrusted_peers_and_follows_trusted_ones() {
    let handler = get(|Extension(ClientIp(ip)): Extension<ClientIp>| async move { ip.to_string() });
    let forwarded = || {
        Request::get("/")
            .header("x-forwarded-for", "203.0.113.9")
            .body(Body::empty())
            .unwrap()
    };
    let untrusted = Router::new()
        .route("/", handler.clone())
        .layer(ClientIpLayer::new(ClientIpConfig::new(
            Vec::new(),
            ForwardedHeader::XForwardedFor,
        )))
        .layer(Extension(ConnectInfo(peer())));
    let response = untrusted.oneshot(forwarded()).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, "198.51.100.7", "a spoofed header moved the key");

    let behind_proxy = Router::new()
        .route("/", handler)
        .layer(ClientIpLayer::new(ClientIpConfig::new(
            vec!["198.51.100.0/24".parse().unwrap()],
            ForwardedHeader::XForwardedFor,
        )))
        .layer(Extension(ConnectInfo(peer())));
    let response = behind_proxy.oneshot(forwarded()).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, "203.0.113.9");
}

/// A route answering the length of the body it got, behind the body limit alone.
fn body_length_app(max_bytes: usize, receive_timeout: Duration) -> Router {
    Router::new()
        .route(
            "/",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .layer(BodyLimitLayer::new(BodyLimits {
            max_bytes,
            receive_timeout,
        }))
}

#[tokio::test]
async fn body_limit_alone_refuses_declared_and_undeclared_oversize_bodies() {
    let app = body_length_app(1024, Duration::from_secs(2));

    let declared = Request::post("/")
        .header(header::CONTENT_LENGTH, "4096")
        .body(Body::from(vec![b'a'; 4096]))
        .unwrap();
    let response = app.clone().oneshot(declared).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.headers()[header::CONNECTION], "close");

    // No declared length: a stream of chunks is cut off at the limit, not buffered whole.
    let chunks = futures_util::stream::iter(
        (0..64).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'a'; 512]))),
    );
    let streamed = Request::post("/").body(Body::from_stream(chunks)).unwrap();
    let response = app.clone().oneshot(streamed).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let fits = Request::post("/")
        .body(Body::from(vec![b'a'; 1000]))
        .unwrap();
    let response = app.oneshot(fits).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, "1000");
}

#[tokio::test]
async fn body_limit_alone_times_out_a_body_that_never_finishes() {
    let app = body_length_app(1024, Duration::from_millis(200));
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
    sender.send(Ok("a".into())).await.unwrap();
    let trickle = Request::post("/")
        .body(Body::from_stream(tokio_stream_of(receiver)))
        .unwrap();
    let response = app.oneshot(trickle).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    drop(sender);
}

fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test]
async fn load_shedding_alone_answers_503_past_the_cap_and_gives_slots_back() {
    let (entered, mut wait_entered) = tokio::sync::mpsc::channel::<()>(8);
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = std::sync::Arc::clone(&release);
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let (entered, held) = (entered.clone(), std::sync::Arc::clone(&held));
                async move {
                    let _ = entered.send(()).await;
                    held.notified().await;
                    "done"
                }
            }),
        )
        .layer(LoadShedLayer::new(1))
        .layer(Extension(ConnectInfo(peer())));

    let first = tokio::spawn(
        app.clone()
            .oneshot(Request::get("/").body(Body::empty()).unwrap()),
    );
    wait_entered.recv().await.unwrap();
    let second = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers().contains_key(header::RETRY_AFTER));

    release.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    // The slot came back with the answer.
    let third = tokio::spawn(app.oneshot(Request::get("/").body(Body::empty()).unwrap()));
    wait_entered.recv().await.unwrap();
    release.notify_one();
    assert_eq!(third.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// Sets its flag when dropped: tells whether a handler's future was dropped.
struct SetOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn the_timeout_alone_answers_408_and_drops_the_handler() {
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&dropped);
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let guard = SetOnDrop(std::sync::Arc::clone(&flag));
                async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(guard);
                    "late"
                }
            }),
        )
        .layer(TimeoutLayer::new(Duration::from_millis(100)));
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn metrics_alone_count_route_templates() {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = HttpMetrics::register(&mut registry);
    let app = Router::new()
        .route("/items/{id}", get(|| async { "item" }))
        .layer(HttpMetricsLayer::new(metrics));
    for path in ["/items/1", "/items/2", "/items/secret-name"] {
        app.clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(r#"http_requests_total{route="/items/{id}",method="GET",status="2xx"} 3"#),
        "{text}"
    );
    assert!(!text.contains("secret-name"));
}

#[tokio::test]
async fn the_layers_compose_without_the_hardening_stack_and_the_context_extractor_sees_them() {
    let app =
        Router::new()
            .route(
                "/who",
                get(|context: rampart::http::RequestContext| async move {
                    context.client_ip.to_string()
                }),
            )
            .layer(ClientIpLayer::new(ClientIpConfig::new(
                Vec::new(),
                ForwardedHeader::XForwardedFor,
            )))
            .layer(RequestIdLayer::new())
            .layer(Extension(ConnectInfo(peer())));
    let response = app
        .clone()
        .oneshot(Request::get("/who").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, peer().ip().to_string());

    // Without the layers the extractor fails closed, as a problem document, naming nothing
    // internal to the client.
    let bare = Router::new().route(
        "/who",
        get(
            |context: rampart::http::RequestContext| async move { context.request_id().to_owned() },
        ),
    );
    let response = bare
        .oneshot(Request::get("/who").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let text = body_text(response).await;
    assert!(!text.contains("Layer"), "{text}");
}

#[tokio::test]
async fn the_client_limit_alone_charges_each_address_its_own_budget() {
    use rampart::limit::{ClientLimit, ClientLimitLayer, Limiter, Policy, Quota};
    let policy = Policy::new(
        "per-client",
        Quota::new(3, Duration::from_secs(60)).unwrap(),
    )
    .unwrap();
    let limited = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(ClientLimitLayer::new(ClientLimit::new(
            Limiter::in_memory(),
            policy,
        )))
        .layer(ClientIpLayer::new(ClientIpConfig::new(
            Vec::new(),
            ForwardedHeader::XForwardedFor,
        )))
        .layer(RequestIdLayer::new());
    let from = |peer: &str| {
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        request
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = limited.clone().oneshot(from(PEER)).await.unwrap();
        assert!(response.headers().contains_key("ratelimit-policy"));
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // A forged forwarding header from an untrusted peer does not buy a new budget.
    let mut spoofed = from(PEER);
    spoofed
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.50".parse().unwrap());
    let response = limited.clone().oneshot(spoofed).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    // Another address has its own.
    let response = limited.oneshot(from("192.0.2.1:1234")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
