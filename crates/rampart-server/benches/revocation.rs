//! Cost of the revocation check every authenticated request makes, in nanoseconds: is this
//! session revoked? Measured with no revocations and with 100,000 held (a busy deployment's
//! token lifetime of logouts), for a live session (the common miss) and a revoked one (a hit),
//! against a plain `HashSet` lookup of the same keys in the same run.
//!
//! Run with `cargo bench -p rampart-server --bench revocation`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rampart_server::access::AccessState;

const HELD: usize = 100_000;

fn session(n: usize) -> String {
    format!("01a209ee-97c3-7345-a416-{n:012x}")
}

fn lookups(c: &mut Criterion) {
    let set: HashSet<Box<str>> = (0..HELD).map(|n| session(n).into_boxed_str()).collect();
    let (live, revoked) = (session(HELD + 1), session(HELD / 2));
    c.bench_function("baseline: HashSet of 100k, miss", |b| {
        b.iter(|| set.contains(std::hint::black_box(live.as_str())));
    });

    let empty = AccessState::new(Duration::from_secs(900), Duration::from_secs(10));
    c.bench_function("is_revoked, none held", |b| {
        b.iter(|| empty.is_revoked(std::hint::black_box(&live)));
    });

    let full = AccessState::new(Duration::from_secs(900), Duration::from_secs(10));
    for n in 0..HELD {
        full.revoke(&session(n), Duration::ZERO);
    }
    assert_eq!(full.revoked_len(), HELD);
    c.bench_function("is_revoked, 100k held, live session", |b| {
        b.iter(|| full.is_revoked(std::hint::black_box(&live)));
    });
    c.bench_function("is_revoked, 100k held, revoked session", |b| {
        b.iter(|| full.is_revoked(std::hint::black_box(&revoked)));
    });
}

criterion_group!(benches, lookups);
criterion_main!(benches);
