//! Assembles the service from settings: posture, keys, store, routes, hardening, serving.

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use rampart::http::Hardening;
use rampart::keys::KeySet;
use rampart::policy::DenyAll;
use rampart::posture::Posture;
use rampart::server::{self, ServeOptions};
use rampart::settings::KeysSource;
use rampart::Settings;
use tokio::net::TcpListener;

use crate::state::AppState;
use crate::{docs, routes, store};

/// Production refuses to start on any failing posture item; this error names them.
#[derive(Debug, thiserror::Error)]
#[error("refusing to start in production; unsafe settings:\n{0}")]
pub struct UnsafePosture(pub String);

/// Checks the posture: an error in production when anything fails, log lines otherwise.
pub fn enforce_posture(settings: &Settings) -> Result<(), UnsafePosture> {
    let posture = Posture::assess(settings);
    if settings.env.is_production() && !posture.is_safe_for_production() {
        let lines: Vec<String> = posture
            .failures()
            .map(|item| format!("  {}: {}", item.setting, item.message))
            .collect();
        return Err(UnsafePosture(lines.join("\n")));
    }
    for item in posture.failures() {
        tracing::warn!(
            setting = item.setting,
            "{} (production would refuse this)",
            item.message
        );
    }
    Ok(())
}

/// Loads the signing keys the settings point at (generating development keys on first start).
pub fn load_keys(source: &KeysSource) -> anyhow::Result<KeySet> {
    match source {
        KeysSource::File(path) => Ok(KeySet::load(path)?),
        KeysSource::GeneratedForDevelopment(path) => Ok(KeySet::load_or_generate(path)?),
        KeysSource::Missing => {
            anyhow::bail!("no signing keys: set RAMPART_KEYS_FILE (see `rampart keys generate`)")
        }
    }
}

/// The complete, hardened router for these settings.
pub async fn build(settings: Settings) -> anyhow::Result<Router> {
    let keys = load_keys(&settings.keys).context("loading signing keys")?;
    let store = store::open(&settings.database_url)
        .await
        .context("opening the database")?;
    let hardening = Hardening::from_settings(&settings);
    let docs_enabled = settings.docs;
    let state = AppState::new(settings, store, keys);
    let mut routes = routes::routes();
    if docs_enabled {
        routes = docs::mount(routes);
    }
    let service = routes.into_router(Arc::new(DenyAll)).with_state(state);
    Ok(hardening.apply(service))
}

pub fn serve_options(settings: &Settings) -> ServeOptions {
    ServeOptions {
        header_read_timeout: settings.http.header_timeout,
        max_connections: settings.http.max_connections,
        drain_timeout: settings.http.shutdown_timeout,
        ..ServeOptions::default()
    }
}

/// `rampart serve`: check posture, build, bind, announce, serve until SIGTERM, drain.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    enforce_posture(&settings)?;
    let options = serve_options(&settings);
    let bind = settings.bind;
    let router = build(settings).await?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    println!("listening on {addr}");
    server::serve(listener, router, options, server::shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}
