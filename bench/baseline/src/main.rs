//! The baselines for `bench/run`: a bare axum server with no security layers.
//!
//! - `GET /health` answers the same body rampart sends: the ratio measures everything rampart adds.
//! - `GET /health-with-headers` also sends rampart's security headers as static values: the
//!   ratio against it separates the cost of the header bytes from the cost of the layers' work.
//! - `GET /me` verifies an EdDSA access token with the public key from `BASELINE_KEYS_FILE`
//!   (rampart's keys file), `iss`/`aud`/`exp` checked, on every request, and answers its `sub`:
//!   the floor for rampart's authenticated `GET /v1/users/me`.

use axum::http::header::{self, HeaderName, HeaderValue};
use axum::{routing::get, Json, Router};

type Health = Json<std::collections::BTreeMap<&'static str, &'static str>>;

fn health_body() -> Health {
    Json(std::collections::BTreeMap::from([("status", "ok")]))
}

async fn health_with_headers() -> impl axum::response::IntoResponse {
    let h = |name: HeaderName, value: &'static str| (name, HeaderValue::from_static(value));
    (
        [
            h(header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"),
            h(header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            h(header::X_FRAME_OPTIONS, "DENY"),
            h(header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
            h(header::REFERRER_POLICY, "no-referrer"),
            h(header::CACHE_CONTROL, "no-store"),
            h(
                HeaderName::from_static("permissions-policy"),
                "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
            ),
            h(HeaderName::from_static("x-request-id"), "01a20892-66e7-72bd-8ea3-a18e87f2bb1a"),
        ],
        health_body(),
    )
}

/// The public key of the first key in a rampart keys file.
fn verifier_from(
    path: &str,
) -> Option<std::sync::Arc<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>> {
    let text = std::fs::read_to_string(path).ok()?;
    let keys: serde_json::Value = serde_json::from_str(&text).ok()?;
    let x = keys["keys"][0]["x"].as_str()?;
    let key = jsonwebtoken::DecodingKey::from_ed_components(x).ok()?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&["rampart"]);
    validation.set_audience(&["rampart"]);
    Some(std::sync::Arc::new((key, validation)))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("BASELINE_BIND").unwrap_or_else(|_| "127.0.0.1:8090".to_owned());
    let verifier = std::env::var("BASELINE_KEYS_FILE")
        .ok()
        .and_then(|p| verifier_from(&p));
    let me = get(move |headers: axum::http::HeaderMap| {
        let verifier = verifier.clone();
        async move {
            let token = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            let claims = verifier
                .as_deref()
                .zip(token)
                .and_then(|((key, validation), token)| {
                    jsonwebtoken::decode::<serde_json::Value>(token, key, validation).ok()
                });
            match claims {
                Some(data) => Ok(Json(serde_json::json!({ "id": data.claims["sub"] }))),
                None => Err(axum::http::StatusCode::UNAUTHORIZED),
            }
        }
    });
    let app = Router::new()
        .route("/health", get(|| async { health_body() }))
        .route("/health-with-headers", get(health_with_headers))
        .route("/me", me);
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
