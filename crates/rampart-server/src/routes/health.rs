//! Liveness and readiness probes: public, cheap, and free of internals.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, StatusCode};
use rampart::Problem;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// How long `/ready` waits for the database before declaring it unavailable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves requests.
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Each dependency checked, with `ok`.
    pub checks: Checks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    #[schema(example = "ok")]
    pub database: &'static str,
}

/// Liveness: the process is up. Checks no dependency.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The process is serving", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/ready", tag = "health", responses(
    (status = 200, description = "Every dependency answers", body = Readiness),
    (status = 503, description = "A dependency is unavailable", body = Problem, content_type = "application/problem+json"),
))]
pub async fn ready(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Json(Readiness {
            status: "ready",
            checks: Checks { database: "ok" },
        })
        .into_response(),
        outcome => {
            if let Ok(Err(err)) = outcome {
                tracing::error!(error = %err, "readiness: database unavailable");
            } else {
                tracing::error!("readiness: database did not answer in time");
            }
            (
                [(header::RETRY_AFTER, "5")],
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Not ready: the database is unavailable.",
                ),
            )
                .into_response()
        }
    }
}
