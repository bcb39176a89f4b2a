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
    /// Present when Redis is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "ok")]
    pub redis: Option<&'static str>,
}

/// Liveness: the process is up. Checks no dependency.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The process is serving", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: the database answers, and Redis when configured.
#[utoipa::path(get, path = "/ready", tag = "health", responses(
    (status = 200, description = "Every dependency answers", body = Readiness),
    (status = 503, description = "A dependency is unavailable", body = Problem, content_type = "application/problem+json"),
))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let database = async {
        match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::error!(error = %err, "readiness: database unavailable");
                false
            }
            Err(_) => {
                tracing::error!("readiness: database did not answer in time");
                false
            }
        }
    };
    let redis = async {
        let redis = state.redis.as_ref()?;
        Some(match redis.ping().await {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(error = %err, "readiness: Redis unavailable");
                false
            }
        })
    };
    let (database, redis) = tokio::join!(database, redis);
    let down = match (database, redis) {
        (true, None | Some(true)) => None,
        (false, Some(false)) => Some("the database and Redis are unavailable"),
        (false, _) => Some("the database is unavailable"),
        (true, Some(false)) => Some("Redis is unavailable"),
    };
    match down {
        None => Json(Readiness {
            status: "ready",
            checks: Checks {
                database: "ok",
                redis: redis.map(|_| "ok"),
            },
        })
        .into_response(),
        Some(what) => (
            [(header::RETRY_AFTER, "5")],
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Not ready: {what}."),
            ),
        )
            .into_response(),
    }
}
