//! Abuse control, attacked: per-address and per-account login limits, spoofed and proxied client
//! addresses, login backoff, the stuffing signal, the global per-client limit and load shedding.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::TestApp;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// A login as `username` with `password`, optionally claiming `X-Forwarded-For: forwarded`.
async fn login(app: &TestApp, username: &str, password: &str, forwarded: Option<&str>) -> Response {
    let mut request = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"username": username, "password": password}));
    if let Some(chain) = forwarded {
        request = request.header("x-forwarded-for", chain);
    }
    request.send().await.unwrap()
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asserts a 429 problem document naming `policy` in its rate-limit headers; returns
/// `Retry-After`.
async fn assert_limited(response: Response, policy: &str) -> u64 {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    assert!(retry_after >= 1);
    let quoted = format!("\"{policy}\"");
    let policies = header(&response, "ratelimit-policy");
    let state = header(&response, "ratelimit");
    assert!(policies.contains(&quoted), "RateLimit-Policy: {policies}");
    assert!(
        state.contains(&format!("{quoted};r=0;t=")),
        "RateLimit: {state}"
    );
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 429);
    retry_after
}

#[tokio::test]
async fn the_eleventh_login_in_a_minute_from_one_address_is_429_with_the_headers() {
    let app = TestApp::spawn_with_shipped_limits(&[]).await;
    for attempt in 0..10 {
        let response = login(&app, &format!("guess{attempt}"), "wrong password 1", None).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
        let state = header(&response, "ratelimit");
        assert!(
            state.contains(&format!("\"auth\";r={};", 9 - attempt)),
            "allowed answers show the remaining quota: {state}"
        );
        assert!(header(&response, "ratelimit-policy").contains("\"auth\";q=10;w=60"));
    }
    let retry_after = assert_limited(login(&app, "guess10", "wrong", None).await, "auth").await;
    assert!(retry_after <= 6, "one slot returns within one interval");
    // Registration and refresh share the per-address budget.
    let register = app
        .post_json(
            "/v1/auth/register",
            &json!({"email": "late@example.com", "username": "late", "password": "violet tandem bicycles rarely whistle"}),
        )
        .await;
    assert_limited(register, "auth").await;
    let refresh = app
        .post_json("/v1/auth/refresh", &json!({"refresh_token": "x"}))
        .await;
    assert_limited(refresh, "auth").await;
}

#[tokio::test]
async fn a_forged_forwarded_for_from_an_untrusted_peer_does_not_change_the_key() {
    let app = TestApp::spawn_with_shipped_limits(&[]).await;
    for attempt in 0..10 {
        let forged = format!("198.51.100.{attempt}");
        let response = login(&app, "victim", "wrong password", Some(&forged)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = login(&app, "someone", "wrong", Some("203.0.113.99")).await;
    assert_limited(response, "auth").await;
}

#[tokio::test]
async fn through_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_key() {
    let app =
        TestApp::spawn_with_shipped_limits(&[("RAMPART_TRUSTED_PROXIES", "127.0.0.0/8")]).await;
    for attempt in 0..10 {
        // The leftmost entry is the client's own claim, different every time; the proxy
        // appended the address it saw, then its own hop.
        let chain = format!("10.9.9.{attempt}, 198.51.100.7, 127.0.0.2");
        let response = login(&app, &format!("name{attempt}"), "wrong", Some(&chain)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = login(&app, "name10", "wrong", Some("1.2.3.4, 198.51.100.7")).await;
    assert_limited(response, "auth").await;
    let neighbour = login(&app, "name11", "wrong", Some("198.51.100.8")).await;
    assert_eq!(
        neighbour.status(),
        StatusCode::UNAUTHORIZED,
        "another client"
    );
    // IPv6 clients are one client per /64.
    for host in 1..=10 {
        let chain = format!("2001:db8:5:6::{host:x}");
        let response = login(&app, &format!("six{host}"), "wrong", Some(&chain)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let rotated = login(&app, "six11", "wrong", Some("2001:db8:5:6:ffff::1")).await;
    assert_limited(rotated, "auth").await;
}

#[tokio::test]
async fn the_per_account_limit_holds_across_many_addresses() {
    let app = TestApp::spawn_with_shipped_limits(&[
        ("RAMPART_TRUSTED_PROXIES", "127.0.0.0/8"),
        ("RAMPART_LIMIT_GLOBAL", "100000/minute"),
    ])
    .await;
    let password = app.register("pat").await;
    // Twenty logins with the right password, each from its own address: no per-address limit
    // is near, yet the account's own limit is spent.
    for n in 1..=20 {
        let response = login(&app, "pat", &password, Some(&format!("203.0.113.{n}"))).await;
        assert_eq!(response.status(), StatusCode::OK, "login {n}");
    }
    let response = login(&app, "PAT ", &password, Some("198.51.100.200")).await;
    assert_limited(response, "login-account").await;
    // Other accounts are unaffected from the same addresses.
    app.register("quinn").await;
    let other = login(&app, "quinn", "wrong", Some("203.0.113.1")).await;
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_per_address_and_account_limit_holds_when_the_address_limit_is_raised() {
    let app = TestApp::spawn_with_shipped_limits(&[
        ("RAMPART_LIMIT_AUTH", "1000/minute"),
        ("RAMPART_LIMIT_GLOBAL", "100000/minute"),
        ("RAMPART_LIMIT_LOGIN_ACCOUNT", "1000/minute"),
    ])
    .await;
    let password = app.register("ned").await;
    for n in 0..10 {
        let response = login(&app, "ned", &password, None).await;
        assert_eq!(response.status(), StatusCode::OK, "login {n}");
    }
    assert_limited(
        login(&app, "ned", &password, None).await,
        "login-ip-account",
    )
    .await;
}

async fn fail_logins(app: &TestApp, name: &str, times: usize) {
    for n in 0..times {
        let response = login(app, name, "not the password", None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "failure {n}");
    }
}

fn backoff_app_overrides() -> Vec<(&'static str, &'static str)> {
    // Only the backoff is under test: the rate limits are out of the way.
    vec![
        ("RAMPART_LIMIT_AUTH", "1000/minute"),
        ("RAMPART_LIMIT_LOGIN_ACCOUNT", "1000/minute"),
        ("RAMPART_LIMIT_LOGIN_IP_ACCOUNT", "1000/minute"),
    ]
}

#[tokio::test]
async fn backoff_grows_with_each_failure_and_a_successful_login_clears_it() {
    let app = TestApp::spawn_with_shipped_limits(&backoff_app_overrides()).await;
    let admin = app.admin_token().await;
    let password = app.register("rosa").await;
    fail_logins(&app, "rosa", 10).await;
    // The delay runs: even the right password waits.
    let first = assert_limited(login(&app, "rosa", &password, None).await, "login-backoff").await;
    assert_eq!(first, 1);
    // Case and surrounding space do not make another name.
    assert_limited(login(&app, " ROSA", &password, None).await, "login-backoff").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fail_logins(&app, "rosa", 1).await;
    let second = assert_limited(login(&app, "rosa", &password, None).await, "login-backoff").await;
    assert_eq!(second, 2, "the delay doubles");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ok = login(&app, "rosa", &password, None).await;
    assert_eq!(ok.status(), StatusCode::OK);
    // A fresh streak: one failure is just a 401 again.
    fail_logins(&app, "rosa", 2).await;

    let locked = app.audit_events(&admin, Some("login_locked")).await;
    assert_eq!(locked.len(), 2, "one per delay started");
    assert_eq!(locked[0]["detail"]["failures"], 11);
    assert_eq!(locked[0]["detail"]["delay_secs"], 2);
    assert!(locked[0]["user_id"].is_string());
}

#[tokio::test]
async fn backoff_reveals_nothing_about_which_names_exist() {
    let app = TestApp::spawn_with_shipped_limits(&backoff_app_overrides()).await;
    let admin = app.admin_token().await;
    app.register("realname").await;
    // The two streaks side by side, so both delays start within one request of each other;
    // then one more failure each once the first delay is over, making both delays 2 s: the
    // comparison below runs well inside them however busy the machine is.
    for _ in 0..10 {
        fail_logins(&app, "realname", 1).await;
        fail_logins(&app, "nobody-by-this-name", 1).await;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fail_logins(&app, "realname", 1).await;
    fail_logins(&app, "nobody-by-this-name", 1).await;
    let (real, made_up) = tokio::join!(
        login(&app, "realname", "anything", None),
        login(&app, "nobody-by-this-name", "anything", None),
    );
    assert_eq!(real.status(), made_up.status());
    for name in ["retry-after", "ratelimit-policy", "content-type"] {
        assert_eq!(header(&real, name), header(&made_up, name), "{name}");
    }
    // The backoff's own state is the same; the address's counters moved on by one request.
    let backoff_state = |r: &Response| header(r, "ratelimit").split(", ").next().map(str::to_owned);
    assert_eq!(backoff_state(&real), backoff_state(&made_up));
    let mut real: Value = real.json().await.unwrap();
    let mut made_up: Value = made_up.json().await.unwrap();
    real["request_id"] = Value::Null;
    made_up["request_id"] = Value::Null;
    assert_eq!(real, made_up);
    assert_eq!(real["status"], 429);
    // The audit trail keeps names only when they are accounts' (an unknown "name" is often a
    // password typed into the wrong field).
    for event in app.audit_events(&admin, Some("login_failed")).await {
        let text = event.to_string();
        assert!(!text.contains("nobody-by-this-name"), "{text}");
    }
    let locked = app.audit_events(&admin, Some("login_locked")).await;
    assert_eq!(locked.len(), 4, "two delays started for each name");
    assert!(locked.iter().any(|e| e["detail"]["login"] == "realname"));
}

#[tokio::test]
async fn parallel_guesses_get_no_more_tries_than_serial_ones() {
    let app = TestApp::spawn_with_shipped_limits(&backoff_app_overrides()).await;
    app.register("tess").await;
    fail_logins(&app, "tess", 9).await;
    // Twenty guesses at once, as an attacker would send them the moment a delay ends: only the
    // tenth failure's worth may be checked; the rest find its delay already running.
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..20 {
        let (client, url) = (app.client.clone(), app.url("/v1/auth/login"));
        guesses.spawn(async move {
            let body = json!({"username": "tess", "password": format!("guess number {n}")});
            client.post(url).json(&body).send().await.unwrap().status()
        });
    }
    let statuses = guesses.join_all().await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (1, 19), "{statuses:?}");
}

#[tokio::test]
async fn an_admin_unlock_clears_the_backoff() {
    let app = TestApp::spawn_with_shipped_limits(&backoff_app_overrides()).await;
    let admin = app.admin_token().await;
    let password = app.register("sam").await;
    let token = app.access_token("sam", &password).await;
    let id = app.user_id(&token).await;
    // Twelve failures by email: the delay is now 4 s.
    fail_logins(&app, "sam@example.com", 10).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fail_logins(&app, "sam@example.com", 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    fail_logins(&app, "sam@example.com", 1).await;
    assert_limited(
        login(&app, "sam@example.com", &password, None).await,
        "login-backoff",
    )
    .await;
    assert_eq!(
        app.set_locked(&admin, &id, false).await,
        StatusCode::NO_CONTENT
    );
    let ok = login(&app, "sam@example.com", &password, None).await;
    assert_eq!(ok.status(), StatusCode::OK);
}

async fn change_password(app: &TestApp, token: &str, current: &str, new: &str) -> Response {
    app.call(
        reqwest::Method::POST,
        "/v1/auth/password",
        Some(token),
        Some(&json!({"current_password": current, "new_password": new})),
    )
    .await
}

const NEW_PASSWORD: &str = "quiet lanterns drift over harbours";

#[tokio::test]
async fn a_stolen_token_guesses_the_current_password_on_the_login_backoff() {
    let app = TestApp::spawn_with_shipped_limits(&backoff_app_overrides()).await;
    let admin = app.admin_token().await;
    let password = app.register("vera").await;
    let stolen = app.access_token("vera", &password).await;
    let guess = |n: usize| format!("guess number {n} of many");
    for n in 0..10 {
        let response = change_password(&app, &stolen, &guess(n), NEW_PASSWORD).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "guess {n}"
        );
    }
    // The tenth started a delay; two more failures once each delay ends make it four seconds,
    // long enough to check every door while it runs on a busy machine.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let eleventh = change_password(&app, &stolen, &guess(10), NEW_PASSWORD).await;
    assert_eq!(eleventh.status(), StatusCode::UNPROCESSABLE_ENTITY);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let twelfth = change_password(&app, &stolen, &guess(11), NEW_PASSWORD).await;
    assert_eq!(twelfth.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // While it runs, even the right password is refused, here and at the login form under
    // either of the account's names.
    let right = change_password(&app, &stolen, &password, NEW_PASSWORD).await;
    let retry_after = assert_limited(right, "login-backoff").await;
    assert!((1..=4).contains(&retry_after), "{retry_after}");
    assert_limited(login(&app, "vera", &password, None).await, "login-backoff").await;
    assert_limited(
        login(&app, "VERA@example.com", &password, None).await,
        "login-backoff",
    )
    .await;

    let failed = app
        .audit_events(&admin, Some("password_change_failed"))
        .await;
    assert_eq!(failed.len(), 12, "every wrong guess is a security event");
    let id = app.user_id(&stolen).await;
    assert!(failed.iter().all(|e| e["user_id"] == id.as_str()));
    assert!(failed
        .iter()
        .all(|e| !e.to_string().contains("guess number")));
    assert_eq!(
        app.audit_events(&admin, Some("login_locked")).await.len(),
        3,
        "one per delay started"
    );
    // Nothing changed: the old password still is the password once the delay is over.
    let still = app.state.store.find_user(&id).await.unwrap().unwrap();
    assert!(matches!(
        app.state
            .hasher
            .verify(password.clone().into(), Some(&still.password_hash))
            .await
            .unwrap(),
        rampart::password::Verified::Valid { .. }
    ));
}

#[tokio::test]
async fn wrong_current_passwords_and_wrong_logins_share_one_streak_that_a_success_ends() {
    let app = TestApp::spawn_with_shipped_limits(&backoff_app_overrides()).await;
    let password = app.register("wanda").await;
    let token = app.access_token("wanda", &password).await;
    // Five at the login form and four behind the token: nine, no delay yet.
    fail_logins(&app, "wanda", 5).await;
    for n in 0..4 {
        let response =
            change_password(&app, &token, &format!("wrong {n} here"), NEW_PASSWORD).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    // The right current password ends the streak (and changes the password)...
    let changed = change_password(&app, &token, &password, NEW_PASSWORD).await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    // ...so nine more failures are still free: without the reset the tenth overall would
    // have started a delay and these would be refused.
    fail_logins(&app, "wanda", 9).await;
    assert_eq!(
        login(&app, "wanda", NEW_PASSWORD, None).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn many_accounts_failing_from_one_address_tightens_its_limit() {
    let app = TestApp::spawn_with_shipped_limits(&[
        // A burst of 40 that refills one slot per 90 s: nothing refills during the test.
        ("RAMPART_LIMIT_AUTH", "40/hour"),
        ("RAMPART_TRUSTED_PROXIES", "127.0.0.0/8"),
    ])
    .await;
    let remaining = |response: &Response| -> u64 {
        let state = header(response, "ratelimit");
        let start = state.find("\"auth\";r=").unwrap() + "\"auth\";r=".len();
        state[start..].split(';').next().unwrap().parse().unwrap()
    };
    let stuffer = Some("203.0.113.66");
    let mut last = 0;
    for n in 0..20 {
        let response = login(&app, &format!("leaked{n}"), "password123456", stuffer).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        last = remaining(&response);
    }
    assert_eq!(last, 20, "one unit each until then");
    let response = login(&app, "leaked20", "password123456", stuffer).await;
    assert_eq!(
        last - remaining(&response),
        5,
        "after twenty names failed, each attempt costs five"
    );
    // Another address is charged the normal price.
    let other = login(&app, "leaked0", "password123456", Some("203.0.113.67")).await;
    assert_eq!(remaining(&other), 39);
}

/// An outside test's attack on a cluster: a stolen token flooding requests spent the user's
/// whole budget, and the owner's logout-all and password change answered 429, so the token
/// could not be ended. The budget is the session's: the owner's own session still gets through.
#[tokio::test]
async fn a_stolen_token_spending_its_budget_cannot_keep_the_owner_from_ending_it() {
    let app = TestApp::spawn(&[("RAMPART_LIMIT_GLOBAL", "5/minute")]).await;
    let password = app.register("vera").await; // address: 1
    let stolen = app.access_token("vera", &password).await; // 2
    let own = app.access_token("vera", &password).await; // 3
    let mut last = None;
    for _ in 0..6 {
        last = Some(app.get_as("/v1/users/me", &stolen).await);
    }
    assert_limited(last.unwrap(), "global").await;
    let ended = app
        .client
        .post(app.url("/v1/auth/logout-all"))
        .bearer_auth(&own)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    let after = app.get_as("/v1/users/me", &stolen).await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_global_limit_counts_users_and_everyone_else_by_address() {
    let app = TestApp::spawn(&[("RAMPART_LIMIT_GLOBAL", "5/minute")]).await;
    let password = app.register("uma").await; // 1
    let token = app.access_token("uma", &password).await; // 2
    for _ in 0..3 {
        assert_eq!(app.get("/health").await.status(), StatusCode::OK); // 3..5
    }
    let health = app.get("/health").await;
    assert_limited(health, "global").await;
    // A forged token does not buy a fresh quota: it is charged to the address.
    let forged = app.get_as("/v1/users/me", "not.a.token").await;
    assert_limited(forged, "global").await;
    // The user has a quota of their own.
    let me = app.get_as("/v1/users/me", &token).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert!(header(&me, "ratelimit").contains("\"global\";r=4;"));
    assert!(header(&me, "ratelimit-policy").contains("\"global\";q=5;w=60"));
}

/// The contract counts an authenticated client by user: logging in again (the outside review
/// made 1,500 requests in 0.4 s on five sessions against 300 a minute) buys nothing.
#[tokio::test]
async fn every_session_of_one_user_shares_the_global_budget() {
    let app = TestApp::spawn(&[
        ("RAMPART_LIMIT_GLOBAL", "6/minute"),
        ("RAMPART_LIMIT_AUTH", "1000/minute"),
    ])
    .await;
    let password = app.register("una").await;
    let first = app.access_token("una", &password).await;
    let second = app.access_token("una", &password).await;
    let mut answers = Vec::new();
    for n in 0..8 {
        let token = if n % 2 == 0 { &first } else { &second };
        answers.push(app.get_as("/v1/users/me", token).await.status().as_u16());
    }
    assert_eq!(
        answers,
        [200, 200, 200, 200, 200, 200, 429, 429],
        "{answers:?}"
    );
}

#[tokio::test]
async fn refusals_are_audited_once_per_client_and_policy_a_minute() {
    let app =
        TestApp::spawn_with_shipped_limits(&[("RAMPART_LIMIT_GLOBAL", "100000/minute")]).await;
    let admin = app.admin_token().await; // one auth slot
    for n in 0..30 {
        login(&app, &format!("flood{n}"), "wrong", None).await;
    }
    // The row is written off the request path: wait for it, then make sure no second follows.
    let mut limited = Vec::new();
    for _ in 0..100 {
        limited = app.audit_events(&admin, Some("rate_limited")).await;
        if !limited.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let limited_now = app.audit_events(&admin, Some("rate_limited")).await;
    assert_eq!(limited_now.len(), 1, "{limited_now:?}");
    assert_eq!(limited, limited_now);
    assert_eq!(limited[0]["detail"]["policy"], "auth");
    assert_eq!(limited[0]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_are_shed_with_503() {
    let app = TestApp::spawn(&[("RAMPART_MAX_IN_FLIGHT", "1")]).await;
    // Someone else holds the database's write lock, so a registration waits in its handler
    // (up to the busy timeout) holding the only slot.
    let mut db = app.raw_database().await;
    db.execute("BEGIN EXCLUSIVE").await;
    let (client, url) = (app.client.clone(), app.url("/v1/auth/register"));
    let waiting = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"email": "wait@example.com", "username": "waiter", "password": "violet tandem bicycles rarely whistle"}))
            .send()
            .await
    });
    let mut shed = None;
    for _ in 0..100 {
        let response = app.get("/health").await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            shed = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shed = shed.expect("a second request is shed while the first holds the slot");
    assert_eq!(header(&shed, "retry-after"), "1");
    assert_eq!(header(&shed, "content-type"), "application/problem+json");
    db.execute("ROLLBACK").await;
    assert_eq!(
        waiting.await.unwrap().unwrap().status(),
        StatusCode::CREATED,
        "the waiting request finishes once the lock is gone"
    );
    let mut recovered = false;
    for _ in 0..50 {
        if app.get("/health").await.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recovered, "the slot is released when the request ends");
}

/// Opens a connection from `source` (any 127.0.0.0/8 address is this host) and sends a POST
/// head declaring a body of `declared` bytes, then `sent` of them.
async fn stalled_post(
    app: &TestApp,
    source: std::net::Ipv4Addr,
    declared: usize,
    sent: &[u8],
) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    let mut stream = socket.connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream
}

#[tokio::test]
async fn stalled_bodies_from_many_addresses_hold_no_slot_and_are_cut_at_the_body_timeout() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::spawn(&[
        ("RAMPART_MAX_IN_FLIGHT", "16"),
        ("RAMPART_BODY_TIMEOUT", "2s"),
    ])
    .await;
    let password = app.register("steady").await;
    // The review's attack, scaled to the slots: nine source addresses, each with twenty
    // requests that declare 1000 bytes and then send a byte a second.
    let mut stalled = Vec::new();
    for host in 2..=10u8 {
        for _ in 0..20 {
            let source = std::net::Ipv4Addr::new(127, 0, 0, host);
            stalled.push(stalled_post(&app, source, 1000, b"{").await);
        }
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for stream in &mut stalled {
                let _ = stream.write_all(b" ").await;
            }
        }
        stalled
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Everyone else is served at once: a fresh address's health check and a whole login.
    let fresh = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 50]))
        .build()
        .unwrap();
    for _ in 0..20 {
        let health = fresh.get(app.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
    let login = fresh
        .post(app.url("/v1/auth/login"))
        .json(&json!({"username": "steady", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);

    // Past the body timeout each stalled request is answered 408 and its connection closed,
    // though it was still sending.
    let stalled = trickle.await.unwrap();
    for mut stream in stalled {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
        assert!(read.await.is_ok(), "the connection was closed");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");
    }
}

/// The outside review's finding: the answer to a login carried the name's count across every
/// address, which the owner's own sign-ins lower, so anyone could watch an account being used.
#[tokio::test]
async fn a_login_answer_does_not_show_when_the_account_is_used() {
    let app = TestApp::spawn_with_shipped_limits(&[
        ("RAMPART_TRUSTED_PROXIES", "127.0.0.0/8"),
        ("RAMPART_LIMIT_GLOBAL", "100000/minute"),
    ])
    .await;
    let password = app.register("ora").await;
    let limits = |response: &Response| {
        ["ratelimit", "ratelimit-policy"].map(|name| {
            response
                .headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    let first = login(&app, "ora", "wrong", Some("198.51.100.9")).await;
    let owner = login(&app, "ora", &password, Some("203.0.113.1")).await;
    assert_eq!(owner.status(), StatusCode::OK);
    for response in [&first, &owner] {
        let [state, policies] = limits(response);
        assert!(!policies.contains("login-account"), "{policies}");
        assert!(!state.contains("login-account"), "{state}");
        // The caller's own counts are still there to pace itself by.
        assert!(policies.contains("\"auth\""), "{policies}");
        assert!(policies.contains("\"login-ip-account\""), "{policies}");
    }
    for n in 2..=4 {
        let response = login(&app, "ora", &password, Some(&format!("203.0.113.{n}"))).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // The watcher's second probe still shows only its own counts.
    let second = login(&app, "ora", "wrong", Some("198.51.100.9")).await;
    let [state, _] = limits(&second);
    assert!(!state.contains("login-account"), "{state}");
}

/// The second outside review: listing sessions was charged per session, so one account with
/// 40 sessions got 270 lists a second. Only the routes that end sessions are.
#[tokio::test]
async fn listing_sessions_is_charged_to_the_account_whichever_session_asks() {
    let app = TestApp::spawn(&[
        ("RAMPART_LIMIT_GLOBAL", "6/minute"),
        ("RAMPART_LIMIT_AUTH", "1000/minute"),
    ])
    .await;
    let password = app.register("vic").await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(app.access_token("vic", &password).await);
    }
    let mut answers = Vec::new();
    for n in 0..8 {
        let listed = app.get_as("/v1/auth/sessions", &tokens[n % 3]).await;
        answers.push(listed.status().as_u16());
    }
    assert_eq!(
        answers,
        [200, 200, 200, 200, 200, 200, 429, 429],
        "{answers:?}"
    );
    // The owner can still end every session, the spent budget notwithstanding.
    let ended = app
        .client
        .post(app.url("/v1/auth/logout-all"))
        .bearer_auth(&tokens[0])
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
}

/// The second outside review: with CORS origins configured, preflights were answered by the
/// CORS layer before any limit saw them (66,000 in 2 s from one address). They are charged to
/// the address under the global limit, the same budget as its other anonymous requests.
#[tokio::test]
async fn cors_preflights_are_charged_to_their_address() {
    let app = TestApp::spawn(&[
        ("RAMPART_LIMIT_GLOBAL", "5/minute"),
        ("RAMPART_CORS_ORIGINS", "https://app.example"),
    ])
    .await;
    let preflight = || {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/items"))
            .header("origin", "https://elsewhere.example")
            .header("access-control-request-method", "POST")
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(preflight().await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "{statuses:?}");
    let refused = preflight().await.unwrap();
    assert_limited(refused, "global").await;
    // The same budget as the address's other anonymous requests.
    assert_limited(app.get("/health").await, "global").await;
}

/// Sends a request head declaring a body and asking `Expect: 100-continue`, sends no body,
/// and returns the status line of the first answer (within two seconds).
async fn status_before_any_body(
    app: &TestApp,
    method_and_path: &str,
    token: Option<&str>,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let authorization = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method_and_path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: 1048576\r\nExpect: 100-continue\r\n{authorization}\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let read = async {
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .unwrap_or_else(|_| panic!("{method_and_path}: no answer without the body"));
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_owned()
}

/// The gate comes before the body: a caller without the credentials a route needs, or over
/// its limit, is answered before a byte of its body is read, and is never invited to send it
/// (`100 Continue`), so refused callers cannot fill the byte budget admitted callers need. (An
/// outside attack filled it with anonymous uploads to `/v1/items` that were read whole before
/// their 401.)
#[tokio::test]
async fn a_refused_caller_is_answered_before_its_body_is_read() {
    let app = TestApp::spawn(&[("RAMPART_LIMIT_GLOBAL", "3/minute")]).await;
    for (request, token) in [
        ("POST /v1/items", None),
        ("POST /v1/items", Some("forged.token.here")),
        ("PUT /v1/admin/users/x/role", None),
    ] {
        let status = status_before_any_body(&app, request, token).await;
        assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{request}");
    }
    // Those three spent the address's budget: the next upload, to a public route, is 429.
    let status = status_before_any_body(&app, "POST /v1/auth/login", None).await;
    assert_eq!(status, "HTTP/1.1 429 Too Many Requests");
}

/// The credential routes' per-address limit is charged in their gate too: an address over it
/// is answered 429 before a byte of its login, registration or refresh body is read (the
/// outside attack had the 1 MiB body invited with `100 Continue` and read whole first).
#[tokio::test]
async fn an_address_over_the_login_limit_is_refused_before_its_body_is_read() {
    let app = TestApp::spawn(&[("RAMPART_LIMIT_AUTH", "2/minute")]).await;
    for attempt in 0..2 {
        let response = login(&app, &format!("guess{attempt}"), "wrong password 1", None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&response, "ratelimit").contains("\"auth\";"));
    }
    for route in ["/v1/auth/login", "/v1/auth/register", "/v1/auth/refresh"] {
        let status = status_before_any_body(&app, &format!("POST {route}"), None).await;
        assert_eq!(status, "HTTP/1.1 429 Too Many Requests", "{route}");
    }
    // The refusal still carries the limit's headers and is a problem document.
    assert_limited(login(&app, "guess2", "wrong", None).await, "auth").await;
}

/// Nor is a body read where nothing would use it: a method whose content means nothing (GET,
/// HEAD, OPTIONS, TRACE), or a method the route does not take (405). The second outside attack
/// filled the byte budget from eight anonymous addresses with 1 MiB bodies on `GET /health`,
/// and every login and item write then got 503.
#[tokio::test]
async fn a_body_is_never_read_for_a_method_or_route_that_takes_none() {
    let app = TestApp::spawn(&[]).await;
    for (request, status) in [
        ("GET /health", "HTTP/1.1 200 OK"),
        ("GET /.well-known/jwks.json", "HTTP/1.1 200 OK"),
        ("OPTIONS /health", "HTTP/1.1 405 Method Not Allowed"),
        ("PUT /v1/auth/register", "HTTP/1.1 405 Method Not Allowed"),
        ("POST /health", "HTTP/1.1 405 Method Not Allowed"),
    ] {
        assert_eq!(
            status_before_any_body(&app, request, None).await,
            status,
            "{request}"
        );
    }
    // A signed-in caller's read ignores a body too; its writes still take theirs.
    let password = app.register("reader").await;
    let token = app.access_token("reader", &password).await;
    let status = status_before_any_body(&app, "GET /v1/users/me", Some(&token)).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let status = status_before_any_body(&app, "POST /v1/items", Some(&token)).await;
    assert_eq!(
        status, "HTTP/1.1 100 Continue",
        "an admitted write is invited to send its body"
    );
    // Routes whose operations take no body answer without waiting for one (the third outside
    // attack had a logout wait for a body that never came, then time out undone).
    let unknown_item = "DELETE /v1/items/00000000-0000-4000-8000-000000000000";
    let status = status_before_any_body(&app, unknown_item, Some(&token)).await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let status = status_before_any_body(&app, "POST /v1/auth/logout", Some(&token)).await;
    assert_eq!(status, "HTTP/1.1 204 No Content");
    assert_eq!(
        app.get_as("/v1/users/me", &token).await.status(),
        StatusCode::UNAUTHORIZED,
        "the logout took effect"
    );
}
