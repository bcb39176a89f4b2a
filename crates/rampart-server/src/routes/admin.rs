//! Admin endpoints. Mounted as [`rampart::Access::Admin`]: a user gets 403, an anonymous
//! caller 401. The rules (changes that apply at once, never leaving no admin) are in
//! [`crate::service::admin`].

use axum::extract::State;
use axum::http::StatusCode;
use rampart::http::RequestContext;
use rampart::pagination::PageQuery;
use rampart::{AdminUser, ApiError, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::StoredEvent;
use crate::domain::RecordId;
use crate::routes::users::UserResponse;
use crate::service::admin::Admin;

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
    State(admin): State<Admin>,
    AdminUser(_caller): AdminUser,
    page: PageQuery,
) -> Result<Json<AuditPage>, ApiError> {
    let page = admin.audit(&page).await?;
    Ok(Json(AuditPage {
        events: page.rows,
        next_cursor: page.next_cursor,
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
    State(admin): State<Admin>,
    AdminUser(_caller): AdminUser,
    page: PageQuery,
) -> Result<Json<UserPage>, ApiError> {
    let page = admin.users(&page).await?;
    Ok(Json(UserPage {
        users: page.rows.iter().map(UserResponse::from).collect(),
        next_cursor: page.next_cursor,
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
    State(admin): State<Admin>,
    context: RequestContext,
    AdminUser(caller): AdminUser,
    id: RecordId,
    Json(change): Json<UserChange>,
) -> Result<Json<UserResponse>, ApiError> {
    let user = admin
        .set_role(&context, &caller, id.as_str(), change.role)
        .await?;
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
    State(admin): State<Admin>,
    context: RequestContext,
    AdminUser(caller): AdminUser,
    id: RecordId,
) -> Result<StatusCode, ApiError> {
    admin.set_lock(&context, &caller, id.as_str(), true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unlock a user.
#[utoipa::path(post, path = "/v1/admin/users/{id}/unlock", tag = "admin",
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Unlocked"),
        (status = 404, description = "No such user", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn unlock(
    State(admin): State<Admin>,
    context: RequestContext,
    AdminUser(caller): AdminUser,
    id: RecordId,
) -> Result<StatusCode, ApiError> {
    admin
        .set_lock(&context, &caller, id.as_str(), false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
