//! The caller's own account.

use axum::extract::State;
use rampart::{ApiError, CurrentUser, Json, Role};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::accounts::Accounts;
use crate::store::UserRecord;

/// A user as clients see it: never a hash or a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: String,
    pub email: String,
    pub username: String,
    pub role: Role,
    /// A second factor (TOTP) guards the account's logins.
    pub mfa: bool,
    /// The user proved they read mail at `email`.
    pub email_verified: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl From<&UserRecord> for UserResponse {
    fn from(user: &UserRecord) -> Self {
        Self {
            id: user.id.clone(),
            email: user.email.clone(),
            username: user.username.clone(),
            role: user.role,
            mfa: user.mfa,
            email_verified: user.email_verified,
            created_at: user.created_at.to_string(),
        }
    }
}

/// The calling user.
#[utoipa::path(get, path = "/v1/users/me", tag = "users", responses((status = 200, description = "The caller", body = UserResponse)))]
pub async fn me(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<UserResponse>, ApiError> {
    let user = accounts.get(&caller.user_id).await?;
    Ok(Json(UserResponse::from(&user)))
}
