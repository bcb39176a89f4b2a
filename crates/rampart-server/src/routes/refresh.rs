//! `POST /v1/auth/refresh`: a refresh token traded for a new pair. The rotation, the grace
//! window and reuse detection are in [`crate::service::refresh`].

use axum::extract::State;
use rampart::http::RequestContext;
use rampart::{ApiError, Json};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::abuse::{AuthQuota, Reports};
use crate::service::sessions::{Sessions, TokenPair};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

/// Trade a refresh token for a new token pair; the presented token is spent.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, description = "A new pair (or, inside the grace window, the same successor pair again)", body = TokenPair),
    (status = 401, description = "Unknown, expired, revoked or reused token", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the per-address limit of the credential endpoints; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn refresh(
    State(sessions): State<Sessions>,
    context: RequestContext,
    AuthQuota(reports): AuthQuota,
    Json(request): Json<RefreshRequest>,
) -> (Reports, Result<Json<TokenPair>, ApiError>) {
    let pair = sessions.refresh(&context, &request.refresh_token).await;
    (reports, pair.map(Json).map_err(ApiError::from))
}
