//! Registration and login.
//!
//! Defends against credential attacks at the edge of identity: every input is parsed into a
//! domain type before use; login does the same work and answers the same 401 for an unknown
//! user, a wrong password and a locked account (the hasher verifies against a dummy hash when
//! there is no user); a saturated hashing pool answers 503 instead of queueing without bound.

use std::time::Duration;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use rampart::http::RequestContext;
use rampart::password::{HashError, Verified};
use rampart::{ApiError, FieldError, Json, Role};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::abuse::{AuthQuota, Reports};
use crate::audit::{Event, Kind};
use crate::domain::{Email, Password, Username};
use crate::metrics::LoginOutcome;
use crate::routes::users::UserResponse;
use crate::state::AppState;
use crate::store::{self, NewSession, NewUser, StoreError, UserRecord};

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

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; presented once to `/v1/auth/refresh`.
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

/// A login body in either accepted format.
#[derive(Debug)]
pub struct LoginInput(pub LoginRequest);

impl<S: Send + Sync> FromRequest<S> for LoginInput {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            let Json(login) = Json::<LoginRequest>::from_request(request, state).await?;
            return Ok(Self(login));
        }
        // `curl -d '{...}'` sends JSON labelled as a form: say so, rather than that the form is
        // wrong. (The body is already in memory: the stack receives it whole.)
        let (parts, body) = request.into_parts();
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

pub(crate) fn hashing_error(err: HashError) -> ApiError {
    match err {
        HashError::Busy => ApiError::Unavailable {
            retry_after: Duration::from_secs(1),
        },
        HashError::Internal(cause) => ApiError::internal(cause),
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
    State(state): State<AppState>,
    context: RequestContext,
    AuthQuota(reports): AuthQuota,
    Json(request): Json<RegisterRequest>,
) -> (Reports, Result<(StatusCode, Json<UserResponse>), ApiError>) {
    (reports, register_user(&state, &context, request).await)
}

async fn register_user(
    state: &AppState,
    context: &RequestContext,
    request: RegisterRequest,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    let mut errors = Vec::new();
    let email = Email::parse(&request.email)
        .map_err(|m| errors.push(FieldError::new("email", m)))
        .ok();
    let username = Username::parse(&request.username)
        .map_err(|m| errors.push(FieldError::new("username", m)))
        .ok();
    let (user_hint, email_hint) = (
        username.as_ref().map(|u| u.as_str().to_owned()),
        email.as_ref().map(|e| e.as_str().to_owned()),
    );
    // The strength estimate is CPU work; keep it off the async workers.
    let password = tokio::task::spawn_blocking(move || {
        Password::parse(
            request.password,
            user_hint.as_deref(),
            email_hint.as_deref(),
        )
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|m| errors.push(FieldError::new("password", m)))
    .ok();
    let (Some(email), Some(username), Some(password)) = (email, username, password) else {
        return Err(ApiError::Validation(errors));
    };
    let password_hash = state
        .hasher
        .hash(password.into_secret())
        .await
        .map_err(hashing_error)?;
    let event = Event::new(Kind::Register, context);
    let user = create_user(state, &email, &username, password_hash, Role::User, event).await?;
    Ok((StatusCode::CREATED, Json(UserResponse::from(&user))))
}

/// Stores a new user and the `register` event for it, together; shared by registration, the
/// CLI and the importer.
pub async fn create_user(
    state: &AppState,
    email: &Email,
    username: &Username,
    password_hash: String,
    role: Role,
    event: Event,
) -> Result<UserRecord, ApiError> {
    let new = NewUser {
        id: store::new_id(),
        email: email.as_str().to_owned(),
        email_key: email.key(),
        username: username.as_str().to_owned(),
        username_key: username.key(),
        password_hash,
        role,
    };
    let state = state.clone();
    crate::state::to_completion(async move {
        let mut unit = state.begin().await?;
        let user = unit.tx().create_user(new).await?;
        unit.record(event.user(&user.id)).await?;
        unit.commit().await?;
        Ok(user)
    })
    .await
    .map_err(|err| match err {
        StoreError::Conflict(_) => {
            ApiError::Conflict("The email or username is already registered.".into())
        }
        other => ApiError::from(other),
    })
}

/// Log in with a username or email and a password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth",
    request_body(content(
        (LoginRequest = "application/json"),
        (PasswordGrant = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "A new session", body = TokenPair),
        (status = 401, description = "Unknown user, wrong password or locked account (indistinguishable)", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Over a login limit, or this name's backoff delay is running (even with the right password); see Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Hashing is saturated; retry after Retry-After", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    AuthQuota(mut reports): AuthQuota,
    headers: HeaderMap,
    LoginInput(request): LoginInput,
) -> (Reports, Result<Json<TokenPair>, ApiError>) {
    // Refusals and failures carry the limits' headers as much as successes do.
    let result = attempt_login(&state, &context, &mut reports, &headers, request).await;
    let outcome = match &result {
        Ok(_) => Some(LoginOutcome::Success),
        // Counted where the reason is known.
        Err(ApiError::Unauthorized) => None,
        Err(ApiError::TooManyRequests { .. }) => Some(LoginOutcome::Throttled),
        Err(ApiError::Unavailable { .. } | ApiError::DependencyUnavailable { .. }) => {
            Some(LoginOutcome::Unavailable)
        }
        Err(_) => Some(LoginOutcome::Invalid),
    };
    if let Some(outcome) = outcome {
        state.metrics.login(outcome);
    }
    (reports, result)
}

async fn attempt_login(
    state: &AppState,
    context: &RequestContext,
    reports: &mut Reports,
    headers: &HeaderMap,
    request: LoginRequest,
) -> Result<Json<TokenPair>, ApiError> {
    let login_key = request.username.trim().to_lowercase();
    // Limits and backoff count the name as submitted (bounded), account or not.
    let name: String = login_key.chars().take(254).collect();
    // Shed a login that could not be hashed before anything else is done for it: before the
    // store is read, and before the attempt counts against the name's backoff, so a flood that
    // fills the pool cannot turn an owner's retries into a lockout.
    if state.hasher.is_saturated() {
        return Err(hashing_error(HashError::Busy));
    }
    let streak = state.admit_login(context, &name, reports).await?;
    let user = if login_key.is_empty() || login_key.len() > 254 || login_key.contains('\0') {
        None
    } else {
        state.store.find_user_by_login(&login_key).await?
    };
    // Kept for a rehash after a successful verification; zeroised when dropped.
    let password_copy = SecretString::from(request.password.expose_secret().to_owned());
    // A name with no account takes the time of some account's hash (`password::decoys`).
    let verified = match &user {
        Some(user) => {
            state
                .hasher
                .verify(request.password, Some(&user.password_hash))
                .await
        }
        None => state.hasher.verify_unknown(request.password, &name).await,
    }
    .map_err(hashing_error)?;
    let (user, needs_rehash) = match (user, verified) {
        (Some(user), Verified::Valid { needs_rehash }) if !user.locked => (user, needs_rehash),
        (user, verified) => {
            let outcome = match (&user, verified) {
                (None, _) => LoginOutcome::UnknownUser,
                (Some(u), Verified::Valid { .. }) if u.locked => LoginOutcome::Locked,
                _ => LoginOutcome::WrongPassword,
            };
            state.metrics.login(outcome);
            let reason = match outcome {
                LoginOutcome::UnknownUser => "unknown_user",
                LoginOutcome::Locked => "locked",
                _ => "wrong_password",
            };
            state.login_failed(context, &name).await;
            // The submitted name only when it is an account's (see `lockout_event`).
            let user_id = user.as_ref().map(|u| u.id.as_str());
            let mut failed = Event::new(Kind::LoginFailed, context)
                .detail(serde_json::json!({"reason": reason}));
            if let Some(user_id) = user_id {
                failed = failed
                    .user(user_id)
                    .detail(serde_json::json!({"login": name, "reason": reason}));
            }
            let locked = AppState::lockout_event(context, &name, streak, user_id);
            state
                .record_failure(std::iter::once(failed).chain(locked).collect())
                .await?;
            return Err(ApiError::Unauthorized);
        }
    };
    // Upgrade old or imported hashes now that the password is known to be right.
    let rehash = if needs_rehash {
        match state.hasher.hash(password_copy).await {
            Ok(hash) => Some(hash),
            Err(err) => {
                tracing::warn!(error = %err, "password rehash skipped");
                None
            }
        }
    } else {
        None
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    let event = Event::new(Kind::LoginSucceeded, context).user(&user.id);
    let pair = open_session(state, &user.id, user_agent, context, rehash, event).await?;
    state
        .clear_login_backoff(&[&name, &user.username, &user.email])
        .await;
    Ok(Json(pair))
}

/// Opens a session for `user_id` (storing a rehashed password first, if given) and records
/// `event` for it, in one transaction; returns the first token pair.
async fn open_session(
    state: &AppState,
    user_id: &str,
    user_agent: Option<String>,
    context: &RequestContext,
    rehash: Option<String>,
    event: Event,
) -> Result<TokenPair, ApiError> {
    let now = store::Timestamp::now();
    let session_max_age = state.settings.session_max_age;
    let refresh_ttl = state.settings.refresh_ttl.min(session_max_age);
    let session_id = store::new_id();
    let (refresh_token, refresh_hash) = new_refresh_token()?;
    let session = NewSession {
        id: session_id.clone(),
        user_id: user_id.to_owned(),
        user_agent,
        ip: context.client_ip.to_string(),
        expires_at: now + session_max_age,
        refresh_hash,
        refresh_expires_at: now + refresh_ttl,
    };
    let (shared, owner, event) = (
        state.clone(),
        user_id.to_owned(),
        event.detail(serde_json::json!({"session_id": session_id})),
    );
    crate::state::to_completion(async move {
        let mut unit = shared.begin().await?;
        if let Some(hash) = rehash {
            unit.tx().set_password_hash(&owner, &hash).await?;
        }
        unit.tx().create_session(session).await?;
        unit.record(event).await?;
        unit.commit().await?;
        Ok::<(), StoreError>(())
    })
    .await?;
    let access = state
        .tokens
        .issue(user_id, &session_id)
        .map_err(ApiError::internal)?;
    Ok(TokenPair {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in.as_secs(),
        refresh_token,
        refresh_expires_in: refresh_ttl.as_secs(),
    })
}

/// A 256-bit random refresh token and the SHA-256 that is stored in its place.
pub(crate) fn new_refresh_token() -> Result<(String, String), ApiError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|_| ApiError::internal("no randomness for a refresh token"))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = refresh_token_hash(&token);
    Ok((token, hash))
}

pub(crate) fn refresh_token_hash(token: &str) -> String {
    store::sha256_hex(token.as_bytes())
}
