//! `/v1/auth/mfa/*`: enrolling, confirming and removing a TOTP second factor, and the second
//! step of a login. The rules are in [`crate::service::mfa`]: a code works once, wrong codes
//! count in the account's login backoff, and the secret is shown only while enrolling.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rampart::http::RequestContext;
use rampart::{ApiError, CurrentUser, Json};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::abuse::{AuthQuota, Reports};
use crate::service::mfa::Mfa;
use crate::service::sessions::TokenPair;

/// What an authenticator app needs; shown only now.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The secret in base 32, to type into an app.
    pub secret: String,
    /// `otpauth://totp/...`: the same, as a link.
    pub otpauth_uri: String,
    /// The link as a QR code (an SVG document).
    pub qr_svg: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    #[schema(example = "123456")]
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes that stand in for the app once each; shown only now.
    pub recovery_codes: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpRemoval {
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// A current code, or an unused recovery code.
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaVerify {
    pub mfa_token: String,
    /// A current code, or an unused recovery code.
    pub code: String,
}

/// Start enrolling a TOTP app; nothing changes until it is confirmed.
#[utoipa::path(post, path = "/v1/auth/mfa/totp", tag = "mfa", responses(
    (status = 201, description = "The secret, its otpauth URI and QR code, shown only now", body = TotpEnrolment),
    (status = 409, description = "Two-factor authentication is already on", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn enrol(
    State(mfa): State<Mfa>,
    CurrentUser(caller): CurrentUser,
) -> Result<(StatusCode, Json<TotpEnrolment>), ApiError> {
    let enrolment = mfa.enrol(&caller).await?;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrolment {
            secret: enrolment.secret,
            otpauth_uri: enrolment.otpauth_uri,
            qr_svg: enrolment.qr_svg,
        }),
    ))
}

/// Confirm the enrolment with a current code; logins need a second factor from now on.
#[utoipa::path(post, path = "/v1/auth/mfa/totp/confirm", tag = "mfa", request_body = TotpCode, responses(
    (status = 200, description = "On; the recovery codes, shown only now", body = RecoveryCodes),
    (status = 422, description = "Not a current code of the secret being enrolled, or nothing is being enrolled", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn confirm(
    State(mfa): State<Mfa>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<TotpCode>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = mfa.confirm(&context, &caller, &request.code).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// Remove the second factor, with the password and a current or recovery code.
#[utoipa::path(delete, path = "/v1/auth/mfa/totp", tag = "mfa", request_body = TotpRemoval, responses(
    (status = 204, description = "Removed"),
    (status = 409, description = "Two-factor authentication is not on", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 422, description = "Wrong password, or not a current or unused recovery code", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 429, description = "The account's login backoff is running (wrong passwords and codes count like failed logins); see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 503, description = "Hashing is saturated; retry after Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn remove(
    State(mfa): State<Mfa>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
    Json(request): Json<TotpRemoval>,
) -> (Reports, Result<StatusCode, ApiError>) {
    let mut reports = Reports::default();
    let removed = mfa
        .remove(
            &context,
            &caller,
            request.password,
            &request.code,
            &mut reports,
        )
        .await;
    (
        reports,
        removed
            .map(|()| StatusCode::NO_CONTENT)
            .map_err(ApiError::from),
    )
}

/// Complete a login with its second factor.
#[utoipa::path(post, path = "/v1/auth/mfa/verify", tag = "mfa", request_body = MfaVerify, responses(
    (status = 200, description = "A new session", body = TokenPair),
    (status = 401, description = "Unknown, used or expired mfa_token, or a wrong, used or replayed code (indistinguishable)", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the per-address limit, or the account's login backoff is running; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn verify(
    State(mfa): State<Mfa>,
    context: RequestContext,
    AuthQuota(mut reports): AuthQuota,
    headers: HeaderMap,
    Json(request): Json<MfaVerify>,
) -> (Reports, Result<Json<TokenPair>, ApiError>) {
    let user_agent = super::auth::user_agent(&headers);
    let pair = mfa
        .verify(
            &context,
            &request.mfa_token,
            &request.code,
            user_agent,
            false,
            &mut reports,
        )
        .await
        .and_then(crate::service::sessions::Opened::into_tokens);
    (reports, pair.map(Json).map_err(ApiError::from))
}
