//! Cost of one rate-limit check in the in-process store, in nanoseconds.
//!
//! - uncontended: one thread, one client key (the steady state of a busy client), and a
//!   fresh key per check (a spray, which also exercises eviction once the table is full);
//! - contended: every core checking at once, all on one key (one shard's lock) or each on its
//!   own keys. Reported per check per thread: the wall time one thread waits for its answer.
//!
//! Run with `cargo bench -p rampart --bench limiter`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use rampart::limit::{ClientAddress, LimitKey, MemoryStore, Quota, Subject};

fn key(n: u32) -> LimitKey {
    LimitKey::new(
        "global",
        Subject::Address(ClientAddress::of(IpAddr::V4(Ipv4Addr::from(n)))),
    )
}

fn quota() -> Quota {
    // Generous enough that the steady-state checks are allowed, as most are in production.
    Quota::new(1_000_000_000, Duration::from_secs(1)).unwrap()
}

/// The least any in-process keyed limiter does per check: read the clock, lock a map, update
/// one entry. The figure the checks below are compared against.
fn baseline(c: &mut Criterion) {
    let epoch = Instant::now();
    let map = std::sync::Mutex::new(std::collections::HashMap::<u64, u64>::new());
    c.bench_function("baseline: clock + locked map update", |b| {
        b.iter(|| {
            let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(0);
            let mut map = map.lock().unwrap();
            let slot = map.entry(std::hint::black_box(1)).or_insert(0);
            *slot = (*slot).max(now) + 1;
            *slot
        });
    });
}

fn uncontended(c: &mut Criterion) {
    let store = MemoryStore::default();
    let quota = quota();
    let one = key(1);
    c.bench_function("check, one thread, one key", |b| {
        b.iter(|| store.check_now(std::hint::black_box(&one), quota, 1));
    });
    let mut n = 0u32;
    c.bench_function("check, one thread, a new key each time", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            store.check_now(&key(n), quota, 1)
        });
    });
}

/// Runs `iters` checks on each of `threads` threads at once; returns the wall time, which is
/// the time per check per thread once divided by `iters`.
fn together(store: &Arc<MemoryStore>, threads: u32, iters: u64, same_key: bool) -> Duration {
    let quota = quota();
    let start = Arc::new(std::sync::Barrier::new(threads as usize));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, start) = (Arc::clone(store), Arc::clone(&start));
            std::thread::spawn(move || {
                let base = if same_key { 0 } else { t << 24 };
                let keys: Vec<LimitKey> = (0..1024).map(|i| key(base + i)).collect();
                start.wait();
                let began = Instant::now();
                for i in 0..iters {
                    let k = if same_key {
                        &keys[0]
                    } else {
                        &keys[(i % 1024) as usize]
                    };
                    std::hint::black_box(store.check_now(k, quota, 1));
                }
                began.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap_or_default()
}

fn contended(c: &mut Criterion) {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| u32::try_from(n.get()).unwrap_or(2))
        .max(2);
    let store = Arc::new(MemoryStore::default());
    c.bench_function(&format!("check, {threads} threads, one shared key"), |b| {
        b.iter_custom(|iters| together(&store, threads, iters, true));
    });
    c.bench_function(&format!("check, {threads} threads, own keys"), |b| {
        b.iter_custom(|iters| together(&store, threads, iters, false));
    });
}

criterion_group!(benches, baseline, uncontended, contended);
criterion_main!(benches);
