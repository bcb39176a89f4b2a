//! Property tests for the service's input types: the parsed domain values (`Email`, `Username`,
//! `Password`, `RecordId`, item text), the bearer header, and the request bodies as the strict
//! JSON extractor reads them. For any input: no panic, nothing outside the documented form is
//! accepted, and what is accepted keeps its invariant (length bounds, no NUL, canonical ids).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use http::{header, HeaderMap, HeaderValue};
use proptest::prelude::*;
use rampart::ApiError;
use rampart_server::auth::bearer_token;
use rampart_server::domain::{Email, ItemBody, ItemTitle, Password, RecordId, Username};
use rampart_server::routes::auth::{LoginRequest, RegisterRequest};
use rampart_server::routes::items::{CreateItem, UpdateItem};
use secrecy::SecretString;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn usernames_are_exactly_3_to_32_safe_characters(raw in prop_oneof!["[A-Za-z0-9_-]{0,40}", ".{0,40}"]) {
        let expected = (3..=32).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match Username::parse(&raw) {
            Ok(name) => {
                prop_assert!(expected, "accepted {raw:?}");
                prop_assert_eq!(name.as_str(), raw.as_str());
                prop_assert_eq!(name.key(), raw.to_ascii_lowercase());
            }
            Err(_) => prop_assert!(!expected, "refused {raw:?}"),
        }
    }

    /// Accepted addresses are plain ASCII `local@domain.tld` within the RFC 5321 lengths, and
    /// parsing is idempotent (what is stored parses to itself).
    #[test]
    fn emails_accept_only_plain_addresses(raw in prop_oneof![
        "[a-zA-Z0-9.+_-]{0,20}@[a-zA-Z0-9.-]{0,20}",
        " ?[a-z]{1,8}@[a-z]{1,8}\\.[a-zA-Z]{2,4} ?",
        ".{0,60}",
    ]) {
        if let Ok(email) = Email::parse(&raw) {
            let text = email.as_str();
            prop_assert!(text.len() <= 254 && text.is_ascii(), "accepted {raw:?}");
            prop_assert_eq!(text.matches('@').count(), 1);
            let (local, domain) = text.split_once('@').unwrap();
            prop_assert!(!local.is_empty() && local.len() <= 64);
            prop_assert!(domain.contains('.') && domain == domain.to_ascii_lowercase());
            prop_assert!(!text.bytes().any(|b| b.is_ascii_control() || b == b' '));
            prop_assert_eq!(Email::parse(text).unwrap(), email.clone());
            prop_assert_eq!(email.key(), text.to_ascii_lowercase());
        }
    }

    /// Path ids are canonical lower-case UUIDs or nothing: 404 before any query.
    #[test]
    fn record_ids_are_canonical_uuids_only(
        raw in prop_oneof!["[0-9a-fA-F-]{30,40}", ".{0,40}"],
        id in any::<u128>(),
    ) {
        let canonical = uuid::Uuid::from_u128(id).hyphenated().to_string();
        prop_assert!(RecordId::parse(canonical.clone()).is_some());
        prop_assert!(RecordId::parse(canonical.to_ascii_uppercase()).is_none() || canonical.bytes().all(|b| !b.is_ascii_alphabetic()));
        let expected = uuid::Uuid::try_parse(&raw).is_ok_and(|u| u.hyphenated().to_string() == raw);
        prop_assert_eq!(RecordId::parse(raw.clone()).is_some(), expected, "{:?}", raw);
    }

    #[test]
    fn item_text_keeps_its_bounds_and_never_holds_nul(
        text in prop_oneof![".{0,210}", "[a\\x00]{0,5}", Just("é".repeat(200)), Just("x".repeat(10_001))],
    ) {
        let chars = text.chars().count();
        let nul = text.contains('\0');
        prop_assert_eq!(ItemTitle::try_from(text.clone()).is_ok(), !nul && (1..=200).contains(&chars));
        prop_assert_eq!(ItemBody::try_from(text.clone()).is_ok(), !nul && chars <= 10_000);
    }

    /// Length is counted in characters, not bytes, and checked before the strength estimate;
    /// nothing outside 12..=128 characters is ever accepted.
    #[test]
    fn passwords_outside_the_length_bounds_are_refused(
        short in ".{0,11}",
        long in prop::collection::vec(any::<char>(), 129..300),
    ) {
        prop_assert!(Password::parse(SecretString::from(short), None, None).is_err());
        let long: String = long.into_iter().collect();
        prop_assert!(Password::parse(SecretString::from(long), None, None).is_err());
    }

    /// A password holding the username (in any case) is refused whatever surrounds it.
    #[test]
    fn passwords_holding_the_username_are_refused(
        name in "[a-z]{3,10}",
        before in "[A-Za-z0-9 ]{0,20}",
        after in "[A-Za-z0-9 ]{0,20}",
        upper in any::<bool>(),
    ) {
        let shown = if upper { name.to_uppercase() } else { name.clone() };
        let raw = format!("{before}{shown}{after} correct horse battery");
        prop_assert!(Password::parse(SecretString::from(raw), Some(&name), None).is_err());
    }

    /// The bearer token is taken only from a well-formed `Bearer <token68>` header.
    #[test]
    fn bearer_headers_yield_only_token68_values(raw in prop::collection::vec(any::<u8>(), 0..120), token in "[A-Za-z0-9._~+/=-]{1,60}") {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&raw) {
            headers.insert(header::AUTHORIZATION, value);
            if let Some(found) = bearer_token(&headers) {
                prop_assert!(!found.is_empty());
                prop_assert!(found.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
                prop_assert!(raw.len() == found.len() + 7 && raw[..7].eq_ignore_ascii_case(b"bearer "));
            }
        }
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        prop_assert_eq!(bearer_token(&headers), Some(token.as_str()));
    }

    /// The request bodies as the extractor reads them: any bytes are a value or a 400/422,
    /// never a panic, and no body with an extra field (`"role": "admin"`) is accepted.
    #[test]
    fn request_bodies_are_strict(bytes in prop::collection::vec(any::<u8>(), 0..300), extra in "[a-z_]{1,10}") {
        fn client_error<T>(result: &Result<T, ApiError>) -> bool {
            matches!(result, Ok(_) | Err(ApiError::BadRequest(_) | ApiError::Validation(_)))
        }
        prop_assert!(client_error(&rampart::json::parse::<LoginRequest>(&bytes, 32)));
        prop_assert!(client_error(&rampart::json::parse::<RegisterRequest>(&bytes, 32)));
        prop_assert!(client_error(&rampart::json::parse::<CreateItem>(&bytes, 32)));
        prop_assert!(client_error(&rampart::json::parse::<UpdateItem>(&bytes, 32)));

        prop_assume!(!["title", "body", "username", "password", "email"].contains(&extra.as_str()));
        let login = serde_json::json!({"username": "alice", "password": "x", extra.clone(): "admin"});
        prop_assert!(matches!(
            rampart::json::parse::<LoginRequest>(login.to_string().as_bytes(), 32),
            Err(ApiError::Validation(_))
        ));
        let item = serde_json::json!({"title": "t", "body": "b", extra: true});
        prop_assert!(matches!(
            rampart::json::parse::<CreateItem>(item.to_string().as_bytes(), 32),
            Err(ApiError::Validation(_))
        ));
    }
}
