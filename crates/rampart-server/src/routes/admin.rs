//! Admin endpoints. Mounted as [`rampart::Access::Admin`]: a user gets 403, an anonymous
//! caller 401.

use axum::extract::State;
use axum::http::StatusCode;
use rampart::http::RequestContext;
use rampart::pagination::PageQuery;
use rampart::{AdminUser, ApiError, Json};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::UserAccess;
use crate::audit::{Event, Kind, StoredEvent};
use crate::domain::RecordId;
use crate::routes::users::UserResponse;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<StoredEvent>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<UserResponse>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

const AUDIT_SCOPE: &str = "admin:audit";
const USERS_SCOPE: &str = "admin:users";

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
    page: PageQuery,
) -> Result<Json<AuditPage>, ApiError> {
    let before = state
        .cursors
        .position(AUDIT_SCOPE, &page)?
        .map(|seq| seq.parse::<i64>())
        .transpose()
        .map_err(|_| ApiError::internal("a signed audit cursor holds no sequence number"))?;
    let rows = page.limit.get() + 1;
    let events = state.store.audit_page(before, rows).await?;
    let (events, next_cursor) = state
        .cursors
        .page(AUDIT_SCOPE, page.limit, events, |e| e.seq.to_string());
    Ok(Json(AuditPage {
        events,
        next_cursor,
    }))
}

/// Every user, in id order (ids are time-ordered, so oldest accounts first).
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of users", body = UserPage),
        (status = 422, description = "Bad limit or cursor", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn users(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    page: PageQuery,
) -> Result<Json<UserPage>, ApiError> {
    let after = state.cursors.position(USERS_SCOPE, &page)?;
    let rows = state
        .store
        .list_users(after.as_deref(), page.limit.rows() + 1)
        .await?;
    let (rows, next_cursor) = state
        .cursors
        .page(USERS_SCOPE, page.limit, rows, |u| u.id.clone());
    Ok(Json(UserPage {
        users: rows.iter().map(UserResponse::from).collect(),
        next_cursor,
    }))
}

/// Lock a user: login is refused and every session ends at once. An admin cannot lock their
/// own account (409): that would end the very session doing it, and with a single admin it
/// would leave nobody able to unlock; another admin can.
#[utoipa::path(post, path = "/v1/admin/users/{id}/lock", tag = "admin",
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Locked; sessions ended"),
        (status = 404, description = "No such user", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller's own account", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn lock(
    State(state): State<AppState>,
    context: RequestContext,
    AdminUser(admin): AdminUser,
    RecordId(id): RecordId,
) -> Result<StatusCode, ApiError> {
    if id == admin.user_id {
        return Err(ApiError::Conflict(
            "An admin cannot lock their own account; another admin can.".into(),
        ));
    }
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
    RecordId(id): RecordId,
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
    // Store and memory change together even if this request is cancelled half-way.
    let (shared, id, role) = (state.clone(), user_id.to_owned(), user.role);
    crate::state::to_completion(async move {
        shared.store.set_locked(&id, locked).await?;
        shared.access.set_user(&id, UserAccess { role, locked });
        shared.announce_user(&id).await;
        Ok(())
    })
    .await?;
    let ended = if locked {
        state.end_user_sessions(user_id, None).await?
    } else {
        // An unlock also ends any login backoff on the user's names.
        state
            .clear_login_backoff(&[&user.username, &user.email])
            .await;
        Vec::new()
    };
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
