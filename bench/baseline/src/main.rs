//! The baselines for `bench/run`: a bare axum server with no security layers.
//!
//! - `GET /health` answers the same body rampart sends: the ratio measures everything rampart adds.
//! - `GET /health-with-headers` also sends rampart's security headers as static values: the
//!   ratio against it separates the cost of the header bytes from the cost of the layers' work.
//! - `GET /me` verifies an EdDSA access token with the public key from `BASELINE_KEYS_FILE`
//!   (rampart's keys file), `iss`/`aud`/`exp` checked, on every request, and answers its `sub`:
//!   the floor for rampart's authenticated `GET /v1/users/me`.
//! - `GET /items/{id}` does the work of rampart's `GET /v1/items/{id}` bare: the token checked
//!   from a cache of verified tokens (verified once, as above, on a miss), then one point read
//!   of the item by id and owner from the SQLite file `BASELINE_DB` (rampart's, read-only,
//!   opened on first use) with a prepared statement on the serving thread's own connection,
//!   the way rampart's SQLite store reads it, answered as JSON. The ratio against it is what
//!   the layers themselves cost on an item read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::Path;
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
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
fn verifier_from(path: &str) -> Option<Verifier> {
    let text = std::fs::read_to_string(path).ok()?;
    let keys: serde_json::Value = serde_json::from_str(&text).ok()?;
    let x = keys["keys"][0]["x"].as_str()?;
    let key = jsonwebtoken::DecodingKey::from_ed_components(x).ok()?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&["rampart"]);
    validation.set_audience(&["rampart"]);
    Some(Arc::new((key, validation)))
}

type Verifier = Arc<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>;

/// The `sub` of a bearer token, from the cache of verified tokens or verified now.
fn cached_subject(
    headers: &HeaderMap,
    verifier: Option<&Verifier>,
    cache: &Mutex<HashMap<String, String>>,
) -> Option<String> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(sub) = cache.get(token) {
        return Some(sub.clone());
    }
    let (key, validation) = verifier?.as_ref();
    let data = jsonwebtoken::decode::<serde_json::Value>(token, key, validation).ok()?;
    let sub = data.claims["sub"].as_str()?.to_owned();
    cache.insert(token.to_owned(), sub.clone());
    Some(sub)
}

thread_local! {
    /// Each serving thread's own read-only connection to `BASELINE_DB`, opened on first use.
    static ITEMS_DB: std::cell::RefCell<Option<rusqlite::Connection>> =
        const { std::cell::RefCell::new(None) };
}

/// The item `id` if `owner` owns it: one prepared point read on this thread's connection.
fn owned_item(path: &str, id: &str, owner: &str) -> Option<serde_json::Value> {
    ITEMS_DB.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = rusqlite::Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .ok();
        }
        let connection = slot.as_ref()?;
        let mut statement = connection
            .prepare_cached(
                "SELECT id, owner_id, title, body, created_at, updated_at FROM items
                 WHERE id = $1 AND owner_id = $2",
            )
            .ok()?;
        statement
            .query_row((id, owner), |row| {
                let text = |i: usize| row.get::<_, String>(i).unwrap_or_default();
                Ok(serde_json::json!({
                    "id": text(0), "owner_id": text(1), "title": text(2), "body": text(3),
                    "created_at": text(4), "updated_at": text(5),
                }))
            })
            .ok()
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("BASELINE_BIND").unwrap_or_else(|_| "127.0.0.1:8090".to_owned());
    let verifier = std::env::var("BASELINE_KEYS_FILE")
        .ok()
        .and_then(|p| verifier_from(&p));
    let items_db = std::env::var("BASELINE_DB").ok();
    let token_cache = Arc::new(Mutex::new(HashMap::new()));
    let item_verifier = verifier.clone();
    let item = get(move |Path(id): Path<String>, headers: HeaderMap| {
        let (verifier, cache, path) = (
            item_verifier.clone(),
            Arc::clone(&token_cache),
            items_db.clone(),
        );
        async move {
            let owner = cached_subject(&headers, verifier.as_ref(), &cache)
                .ok_or(StatusCode::UNAUTHORIZED)?;
            let path = path.ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
            owned_item(&path, &id, &owner)
                .map(Json)
                .ok_or(StatusCode::NOT_FOUND)
        }
    });
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
        .route("/me", me)
        .route("/items/{id}", item);
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
