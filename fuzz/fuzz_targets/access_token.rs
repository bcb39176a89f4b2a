//! Any bytes as an access token: the verifier must refuse them without panicking. A made-up
//! token verifying would be a forged session.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rampart::keys::KeySet;
use rampart::tokens::{TokenPolicy, Tokens};

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let policy = TokenPolicy {
            issuer: "rampart".into(),
            audience: "rampart-api".into(),
            ttl: Duration::from_secs(900),
        };
        let keys = KeySet::generate().unwrap_or_else(|_| std::process::abort());
        Tokens::eddsa(&keys, policy).unwrap_or_else(|_| std::process::abort())
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(tokens().verify(text).is_err(), "a made-up token verified");
    }
});
