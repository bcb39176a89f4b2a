//! `/v1/auth/register` and `/v1/auth/login`: the request bodies (JSON, or the OAuth2 password
//! grant the docs page's Authorize button sends) and their answers. The rules are in
//! [`crate::service::accounts`].

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use rampart::http::RequestContext;
use rampart::{ApiError, FieldError, Json};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::abuse::{AuthQuota, Reports};
use crate::routes::users::UserResponse;
use crate::service::accounts::{Accounts, Login, LoginAnswer, MfaChallenge, Registration};
use crate::service::email::EmailLinks;
use crate::service::sessions::TokenPair;
use crate::service::ServiceError;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "alice@example.com")]
    pub email: String,
    #[schema(example = "alice", pattern = "^[A-Za-z0-9_-]{3,32}$")]
    pub username: String,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    pub password: SecretString,
}

/// JSON login: `username` holds the username or the email.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "alice")]
    pub username: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// OAuth2 password grant (RFC 6749 4.3), as the docs page's Authorize button sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordGrant {
    #[schema(example = "password")]
    pub grant_type: String,
    pub username: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<SecretString>,
}

/// A login's answer: a new session's tokens, or for an account with two-factor
/// authentication the second step.
#[derive(Debug, serde::Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Tokens(TokenPair),
    MfaRequired(MfaChallenge),
}

impl LoginRequest {
    /// The attempt this body makes, from a browser (`/v1/browser/login`) or not.
    pub(crate) fn into_login(self, headers: &HeaderMap, browser: bool) -> Login {
        Login {
            name: self.username,
            password: self.password,
            user_agent: user_agent(headers),
            browser,
        }
    }
}

/// A login body in either accepted format.
#[derive(Debug)]
pub struct LoginInput(pub LoginRequest);

impl<S: Send + Sync> FromRequest<S> for LoginInput {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        // Read as the JSON extractor reads it: two content types, a list or a foreign charset
        // are neither a form nor JSON, and the JSON reading refuses them (415).
        let form = rampart::json::declared_media_type(request.headers()).is_some_and(|essence| {
            essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if !form {
            let Json(login) = Json::<LoginRequest>::from_request(request, state).await?;
            return Ok(Self(login));
        }
        // `curl -d '{...}'` sends JSON labelled as a form: say so, rather than that the form is
        // wrong. (The body is already in memory: the stack receives it whole.)
        let (mut parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|_| ApiError::BadRequest("The request body could not be read.".into()))?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return Err(ApiError::UnsupportedMediaType(
                "The body is JSON but its Content-Type is application/x-www-form-urlencoded \
                 (what `curl -d` sends unless told otherwise): send Content-Type: \
                 application/json, or the form grant_type=password&username=...&password=..."
                    .into(),
            ));
        }
        // Media types are case-insensitive, axum's form reader is not: it is handed the
        // canonical spelling of what was already judged a form above.
        parts.headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        let axum::Form(grant) = axum::Form::<PasswordGrant>::from_request(request, state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: 0 },
                _ => ApiError::Validation(vec![FieldError::new(
                    "",
                    "expected grant_type=password&username=...&password=... (and optionally scope, client_id)",
                )]),
            })?;
        if grant.grant_type != "password" {
            return Err(ApiError::invalid(
                "grant_type",
                "only the password grant is supported",
            ));
        }
        Ok(Self(LoginRequest {
            username: grant.username,
            password: grant.password,
        }))
    }
}

/// Create an account.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, description = "Created", body = UserResponse),
    (status = 409, description = "The email or username is taken", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 429, description = "Over the per-address limit of the credential endpoints; see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
    (status = 422, description = "A field breaks the policy", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn register(
    State(accounts): State<Accounts>,
    State(links): State<EmailLinks>,
    context: RequestContext,
    AuthQuota(reports): AuthQuota,
    Json(request): Json<RegisterRequest>,
) -> (Reports, Result<(StatusCode, Json<UserResponse>), ApiError>) {
    let registration = Registration {
        email: request.email,
        username: request.username,
        password: request.password,
    };
    let created = accounts.register(&context, registration).await;
    if let Ok(user) = &created {
        // The account exists either way: a message that cannot be sent now is asked for
        // again with /v1/auth/email/verify/resend.
        match links
            .send_verification(&context, user, "/v1/auth/register")
            .await
        {
            Ok(()) | Err(ServiceError::MailOff | ServiceError::Limited(_)) => {}
            Err(err) => tracing::warn!(error = %err, "the verification link was not sent"),
        }
    }
    let answer = created.map(|user| (StatusCode::CREATED, Json(UserResponse::from(&user))));
    (reports, answer.map_err(ApiError::from))
}

/// Log in with a username or email and a password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth",
    request_body(content(
        (LoginRequest = "application/json"),
        (PasswordGrant = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "A new session's token pair; or, for an account with two-factor authentication, `{\"mfa_required\":true,\"mfa_token\",\"expires_in\"}` to complete at /v1/auth/mfa/verify", body = LoginResponse),
        (status = 401, description = "Unknown user, wrong password or locked account (indistinguishable)", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over a login limit, or this name's backoff delay is running (even with the right password); see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Hashing is saturated; retry after Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(accounts): State<Accounts>,
    context: RequestContext,
    AuthQuota(mut reports): AuthQuota,
    headers: HeaderMap,
    LoginInput(request): LoginInput,
) -> (Reports, Result<Json<LoginResponse>, ApiError>) {
    let login = request.into_login(&headers, false);
    // Refusals and failures carry the limits' headers as much as successes do.
    let answer = accounts.log_in(&context, login, &mut reports).await;
    let answer = answer
        .map_err(ApiError::from)
        .and_then(|answer| match answer {
            LoginAnswer::Opened(opened) => opened
                .into_tokens()
                .map(LoginResponse::Tokens)
                .map_err(ApiError::from),
            LoginAnswer::MfaRequired(challenge) => Ok(LoginResponse::MfaRequired(challenge)),
        });
    (reports, answer.map(Json))
}

/// The client's `User-Agent`, shortened, as a new session lists it.
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect())
}
