//! One error type for every failure a client can see, rendered as RFC 9457 problem+json.
//!
//! Defends against information leaks: a client only ever receives a fixed title, a detail
//! written for it, and the request id. Internal causes (database errors, I/O, panics) are logged
//! server-side next to the request id and never serialised, so a 5xx cannot reveal SQL, file
//! paths, library names or stack traces.
//!
//! Rendering happens twice by design: [`ApiError::into_response`] writes a complete document and
//! also leaves the [`Problem`] in the response extensions; the request-id layer
//! ([`crate::http::request_id`]) re-renders it with the request's id. This keeps errors usable
//! from any extractor or layer without a task-local or a global.

use std::borrow::Cow;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

/// Content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field in a request body or query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Dotted path of the field (`password`, `items[2].title`); empty for the document itself.
    pub field: String,
    /// What is wrong, written for the client.
    pub message: String,
}

/// Characters of a field path an error repeats back; a client chooses field names (an unknown
/// one is named in the answer), and a megabyte-long name must not come back as a megabyte.
const MAX_FIELD_CHARS: usize = 128;
/// Characters of a field error's message (which may quote the field's name again).
const MAX_MESSAGE_CHARS: usize = 256;

impl FieldError {
    /// Both parts are cut to a bound (ending in `...`): the answer to a hostile body stays
    /// small whatever names it used.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: bounded(field.into(), MAX_FIELD_CHARS),
            message: bounded(message.into(), MAX_MESSAGE_CHARS),
        }
    }
}

fn bounded(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Every failure a handler, extractor or layer can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("bad request: {0}")]
    BadRequest(Cow<'static, str>),
    /// Missing, malformed, expired or revoked credentials. Deliberately carries no reason:
    /// every authentication failure looks the same to the client.
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(Cow<'static, str>),
    #[error("request timeout")]
    RequestTimeout,
    #[error("payload too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType(Cow<'static, str>),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// Over a rate limit; `quota` names the policy for the `RateLimit` headers.
    #[error("too many requests")]
    TooManyRequests {
        retry_after: Duration,
        quota: Option<Box<crate::limit::QuotaReport>>,
    },
    /// The server is shedding load or a dependency is down; the client may retry.
    #[error("service unavailable")]
    Unavailable { retry_after: Duration },
    /// A dependency (the database, Redis) failed or is saturated; the client may retry. Answered
    /// exactly like [`ApiError::Unavailable`]; the cause goes to the request's access-log line
    /// (where repeats are folded into one line a second), never to the client.
    #[error("dependency unavailable: {cause}")]
    DependencyUnavailable {
        retry_after: Duration,
        cause: String,
    },
    /// Anything unexpected. The source is logged, never sent.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A client error with a problem type of its own (`kind`, a `urn:...` URI), so clients can
    /// tell it from others of its status: a spent reset link, an address still to verify.
    #[error("{kind}")]
    Specific {
        status: StatusCode,
        kind: &'static str,
        detail: Cow<'static, str>,
    },
}

impl ApiError {
    /// Wraps an unexpected failure; the cause is logged when the response is built.
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(err.into())
    }

    /// A validation failure on a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::DependencyUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Specific { status, .. } => *status,
        }
    }

    /// The client-facing document. Never includes the internal cause.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let (detail, errors): (Cow<'static, str>, Vec<FieldError>) = match self {
            Self::BadRequest(d) | Self::Conflict(d) | Self::UnsupportedMediaType(d) => {
                (d.clone(), Vec::new())
            }
            Self::Unauthorized => ("Valid credentials are required.".into(), Vec::new()),
            Self::Forbidden => ("You do not have permission to do this.".into(), Vec::new()),
            Self::NotFound => ("The resource does not exist.".into(), Vec::new()),
            Self::RequestTimeout => (
                "The request took too long and the server stopped waiting for it. If it asked \
                 for a change, check whether the change was made before sending it again."
                    .into(),
                Vec::new(),
            ),
            Self::PayloadTooLarge { limit } => (
                format!("The request body exceeds the limit of {limit} bytes.").into(),
                Vec::new(),
            ),
            Self::Validation(errs) => ("The request is invalid.".into(), errs.clone()),
            Self::TooManyRequests { .. } => (
                "Too many requests; retry after the delay in Retry-After.".into(),
                Vec::new(),
            ),
            Self::Unavailable { .. } | Self::DependencyUnavailable { .. } => (
                "The service is temporarily unable to handle the request.".into(),
                Vec::new(),
            ),
            Self::Internal(_) => (
                "An unexpected error occurred; quote the request id when reporting it.".into(),
                Vec::new(),
            ),
            Self::Specific { kind, detail, .. } => {
                let mut problem = Problem::new(status, detail.clone());
                problem.kind = kind;
                return problem;
            }
        };
        Problem::new(status, detail).with_errors(errors)
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::TooManyRequests { retry_after, .. }
            | Self::Unavailable { retry_after }
            | Self::DependencyUnavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// The cause of a 500, carried in the response extensions to the edge of the stack, where
/// [`crate::http::Hardening`] logs it once, on the request's access-log line with its request
/// id. It is never serialised into the body.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.problem().into_response();
        match &self {
            Self::Internal(cause) => {
                response
                    .extensions_mut()
                    .insert(InternalCause(error_chain(cause.as_ref())));
            }
            Self::DependencyUnavailable { cause, .. } => {
                response
                    .extensions_mut()
                    .insert(InternalCause(cause.clone()));
            }
            // A refusal of its own kind (mail off, say): the log names the kind.
            Self::Specific { status, kind, .. } if status.is_server_error() => {
                response.extensions_mut().insert(InternalCause(
                    kind.rsplit(':').next().unwrap_or(kind).to_owned(),
                ));
            }
            _ => {}
        }
        if let Some(retry) = self.retry_after() {
            // Round up: a client retrying after 0 s would be refused again.
            let secs = crate::limit::report::seconds_up(retry);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if let Self::TooManyRequests {
            quota: Some(report),
            ..
        } = &self
        {
            report.apply(response.headers_mut());
        }
        if matches!(self, Self::Unauthorized) {
            // The gate says `error="invalid_token"` when credentials were sent (RFC 6750 3.1);
            // with none, the bare challenge.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// `cause: source: source`, for the log.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// An RFC 9457 problem document. Kept in the response extensions so the outer layer can add the
/// request id without parsing the body.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI identifying the kind of problem (`urn:rampart:problem:<slug>`).
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub kind: &'static str,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub title: &'static str,
    pub status: u16,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub detail: Cow<'static, str>,
    /// Same value as the response's `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: problem_type(status),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            request_id: None,
            errors: Vec::new(),
        }
    }

    /// A generic document for a bare error status produced outside rampart's handlers (axum's
    /// 405, hyper-level rejections, a layer that only set a status).
    pub fn for_status(status: StatusCode) -> Self {
        let detail = match status {
            StatusCode::METHOD_NOT_ALLOWED => "This method is not allowed on this resource.",
            StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.",
            StatusCode::REQUEST_TIMEOUT => {
                "The request took too long and the server stopped waiting for it."
            }
            s if s.is_server_error() => {
                "An unexpected error occurred; quote the request id when reporting it."
            }
            _ => "The request could not be processed.",
        };
        Self::new(status, detail)
    }

    #[must_use]
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Serialises the document. Serialising these plain fields cannot fail; the fallback keeps
    /// that true without a panic path.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| {
            format!(
                r#"{{"type":"about:blank","title":"Error","status":{}}}"#,
                self.status
            )
            .into_bytes()
        })
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.to_body();
        // Its content type, `content-length` and one of `WWW-Authenticate`/`Retry-After`.
        let mut headers = crate::http::headers::response_headers(3);
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        let mut response = Response::new(axum::body::Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response.extensions_mut().insert(self);
        response
    }
}

/// Stable problem type URIs, one per status, so clients can match on `type` rather than titles.
fn problem_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "urn:rampart:problem:bad-request",
        401 => "urn:rampart:problem:unauthorized",
        403 => "urn:rampart:problem:forbidden",
        404 => "urn:rampart:problem:not-found",
        405 => "urn:rampart:problem:method-not-allowed",
        408 => "urn:rampart:problem:request-timeout",
        409 => "urn:rampart:problem:conflict",
        413 => "urn:rampart:problem:payload-too-large",
        415 => "urn:rampart:problem:unsupported-media-type",
        422 => "urn:rampart:problem:validation-error",
        429 => "urn:rampart:problem:rate-limited",
        503 => "urn:rampart:problem:unavailable",
        _ => "about:blank",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_error_repeats_a_bounded_part_of_what_the_client_sent() {
        let name = "\u{e9}".repeat(100_000);
        let error = FieldError::new(
            name.clone(),
            format!("unknown field `{name}`, expected `title`"),
        );
        assert_eq!(error.field.chars().count(), MAX_FIELD_CHARS + 3);
        assert!(error.message.chars().count() <= MAX_MESSAGE_CHARS + 3);
        assert!(error.message.starts_with("unknown field `"));
        let short = FieldError::new("title", "is required");
        assert_eq!(
            (short.field.as_str(), short.message.as_str()),
            ("title", "is required")
        );
    }

    #[test]
    fn internal_error_never_carries_its_cause() {
        let err = ApiError::internal(std::io::Error::other(
            "SELECT * FROM users at /srv/app/db.rs:42 (sqlx)",
        ));
        let body = String::from_utf8(err.problem().to_body()).unwrap_or_default();
        assert!(body.contains("\"status\":500"), "{body}");
        for leak in ["SELECT", "/srv", "sqlx", "db.rs"] {
            assert!(!body.contains(leak), "leaked {leak}: {body}");
        }
    }

    #[test]
    fn retry_after_is_rounded_up_and_never_zero() {
        let res = ApiError::TooManyRequests {
            quota: None,
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "2");
        let res = ApiError::Unavailable {
            retry_after: Duration::ZERO,
        }
        .into_response();
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn validation_lists_fields() {
        let problem = ApiError::invalid("password", "too short").problem();
        assert_eq!(problem.status, 422);
        assert_eq!(
            problem.errors,
            vec![FieldError::new("password", "too short")]
        );
    }

    #[test]
    fn a_server_refusal_of_its_own_kind_names_the_kind_for_the_log_only() {
        let response = ApiError::Specific {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "urn:rampart:problem:mail-off",
            detail: "mail is not set up".into(),
        }
        .into_response();
        let cause = response.extensions().get::<InternalCause>();
        assert_eq!(cause.map(|c| c.0.as_str()), Some("mail-off"));
        let client_side = ApiError::Specific {
            status: StatusCode::FORBIDDEN,
            kind: "urn:rampart:problem:csrf",
            detail: "refused".into(),
        }
        .into_response();
        assert!(client_side.extensions().get::<InternalCause>().is_none());
    }
}
