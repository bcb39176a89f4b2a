//! Admin endpoints. Mounted as [`rampart::Access::Admin`]: a user gets 403, an anonymous
//! caller 401.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rampart::http::RequestContext;
use rampart::{AdminUser, ApiError, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::UserAccess;
use crate::audit::{Event, Kind, StoredEvent};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<StoredEvent>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `limit` in 1..=100 (default 20); anything else is 422, never silently clamped.
fn page_limit(raw: Option<&str>) -> Result<u32, ApiError> {
    match raw {
        None => Ok(20),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be a whole number from 1 to 100")),
    }
}

const CURSOR_PREFIX: &str = "audit:";

fn decode_cursor(raw: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            text.strip_prefix(CURSOR_PREFIX)
                .and_then(|n| n.parse::<i64>().ok())
        })
        .filter(|seq| *seq > 0)
        .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this endpoint issued"))
}

/// Security events, newest first.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 422, description = "Bad limit or cursor", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(query) =
        query.map_err(|_| ApiError::invalid("", "query parameters are limit and cursor only"))?;
    let limit = page_limit(query.limit.as_deref())?;
    let before = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let events = state.store.audit_page(before, limit).await?;
    let next_cursor = (events.len() == limit as usize)
        .then(|| {
            events
                .last()
                .map(|e| URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{}", e.seq)))
        })
        .flatten();
    Ok(Json(AuditPage {
        events,
        next_cursor,
    }))
}

/// Lock a user: login is refused and every session ends at once.
#[utoipa::path(post, path = "/v1/admin/users/{id}/lock", tag = "admin",
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Locked; sessions ended"),
        (status = 404, description = "No such user", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn lock(
    State(state): State<AppState>,
    context: RequestContext,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_lock(&state, &context, &admin.user_id, &id, true).await
}

/// Unlock a user.
#[utoipa::path(post, path = "/v1/admin/users/{id}/unlock", tag = "admin",
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Unlocked"),
        (status = 404, description = "No such user", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn unlock(
    State(state): State<AppState>,
    context: RequestContext,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    set_lock(&state, &context, &admin.user_id, &id, false).await
}

async fn set_lock(
    state: &AppState,
    context: &RequestContext,
    admin_id: &str,
    user_id: &str,
    locked: bool,
) -> Result<StatusCode, ApiError> {
    let user = state
        .store
        .find_user(user_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.store.set_locked(user_id, locked).await?;
    state.access.set_user(
        user_id,
        UserAccess {
            role: user.role,
            locked,
        },
    );
    let ended = if locked {
        state.store.revoke_user_sessions(user_id, None).await?
    } else {
        Vec::new()
    };
    state.forget_sessions(&ended);
    let kind = if locked {
        Kind::UserLocked
    } else {
        Kind::UserUnlocked
    };
    let event = Event::new(kind, context)
        .user(user_id)
        .detail(serde_json::json!({"by": admin_id, "sessions_ended": ended.len()}));
    state.audit(event).await;
    Ok(StatusCode::NO_CONTENT)
}
