//! Several `rampart` processes sharing one PostgreSQL and one Redis act as one service: one
//! limit, one revocation list, and outages that fail safe and heal without a restart.
//! Needs the real services (see `common::services`): fails under CI without them, skips
//! elsewhere.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: failing loudly is the point

mod common;

use std::time::{Duration, Instant};

use common::nodes::{access, within, Shared, PASSWORD};

fn redis_addr() -> std::net::SocketAddr {
    let url = services::redis_url();
    let hostport = url.trim_start_matches("redis://").trim_end_matches('/');
    hostport.replace("localhost", "127.0.0.1").parse().unwrap()
}
use common::services::{self, PrivateRedis, Relay};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_limit_is_one_limit_across_nodes() {
    let shared = crate::require!(Shared::new(Some(services::redis_url())).await);
    let limited = [("RAMPART_LIMIT_AUTH", "6/minute")];
    let a = shared.node(None, &limited);
    let b = shared.node(Some(&a), &limited);
    // Six guesses spread over both nodes spend one budget of six...
    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        let response = node.login_as("nobody", "wrong password here").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "guess {i}");
        let remaining = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            remaining.contains(&format!("r={}", 5 - i)),
            "guess {i}: {remaining}"
        );
    }
    // ...so the seventh is refused by either node.
    for node in [&a, &b] {
        let response = node.login_as("nobody", "wrong password here").await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().contains_key("retry-after"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_node_is_refused_by_the_other_on_the_next_request() {
    let shared = crate::require!(Shared::new(Some(services::redis_url())).await);
    let a = shared.node(None, &[]);
    let b = shared.node(Some(&a), &[]);
    a.register("alice").await;
    let pair = a.login("alice").await;
    assert_eq!(b.me(access(&pair)).await, StatusCode::OK);
    let out = a
        .call(Method::POST, "/v1/auth/logout", Some(access(&pair)), None)
        .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(b.me(access(&pair)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(a.me(access(&pair)).await, StatusCode::UNAUTHORIZED);

    // Logging out everywhere on B ends the session on A at once too.
    let pair = b.login("alice").await;
    assert_eq!(a.me(access(&pair)).await, StatusCode::OK);
    let everywhere = b
        .call(
            Method::POST,
            "/v1/auth/logout-all",
            Some(access(&pair)),
            None,
        )
        .await;
    assert_eq!(everywhere.status(), StatusCode::NO_CONTENT);
    assert_eq!(a.me(access(&pair)).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_logouts_204_no_other_node_accepts_the_token_though_the_broadcast_lags() {
    logouts_apply_at_once_on_a_lagging_node(&[]).await;
}

/// The same with no global limit, so no request's limit check reads the announcement count
/// (as when Redis fails and the limit lets requests through): the recheck reads it itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_logouts_204_no_other_node_accepts_the_token_without_a_global_limit() {
    logouts_apply_at_once_on_a_lagging_node(&[("RAMPART_LIMIT_GLOBAL", "off")]).await;
}

async fn logouts_apply_at_once_on_a_lagging_node(extra: &[(&str, &str)]) {
    crate::require!(services::require_redis(&services::redis_url()).await);
    // Node B hears the broadcast 400 ms late (a busy node, a slow network): the next request
    // arrives first, every time.
    let lag = services::LaggingPubSub::start(redis_addr(), Duration::from_millis(400)).await;
    let shared = crate::require!(Shared::new(Some(services::redis_url())).await);
    // Cheap hashes (development allows them): this is about revocations, not argon2.
    let mut vars = vec![("RAMPART_PASSWORD_HASH", "argon2id:m=1024,t=1,p=1")];
    vars.extend_from_slice(extra);
    let a = shared.node(None, &vars);
    let lagging_url = format!("redis://{}", lag.addr);
    vars.push(("RAMPART_REDIS_URL", &lagging_url));
    let b = shared.node(Some(&a), &vars);
    a.register("lena").await;
    a.register("luis").await;
    // Load on B throughout: another user reading items as fast as they can.
    let reader = access(&b.login("luis").await).to_owned();
    let b = std::sync::Arc::new(b);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (loaded, flag) = (b.clone(), stop.clone());
    let load = tokio::spawn(async move {
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = loaded
                .call(Method::GET, "/v1/items", Some(&reader), None)
                .await;
        }
    });
    let mut leaked = 0;
    let tries = 100;
    for round in 0..tries {
        let pair = a.login("lena").await;
        let token = access(&pair);
        assert_eq!(
            b.me(token).await,
            StatusCode::OK,
            "round {round}: live before"
        );
        let out = a
            .call(Method::POST, "/v1/auth/logout", Some(token), None)
            .await;
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
        match b.me(token).await {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::OK => leaked += 1,
            other => panic!("round {round}: {other}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    assert_eq!(
        leaked, 0,
        "{leaked} of {tries} requests were accepted after the 204"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_reuse_is_detected_across_nodes() {
    let shared = crate::require!(Shared::new(Some(services::redis_url())).await);
    let vars = [("RAMPART_REFRESH_GRACE", "0s")];
    let a = shared.node(None, &vars);
    let b = shared.node(Some(&a), &vars);
    a.register("bob").await;
    let first = a.login("bob").await;
    // Rotated on B...
    let second = b.refresh(first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(second.status(), StatusCode::OK);
    let second: Value = second.json().await.unwrap();
    assert_eq!(a.me(access(&second)).await, StatusCode::OK);
    // ...then the spent token is replayed on A: reuse, and the whole session ends everywhere.
    let replay = a.refresh(first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(b.me(access(&second)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(a.me(access(&second)).await, StatusCode::UNAUTHORIZED);
    let successor = b.refresh(second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(successor.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_revocation_still_reaches_every_node_within_the_bound() {
    let shared = crate::require!(Shared::new(None).await);
    let vars = [("RAMPART_REVOCATION_BOUND", "3s")];
    let a = shared.node(None, &vars);
    let b = shared.node(Some(&a), &vars);
    a.register("carol").await;
    let pair = a.login("carol").await;
    assert_eq!(b.me(access(&pair)).await, StatusCode::OK);
    a.call(Method::POST, "/v1/auth/logout", Some(access(&pair)), None)
        .await;
    let took = within(Duration::from_secs(3), || async {
        b.me(access(&pair)).await == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        took.is_some(),
        "B kept honouring a revoked session past the bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_fails_safe_and_recovers_without_restarting_the_nodes() {
    let mut redis = crate::require!(PrivateRedis::start().await);
    let shared = crate::require!(Shared::new(Some(redis.url())).await);
    // A long bound: a refusal within a second after the restart proves the broadcast, not a
    // poll, carried it.
    let vars = [("RAMPART_REVOCATION_BOUND", "30s")];
    let a = shared.node(None, &vars);
    let b = shared.node(Some(&a), &vars);
    let strict = shared.node(
        Some(&a),
        &[
            ("RAMPART_REVOCATION_BOUND", "30s"),
            ("RAMPART_LIMIT_STORE_FAILURE", "fail_closed"),
        ],
    );
    a.register("dave").await;
    let pair = a.login("dave").await;

    redis.stop();
    // Credential routes fail closed; the per-client limit follows the setting.
    let login = a.login_as("dave", PASSWORD).await;
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(login.headers()["content-type"], "application/problem+json");
    assert_eq!(
        a.me(access(&pair)).await,
        StatusCode::OK,
        "fail_open (default)"
    );
    assert_eq!(
        strict.me(access(&pair)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "fail_closed"
    );
    let ready = a.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let detail = ready.text().await.unwrap();
    assert!(
        detail.contains("Redis") && !detail.contains("127.0.0.1"),
        "{detail}"
    );

    redis.start_again().await;
    let healed = within(Duration::from_secs(10), || async {
        a.login_as("dave", PASSWORD).await.status() == StatusCode::OK
            && strict.me(access(&pair)).await == StatusCode::OK
    })
    .await;
    assert!(
        healed.is_some(),
        "limits did not recover after Redis came back"
    );
    let ready = a.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status(), StatusCode::OK);

    // The subscriptions come back too: a logout on A is refused by B at once again.
    let resubscribed = within(Duration::from_secs(10), || async {
        let pair = a.login("dave").await;
        a.call(Method::POST, "/v1/auth/logout", Some(access(&pair)), None)
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.me(access(&pair)).await == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(resubscribed.is_some(), "B no longer hears revocations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_503_then_heals_without_a_restart() {
    let relay = Relay::start(services::postgres_addr()).await;
    let mut shared = crate::require!(Shared::new(None).await);
    let (_, name) = shared.database_url.rsplit_once('/').unwrap();
    shared.database_url = format!("postgres://postgres@{}/{name}", relay.addr);
    let a = shared.node(None, &[("RAMPART_REVOCATION_BOUND", "2s")]);
    a.register("erin").await;
    let pair = a.login("erin").await;
    let item = a
        .call(
            Method::POST,
            "/v1/items",
            Some(access(&pair)),
            Some(json!({"title": "t", "body": "b"})),
        )
        .await;
    assert_eq!(item.status(), StatusCode::CREATED);
    let item: Value = item.json().await.unwrap();
    let path = format!("/v1/items/{}", item["id"].as_str().unwrap());

    relay.cut();
    let started = Instant::now();
    let down = a.call(Method::GET, &path, Some(access(&pair)), None).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a bounded wait"
    );
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.headers()["content-type"], "application/problem+json");
    assert!(down.headers().contains_key("retry-after"));
    // The request id is random hex and may contain any digits (once "5432"), so it is
    // taken out before looking for internals.
    let mut problem: Value = down.json().await.unwrap();
    assert!(problem["request_id"].is_string(), "{problem}");
    problem.as_object_mut().unwrap().remove("request_id");
    let problem = problem.to_string().to_lowercase();
    for internal in [
        "postgres",
        "sqlx",
        "connection",
        "5432",
        "relay",
        "io error",
    ] {
        assert!(!problem.contains(internal), "{problem}");
    }
    let ready = a.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Past the bound the node cannot know which sessions were revoked: it refuses tokens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let unsure = a
        .call(Method::GET, "/v1/users/me", Some(access(&pair)), None)
        .await;
    assert_eq!(unsure.status(), StatusCode::SERVICE_UNAVAILABLE);

    relay.restore();
    let healed = within(Duration::from_secs(15), || async {
        a.call(Method::GET, &path, Some(access(&pair)), None)
            .await
            .status()
            == StatusCode::OK
    })
    .await;
    assert!(
        healed.is_some(),
        "service did not resume when the database returned"
    );
    let ready = a.call(Method::GET, "/ready", None, None).await;
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_one_anchor_file_never_move_it_past_each_others_evidence() {
    let shared = crate::require!(Shared::new(None).await);
    let anchors = tempfile::tempdir().unwrap();
    let anchor = anchors.path().join("audit-anchor").display().to_string();
    let a = shared.node(None, &[("RAMPART_AUDIT_ANCHOR", &anchor)]);
    let b = shared.node(Some(&a), &[("RAMPART_AUDIT_ANCHOR", &anchor)]);
    // After the chain's start, B records two events, then A five: the shared anchor is at the
    // eighth row.
    b.register("bea").await;
    b.register("ben").await;
    for name in ["ada", "alf", "ann", "art", "ava"] {
        a.register(name).await;
    }
    // Someone with database access removes A's five rows...
    let mut db: sqlx::PgConnection = sqlx::Connection::connect(&shared.database_url)
        .await
        .unwrap();
    for statement in [
        "ALTER TABLE audit_events DISABLE TRIGGER USER",
        "DELETE FROM audit_events WHERE seq > (SELECT MIN(seq) + 2 FROM audit_events)",
    ] {
        sqlx::query(statement).execute(&mut db).await.unwrap();
    }
    // ...and B, whose last anchored row is still there, goes on recording.
    let failed = b.login_as("bea", "not her password").await;
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    b.register("bob").await;
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["audit-log", "verify"])
        .env("RAMPART_DATA_DIR", a.data.path())
        .env("RAMPART_DATABASE_URL", &shared.database_url)
        .env("RAMPART_AUDIT_ANCHOR", &anchor)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{out}");
    assert!(out.contains("row 8"), "the evidence is kept: {out}");
}
