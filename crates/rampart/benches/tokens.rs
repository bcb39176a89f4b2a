//! Cost of verifying one access token, in microseconds, against a baseline in the same run:
//! jsonwebtoken's own EdDSA decode of the same token with the same key (what a bare axum app
//! verifying tokens does per request).
//!
//! - uncached: a token never seen before (signature, header pinning, claim checks);
//! - cached: a token this process verified before (the steady state of a client sending the
//!   same token on every request), which must still check expiry.
//!
//! Run with `cargo bench -p rampart --bench tokens`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rampart::keys::KeySet;
use rampart::tokens::{TokenPolicy, Tokens};

fn verify(c: &mut Criterion) {
    let keys = KeySet::generate().unwrap();
    let policy = TokenPolicy {
        issuer: "rampart".into(),
        audience: "rampart-api".into(),
        ttl: Duration::from_secs(900),
    };
    let tokens = Tokens::eddsa(&keys, policy).unwrap();
    let token = tokens.issue("user-1", "session-1").unwrap().token;

    let key = DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(keys.current().public_key()))
        .unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["rampart-api"]);
    validation.set_issuer(&["rampart"]);
    c.bench_function("baseline: jsonwebtoken EdDSA decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(
                std::hint::black_box(&token),
                &key,
                &validation,
            )
            .unwrap()
        });
    });

    let mut n = 0u64;
    c.bench_function("rampart verify, uncached", |b| {
        b.iter_batched(
            || {
                n += 1;
                tokens
                    .issue("user-1", &format!("session-{n}"))
                    .unwrap()
                    .token
            },
            |fresh| tokens.verify(&fresh).unwrap(),
            BatchSize::SmallInput,
        );
    });

    tokens.verify(&token).unwrap();
    c.bench_function("rampart verify, cached", |b| {
        b.iter(|| tokens.verify(std::hint::black_box(&token)).unwrap());
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);
