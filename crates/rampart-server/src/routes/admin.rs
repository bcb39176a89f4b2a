//! Admin endpoints. Mounted as [`rampart::Access::Admin`]: a user gets 403, an anonymous
//! caller 401.
//!
//! Defends against privilege changes that linger or lock everyone out: a role change or a lock
//! is written to the store, then to this node's access cache and announced to the others, so
//! it applies to the user's very next request with tokens already issued; demoting or locking
//! the last admin who is not locked is refused (409) inside a transaction that serialises role
//! and lock changes, so two admins acting on each other at once cannot leave nobody.

use axum::extract::State;
use axum::http::StatusCode;
use rampart::http::RequestContext;
use rampart::pagination::PageQuery;
use rampart::{AdminUser, ApiError, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::UserAccess;
use crate::audit::{Event, Kind, StoredEvent};
use crate::domain::RecordId;
use crate::routes::users::UserResponse;
use crate::state::AppState;
use crate::store::RoleChange;

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

/// The one field an admin may change on a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    pub role: rampart::Role,
}

/// Change a user's role. Takes effect on that user's very next request, tokens already issued
/// included. Demoting the last admin is refused.
#[utoipa::path(patch, path = "/v1/admin/users/{id}", tag = "admin",
    params(("id" = String, Path, description = "User id")),
    request_body = UserChange,
    responses(
        (status = 200, description = "The user, with the new role", body = UserResponse),
        (status = 404, description = "No such user", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 409, description = "It would leave no admin who is not locked", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a role (`user` or `admin`), or another field", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_user(
    State(state): State<AppState>,
    context: RequestContext,
    AdminUser(admin): AdminUser,
    RecordId(id): RecordId,
    Json(change): Json<UserChange>,
) -> Result<Json<UserResponse>, ApiError> {
    // Store, event, cache and broadcast change together even if this request is cancelled.
    let shared = state.clone();
    let (user_id, role) = (id.clone(), change.role);
    let event = Event::new(Kind::RoleChanged, &context).user(&id);
    let outcome = crate::state::to_completion(async move {
        let mut unit = shared.begin().await?;
        let outcome = unit.tx().set_role(&user_id, role).await?;
        let RoleChange::Changed { previous, user } = &outcome else {
            return Ok(outcome);
        };
        if *previous != user.role {
            unit.record(event.detail(serde_json::json!({
                "by": admin.user_id,
                "from": previous,
                "to": user.role,
            })))
            .await?;
        }
        unit.commit().await?;
        shared.access.set_user(
            &user.id,
            UserAccess {
                role: user.role,
                locked: user.locked,
            },
        );
        shared.announce_user(&user.id).await;
        Ok::<_, crate::store::StoreError>(outcome)
    })
    .await?;
    let user = match outcome {
        RoleChange::Changed { user, .. } => user,
        RoleChange::NotFound => return Err(ApiError::NotFound),
        RoleChange::LastAdmin => {
            return Err(ApiError::Conflict(
                "This is the only admin; make another user admin first.".into(),
            ))
        }
    };
    Ok(Json(UserResponse::from(&user)))
}

/// Lock a user: login is refused and every session ends at once. An admin cannot lock their
/// own account (409): that would end the very session doing it, and with a single admin it
/// would leave nobody able to unlock; another admin can.
#[utoipa::path(post, path = "/v1/admin/users/{id}/lock", tag = "admin",
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Locked; sessions ended"),
        (status = 404, description = "No such user", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller's own account, or the last admin who is not locked", body = rampart::Problem, content_type = "application/problem+json"),
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
    // The lock, the sessions' end and the event: one transaction; then this node's cache and
    // the broadcast. Run to completion even if this request is cancelled half-way.
    let (shared, id, role) = (state.clone(), user_id.to_owned(), user.role);
    let kind = if locked {
        Kind::UserLocked
    } else {
        Kind::UserUnlocked
    };
    let event = Event::new(kind, context).user(user_id);
    let admin_id = admin_id.to_owned();
    let applied = crate::state::to_completion(async move {
        let mut unit = shared.begin().await?;
        if !unit.tx().set_locked(&id, locked).await? {
            return Ok(false);
        }
        let ended = if locked {
            unit.tx().revoke_user_sessions(&id, None).await?
        } else {
            Vec::new()
        };
        unit.record(
            event.detail(serde_json::json!({"by": admin_id, "sessions_ended": ended.len()})),
        )
        .await?;
        unit.commit().await?;
        shared.access.set_user(&id, UserAccess { role, locked });
        shared.forget_sessions(&ended);
        shared.announce_ended(&ended).await;
        shared.announce_user(&id).await;
        Ok::<bool, crate::store::StoreError>(true)
    })
    .await?;
    if !applied {
        return Err(ApiError::Conflict(
            "This is the last admin who can act; locking them would leave nobody to unlock anyone."
                .into(),
        ));
    }
    if !locked {
        // An unlock also ends any login backoff on the user's names.
        state
            .clear_login_backoff(&[&user.username, &user.email])
            .await;
    }
    Ok(StatusCode::NO_CONTENT)
}
