//! Dependencies failing: what a node does while its Redis or PostgreSQL is down, paused or
//! restarting, and what it writes to its log meanwhile. Each test breaks a server of its own (a
//! relay it can cut or hang, a private process), never the machine's shared ones.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::services::{self, Relay};
use common::TestApp;
use reqwest::StatusCode;

fn redis_addr() -> std::net::SocketAddr {
    let url = services::redis_url();
    let hostport = url.trim_start_matches("redis://").trim_end_matches('/');
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().unwrap()
}

#[tokio::test]
async fn a_hung_redis_is_not_dialled_for_every_fail_open_request() {
    crate::require!(services::require_redis(&services::redis_url()).await);
    let relay = Relay::start(redis_addr()).await;
    let namespace = services::fresh_namespace();
    let app = TestApp::spawn(&[
        ("RAMPART_REDIS_URL", &format!("redis://{}", relay.addr)),
        ("RAMPART_REDIS_NAMESPACE", &namespace),
    ])
    .await;
    // Public routes are charged to the address in Redis: the limit's headers show it.
    let charged = app.get("/health").await;
    assert_eq!(charged.status(), StatusCode::OK);
    assert!(charged.headers().contains_key("ratelimit"));

    // Redis stops answering without closing anything: the costliest kind of outage.
    relay.hang();
    let started = Instant::now();
    for n in 0..200 {
        let response = app.get("/health").await;
        assert_eq!(response.status(), StatusCode::OK, "request {n} fails open");
    }
    let elapsed = started.elapsed();
    // Without a breaker each of the 200 would have sent its script and waited out the 500 ms
    // timeout (100 s in all). With it, only the probes are sent.
    let sent = relay.swallowed_count(b"EVALSHA") + relay.swallowed_count(b"EVAL\r");
    assert!(
        sent <= 12,
        "{sent} limiter calls reached the hung Redis in {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");

    // Back: within the longest cool-down the limit is charged in Redis again.
    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        if app.get("/health").await.headers().contains_key("ratelimit") {
            break;
        }
        assert!(Instant::now() < deadline, "the limit never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lines at `level` in a node's JSON log.
fn log_lines(node: &common::nodes::Node, level: &str) -> Vec<String> {
    let log = std::fs::read_to_string(node.data.path().join("rampart.log")).unwrap_or_default();
    let tag = format!("\"level\":\"{level}\"");
    log.lines()
        .filter(|line| line.contains(&tag))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_a_few_log_lines_a_second_not_one_per_request() {
    use common::nodes::{access, Shared};
    let relay = Relay::start(services::postgres_addr()).await;
    let mut shared = crate::require!(Shared::new(None).await);
    let (_, name) = shared.database_url.rsplit_once('/').unwrap();
    shared.database_url = format!("postgres://postgres@{}/{name}", relay.addr);
    let node = shared.node(None, &[("RAMPART_LOG_FORMAT", "json")]);
    node.register("olga").await;
    let pair = node.login("olga").await;
    let token = access(&pair).to_owned();
    let before = log_lines(&node, "ERROR").len() + log_lines(&node, "WARN").len();

    relay.cut();
    let started = Instant::now();
    let mut answered = 0u32;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (client, base, token) = (
            node.client.clone(),
            format!("http://{}", node.addr),
            token.clone(),
        );
        workers.spawn(async move {
            let mut refused = 0u32;
            while started.elapsed() < Duration::from_secs(3) {
                let request = match worker % 3 {
                    0 => client.get(format!("{base}/v1/items")).bearer_auth(&token),
                    1 => client.get(format!("{base}/ready")),
                    _ => client
                        .post(format!("{base}/v1/auth/login"))
                        .json(&serde_json::json!({"username": "olga", "password": "x"})),
                };
                if let Ok(response) = request.send().await {
                    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                        refused += 1;
                    }
                }
            }
            refused
        });
    }
    while let Some(refused) = workers.join_next().await {
        answered += refused.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64().ceil();
    relay.restore();
    // Give the log writer its flush interval.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = log_lines(&node, "ERROR").len() + log_lines(&node, "WARN").len() - before;
    assert!(answered >= 100, "only {answered} requests were refused");
    // A line a second per kind of failure (a handful of kinds), whatever the request count.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bound = (seconds as usize + 1) * 8;
    assert!(
        lines <= bound,
        "{lines} ERROR/WARN lines for {answered} refused requests in {seconds} s:\n{}",
        log_lines(&node, "WARN").join("\n")
    );
    // And they say how many they stand for.
    assert!(log_lines(&node, "WARN")
        .iter()
        .any(|l| l.contains("\"repeated\":")));
}

/// How long until `check` holds, polling every 50 ms; `None` past `limit`.
async fn time_until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_tokens_within_seconds_of_its_databases_restart_quiet_or_not() {
    use common::nodes::{access, Shared};
    let postgres = crate::require!(services::PrivatePostgres::start());
    let shared = Shared {
        database_url: postgres.database("restarts").await,
        redis_url: None,
        namespace: services::fresh_namespace(),
    };
    // A short bound, so a quiet spell outlasts it, as 12 s of quiet outlasted the default.
    let node = shared.node(None, &[("RAMPART_REVOCATION_BOUND", "3s")]);
    node.register("rhea").await;
    let pair = node.login("rhea").await;
    let token = access(&pair).to_owned();
    // Fill the pool with connections that a restart will kill.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, url, token) = (
            node.client.clone(),
            format!("http://{}/v1/items", node.addr),
            token.clone(),
        );
        burst.spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status())
        });
    }
    while let Some(status) = burst.join_next().await {
        assert_eq!(status.unwrap().unwrap(), StatusCode::OK);
    }

    for quiet in [Duration::from_secs(4), Duration::from_millis(200)] {
        // Quiet past the bound (every pooled connection idle), or barely quiet at all.
        tokio::time::sleep(quiet).await;
        postgres.restart();
        let back = time_until(Duration::from_secs(10), || async {
            node.me(&token).await == StatusCode::OK
        })
        .await;
        assert!(
            back.is_some_and(|took| took <= Duration::from_secs(5)),
            "after {quiet:?} of quiet the node served tokens again only after {back:?}"
        );
        eprintln!("served again {back:?} after a restart that followed {quiet:?} of quiet");
        // And every pooled connection works again: a burst sees no 503.
        for _ in 0..20 {
            let status = node
                .call(reqwest::Method::GET, "/v1/items", Some(&token), None)
                .await
                .status();
            assert_eq!(status, StatusCode::OK);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_longer_than_the_bound_a_node_serves_tokens_within_seconds_of_the_return() {
    use common::nodes::{access, Shared};
    let postgres = crate::require!(services::PrivatePostgres::start());
    let shared = Shared {
        database_url: postgres.database("outage").await,
        redis_url: None,
        namespace: services::fresh_namespace(),
    };
    let node = shared.node(None, &[("RAMPART_REVOCATION_BOUND", "2s")]);
    node.register("sven").await;
    let token = access(&node.login("sven").await).to_owned();

    // Killed (no clean shutdown), and down past the bound: the node may no longer trust its
    // view of revocations and refuses tokens.
    postgres.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(node.me(&token).await, StatusCode::SERVICE_UNAVAILABLE);
    postgres.start_again();
    let back = time_until(Duration::from_secs(10), || async {
        node.me(&token).await == StatusCode::OK
    })
    .await;
    assert!(
        back.is_some_and(|took| took <= Duration::from_secs(5)),
        "served tokens again only after {back:?}"
    );
    eprintln!("served again {back:?} after the database's return");

    // Paused (a frozen VM): requests fail within the statement and acquire timeouts, never
    // hang, and service resumes with the database.
    postgres.pause(true);
    let started = Instant::now();
    let during = node
        .call(reqwest::Method::GET, "/v1/items", Some(&token), None)
        .await;
    assert_eq!(during.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    postgres.pause(false);
    let back = time_until(Duration::from_secs(10), || async {
        node.call(reqwest::Method::GET, "/v1/items", Some(&token), None)
            .await
            .status()
            == StatusCode::OK
    })
    .await;
    assert!(
        back.is_some_and(|took| took <= Duration::from_secs(5)),
        "{back:?}"
    );
}

/// The `sid` claim of an access token.
fn session_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_killed_mid_load_leaves_no_acknowledged_action_without_its_record() {
    use common::nodes::{access, Shared};
    use reqwest::Method;
    let postgres = crate::require!(services::PrivatePostgres::start());
    let shared = Shared {
        database_url: postgres.database("killed").await,
        redis_url: None,
        namespace: services::fresh_namespace(),
    };
    let node = std::sync::Arc::new(shared.node(
        None,
        &[("RAMPART_PASSWORD_HASH", "argon2id:m=1024,t=1,p=1")],
    ));
    for n in 0..4 {
        node.register(&format!("kim{n}")).await;
    }
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..4 {
        let node = node.clone();
        workers.spawn(async move {
            let (mut logins, mut logouts) = (Vec::new(), Vec::new());
            while started.elapsed() < Duration::from_secs(5) {
                let body = serde_json::json!({"username": format!("kim{n}"), "password": common::nodes::PASSWORD});
                let Ok(response) = node
                    .client
                    .post(format!("http://{}/v1/auth/login", node.addr))
                    .json(&body)
                    .send()
                    .await
                else {
                    continue;
                };
                if response.status() != StatusCode::OK {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let pair: serde_json::Value = response.json().await.unwrap();
                let token = access(&pair).to_owned();
                logins.push(session_of(&token));
                let out = node.call(Method::POST, "/v1/auth/logout", Some(&token), None).await;
                if out.status() == StatusCode::NO_CONTENT {
                    logouts.push(session_of(&token));
                }
            }
            (logins, logouts)
        });
    }
    // The database dies without warning mid-load, and comes back.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    postgres.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    postgres.start_again();
    let (mut logins, mut logouts) = (Vec::new(), Vec::new());
    while let Some(outcome) = workers.join_next().await {
        let (l, o) = outcome.unwrap();
        logins.extend(l);
        logouts.extend(o);
    }
    assert!(
        logins.len() >= 10,
        "only {} logins were answered",
        logins.len()
    );

    let mut db: sqlx::PgConnection = sqlx::Connection::connect(&shared.database_url)
        .await
        .unwrap();
    let recorded = |kind: &'static str| {
        sqlx::query_scalar::<_, String>(
            "SELECT detail::json->>'session_id' FROM audit_events WHERE kind = $1",
        )
        .bind(kind)
    };
    let logged_in: std::collections::HashSet<String> = recorded("login_succeeded")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let logged_out: std::collections::HashSet<String> = recorded("logout")
        .fetch_all(&mut db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let missing_in: Vec<_> = logins.iter().filter(|s| !logged_in.contains(*s)).collect();
    let missing_out: Vec<_> = logouts
        .iter()
        .filter(|s| !logged_out.contains(*s))
        .collect();
    assert!(
        missing_in.is_empty(),
        "acknowledged logins without a row: {missing_in:?}"
    );
    assert!(
        missing_out.is_empty(),
        "acknowledged logouts without a row: {missing_out:?}"
    );
    // And no record without its action: every recorded login opened its session.
    let sessions: std::collections::HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT id FROM sessions")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(logged_in.iter().all(|s| sessions.contains(s)));
    eprintln!(
        "{} logins and {} logouts acknowledged around the outage, each on record",
        logins.len(),
        logouts.len()
    );
}
