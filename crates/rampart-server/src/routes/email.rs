//! `/v1/auth/password/forgot`, `/v1/auth/password/reset` and `/v1/auth/email/verify[/resend]`:
//! the links sent by mail. The rules are in [`crate::service::email`]: `forgot` says nothing
//! about whether an address has an account, and every unusable token gets the same 400.

use axum::extract::State;
use axum::http::StatusCode;
use rampart::http::RequestContext;
use rampart::{ApiError, CurrentUser, Json};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::abuse::{AuthQuota, Reports};
use crate::service::email::EmailLinks;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    #[schema(example = "alice@example.com")]
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The `token=` value of the link in the message.
    pub token: String,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    pub new_password: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The `token=` value of the link in the message.
    pub token: String,
}

/// Ask for a password reset link. The answer is the same whether or not the address has an
/// account.
#[utoipa::path(post, path = "/v1/auth/password/forgot", tag = "auth", request_body = ForgotRequest, responses(
    (status = 202, description = "If the address has an account, a link is on its way"),
    (status = 429, description = "Over the per-address or per-mailbox limit; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 503, description = "This server sends no mail", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn forgot(
    State(links): State<EmailLinks>,
    context: RequestContext,
    AuthQuota(reports): AuthQuota,
    Json(request): Json<ForgotRequest>,
) -> (Reports, Result<StatusCode, ApiError>) {
    let asked = links.forgot(&context, &request.email).await;
    (
        reports,
        asked.map(|()| StatusCode::ACCEPTED).map_err(ApiError::from),
    )
}

/// Set a new password with a reset link's token; every session ends.
#[utoipa::path(post, path = "/v1/auth/password/reset", tag = "auth", request_body = ResetRequest, responses(
    (status = 204, description = "Changed; every session ended"),
    (status = 400, description = "The token is unknown, used or expired (problem type urn:rampart:problem:invalid-token)", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 422, description = "The new password breaks the policy; the token stays usable", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the per-address limit; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 503, description = "Hashing is saturated; retry after Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn reset(
    State(links): State<EmailLinks>,
    context: RequestContext,
    AuthQuota(reports): AuthQuota,
    Json(request): Json<ResetRequest>,
) -> (Reports, Result<StatusCode, ApiError>) {
    let reset = links
        .reset(&context, &request.token, request.new_password)
        .await;
    (
        reports,
        reset
            .map(|()| StatusCode::NO_CONTENT)
            .map_err(ApiError::from),
    )
}

/// Confirm an email address with a verification link's token.
#[utoipa::path(post, path = "/v1/auth/email/verify", tag = "auth", request_body = VerifyRequest, responses(
    (status = 204, description = "Verified"),
    (status = 400, description = "The token is unknown, used or expired (problem type urn:rampart:problem:invalid-token)", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the per-address limit; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn verify(
    State(links): State<EmailLinks>,
    context: RequestContext,
    AuthQuota(reports): AuthQuota,
    Json(request): Json<VerifyRequest>,
) -> (Reports, Result<StatusCode, ApiError>) {
    let verified = links.verify(&context, &request.token).await;
    (
        reports,
        verified
            .map(|()| StatusCode::NO_CONTENT)
            .map_err(ApiError::from),
    )
}

/// Send the caller a new verification link (nothing, when the address is verified already).
#[utoipa::path(post, path = "/v1/auth/email/verify/resend", tag = "auth", responses(
    (status = 202, description = "A link is on its way, unless the address is verified already"),
    (status = 429, description = "Over the per-mailbox limit; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 503, description = "This server sends no mail", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn resend(
    State(links): State<EmailLinks>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
) -> Result<StatusCode, ApiError> {
    links.resend(&context, &caller).await?;
    Ok(StatusCode::ACCEPTED)
}
