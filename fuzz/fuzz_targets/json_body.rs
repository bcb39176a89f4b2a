//! Any request body through the strict JSON extractor: a value, a 400 or a 422, never a panic
//! or a stack overflow, however deep or malformed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::ApiError;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Note {
    title: String,
    tags: Vec<u16>,
    nested: Option<Box<Note>>,
}

fn client_error<T>(result: Result<T, ApiError>) -> bool {
    matches!(
        result,
        Ok(_) | Err(ApiError::BadRequest(_) | ApiError::Validation(_))
    )
}

fuzz_target!(|data: &[u8]| {
    assert!(client_error(rampart::json::parse::<serde_json::Value>(
        data, 32
    )));
    assert!(client_error(rampart::json::parse::<Note>(data, 32)));
});
