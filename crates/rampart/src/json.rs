//! A strict JSON body extractor.
//!
//! Defends against malformed and hostile request bodies: the content type must be JSON (415
//! otherwise, so a form post cannot be read as JSON by accident), the body must be UTF-8,
//! nesting is capped before parsing (a `[[[[...` body cannot exhaust the stack or the CPU), and
//! every failure is a problem document: syntax errors are 400, wrong types and unknown fields
//! are 422 naming the field. Request types are expected to use `#[serde(deny_unknown_fields)]`,
//! which is what turns mass-assignment attempts (`"role": "admin"`) into a 422.
//!
//! A request body is a JSON object. serde reads a struct from an array as well, by position
//! (`["alice","secret"]` logs in), which slips past gateways and schema checks that look at
//! keys; the extractor refuses any other top-level value (422), and field errors never name
//! the server's Rust types.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ApiError, FieldError};
use crate::http::stage::{stage_layer, Stage};

/// Nesting allowed when the hardening stack is not installed.
pub const DEFAULT_MAX_DEPTH: usize = 32;

/// Per-app JSON limits, read by [`Json`] from the request's extensions. It is its own layer
/// (the [`crate::http::Hardening`] stack includes it; an app using the layers alone adds
/// `.layer(JsonConfig { .. })`), which puts the limits, and axum's `DefaultBodyLimit` of the
/// same size, on each request that carries a body: a request without one has nothing for an
/// extractor to read, and is spared the two allocations.
#[derive(Debug, Clone, Copy)]
pub struct JsonConfig {
    pub max_depth: usize,
    pub body_limit: usize,
}

impl Stage for JsonConfig {
    type Finish = ();

    fn enter(&self, request: &mut Request) -> Result<(), Response> {
        if !axum::body::HttpBody::is_end_stream(request.body()) {
            request.extensions_mut().insert(*self);
            axum::extract::DefaultBodyLimit::max(self.body_limit).apply(request);
        }
        Ok(())
    }
}

stage_layer!(JsonConfig);

/// Extracts and validates a JSON body; serialises a JSON response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json_content_type(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "Send the body as application/json.".into(),
            ));
        }
        let config = request.extensions().get::<JsonConfig>().copied();
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge {
                        limit: config.map_or(0, |c| c.body_limit),
                    }
                } else {
                    ApiError::BadRequest("The request body could not be read.".into())
                }
            })?;
        parse_object(&bytes, config.map_or(DEFAULT_MAX_DEPTH, |c| c.max_depth)).map(Json)
    }
}

/// [`parse`] for a request body, which must be a JSON object (see the module header).
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => parse(bytes, max_depth),
        Some(_) => Err(ApiError::invalid("", "must be a JSON object")),
    }
}

/// Parses a JSON document with rampart's rules (UTF-8, depth, field-level errors).
pub fn parse<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::BadRequest(
            "The request body is not valid UTF-8.".into(),
        ));
    }
    if exceeds_depth(bytes, max_depth) {
        return Err(ApiError::BadRequest(
            format!("The JSON document is nested deeper than {max_depth} levels.").into(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = data_error_message(&inner);
                // serde reports a missing field at the object that lacks it, by name only in
                // its message: name it as the field, like every other field error.
                let missing = message
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.strip_suffix('`'));
                let (field, message) = match missing {
                    Some(name) if path == "." => (name.to_owned(), "is required".to_owned()),
                    Some(name) => (format!("{path}.{name}"), "is required".to_owned()),
                    None if path == "." => (String::new(), message),
                    None => (path, message),
                };
                ApiError::Validation(vec![FieldError::new(field, message)])
            }
            _ => ApiError::BadRequest(
                format!(
                    "The request body is not valid JSON (line {}, column {}).",
                    inner.line(),
                    inner.column()
                )
                .into(),
            ),
        }
    })?;
    deserializer.end().map_err(|_| {
        ApiError::BadRequest("The request body has data after the JSON document.".into())
    })?;
    Ok(value)
}

/// serde's message without its " at line X column Y" suffix (the field path says where), and
/// with "struct Name" and "enum Name" said as what the client sends: a client learns the
/// shape expected, not the server's type names.
fn data_error_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" at line ") {
        Some(cut) => &text[..cut],
        None => &text,
    };
    let mut said = String::with_capacity(text.len());
    let mut words = text.split(' ').peekable();
    while let Some(word) = words.next() {
        let kind = match word {
            "struct" => Some("an object"),
            "enum" => Some("one of the allowed values"),
            _ => None,
        };
        let named = words.peek().is_some_and(|next| {
            next.chars().next().is_some_and(char::is_uppercase)
                && next
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == ',')
        });
        if let (Some(kind), true) = (kind, named) {
            let name = words.next().unwrap_or_default();
            if !said.is_empty() {
                said.push(' ');
            }
            said.push_str(kind);
            if name.ends_with(',') {
                said.push(',');
            }
            continue;
        }
        if !said.is_empty() {
            said.push(' ');
        }
        said.push_str(word);
    }
    said
}

/// The body's media type as the request declares it: the essence of its one `Content-Type`
/// (`application/json` of `application/json; charset=utf-8`), or `None` when there is none, or
/// two (which one the sender meant is anyone's guess, and a proxy in front may take the
/// other), or a comma-joined list (what a proxy that merges repeated headers makes of two), or
/// a `charset` other than UTF-8 (JSON is UTF-8, RFC 8259 section 8.1, and so are the forms
/// this server reads: a body declared as latin1 would be read as something its sender did not
/// mean).
pub fn declared_media_type(headers: &http::HeaderMap) -> Option<&str> {
    let value = crate::http::sole_header(headers, header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    // No media type or parameter this server reads holds a comma, quoted or not.
    if value.contains(',') {
        return None;
    }
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    for parameter in parts.map(str::trim).filter(|p| !p.is_empty()) {
        // A parameter is `name=value`; anything else (a second media type after a `;`) is
        // not one media type.
        let (name, value) = parameter.split_once('=')?;
        let value = value.trim().trim_matches('"');
        let foreign_charset = name.trim().eq_ignore_ascii_case("charset")
            && !value.eq_ignore_ascii_case("utf-8")
            && !value.eq_ignore_ascii_case("utf8");
        if foreign_charset {
            return None;
        }
    }
    Some(essence)
}

/// `application/json` or any `application/*+json`, with optional parameters (see
/// [`declared_media_type`] for what else is refused).
fn is_json_content_type(headers: &http::HeaderMap) -> bool {
    let Some(essence) = declared_media_type(headers) else {
        return false;
    };
    let Some(subtype) = essence
        .get(..12)
        .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
        .map(|_| &essence[12..])
    else {
        return false;
    };
    subtype.eq_ignore_ascii_case("json")
        || subtype.len() > 5
            && subtype
                .get(subtype.len() - 5..)
                .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
}

/// True when arrays/objects nest deeper than `max` (brackets inside strings do not count).
fn exceeds_depth(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The value as `application/json`, in a header map with room for what the stack adds (see
/// [`crate::http::headers::response_headers`]). A value that cannot be serialised (a map
/// with keys that are not strings, a `Serialize` impl that fails) is a server error like any
/// other: a problem document, its cause kept for the log, never in the body.
impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        use bytes::BufMut as _;
        // As axum and serde_json's `to_vec` start: most bodies fit, the rest grow.
        let mut body = bytes::BytesMut::with_capacity(128).writer();
        if let Err(err) = serde_json::to_writer(&mut body, &self.0) {
            return ApiError::internal(err).into_response();
        }
        // `content-type` and the `content-length` axum adds.
        let mut headers = crate::http::headers::response_headers(2);
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        let mut response = Response::new(axum::body::Body::from(body.into_inner().freeze()));
        *response.headers_mut() = headers;
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value serde_json cannot write (here a map whose keys are not strings) is a 500 like
    /// any other server error: a problem document, the cause kept for the log and not sent.
    #[tokio::test]
    async fn a_value_that_cannot_be_serialised_is_a_problem_that_keeps_its_cause_out() {
        let value = std::collections::BTreeMap::from([((1, 2), "pair as a key")]);
        let response = Json(value).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            crate::error::PROBLEM_JSON
        );
        let cause = response
            .extensions()
            .get::<crate::error::InternalCause>()
            .map(|cause| cause.0.clone())
            .unwrap_or_default();
        assert!(cause.contains("key must be a string"), "cause: {cause}");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("\"status\":500"), "body: {body}");
        assert!(!body.contains("key must"), "the cause leaked: {body}");
    }

    /// A value is sent as `application/json`, as serde_json writes it.
    #[tokio::test]
    async fn a_value_is_sent_as_json() {
        let response = Json(serde_json::json!({"status": "ok", "n": [1, 2]})).into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        assert_eq!(&body[..], br#"{"n":[1,2],"status":"ok"}"#);
    }

    /// The layer's limits reach the extractor on a request with a body (depth and size both
    /// refused past them), and a request without one is left without them.
    #[tokio::test]
    async fn the_layer_hands_its_limits_to_requests_that_carry_a_body() {
        use axum::routing::post;
        use tower::ServiceExt;

        let app = axum::Router::new()
            .route(
                "/",
                post(|Json(value): Json<serde_json::Value>| async move { value.to_string() }),
            )
            .route(
                "/seen",
                axum::routing::get(|request: Request| async move {
                    request
                        .extensions()
                        .get::<JsonConfig>()
                        .is_some()
                        .to_string()
                }),
            )
            .layer(JsonConfig {
                max_depth: 2,
                body_limit: 32,
            });
        let send = |body: &'static str| {
            let request = Request::post("/")
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from(body))
                .unwrap_or_default();
            app.clone().oneshot(request)
        };
        let status = |sent: Result<Response, std::convert::Infallible>| {
            sent.map_or(StatusCode::IM_A_TEAPOT, |response| response.status())
        };
        assert_eq!(status(send(r#"{"a":{"b":1}}"#).await), StatusCode::OK);
        assert_eq!(
            status(send(r#"{"a":{"b":{"c":1}}}"#).await),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(send(r#"{"a":"0123456789012345678901234567"}"#).await),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let bodiless = app
            .clone()
            .oneshot(
                Request::get("/seen")
                    .body(axum::body::Body::empty())
                    .unwrap_or_default(),
            )
            .await;
        let body = match bodiless {
            Ok(response) => axum::body::to_bytes(response.into_body(), 64)
                .await
                .unwrap_or_default(),
            Err(never) => match never {},
        };
        assert_eq!(&body[..], b"false");
    }

    #[test]
    fn a_missing_field_is_named_as_the_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Login {
            username: String,
            password: String,
        }
        let Err(ApiError::Validation(errors)) = parse::<Login>(br#"{"username":"a"}"#, 8) else {
            panic!("a missing field is a validation error");
        };
        assert_eq!(errors[0].field, "password");
        assert_eq!(errors[0].message, "is required");
    }
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        title: String,
        tags: Vec<String>,
    }

    fn status<T: DeserializeOwned + std::fmt::Debug>(body: &[u8]) -> u16 {
        parse::<T>(body, 8)
            .err()
            .map_or(200, |e| e.status().as_u16())
    }

    #[test]
    fn classifies_failures() {
        assert_eq!(status::<Item>(br#"{"title":"a","tags":[]}"#), 200);
        assert_eq!(status::<Item>(br#"{"title":"a","tags":[]"#), 400);
        assert_eq!(status::<Item>(b"{\"title\":\"\xff\",\"tags\":[]}"), 400);
        assert_eq!(status::<Item>(br#"{"title":"a","tags":[]} trailing"#), 400);
        assert_eq!(status::<Item>(br#"{"title":1,"tags":[]}"#), 422);
        assert_eq!(
            status::<Item>(br#"{"title":"a","tags":[],"owner_id":"x"}"#),
            422
        );
        assert_eq!(status::<Item>(b""), 400);
    }

    /// Reported by an outside test: every body type took a JSON array by position, and
    /// the refusals named the server's types ("expected struct LoginRequest").
    #[test]
    fn a_body_is_an_object_and_errors_name_no_rust_type() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            inner: Item,
        }
        for body in [&br#"["a",["b"]]"#[..], b"[]", br#""a""#, b"12", b"null"] {
            match parse_object::<Item>(body, 8) {
                Err(ApiError::Validation(errors)) => {
                    assert_eq!(errors[0].message, "must be a JSON object");
                }
                other => panic!("{:?} was {other:?}", String::from_utf8_lossy(body)),
            }
        }
        assert!(parse_object::<Item>(br#" {"title":"a","tags":[]}"#, 8).is_ok());
        let Err(ApiError::Validation(errors)) = parse_object::<Outer>(br#"{"inner":"x"}"#, 8)
        else {
            panic!("a string where an object belongs is a validation error");
        };
        assert_eq!(errors[0].field, "inner");
        assert!(!errors[0].message.contains("Item"), "{}", errors[0].message);
        assert!(
            errors[0].message.contains("an object"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn names_the_offending_field() {
        let err = parse::<Item>(br#"{"title":"a","tags":["ok", 5]}"#, 8).err();
        match err {
            Some(ApiError::Validation(errors)) => {
                assert_eq!(errors[0].field, "tags[1]");
                assert!(!errors[0].message.contains("line"), "{}", errors[0].message);
            }
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn depth_is_capped_before_parsing() {
        // Below serde_json's own recursion limit (128), so only rampart's cap can refuse these.
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        assert!(parse::<serde_json::Value>(nested(16).as_bytes(), 16).is_ok());
        match parse::<serde_json::Value>(nested(17).as_bytes(), 16) {
            Err(ApiError::BadRequest(detail)) => {
                assert!(detail.contains("nested deeper than 16"), "{detail}");
            }
            other => panic!("17 levels with a cap of 16 must be refused, got {other:?}"),
        }
        // Brackets inside strings are text, not nesting.
        let quoted = format!(r#"{{"title":"{}","tags":[]}}"#, "[".repeat(100));
        assert!(parse::<Item>(quoted.as_bytes(), 8).is_ok());
        assert!(parse::<serde_json::Value>(br#"[[["\"]]]"]]]"#, 3).is_ok());
    }

    #[test]
    fn content_types() {
        let check = |ct: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
            is_json_content_type(&h)
        };
        assert!(check("application/json"));
        assert!(check("application/json; charset=utf-8"));
        assert!(check("application/json;charset=\"UTF-8\""));
        assert!(!check("application/json; charset=latin1"));
        assert!(!check("application/json; charset=utf-16"));
        assert!(check("Application/JSON"));
        assert!(check("application/merge-patch+json"));
        assert!(!check("text/plain"));
        assert!(!check("application/x-www-form-urlencoded"));
        assert!(!check("application/jsonp"));
        let mut twice = http::HeaderMap::new();
        for ct in ["application/json", "text/plain"] {
            twice.append(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
        }
        assert!(!is_json_content_type(&twice));
        twice.remove(header::CONTENT_TYPE);
        for _ in 0..2 {
            twice.append(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        assert!(!is_json_content_type(&twice), "even the same type twice");
        // One header holding a list, however it is hidden behind parameters.
        for joined in [
            "application/json, text/plain",
            "application/json; x=1, text/plain",
            "application/json; charset=utf-8, application/x-www-form-urlencoded",
            "application/json;application/x-www-form-urlencoded",
        ] {
            assert!(!check(joined), "{joined}");
        }
        assert!(!check("application/+json"));
        assert!(!is_json_content_type(&http::HeaderMap::new()));
    }
}
