//! Any text as a setting value: every value parser answers a value or a message, never a panic,
//! and what parses renders back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart::settings::{
    format_duration, parse_bool, parse_duration, parse_networks, parse_size, CorsOrigins,
    HashParams, Rate,
};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse_duration(raw) {
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
    if let Ok(rate) = raw.parse::<Rate>() {
        assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
    }
    if let Ok(params) = raw.parse::<HashParams>() {
        assert_eq!(params.to_string().parse::<HashParams>(), Ok(params));
    }
    if let Ok(size) = parse_size(raw) {
        assert!(size > 0);
    }
    let _ = parse_bool(raw);
    let _ = parse_networks(raw);
    let _ = raw.parse::<CorsOrigins>();
});
