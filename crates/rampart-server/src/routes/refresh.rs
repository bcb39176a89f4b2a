//! `POST /v1/auth/refresh`: rotating refresh tokens with reuse detection.
//!
//! Defends against stolen refresh tokens: every use spends the token and issues a successor;
//! a spent token presented again after the grace window means two parties hold the same token,
//! so the whole session (the token family) is revoked and both are logged out. Inside the grace
//! window (`RAMPART_REFRESH_GRACE`) a retry gets the identical successor pair, so two tabs or a
//! retried request do not log the user out. Concurrent refreshes of one token cannot fork the
//! family: the store spends a token with a conditional update that exactly one request wins.
//!
//! The identical successor is recoverable without storing it readable: the spent row keeps it
//! XORed with a pad derived from the spent token itself (a domain-separated SHA-256), which
//! only a holder of that token can compute. The access token is re-signed from the stored
//! `jti` and `iat`; Ed25519 and HMAC signatures are deterministic, so it is byte-identical.

use axum::extract::State;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rampart::http::RequestContext;
use rampart::{ApiError, Json};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::abuse::{AuthQuota, Reports};
use crate::audit::{Event, Kind};
use crate::routes::auth::{new_refresh_token, refresh_token_hash, TokenPair};
use crate::state::AppState;
use crate::store::{self, RefreshState, Rotation, Timestamp};

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
    State(state): State<AppState>,
    context: RequestContext,
    AuthQuota(reports): AuthQuota,
    Json(request): Json<RefreshRequest>,
) -> (Reports, Result<Json<TokenPair>, ApiError>) {
    (reports, refresh_session(&state, &context, &request).await)
}

async fn refresh_session(
    state: &AppState,
    context: &RequestContext,
    request: &RefreshRequest,
) -> Result<Json<TokenPair>, ApiError> {
    let presented = request.refresh_token.expose_secret();
    if presented.is_empty() || presented.len() > 128 {
        return Err(ApiError::Unauthorized);
    }
    let hash = refresh_token_hash(presented);
    // A lost race re-reads the row once, and then finds it spent.
    for _ in 0..2 {
        let row = state
            .store
            .refresh_state(&hash)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        let now = Timestamp::now();
        if !row.session_live || row.session_expires_at <= now || row.expires_at <= now {
            return Err(ApiError::Unauthorized);
        }
        match row.spent_at {
            None => {
                let event = Event::new(Kind::TokenRefreshed, context)
                    .user(&row.user_id)
                    .detail(serde_json::json!({"session_id": row.session_id}));
                if let Some(pair) = rotate(state, presented, &hash, &row, now, event).await? {
                    return Ok(Json(pair));
                }
            }
            Some(spent_at) => {
                return replay(state, context, presented, &row, spent_at, now)
                    .await
                    .map(Json);
            }
        }
    }
    Err(ApiError::Unauthorized)
}

/// Spends the token and issues its successor, recording `event` in the same transaction;
/// `None` (and nothing changed or recorded) when a concurrent request spent it first.
async fn rotate(
    state: &AppState,
    presented: &str,
    hash: &str,
    row: &RefreshState,
    now: Timestamp,
    event: Event,
) -> Result<Option<TokenPair>, ApiError> {
    let (successor, successor_hash) = new_refresh_token()?;
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(|_| ApiError::internal("no randomness for a token id"))?;
    let jti = URL_SAFE_NO_PAD.encode(jti);
    let iat = now.instant().unix_timestamp();
    let session_end = row.session_expires_at;
    let successor_expires = (now + state.settings.refresh_ttl).min(session_end);
    let rotation = Rotation {
        spent_hash: hash.to_owned(),
        session_id: row.session_id.clone(),
        successor_hash,
        successor_sealed: seal(presented, &successor)?,
        successor_jti: jti.clone(),
        successor_iat: iat,
        successor_expires_at: successor_expires,
    };
    let shared = state.clone();
    let rotated = crate::state::to_completion(async move {
        let mut unit = shared.begin().await?;
        if !unit.tx().rotate_refresh(rotation).await? {
            return Ok(false);
        }
        unit.record(event).await?;
        unit.commit().await?;
        Ok::<bool, store::StoreError>(true)
    })
    .await?;
    if !rotated {
        return Ok(None);
    }
    let access = state
        .tokens
        .issue_until(
            &row.user_id,
            &row.session_id,
            &jti,
            u64::try_from(iat).unwrap_or(0),
            unix_seconds(session_end),
        )
        .map_err(ApiError::internal)?;
    Ok(Some(pair(
        access,
        successor,
        successor_expires.instant() - now.instant(),
    )))
}

/// A spent token again: the same successor pair inside the grace window, else reuse.
async fn replay(
    state: &AppState,
    context: &RequestContext,
    presented: &str,
    row: &RefreshState,
    spent_at: Timestamp,
    now: Timestamp,
) -> Result<TokenPair, ApiError> {
    if spent_at >= now - state.settings.refresh_grace {
        if let (Some(sealed), Some(jti), Some(iat), Some(expires)) = (
            &row.successor_sealed,
            &row.successor_jti,
            row.successor_iat,
            row.successor_expires_at,
        ) {
            let successor = unseal(presented, sealed)?;
            let session_end = row.session_expires_at;
            let access = state
                .tokens
                .issue_until(
                    &row.user_id,
                    &row.session_id,
                    jti,
                    u64::try_from(iat).unwrap_or(0),
                    unix_seconds(session_end),
                )
                .map_err(ApiError::internal)?;
            return Ok(pair(access, successor, expires.instant() - now.instant()));
        }
    }
    let event = Event::new(Kind::RefreshReuseDetected, context)
        .user(&row.user_id)
        .detail(serde_json::json!({"session_id": row.session_id, "action": "session_revoked"}));
    state
        .end_session(&row.user_id, &row.session_id, event)
        .await?;
    Err(ApiError::Unauthorized)
}

fn unix_seconds(at: Timestamp) -> u64 {
    u64::try_from(at.instant().unix_timestamp()).unwrap_or(0)
}

fn pair(
    access: rampart::tokens::Issued,
    refresh_token: String,
    refresh_left: time::Duration,
) -> TokenPair {
    TokenPair {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in.as_secs(),
        refresh_token,
        refresh_expires_in: u64::try_from(refresh_left.whole_seconds()).unwrap_or(0),
    }
}

/// The one-time pad for the successor of `presented`: only a holder of `presented` can derive it.
fn pad(presented: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"rampart refresh successor seal v1\0");
    hasher.update(presented.as_bytes());
    hasher.finalize().into()
}

fn seal(presented: &str, successor: &str) -> Result<String, ApiError> {
    let raw: [u8; 32] = URL_SAFE_NO_PAD
        .decode(successor)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::internal("malformed successor token"))?;
    let pad = pad(presented);
    let sealed: Vec<u8> = raw.iter().zip(pad).map(|(a, b)| a ^ b).collect();
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

fn unseal(presented: &str, sealed: &str) -> Result<String, ApiError> {
    let sealed = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| ApiError::internal("malformed sealed successor"))?;
    let raw: Vec<u8> = sealed
        .iter()
        .zip(pad(presented))
        .map(|(a, b)| a ^ b)
        .collect();
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_only_with_the_spent_token() {
        let (successor, _) = new_refresh_token().unwrap();
        let sealed = seal("spent-token-A", &successor).unwrap();
        assert_ne!(sealed, successor);
        assert_eq!(unseal("spent-token-A", &sealed).unwrap(), successor);
        assert_ne!(unseal("spent-token-B", &sealed).unwrap(), successor);
    }
}
