//! The public signing keys, so other services can verify rampart's access tokens.
//! Public parts only; mounted only when tokens are EdDSA-signed.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;

/// The JSON Web Key Set of the keys that verify access tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "Public keys (JWK set)", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let body = state.keys.as_ref().map_or_else(
        || serde_json::json!({ "keys": [] }),
        rampart::keys::KeySet::public_jwks,
    );
    // Public and rarely changing: caches may keep it briefly (rotation keeps old keys an hour).
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        rampart::json::Json(body),
    )
}
