//! Any query string on a list endpoint: `limit` only in 1..=100, and no cursor opens unless
//! the server sealed it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::pagination::{CursorKey, PageQuery};

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(page) = PageQuery::from_query(query) else {
        return;
    };
    assert!((1..=100).contains(&page.limit.get()));
    let key = CursorKey::derive(b"fuzz cursor key");
    assert!(key
        .position("items:owner", &page)
        .map_or(true, |p| p.is_none()));
});
