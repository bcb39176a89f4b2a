//! `notes`: serves the example app (see the crate's `lib.rs`).
//!
//! ```sh
//! key=$(head -c 32 /dev/urandom | base64)
//! NOTES_API_KEYS="alice:user:$(printf %s "$key" | sha256sum | cut -d' ' -f1)" cargo run -p rampart-example-notes
//! curl -s localhost:8090/v1/notes -H "authorization: Bearer $key" \
//!   -H 'content-type: application/json' -d '{"title":"first"}'
//! ```
//!
//! Environment: `NOTES_API_KEYS` (required: comma-separated `owner:role:sha256-hex`),
//! `NOTES_BIND` (default `127.0.0.1:8090`), `NOTES_REQUESTS_PER_MINUTE` (default 600).

use anyhow::Context as _;
use rampart::http::Hardening;
use rampart::server::{serve, shutdown_signal, ServeOptions};
use rampart_example_notes::{app, ApiKey, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .init();

    let keys = std::env::var("NOTES_API_KEYS")
        .context("NOTES_API_KEYS is required (owner:role:sha256-hex, comma-separated)")?
        .split(',')
        .map(|entry| ApiKey::parse(entry).map_err(|why| anyhow::anyhow!("NOTES_API_KEYS: {why}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bind = std::env::var("NOTES_BIND").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let requests_per_minute = match std::env::var("NOTES_REQUESTS_PER_MINUTE") {
        Ok(text) => text
            .parse()
            .context("NOTES_REQUESTS_PER_MINUTE must be a whole number")?,
        Err(_) => 600,
    };

    let app = app(Config {
        keys,
        requests_per_minute,
        hardening: Hardening::default(),
    })
    .map_err(|why| anyhow::anyhow!(why))?;
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    // Installed before the announcement, so a SIGTERM right after it drains the server.
    let shutdown = shutdown_signal();
    println!("listening on {}", listener.local_addr()?);
    serve(listener, app, ServeOptions::default(), shutdown).await;
    Ok(())
}
