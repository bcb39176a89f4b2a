//! The caller's sessions: list them, end one, end all, and change the password.
//!
//! Defends against stolen sessions outliving the user's reaction: every way of ending a session
//! marks it revoked in the store and adds it to the in-memory revocation set
//! ([`crate::access`]), so its access tokens are refused on the very next request, and its
//! refresh token can no longer be used. A user can only see and end their own sessions: another user's session id answers
//! exactly like one that does not exist (404). A password change checks the current password
//! under the account's login backoff ([`crate::abuse`]), so a stolen access token is not an
//! unlimited password oracle.

use axum::extract::State;
use axum::http::StatusCode;
use rampart::http::RequestContext;
use rampart::password::{HashError, Verified};
use rampart::{ApiError, CurrentUser, Json};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::abuse::Reports;
use crate::audit::{Event, Kind};
use crate::domain::Password;
use crate::domain::RecordId;
use crate::routes::auth::hashing_error;
use crate::state::AppState;

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
    State(state): State<AppState>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
) -> Result<StatusCode, ApiError> {
    let event = Event::new(Kind::Logout, &context)
        .user(&caller.user_id)
        .detail(serde_json::json!({"session_id": caller.session_id}));
    state
        .end_session(&caller.user_id, &caller.session_id, event)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End every session of the caller, this one included.
#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "sessions", responses((status = 204, description = "Every session ended")))]
pub async fn logout_all(
    State(state): State<AppState>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
) -> Result<StatusCode, ApiError> {
    let event = Event::new(Kind::LogoutAll, &context).user(&caller.user_id);
    state
        .end_user_sessions(&caller.user_id, None, move |ended| {
            event.detail(serde_json::json!({"sessions_ended": ended.len()}))
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "sessions", responses((status = 200, description = "Live sessions, newest first", body = SessionList)))]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<SessionList>, ApiError> {
    let sessions = state
        .store
        .list_sessions(&caller.user_id)
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
    State(state): State<AppState>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
    RecordId(id): RecordId,
) -> Result<StatusCode, ApiError> {
    let event = Event::new(Kind::SessionRevoked, &context)
        .user(&caller.user_id)
        .detail(serde_json::json!({"session_id": id}));
    state
        .end_session(&caller.user_id, &id, event)
        .await?
        .ok_or(ApiError::NotFound)?;
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
    State(state): State<AppState>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
    Json(change): Json<PasswordChange>,
) -> (Reports, Result<StatusCode, ApiError>) {
    let mut reports = Reports::default();
    let result = attempt_password_change(&state, &context, &caller, change, &mut reports).await;
    (reports, result)
}

async fn attempt_password_change(
    state: &AppState,
    context: &RequestContext,
    caller: &rampart::Principal,
    change: PasswordChange,
    reports: &mut Reports,
) -> Result<StatusCode, ApiError> {
    let user = state
        .store
        .find_user(&caller.user_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if state.hasher.is_saturated() {
        return Err(hashing_error(HashError::Busy));
    }
    // The account's names as the login form keys them: a guess here costs what a guess there
    // costs, whichever name the account is logged in with afterwards.
    let (username_key, email_key) = (user.username.to_lowercase(), user.email.to_lowercase());
    let streak = state
        .admit_attempt(
            context,
            &[&username_key, &email_key],
            "/v1/auth/password",
            reports,
        )
        .await?;
    let verified = state
        .hasher
        .verify(change.current_password, Some(&user.password_hash))
        .await
        .map_err(hashing_error)?;
    if verified == Verified::Invalid {
        let failed = Event::new(Kind::PasswordChangeFailed, context)
            .user(&user.id)
            .detail(serde_json::json!({
                "session_id": caller.session_id,
                "failures": streak.failures,
            }));
        let locked = AppState::lockout_event(context, &username_key, streak, Some(&user.id));
        state
            .record_failure(std::iter::once(failed).chain(locked).collect())
            .await?;
        return Err(ApiError::invalid("current_password", "is incorrect"));
    }
    // The password is proven: the streak it counted in advance ends here.
    state
        .clear_login_backoff(&[&user.username, &user.email])
        .await;
    let (username, email) = (user.username.clone(), user.email.clone());
    let new = tokio::task::spawn_blocking(move || {
        Password::parse(change.new_password, Some(&username), Some(&email))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|m| ApiError::invalid("new_password", m))?;
    let hash = state
        .hasher
        .hash(new.into_secret())
        .await
        .map_err(hashing_error)?;
    // The new hash, the other sessions' end and the event: one transaction, run to completion.
    let (shared, user_id, keep) = (state.clone(), user.id.clone(), caller.session_id.clone());
    let event = Event::new(Kind::PasswordChanged, context).user(&user.id);
    crate::state::to_completion(async move {
        let mut unit = shared.begin().await?;
        unit.tx().set_password_hash(&user_id, &hash).await?;
        let ended = unit
            .tx()
            .revoke_user_sessions(&user_id, Some(&keep))
            .await?;
        unit.record(event.detail(serde_json::json!({"other_sessions_ended": ended.len()})))
            .await?;
        unit.commit().await?;
        shared.forget_sessions(&ended);
        shared.announce_ended(&ended).await;
        Ok::<(), crate::store::StoreError>(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
