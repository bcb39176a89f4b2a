//! The caller's sessions: list them, end one, end all, and change the password. The rules are
//! in [`crate::service::sessions`] and [`crate::service::accounts`]: an ended session's tokens
//! stop working on the very next request, another user's session id answers like a missing
//! one (404), and a password change counts against the account's login backoff.

use axum::extract::State;
use axum::http::StatusCode;
use rampart::http::RequestContext;
use rampart::{ApiError, CurrentUser, Json};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::abuse::Reports;
use crate::audit::{Event, Kind};
use crate::domain::RecordId;
use crate::service::accounts::Accounts;
use crate::service::sessions::Sessions;

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_used_at: String,
    pub user_agent: Option<String>,
    /// True for the session of the token making this request.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    pub new_password: SecretString,
}

/// End the calling session: its refresh token and access tokens stop working at once.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "sessions", responses((status = 204, description = "Logged out")))]
pub async fn logout(
    State(sessions): State<Sessions>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
) -> Result<StatusCode, ApiError> {
    sessions.log_out(&context, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the caller, this one included.
#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "sessions", responses((status = 204, description = "Every session ended")))]
pub async fn logout_all(
    State(sessions): State<Sessions>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
) -> Result<StatusCode, ApiError> {
    let event = Event::new(Kind::LogoutAll, &context).user(&caller.user_id);
    sessions
        .end_all(&caller.user_id, None, move |ended| {
            event.detail(serde_json::json!({"sessions_ended": ended.len()}))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "sessions", responses((status = 200, description = "Live sessions, newest first", body = SessionList)))]
pub async fn list(
    State(sessions): State<Sessions>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = sessions
        .list(&caller.user_id)
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: s.id == caller.session_id,
            id: s.id,
            created_at: s.created_at.to_string(),
            last_used_at: s.last_used_at.to_string(),
            user_agent: s.user_agent,
        })
        .collect();
    Ok(Json(SessionList { sessions }))
}

/// End one of the caller's sessions (the current one acts as logout).
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Session ended"),
        (status = 404, description = "No such session of the caller's", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(sessions): State<Sessions>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
    id: RecordId,
) -> Result<StatusCode, ApiError> {
    let event = Event::new(Kind::SessionRevoked, &context)
        .user(&caller.user_id)
        .detail(serde_json::json!({"session_id": id.as_str()}));
    sessions.end(&caller.user_id, id.as_str(), event).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password; every other session ends, this one stays.
#[utoipa::path(post, path = "/v1/auth/password", tag = "sessions", request_body = PasswordChange, responses(
    (status = 204, description = "Changed; other sessions ended"),
    (status = 422, description = "Current password wrong, or the new one breaks the policy", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 429, description = "The account's login backoff is running (wrong current passwords count like failed logins), or a per-account limit is spent; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 503, description = "Hashing is saturated; retry after Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn change_password(
    State(accounts): State<Accounts>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
    Json(change): Json<PasswordChange>,
) -> (Reports, Result<StatusCode, ApiError>) {
    let mut reports = Reports::default();
    let changed = accounts
        .change_password(
            &context,
            &caller,
            change.current_password,
            change.new_password,
            &mut reports,
        )
        .await;
    let answer = changed.map(|()| StatusCode::NO_CONTENT);
    (reports, answer.map_err(ApiError::from))
}
