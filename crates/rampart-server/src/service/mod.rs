//! The rules of the service, between the routes (HTTP in, HTTP out) and the store (SQL).
//!
//! Defends against a rule kept in one caller and missed by another: registration, the
//! `users create` command and the importer all create accounts through [`accounts`]; the
//! login form and the password change go through the same attempt accounting; refresh, logout
//! and an admin's lock end sessions through [`sessions`]. Routes extract, call one of these and
//! answer; they never name the store. Each service is a cheap handle that a handler takes as
//! `State<Service>` (see [`crate::state`]).
//!
//! Every service answers with [`ServiceError`], which says what went wrong in the service's
//! terms and converts to the one HTTP error type at the edge.

pub mod accounts;
pub mod admin;
pub mod email;
pub mod items;
pub mod mfa;
pub mod refresh;
pub mod sessions;
#[cfg(test)]
mod testing;

use std::time::Duration;

use rampart::password::HashError;
use rampart::{ApiError, FieldError};

use crate::store::{StoreError, Taken};

/// Every service, built once at start-up from the parts each needs; the app state holds them
/// and a handler takes one as `State<accounts::Accounts>` (and so on).
#[derive(Debug, Clone)]
pub struct Services {
    pub accounts: accounts::Accounts,
    pub mfa: mfa::Mfa,
    pub email: email::EmailLinks,
    pub sessions: sessions::Sessions,
    pub items: items::Items,
    pub admin: admin::Admin,
}

/// What a service refused or failed at.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Credentials, or a refresh token, that do not hold; one answer whatever the reason.
    #[error("unauthorized")]
    Unauthorized,
    /// Nothing of the caller's under that id (another user's answers the same).
    #[error("not found")]
    NotFound,
    /// A unique value is already taken.
    #[error("the {0} is already registered")]
    Taken(Taken),
    /// A rule refuses this change as things stand (the last admin, the caller's own
    /// account); the reason is told to the caller.
    #[error("refused: {0}")]
    Refused(&'static str),
    /// Input the rules refuse, field by field.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// A limit or a login backoff delay refused the attempt; carries the refusal as the
    /// limiter made it (policy, quota and retry-after for the response headers).
    #[error("refused by a limit")]
    Limited(ApiError),
    #[error("password hashing: {0}")]
    Hashing(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A refusal with its own answer (a problem type of its own), passed on as it is.
    #[error("refused: {0}")]
    Answer(ApiError),
    /// The action sends mail and this server has none configured.
    #[error("mail is off")]
    MailOff,
    /// Anything else unexpected (no randomness, a token that cannot be signed). Logged, never
    /// shown.
    #[error("internal: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub fn invalid(field: &str, message: &str) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }

    /// A cursor the pagination key refused (forged, altered, another list's): its field error.
    pub fn cursor(refusal: ApiError) -> Self {
        match refusal {
            ApiError::Validation(errors) => Self::Invalid(errors),
            other => Self::internal(other),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Unauthorized => Self::Unauthorized,
            ServiceError::NotFound => Self::NotFound,
            ServiceError::Taken(_) => {
                // Which one is not said: it would confirm that an email has an account.
                Self::Conflict("The email or username is already registered.".into())
            }
            ServiceError::Refused(reason) => Self::Conflict(reason.into()),
            ServiceError::Invalid(errors) => Self::Validation(errors),
            ServiceError::Limited(refusal) | ServiceError::Answer(refusal) => refusal,
            ServiceError::MailOff => Self::Specific {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                kind: "urn:rampart:problem:mail-off",
                detail: "This server sends no mail (its operator has not configured RAMPART_MAIL)."
                    .into(),
            },
            ServiceError::Hashing(HashError::Busy) => Self::Unavailable {
                retry_after: Duration::from_secs(1),
            },
            ServiceError::Hashing(HashError::Internal(cause)) | ServiceError::Internal(cause) => {
                Self::internal(cause)
            }
            ServiceError::Store(err) => err.into(),
        }
    }
}

/// A new opaque secret for a client to hold (256 random bits, URL-safe base 64, 43
/// characters) and the SHA-256 stored in its place: refresh tokens, browser session cookies,
/// login challenges and mailed links alike.
pub(crate) fn new_opaque_token() -> Result<(String, String), ServiceError> {
    use base64::Engine as _;
    let mut random = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(random.as_mut_slice())
        .map_err(|_| ServiceError::internal("no randomness for a token"))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random.as_slice());
    let hash = crate::store::sha256_hex(token.as_bytes());
    Ok((token, hash))
}

/// The stored hash of an opaque token as sent back, or `None` when it cannot be one (not 43
/// URL-safe base-64 characters): nothing of another shape reaches the store.
pub(crate) fn opaque_token_hash(sent: &str) -> Option<String> {
    (sent.len() == 43
        && sent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then(|| crate::store::sha256_hex(sent.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_tokens_are_random_and_only_well_formed_ones_are_looked_up() {
        let (token, hash) = new_opaque_token().unwrap();
        assert_eq!(opaque_token_hash(&token).as_deref(), Some(hash.as_str()));
        assert_ne!(new_opaque_token().unwrap().0, token);
        for junk in ["", "short", &format!("{token}x"), &"/".repeat(43)] {
            assert_eq!(opaque_token_hash(junk), None, "{junk}");
        }
    }
}
