//! The baseline for `bench/run`: a bare axum server with no security layers, answering
//! `GET /health` with the same body rampart sends, so the ratio measures only what the layers cost.

use axum::{routing::get, Json, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::var("BASELINE_BIND").unwrap_or_else(|_| "127.0.0.1:8090".to_owned());
    let app = Router::new().route("/health", get(|| async { Json(serde_json_status()) }));
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}

fn serde_json_status() -> std::collections::BTreeMap<&'static str, &'static str> {
    std::collections::BTreeMap::from([("status", "ok")])
}
