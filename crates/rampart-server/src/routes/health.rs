//! Liveness and readiness probes: public, cheap, and free of internals.

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use rampart::json::Json;
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
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!("database: {err}")),
            Err(_) => Some("database: no answer in time".to_owned()),
        }
    };
    let redis = async {
        let redis = state.redis.as_ref()?;
        Some(redis.ping().await.err().map(|err| format!("Redis: {err}")))
    };
    let (database, redis) = tokio::join!(database, redis);
    let down = match (database.is_some(), redis.as_ref().map(Option::is_some)) {
        (false, None | Some(false)) => None,
        (true, Some(true)) => Some("the database and Redis are unavailable"),
        (true, _) => Some("the database is unavailable"),
        (false, Some(true)) => Some("Redis is unavailable"),
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
        Some(what) => {
            let mut response = (
                [(header::RETRY_AFTER, "5")],
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Not ready: {what}."),
                ),
            )
                .into_response();
            // Why, for the access log (folded into a line a second while it lasts); the
            // probe's caller sees only which dependency.
            let causes: Vec<String> = [database, redis.flatten()].into_iter().flatten().collect();
            response
                .extensions_mut()
                .insert(rampart::error::InternalCause(format!(
                    "not ready: {}",
                    causes.join("; ")
                )));
            response
        }
    }
}
