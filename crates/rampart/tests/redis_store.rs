//! The Redis limiter store gives the same answers as the in-process one: the same GCRA and the
//! same backoff streaks, so a deployment's limits do not change when it adds nodes. Runs
//! against the real Redis at `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`): fails under
//! CI (`CI` or `REQUIRE_TEST_SERVICES` set) when it is unreachable, skips elsewhere.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rampart::limit::{
    BackoffPolicy, ClientAddress, Decision, LimitKey, LimitStore, MemoryStore, Quota, RedisStore,
    Subject,
};

/// A store under a namespace of this test's own, or `None` (skip) off CI without Redis.
async fn store() -> Option<RedisStore> {
    store_in_namespace().await.map(|(store, _)| store)
}

async fn store_in_namespace() -> Option<(RedisStore, String)> {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let namespace = format!("t{}", uuid::Uuid::now_v7().simple());
    let store = RedisStore::new(
        redis::Client::open(url.as_str()).unwrap(),
        &namespace,
        Duration::from_secs(2),
    )
    .unwrap();
    match store.ping().await {
        Ok(()) => Some((store, namespace)),
        Err(err) => {
            let required = ["CI", "REQUIRE_TEST_SERVICES"]
                .iter()
                .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0"));
            assert!(!required, "Redis is required under CI: {url}: {err}");
            // Straight to stderr, where `cargo test` shows it: libtest captures the print
            // macros only.
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("SKIPPED {test}: Redis is not reachable at {url} ({err})\n").as_bytes(),
            );
            None
        }
    }
}

fn address(last: u8) -> Subject {
    Subject::Address(ClientAddress::of([203, 0, 113, last].into()))
}

#[tokio::test]
async fn the_burst_is_allowed_then_refused_as_in_memory() {
    let Some(redis) = store().await else { return };
    let memory = MemoryStore::default();
    let quota = Quota::new(5, Duration::from_secs(60)).unwrap();
    let key = LimitKey::new("auth", address(1));
    for i in 0..5 {
        let shared = redis.check(&key, quota, 1).await.unwrap();
        let local = memory.check_now(&key, quota, 1);
        let (
            Decision::Allowed { remaining: r, .. },
            Decision::Allowed {
                remaining: expected,
                ..
            },
        ) = (shared, local)
        else {
            panic!("request {i}: {shared:?} vs {local:?}");
        };
        assert_eq!(r, expected, "request {i}");
    }
    let Decision::Denied { retry_after, .. } = redis.check(&key, quota, 1).await.unwrap() else {
        panic!("the sixth request is refused");
    };
    // One unit comes back every 12 s.
    assert!(retry_after > Duration::from_secs(11) && retry_after <= Duration::from_secs(12));
    // A report (cost 0) spends nothing, and a refused request spent nothing either.
    assert!(matches!(
        redis.check(&key, quota, 0).await.unwrap(),
        Decision::Allowed { remaining: 0, .. }
    ));
    assert!(!redis.check(&key, quota, 1).await.unwrap().is_allowed());
    // Other subjects and policies have their own budget.
    assert!(redis
        .check(&LimitKey::new("auth", address(2)), quota, 1)
        .await
        .unwrap()
        .is_allowed());
    assert!(redis
        .check(&LimitKey::new("global", address(1)), quota, 1)
        .await
        .unwrap()
        .is_allowed());
}

#[tokio::test]
async fn a_cost_above_one_spends_that_many_units() {
    let Some(redis) = store().await else { return };
    let quota = Quota::new(10, Duration::from_secs(60)).unwrap();
    let key = LimitKey::new("auth", Subject::Name("mallory".into()));
    let Decision::Allowed { remaining, .. } = redis.check(&key, quota, 5).await.unwrap() else {
        panic!("allowed");
    };
    assert_eq!(remaining, 5);
    assert!(redis.check(&key, quota, 5).await.unwrap().is_allowed());
    assert!(!redis.check(&key, quota, 1).await.unwrap().is_allowed());
}

#[tokio::test]
async fn backoff_streaks_match_the_in_process_store_and_clear() {
    let Some(redis) = store().await else { return };
    let memory = MemoryStore::default();
    let policy = BackoffPolicy {
        free_failures: 3,
        first_delay: Duration::from_secs(60),
        ..BackoffPolicy::default()
    };
    let key = LimitKey::new("login-backoff", Subject::Name("alice".into()));
    for attempt in 1..=3 {
        let shared = redis.begin_attempt(&key, policy).await.unwrap().unwrap();
        let local = memory.begin_attempt(&key, policy).await.unwrap().unwrap();
        assert_eq!(shared.failures, local.failures, "attempt {attempt}");
        assert_eq!(shared.delay, local.delay, "attempt {attempt}");
        if attempt < 3 {
            assert_eq!(redis.backoff(&key).await.unwrap(), None, "no delay yet");
        }
    }
    // The third failure started a one-minute delay: the next attempt is refused, not counted.
    let waiting = redis
        .begin_attempt(&key, policy)
        .await
        .unwrap()
        .unwrap_err();
    assert!(waiting > Duration::from_secs(59) && waiting <= Duration::from_secs(60));
    let peek = redis.backoff(&key).await.unwrap().unwrap();
    assert!(peek <= waiting);
    redis.clear_backoff(&key).await.unwrap();
    assert_eq!(redis.backoff(&key).await.unwrap(), None);
    let fresh = redis.begin_attempt(&key, policy).await.unwrap().unwrap();
    assert_eq!(fresh.failures, 1, "a cleared streak starts over");
}

#[tokio::test]
async fn keys_hold_neither_names_nor_addresses_in_the_clear() {
    let Some((redis, namespace)) = store_in_namespace().await else {
        return;
    };
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let quota = Quota::new(5, Duration::from_secs(60)).unwrap();
    let key = LimitKey::new(
        "login-account",
        Subject::AddressAndName(
            ClientAddress::of([198, 51, 100, 7].into()),
            "victim@example.com".into(),
        ),
    );
    redis.check(&key, quota, 1).await.unwrap();
    let mut connection = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        !keys[0].contains("victim") && !keys[0].contains("198.51"),
        "{}",
        keys[0]
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 12_000,
        "expires once it limits nothing: {ttl}"
    );
}
