//! Any text as the service's own inputs: the login, registration and item bodies, the domain
//! values they are parsed into, path ids and the bearer header. Nothing panics, and what is
//! accepted keeps its invariant.
#![no_main]

use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use rampart::ApiError;
use rampart_server::auth::bearer_token;
use rampart_server::domain::{Email, ItemBody, ItemTitle, RecordId, Username};
use rampart_server::routes::auth::{LoginRequest, RegisterRequest};
use rampart_server::routes::items::{CreateItem, UpdateItem};

fn client_error<T>(result: Result<T, ApiError>) -> bool {
    matches!(
        result,
        Ok(_) | Err(ApiError::BadRequest(_) | ApiError::Validation(_))
    )
}

fuzz_target!(|data: &[u8]| {
    assert!(client_error(rampart::json::parse::<LoginRequest>(data, 32)));
    assert!(client_error(rampart::json::parse::<RegisterRequest>(
        data, 32
    )));
    assert!(client_error(rampart::json::parse::<CreateItem>(data, 32)));
    assert!(client_error(rampart::json::parse::<UpdateItem>(data, 32)));

    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        if let Some(token) = bearer_token(&headers) {
            assert!(!token.is_empty() && token.len() + 7 == data.len());
        }
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(email) = Email::parse(text) {
        assert!(email.as_str().len() <= 254 && email.as_str().is_ascii());
        assert_eq!(Email::parse(email.as_str()).ok(), Some(email.clone()));
    }
    if let Ok(name) = Username::parse(text) {
        assert!((3..=32).contains(&name.as_str().len()));
    }
    if RecordId::parse(text.to_owned()).is_some() {
        assert_eq!(text.len(), 36);
    }
    if let Ok(title) = ItemTitle::try_from(text.to_owned()) {
        assert!(!title.into_inner().contains('\0'));
    }
    if let Ok(body) = ItemBody::try_from(text.to_owned()) {
        assert!(body.into_inner().chars().count() <= 10_000);
    }
});
