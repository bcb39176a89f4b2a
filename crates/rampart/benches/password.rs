//! Cost of one password hash and one verification at the OWASP minimum (argon2id m=19456, t=2,
//! p=1), in milliseconds, against RustCrypto's argon2 crate hashing directly in the same run:
//! the fixed reference, whatever core rampart computes with. The difference is what rampart's
//! hashing core gains (runtime-selected SIMD, memory kept per thread) less what its pool adds
//! (handing the work to a worker thread and back); the hash itself is meant to be slow.
//!
//! Run with `cargo bench -p rampart --bench password`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use criterion::{criterion_group, criterion_main, Criterion};
use rampart::password::PasswordHasher;
use rampart::settings::HashParams;
use secrecy::SecretString;

const PASSWORD: &str = "violet tandem bicycles rarely whistle";

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("argon2id at the OWASP minimum");
    group.sample_size(20);

    let min = HashParams::OWASP_MINIMUM;
    let params = Params::new(min.memory_kib, min.iterations, min.parallelism, None).unwrap();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
    group.bench_function("baseline: argon2 crate, hash in place", |b| {
        b.iter(|| {
            argon2
                .hash_password(std::hint::black_box(PASSWORD.as_bytes()), &salt)
                .unwrap()
        });
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hasher = PasswordHasher::new(min, 1, 8).unwrap();
    group.bench_function("rampart hash (pool)", |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.hash(SecretString::from(PASSWORD)))
                .unwrap()
        });
    });
    let stored = runtime
        .block_on(hasher.hash(SecretString::from(PASSWORD)))
        .unwrap();
    group.bench_function("rampart verify (pool)", |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.verify(SecretString::from(PASSWORD), Some(&stored)))
                .unwrap()
        });
    });
    group.bench_function("rampart verify, unknown user (dummy hash)", |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.verify(SecretString::from(PASSWORD), None))
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
