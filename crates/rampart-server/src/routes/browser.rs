//! `/v1/browser/*`: signing a browser in and out with cookies, so no token reaches its
//! scripts. The sessions are the same as the API's ([`crate::service::sessions`]); the cookies
//! and the cross-site check are [`crate::browser`]'s.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rampart::http::RequestContext;
use rampart::{ApiError, CurrentUser, Json};

use super::auth::{user_agent, LoginInput, LoginResponse};
use super::mfa::MfaVerify;
use crate::abuse::{AuthQuota, Reports};
use crate::browser::{cleared_cookies, set_cookies, CsrfKey};
use crate::service::accounts::{Accounts, LoginAnswer};
use crate::service::mfa::Mfa;
use crate::service::sessions::{Opened, Sessions};
use crate::service::ServiceError;

/// 204 with the session's two cookies.
fn signed_in(csrf: &CsrfKey, opened: Opened) -> Result<Response, ApiError> {
    let Opened::Browser { cookie, max_age } = opened else {
        return Err(
            ServiceError::internal("an API session where a browser one was asked for").into(),
        );
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    for value in set_cookies(&cookie, &csrf.token_for(&cookie), max_age) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Sign a browser in: the same body and checks as `/v1/auth/login`; the session is held by
/// cookies instead of tokens.
#[utoipa::path(post, path = "/v1/browser/login", tag = "browser",
    request_body(content(
        (super::auth::LoginRequest = "application/json"),
        (super::auth::PasswordGrant = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 204, description = "Signed in: `__Host-rampart_session` (HttpOnly) and `__Host-rampart_csrf` are set"),
        (status = 200, description = "The account has two-factor authentication: complete at /v1/browser/mfa", body = LoginResponse),
        (status = 401, description = "Unknown user, wrong password or locked account (indistinguishable)", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not from this site's origin (problem type urn:rampart:problem:csrf), or the address is still to verify", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over a login limit, or this name's backoff delay is running; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Hashing is saturated; retry after Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(accounts): State<Accounts>,
    State(csrf): State<CsrfKey>,
    context: RequestContext,
    AuthQuota(mut reports): AuthQuota,
    headers: HeaderMap,
    LoginInput(request): LoginInput,
) -> (Reports, Result<Response, ApiError>) {
    let login = request.into_login(&headers, true);
    let answer = accounts.log_in(&context, login, &mut reports).await;
    let answer = answer
        .map_err(ApiError::from)
        .and_then(|answer| match answer {
            LoginAnswer::Opened(opened) => signed_in(&csrf, opened),
            LoginAnswer::MfaRequired(challenge) => {
                Ok(Json(LoginResponse::MfaRequired(challenge)).into_response())
            }
        });
    (reports, answer)
}

/// Complete a browser's sign-in with its second factor.
#[utoipa::path(post, path = "/v1/browser/mfa", tag = "browser", request_body = MfaVerify, responses(
    (status = 204, description = "Signed in: the session cookies are set"),
    (status = 401, description = "Unknown, used or expired mfa_token, or a wrong, used or replayed code (indistinguishable)", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 403, description = "Not from this site's origin (problem type urn:rampart:problem:csrf)", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the per-address limit, or the account's login backoff is running; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn mfa(
    State(mfa): State<Mfa>,
    State(csrf): State<CsrfKey>,
    context: RequestContext,
    AuthQuota(mut reports): AuthQuota,
    headers: HeaderMap,
    Json(request): Json<MfaVerify>,
) -> (Reports, Result<Response, ApiError>) {
    let opened = mfa
        .verify(
            &context,
            &request.mfa_token,
            &request.code,
            user_agent(&headers),
            true,
            &mut reports,
        )
        .await
        .map_err(ApiError::from)
        .and_then(|opened| signed_in(&csrf, opened));
    (reports, opened)
}

/// Sign the browser out: its session ends and both cookies are cleared.
#[utoipa::path(post, path = "/v1/browser/logout", tag = "browser", responses(
    (status = 204, description = "Signed out; both cookies cleared"),
    (status = 403, description = "A cookie request without the matching X-CSRF-Token, or from another site (problem type urn:rampart:problem:csrf)", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn logout(
    State(sessions): State<Sessions>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
) -> Result<Response, ApiError> {
    sessions.log_out(&context, &caller).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    for value in cleared_cookies() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
