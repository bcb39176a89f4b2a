//! What reaches the log, in a test binary of its own: it installs a log subscriber for its
//! thread, and tracing caches whether a log statement is wanted per call site across threads,
//! so tests running beside it in one process could make its lines vanish (seen: 1 run in 6).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use http::{HeaderMap, Request};
use http_body_util::BodyExt;
use rampart::http::Hardening;
use rampart::{ApiError, Authenticator, SecureRouter};
use tower::ServiceExt;

struct Nobody;
impl Authenticator for Nobody {
    fn authenticate<'a>(&'a self, _headers: &'a HeaderMap) -> rampart::policy::AuthFuture<'a> {
        Box::pin(std::future::ready(Err(ApiError::Unauthorized)))
    }
}

async fn explode() -> &'static str {
    panic!("secret panic payload at /srv/app.rs")
}

async fn send(path: &str) -> (http::Response<()>, serde_json::Value) {
    let routes = SecureRouter::new()
        .public("/panic", get(explode))
        .public(
            "/internal",
            get(|| async {
                Err::<(), _>(ApiError::internal(std::io::Error::other(
                    "SELECT password_hash FROM users -- sqlx at /srv/store.rs",
                )))
            }),
        )
        .into_router(Arc::new(Nobody));
    let app = Hardening::default().apply(routes);
    let response = app
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (http::Response::from_parts(parts, ()), json)
}

/// Collects log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn internal_causes_reach_the_log_with_the_request_id_and_never_the_client() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    for path in ["/internal", "/panic"] {
        let (response, body) = send(path).await;
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = logs
            .lines()
            .find(|l| l.contains(&id))
            .unwrap_or_else(|| panic!("no log line for request {id}: {logs}"));
        let expected = if path == "/internal" {
            "SELECT password_hash"
        } else {
            "secret panic payload"
        };
        assert!(
            line.contains(expected),
            "cause missing from the log: {line}"
        );
        assert!(line.contains("\"status\":500"), "{line}");
        assert!(!body.to_string().contains(expected));
    }
}
