//! The audit trail: every security event recorded without secrets, readable by admins only,
//! and tamper-evident through `rampart audit-log verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn every_security_event_is_recorded_without_secrets() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[("RAMPART_REFRESH_GRACE", "1s")]).await;
    let password = app.register("quinn").await;
    let failed = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "quinn", "password": "wrong guess here"}),
        )
        .await;
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    let pair = app.login("quinn", &password).await;
    let refresh_token = pair["refresh_token"].as_str().unwrap().to_owned();
    let refreshed: Value = app
        .post_json("/v1/auth/refresh", &json!({"refresh_token": refresh_token}))
        .await
        .json()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    app.post_json("/v1/auth/refresh", &json!({"refresh_token": refresh_token}))
        .await; // reuse
    let second = app.login("quinn", &password).await;
    let third = app.login("quinn", &password).await;
    let token = second["access_token"].as_str().unwrap();
    let other = app.other_session_id(token).await;
    app.client
        .delete(app.url(&format!("/v1/auth/sessions/{other}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let new_password = "marble owls juggle quietly";
    app.client
        .post(app.url("/v1/auth/password"))
        .bearer_auth(token)
        .json(&json!({"current_password": password, "new_password": new_password}))
        .send()
        .await
        .unwrap();
    let fourth = app.login("quinn", new_password).await;
    app.client
        .post(app.url("/v1/auth/logout"))
        .bearer_auth(fourth["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    app.client
        .post(app.url("/v1/auth/logout-all"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();

    let admin = app.admin_token().await;
    let events = app.audit_events(&admin, None).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    for expected in [
        "register",
        "login_failed",
        "login_succeeded",
        "token_refreshed",
        "refresh_reuse_detected",
        "session_revoked",
        "password_changed",
        "logout",
        "logout_all",
    ] {
        assert!(
            kinds.contains(&expected),
            "{expected} missing from {kinds:?}"
        );
    }
    let at: Vec<&str> = events.iter().filter_map(|e| e["at"].as_str()).collect();
    assert!(at.windows(2).all(|w| w[0] >= w[1]), "newest first");
    // The chain's first row is the server's own: no request, no address.
    let (started, requested): (Vec<&Value>, Vec<&Value>) = events
        .iter()
        .partition(|e| e["kind"] == "audit_chain_started");
    assert_eq!(started.len(), 1, "{kinds:?}");
    assert!(started[0]["ip"].is_null() && started[0]["request_id"].is_null());
    for event in requested {
        assert!(
            event["request_id"].is_string() && event["ip"].is_string(),
            "{event}"
        );
        let fields: Vec<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields.len(), 7, "{fields:?}");
    }
    let text = serde_json::to_string(&events).unwrap();
    for secret in [
        password.as_str(),
        new_password,
        "wrong guess here",
        refresh_token.as_str(),
        refreshed["refresh_token"].as_str().unwrap(),
        token,
        third["access_token"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "a secret reached the audit log");
    }
}

#[tokio::test]
async fn only_admins_read_the_audit_log_and_paging_is_strict() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("rosa").await;
    let user = app.access_token("rosa", &password).await;
    assert_eq!(
        app.get("/v1/admin/audit").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_as("/v1/admin/audit", &user).await.status(),
        StatusCode::FORBIDDEN
    );
    let admin = app.admin_token().await;
    for bad in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "limit=99999999999",
        "cursor=forged",
        "cursor=YXVkaXQ6LTE",
        "sort=asc",
    ] {
        let response = app.get_as(&format!("/v1/admin/audit?{bad}"), &admin).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // the chain's start + register + login(rosa) + access_denied(rosa on the audit log) +
    // login(admin) = 5 events; pages of 3 cover them with no repeats.
    // (access_denied is written off the request path: wait for it.)
    for _ in 0..100 {
        if app.audit_events(&admin, None).await.len() == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let first: Value = app
        .get_as("/v1/admin/audit?limit=3", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["events"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .get_as(&format!("/v1/admin/audit?limit=3&cursor={cursor}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    let ids: std::collections::HashSet<String> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["events"].as_array().unwrap())
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(second["next_cursor"].is_null());
    let denied = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["events"].as_array().unwrap())
        .find(|e| e["kind"] == "access_denied")
        .expect("the user's 403 is recorded");
    assert_eq!(denied["detail"]["path"], "/v1/admin/audit");
    assert!(denied["user_id"].is_string(), "{denied}");
}

fn verify(app: &TestApp) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["audit-log", "verify"])
        .env("RAMPART_DATA_DIR", app.data.path())
        .env("RAMPART_AUDIT_ANCHOR", app.data.path().join("audit-anchor"))
        .env("RAMPART_DATABASE_URL", &app.database_url)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Edits the audit table behind the service's back, as someone with database access would
/// (first removing the append-only triggers, which stop the application itself).
async fn tamper(app: &TestApp, sql: &str) {
    let untrigger: &[&str] = match common::backend() {
        common::Backend::Sqlite => &[
            "DROP TRIGGER IF EXISTS audit_events_no_update",
            "DROP TRIGGER IF EXISTS audit_events_no_delete",
        ],
        common::Backend::Postgres => &["ALTER TABLE audit_events DISABLE TRIGGER USER"],
    };
    let mut db = app.raw_database().await;
    for statement in untrigger.iter().chain([&sql]) {
        db.execute(statement).await;
    }
}

#[tokio::test]
async fn editing_or_deleting_an_audit_row_is_caught_and_named() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    for name in ["sam", "tina", "uma"] {
        app.register(name).await;
    }
    let (code, out) = verify(&app);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("intact: 4 event(s)"), "{out}");

    tamper(
        &app,
        "UPDATE audit_events SET user_id = 'someone-else' WHERE seq = 2",
    )
    .await;
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1));
    assert!(out.contains("row 2"), "the edited row must be named: {out}");

    // A deleted row: the chain breaks at the row after it.
    let fresh = TestApp::spawn(&[]).await;
    for name in ["sam", "tina", "uma"] {
        fresh.register(name).await;
    }
    tamper(&fresh, "DELETE FROM audit_events WHERE seq = 2").await;
    let (code, out) = verify(&fresh);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("row 3"),
        "the row after the deleted one must be named: {out}"
    );
}

#[tokio::test]
async fn admin_lock_ends_sessions_and_refuses_login_until_unlock() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("vera").await;
    let pair = app.login("vera", &password).await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let vera: Value = app
        .get_as("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    let id = vera["id"].as_str().unwrap().to_owned();
    let admin = app.admin_token().await;

    let as_user = app
        .client
        .post(app.url(&format!("/v1/admin/users/{id}/lock")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        as_user.status(),
        StatusCode::FORBIDDEN,
        "a user cannot lock anyone"
    );
    let missing = app
        .client
        .post(app.url("/v1/admin/users/nobody/lock"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Locking oneself would end the session doing it and could leave no admin at all.
    let admin_me: Value = app
        .get_as("/v1/users/me", &admin)
        .await
        .json()
        .await
        .unwrap();
    let own = app
        .client
        .post(app.url(&format!(
            "/v1/admin/users/{}/lock",
            admin_me["id"].as_str().unwrap()
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::CONFLICT);
    assert_eq!(
        app.get_as("/v1/users/me", &admin).await.status(),
        StatusCode::OK,
        "the admin's session survives the refused self-lock"
    );

    let locked = app
        .client
        .post(app.url(&format!("/v1/admin/users/{id}/lock")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_as("/v1/users/me", &token).await.status(),
        StatusCode::UNAUTHORIZED,
        "live token dies at once"
    );
    let refresh = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;
    assert_eq!(refresh.status(), StatusCode::UNAUTHORIZED);
    let login = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "vera", "password": password}),
        )
        .await;
    assert_eq!(
        login.status(),
        StatusCode::UNAUTHORIZED,
        "login refused while locked"
    );

    let unlocked = app
        .client
        .post(app.url(&format!("/v1/admin/users/{id}/unlock")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(unlocked.status(), StatusCode::NO_CONTENT);
    app.login("vera", &password).await;
    let kinds: Vec<String> = app
        .audit_events(&admin, None)
        .await
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect();
    assert!(
        kinds.contains(&"user_locked".to_owned()) && kinds.contains(&"user_unlocked".to_owned()),
        "{kinds:?}"
    );
}

async fn set_role(app: &TestApp, admin: &str, id: &str, body: &Value) -> reqwest::Response {
    app.call(
        reqwest::Method::PATCH,
        &format!("/v1/admin/users/{id}"),
        Some(admin),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn a_role_change_applies_to_tokens_already_issued_on_the_next_request() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let admin = app.admin_token().await;
    let password = app.register("nora").await;
    let token = app.access_token("nora", &password).await;
    let id = app.user_id(&token).await;
    assert_eq!(
        app.get_as("/v1/admin/users", &token).await.status(),
        StatusCode::FORBIDDEN
    );

    let promoted = set_role(&app, &admin, &id, &json!({"role": "admin"})).await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let user: Value = promoted.json().await.unwrap();
    assert_eq!(user["role"], "admin");
    assert_eq!(user["id"], id.as_str());
    assert!(user.get("password_hash").is_none());
    // The token she already holds carries no role: the very next request is an admin's.
    assert_eq!(
        app.get_as("/v1/admin/users", &token).await.status(),
        StatusCode::OK
    );
    // Setting the role she has is accepted and changes nothing.
    let again = set_role(&app, &admin, &id, &json!({"role": "admin"})).await;
    assert_eq!(again.status(), StatusCode::OK);

    let demoted = set_role(&app, &admin, &id, &json!({"role": "user"})).await;
    assert_eq!(demoted.status(), StatusCode::OK);
    assert_eq!(
        app.get_as("/v1/admin/users", &token).await.status(),
        StatusCode::FORBIDDEN,
        "the demotion applies to the next request, not the next login"
    );
    let events = app.audit_events(&admin, Some("role_changed")).await;
    assert_eq!(events.len(), 2, "one per change, none for the no-op");
    let admin_id = app.user_id(&admin).await;
    assert_eq!(events[0]["user_id"], id.as_str());
    assert_eq!(
        events[0]["detail"],
        json!({"by": admin_id, "from": "admin", "to": "user"})
    );
    assert_eq!(events[1]["detail"]["to"], "admin");
}

#[tokio::test]
async fn role_changes_refuse_bad_input_and_never_leave_no_admin() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let admin = app.admin_token().await;
    let admin_id = app.user_id(&admin).await;
    let password = app.register("omar").await;
    let omar = app
        .user_id(&app.access_token("omar", &password).await)
        .await;

    for (body, field) in [
        (json!({"role": "root"}), "role"),
        // serde's map form of an enum, and an array: only the two strings are a role.
        (json!({"role": {"admin": null}}), "role"),
        (json!({"role": ["admin"]}), "role"),
        (json!({"role": "admin", "locked": false}), "locked"),
        (json!({}), "role"),
    ] {
        let response = set_role(&app, &admin, &omar, &body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let problem: Value = response.json().await.unwrap();
        assert!(problem.to_string().contains(field), "{problem}");
    }
    let missing = set_role(
        &app,
        &admin,
        "01a20000-0000-7000-8000-0000000000ff",
        &json!({"role": "user"}),
    )
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The only admin cannot demote themselves: nobody could ever administer again.
    let last = set_role(&app, &admin, &admin_id, &json!({"role": "user"})).await;
    assert_eq!(last.status(), StatusCode::CONFLICT);
    assert_eq!(
        app.get_as("/v1/admin/users", &admin).await.status(),
        StatusCode::OK
    );

    // Two admins demoting each other at the same moment: one may win, never both.
    let promoted = set_role(&app, &admin, &omar, &json!({"role": "admin"})).await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let omar_token = app.access_token("omar", &password).await;
    let demote = json!({"role": "user"});
    for _ in 0..10 {
        let (a, b) = tokio::join!(
            set_role(&app, &admin, &omar, &demote),
            set_role(&app, &omar_token, &admin_id, &demote),
        );
        let statuses = [a.status(), b.status()];
        assert!(
            statuses.contains(&StatusCode::CONFLICT) || statuses.contains(&StatusCode::FORBIDDEN),
            "{statuses:?}: both demotions went through"
        );
        let admins: Value = app
            .get_as("/v1/admin/users?limit=100", &admin)
            .await
            .json()
            .await
            .unwrap_or_default();
        let left = app.state.store.list_users(None, 100).await.unwrap();
        let count = left
            .iter()
            .filter(|u| u.role == rampart::Role::Admin)
            .count();
        assert_eq!(count, 1, "exactly one admin left ({admins})");
        // Put both back for the next round, by whichever is still admin.
        let survivor = if left
            .iter()
            .any(|u| u.id == admin_id && u.role == rampart::Role::Admin)
        {
            &admin
        } else {
            &omar_token
        };
        for id in [&omar, &admin_id] {
            let restored = set_role(&app, survivor, id, &json!({"role": "admin"})).await;
            assert_eq!(restored.status(), StatusCode::OK);
        }
    }
}

#[tokio::test]
async fn roles_and_locks_changed_in_the_database_apply_within_the_bound() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[("RAMPART_REVOCATION_BOUND", "1s")]).await;
    let admin = app.admin_token().await;
    let admin_id = app.user_id(&admin).await;
    let password = app.register("pia").await;
    let token = app.access_token("pia", &password).await;
    let id = app.user_id(&token).await;
    let other_password = app.register("quin").await;
    let other = app.access_token("quin", &other_password).await;
    let other_id = app.user_id(&other).await;
    assert_eq!(
        app.get_as("/v1/admin/users", &admin).await.status(),
        StatusCode::OK
    );
    // Behind the service's back: an operator's psql session, a restored backup. Neither
    // touches `updated_at`, so the poll for changes cannot see them: only the recheck can.
    let mut db = app.raw_database().await;
    let long_ago = "2000-01-01T00:00:00.000000Z";
    db.execute(&format!(
        "UPDATE users SET role = 'user', updated_at = '{long_ago}' WHERE id = '{admin_id}'"
    ))
    .await;
    db.execute(&format!(
        "UPDATE users SET locked_at = '{long_ago}', updated_at = '{long_ago}' WHERE id = '{id}'"
    ))
    .await;
    db.execute(&format!(
        "UPDATE sessions SET revoked_at = '{}' WHERE user_id = '{other_id}'",
        rampart_server::store::now()
    ))
    .await;
    // The bound, plus slack for a busy machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let demoted = app.get_as("/v1/admin/users", &admin).await.status();
        let locked = app.get_as("/v1/users/me", &token).await.status();
        let revoked = app.get_as("/v1/users/me", &other).await.status();
        if demoted == StatusCode::FORBIDDEN
            && locked == StatusCode::UNAUTHORIZED
            && revoked == StatusCode::UNAUTHORIZED
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {demoted}, {locked} and {revoked} past the 1 s bound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// An incident responder ends sessions in the database: deleting their rows, or marking them
/// revoked with a date from the past that the poll for new revocations never looks at. Their
/// access tokens stop within the bound all the same.
#[tokio::test]
async fn sessions_deleted_or_revoked_in_the_past_in_the_database_end_within_the_bound() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[("RAMPART_REVOCATION_BOUND", "1s")]).await;
    let mut tokens = Vec::new();
    for name in ["rhea", "saul"] {
        let password = app.register(name).await;
        let token = app.access_token(name, &password).await;
        assert_eq!(
            app.get_as("/v1/users/me", &token).await.status(),
            StatusCode::OK
        );
        tokens.push((app.user_id(&token).await, token));
    }
    let mut db = app.raw_database().await;
    db.execute(&format!(
        "DELETE FROM sessions WHERE user_id = '{}'",
        tokens[0].0
    ))
    .await;
    db.execute(&format!(
        "UPDATE sessions SET revoked_at = '2020-01-01T00:00:00.000000Z' WHERE user_id = '{}'",
        tokens[1].0
    ))
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let deleted = app.get_as("/v1/users/me", &tokens[0].1).await.status();
        let revoked = app.get_as("/v1/users/me", &tokens[1].1).await.status();
        if deleted == StatusCode::UNAUTHORIZED && revoked == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {deleted} and {revoked} past the 1 s bound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The chain's start and three registrations: four audit rows, anchored at the fourth.
async fn app_with_three_events() -> TestApp {
    let app = TestApp::spawn(&[]).await;
    for name in ["sam", "tina", "uma"] {
        app.register(name).await;
    }
    let (code, out) = verify(&app);
    assert_eq!(code, Some(0), "{out}");
    app
}

#[tokio::test]
async fn removing_the_newest_audit_rows_is_caught_by_the_anchor() {
    crate::require!(common::backend_ready().await);
    let app = app_with_three_events().await;
    tamper(&app, "DELETE FROM audit_events WHERE seq >= 3").await;
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the chain ends at row 2 but the anchor records row 4"),
        "{out}"
    );
    // Every row gone: the same.
    tamper(&app, "DELETE FROM audit_events").await;
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("the anchor records row 4"), "{out}");
}

/// Actions answered at the same moment share anchor moves, yet by the time each is answered
/// the anchor covers its row: removing the newest rows is caught even right after a burst.
#[tokio::test]
async fn a_burst_of_events_is_anchored_up_to_its_newest_row() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let names: Vec<String> = (0..12).map(|n| format!("burst{n}")).collect();
    futures_util::future::join_all(names.iter().map(|name| app.register(name))).await;
    let rows = app.state.store.audit_after(0, 100).await.unwrap();
    let newest = rows.last().unwrap().seq;
    assert!(
        newest >= 13,
        "the chain's start and twelve registrations: {newest}"
    );
    let (code, out) = verify(&app);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("anchored row {newest}")), "{out}");
    tamper(
        &app,
        &format!("DELETE FROM audit_events WHERE seq = {newest}"),
    )
    .await;
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("the anchor records row {newest}")),
        "{out}"
    );
}

#[tokio::test]
async fn rows_removed_while_the_server_runs_stay_evident_after_new_events() {
    crate::require!(common::backend_ready().await);
    let app = app_with_three_events().await;
    tamper(&app, "DELETE FROM audit_events WHERE seq = 3").await;
    // The service goes on recording; the anchor must not quietly move past the gap.
    app.register("vic").await;
    app.register("wes").await;
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("row"), "{out}");
}

#[tokio::test]
async fn a_chain_recomputed_without_the_key_does_not_verify() {
    use rampart_server::audit::chain::{legacy_hash, GENESIS};
    crate::require!(common::backend_ready().await);
    // Rewrite history the way the old, unkeyed chain allowed: change a row, then recompute
    // every hash after it. First keeping the rows marked keyed, then marking them all as
    // pre-key rows so the whole chain is a valid plain SHA-256 chain from the start.
    for mark_unkeyed in [false, true] {
        let app = app_with_three_events().await;
        let mut rows = app.state.store.audit_after(0, 100).await.unwrap();
        rows[1].user_id = Some("someone-else".into());
        let mut prev = GENESIS.to_owned();
        let mut statements = Vec::new();
        for row in &mut rows {
            row.prev_hash.clone_from(&prev);
            row.hash = legacy_hash(&prev, row);
            let alg = if mark_unkeyed {
                "sha256"
            } else {
                row.alg.as_str()
            };
            statements.push(format!(
                "UPDATE audit_events SET user_id = {}, prev_hash = '{}', hash = '{}', alg = '{alg}' WHERE seq = {}",
                row.user_id.as_ref().map_or("NULL".into(), |u| format!("'{u}'")),
                row.prev_hash,
                row.hash,
                row.seq
            ));
            prev.clone_from(&row.hash);
        }
        for statement in &statements {
            tamper(&app, statement).await;
        }
        let (code, out) = verify(&app);
        assert_eq!(code, Some(1), "{out}");
        let expected = if mark_unkeyed {
            // A perfect plain chain, but not the one the anchor sealed.
            "the anchored row 4 is missing or is not the row the anchor sealed"
        } else {
            "row 1 (event"
        };
        assert!(out.contains(expected), "unkeyed={mark_unkeyed}: {out}");
    }
}

#[tokio::test]
async fn a_forged_or_missing_anchor_fails_verification() {
    crate::require!(common::backend_ready().await);
    let app = app_with_three_events().await;
    let anchor = app.data.path().join("audit-anchor");
    let genuine = std::fs::read_to_string(&anchor).unwrap();
    let record: Value = serde_json::from_str(&genuine).unwrap();
    assert_eq!(record["seq"], 4);
    // Pointing the anchor at an earlier row (to hide a truncation) needs the key.
    let rows = app.state.store.audit_after(0, 100).await.unwrap();
    let forged = json!({"seq": 1, "hash": rows[0].hash, "mac": record["mac"]});
    std::fs::write(&anchor, forged.to_string()).unwrap();
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("not written with this deployment's key"),
        "{out}"
    );
    std::fs::remove_file(&anchor).unwrap();
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no audit anchor"), "{out}");
}

#[tokio::test]
async fn a_client_chosen_request_id_is_kept_beside_the_servers_never_in_its_place() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let admin = app.admin_token().await;
    // An attacker reuses the id of someone else's request, hoping to have its failed logins
    // filed under it.
    let victims_id = "0190c1a2-7e4b-7000-8000-00000000beef";
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-request-id", victims_id)
        .json(&json!({"username": "admin", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The contract: a sane id is echoed, in the header and the problem document alike.
    assert_eq!(response.headers()["x-request-id"], victims_id);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["request_id"], victims_id);

    let failed = app.audit_events(&admin, Some("login_failed")).await;
    assert_eq!(failed.len(), 1);
    assert_ne!(
        failed[0]["request_id"], victims_id,
        "filed under the server's id"
    );
    assert!(failed[0]["request_id"]
        .as_str()
        .is_some_and(|id| id.len() == 36));
    assert_eq!(failed[0]["detail"]["client_request_id"], victims_id);
    // Without a client id there is nothing beside the server's.
    let quiet = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "admin", "password": "still not it"}),
        )
        .await;
    let echoed = quiet.headers()["x-request-id"].to_str().unwrap().to_owned();
    let failed = app.audit_events(&admin, Some("login_failed")).await;
    assert_eq!(failed[0]["request_id"], echoed.as_str());
    assert!(failed[0]["detail"].get("client_request_id").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_audit_table_locked_no_action_is_acknowledged_without_its_record() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("xena").await;
    // Someone holds the audit table (on SQLite: the whole file) for longer than the lock
    // timeout, as a long report query or a hostile session might.
    let mut db = app.raw_database().await;
    match common::backend() {
        common::Backend::Sqlite => db.execute("BEGIN EXCLUSIVE").await,
        common::Backend::Postgres => {
            db.execute("BEGIN").await;
            db.execute("LOCK TABLE audit_events IN ACCESS EXCLUSIVE MODE")
                .await;
        }
    }
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (client, url, password) = (
            app.client.clone(),
            app.url("/v1/auth/login"),
            password.clone(),
        );
        attempts.spawn(async move {
            client
                .post(url)
                .json(&json!({"username": "xena", "password": password}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let mut acknowledged = 0;
    while let Some(status) = attempts.join_next().await {
        let status = status.unwrap();
        assert!(
            [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(&status),
            "{status}"
        );
        if status == StatusCode::OK {
            acknowledged += 1;
        }
    }
    db.execute("ROLLBACK").await;
    // Whatever was answered 200 is on record, and nothing else happened: as many sessions
    // as acknowledged logins, as many `login_succeeded` rows.
    let admin = app.admin_token().await;
    let recorded = app.audit_events(&admin, Some("login_succeeded")).await;
    let sessions = app
        .state
        .store
        .list_sessions(
            &app.state
                .store
                .find_user_by_login("xena")
                .await
                .unwrap()
                .unwrap()
                .id,
        )
        .await
        .unwrap();
    assert_eq!(
        sessions.len(),
        acknowledged,
        "sessions opened = logins acknowledged"
    );
    assert_eq!(
        recorded.len() - 1,
        acknowledged,
        "login_succeeded rows = logins acknowledged (plus the admin's own)"
    );
}

#[tokio::test]
async fn locked_admins_do_not_count_and_two_admins_cannot_lock_each_other_out() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let admin = app.admin_token().await;
    let admin_id = app.user_id(&admin).await;
    let password = app.register("yuri").await;
    let yuri = app
        .user_id(&app.access_token("yuri", &password).await)
        .await;
    let promoted = set_role(&app, &admin, &yuri, &json!({"role": "admin"})).await;
    assert_eq!(promoted.status(), StatusCode::OK);
    let lock = |token: String, id: String| {
        let (client, url) = (
            app.client.clone(),
            app.url(&format!("/v1/admin/users/{id}/lock")),
        );
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // The outside review: lock the other admin, then demote oneself: nobody is left who can act.
    assert_eq!(
        lock(admin.clone(), yuri.clone()).await,
        StatusCode::NO_CONTENT
    );
    let demote = set_role(&app, &admin, &admin_id, &json!({"role": "user"})).await;
    assert_eq!(
        demote.status(),
        StatusCode::CONFLICT,
        "the locked admin does not count"
    );
    assert_eq!(
        app.set_locked(&admin, &yuri, false).await,
        StatusCode::NO_CONTENT
    );
    // The lock ended her sessions.
    let yuri_token = app.access_token("yuri", &password).await;
    // Both lock each other at the same moment: one may win, never both. The other is refused
    // as the last admin (409), as a locked caller whose session has ended (401), or, when it
    // was admitted before the winning lock and took its turn after, as no longer an admin
    // who may act (403).
    let (a, b) = tokio::join!(
        lock(admin.clone(), yuri.clone()),
        lock(yuri_token.clone(), admin_id.clone()),
    );
    let refused = [
        StatusCode::CONFLICT,
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
    ];
    assert!(
        [a, b].iter().any(|status| refused.contains(status)),
        "{a} {b}: both locks went through"
    );
    let users = app.state.store.list_users(None, 100).await.unwrap();
    let acting = users
        .iter()
        .filter(|u| u.role == rampart::Role::Admin && !u.locked)
        .count();
    assert_eq!(acting, 1, "one admin can still act");
}

#[tokio::test]
async fn a_detail_rewritten_to_parse_alike_still_breaks_the_seal() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("zane").await;
    app.login("zane", &password).await;
    let (code, out) = verify(&app);
    assert_eq!(code, Some(0), "{out}");
    let rows = app.state.store.audit_after(0, 100).await.unwrap();
    let login = rows.iter().find(|r| r.kind == "login_succeeded").unwrap();
    let session = login.detail["session_id"].as_str().unwrap();
    // A repeated key: serde keeps the last value (so the parsed detail is unchanged), SQLite's
    // json_extract and many readers the first.
    let forged = format!(r#"{{"session_id":"forged","session_id":"{session}"}}"#);
    assert_eq!(
        serde_json::from_str::<Value>(&forged).unwrap(),
        login.detail,
        "parses alike"
    );
    tamper(
        &app,
        &format!(
            "UPDATE audit_events SET detail = '{forged}' WHERE seq = {}",
            login.seq
        ),
    )
    .await;
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("row {}", login.seq)), "{out}");
}

/// Runs `rampart <args>` on the app's data and database; `None` for the exit code when it
/// was still running after 20 s (and was killed).
fn rampart(app: &TestApp, args: &[&str]) -> (Option<i32>, String) {
    rampart_with_input(app, args, "")
}

/// [`rampart`] with `input` on its standard input.
fn rampart_with_input(app: &TestApp, args: &[&str], input: &str) -> (Option<i32>, String) {
    use std::io::Write as _;
    let mut child = common::command(&app.data, &[("RAMPART_DATABASE_URL", &app.database_url)])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

#[tokio::test]
async fn the_command_line_beside_a_running_server_extends_the_same_chain() {
    crate::require!(common::backend_ready().await);
    let app = app_with_three_events().await;
    // An operator creates a user while the server runs (the review's split: the server
    // chained its next row to a head it had cached, leaving the command line's row off).
    let (code, out) = rampart_with_input(
        &app,
        &[
            "user",
            "create",
            "--email",
            "ops@example.com",
            "--username",
            "ops-made",
        ],
        "quartz lanterns hum beneath cold rivers\n",
    );
    assert_eq!(code, Some(0), "{out}");
    app.register("after-cli").await;
    let failed = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"username": "ops-made", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    let (code, out) = verify(&app);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("intact: 7 event(s)"), "{out}");
}

#[tokio::test]
async fn wiping_the_audit_log_and_its_anchor_is_refused_at_start() {
    crate::require!(common::backend_ready().await);
    let app = app_with_three_events().await;
    tamper(&app, "DELETE FROM audit_events").await;
    std::fs::remove_file(app.data.path().join("audit-anchor")).unwrap();
    let (code, out) = rampart(&app, &["serve"]);
    assert_eq!(code, Some(1), "a wiped log must not start afresh: {out}");
    assert!(
        out.contains("missing") && out.contains("handed out up to 4"),
        "{out}"
    );
    // The row numbers reset too: the users are still there, with no event for any of them.
    let reset = match common::backend() {
        common::Backend::Sqlite => "DELETE FROM sqlite_sequence WHERE name = 'audit_events'",
        common::Backend::Postgres => "ALTER SEQUENCE audit_events_seq_seq RESTART",
    };
    tamper(&app, reset).await;
    let (code, out) = rampart(&app, &["serve"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("3 user(s), but no sealed event"), "{out}");
}

#[tokio::test]
async fn an_anchor_of_the_empty_chain_does_not_cover_a_chain_in_use() {
    use rampart_server::audit::{anchor, chain};
    crate::require!(common::backend_ready().await);
    let app = app_with_three_events().await;
    // An anchor of an empty chain, sealed with the same keys (as an older release wrote on a
    // first start, or another deployment sharing the keys file did), over the newest rows cut.
    let key =
        rampart_server::app::audit_chain_key(&app.state.settings, app.state.keys.as_ref()).unwrap();
    let empty = chain::Anchored {
        seq: 0,
        hash: chain::GENESIS.to_owned(),
    };
    anchor::write(&app.data.path().join("audit-anchor"), &key, &empty).unwrap();
    tamper(&app, "DELETE FROM audit_events WHERE seq >= 3").await;
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the anchor records an empty chain, but the chain holds 1 sealed event(s)"),
        "{out}"
    );
    let (code, out) = rampart(&app, &["serve"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("records an empty chain"), "{out}");
}

#[tokio::test]
async fn a_rollback_of_both_database_and_anchor_is_caught_by_a_witness() {
    crate::require!(common::backend_ready().await);
    let app = app_with_three_events().await;
    let anchor = app.data.path().join("audit-anchor");
    let older_anchor = std::fs::read(&anchor).unwrap();
    app.register("vic").await;
    app.register("wes").await;
    let rows = app.state.store.audit_after(0, 100).await.unwrap();
    let witness = |seq: i64| {
        let row = rows.iter().find(|row| row.seq == seq).unwrap();
        format!("{}:{}", row.seq, row.hash)
    };
    let (newest, third) = (witness(6), witness(3));
    // Someone with both the database and the anchor file rolls them back together.
    tamper(&app, "DELETE FROM audit_events WHERE seq > 4").await;
    std::fs::write(&anchor, older_anchor).unwrap();
    let (code, out) = verify(&app);
    assert_eq!(code, Some(0), "the anchor alone cannot see this: {out}");
    let (code, out) = rampart(&app, &["audit-log", "verify", "--witness", &newest]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("the chain ends at row 4 but a witness records row 6"),
        "{out}"
    );
    let (code, out) = rampart(&app, &["audit-log", "verify", "--witness", &third]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("holds the 1 witnessed row(s)"), "{out}");
    let wrong = format!("3:{}", "ab".repeat(32));
    let (code, out) = rampart(&app, &["audit-log", "verify", "--witness", &wrong]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("row 3 is missing or is not the row its witness recorded"),
        "{out}"
    );
    let (code, out) = rampart(&app, &["audit-log", "verify", "--witness", "3:short"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("64 lower-case hex digits"), "{out}");
}

#[tokio::test]
async fn a_deleted_anchor_stops_the_server_until_an_operator_anchors_the_chain() {
    crate::require!(common::backend_ready().await);
    let app = app_with_three_events().await;
    // Cut the newest row, then delete the anchor that would show it: the review's attack.
    tamper(&app, "DELETE FROM audit_events WHERE seq = 4").await;
    std::fs::remove_file(app.data.path().join("audit-anchor")).unwrap();
    let (code, out) = rampart(&app, &["serve"]);
    assert_eq!(
        code,
        Some(1),
        "a server on that data must refuse to start: {out}"
    );
    assert!(
        out.contains("audit anchor") && out.contains("missing"),
        "{out}"
    );
    assert!(
        out.contains("rampart audit-log anchor"),
        "it says what to do: {out}"
    );
    let (code, out) = verify(&app);
    assert_eq!(code, Some(1), "{out}");
    // The operator, having looked, anchors the chain as it now is; then the server starts.
    let (code, out) = rampart(&app, &["audit-log", "anchor"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("anchored the audit chain at row 3"), "{out}");
    let (code, out) = rampart(&app, &["audit-log", "anchor"]);
    assert_eq!(
        code,
        Some(1),
        "an existing anchor is evidence, not replaced: {out}"
    );
    let (code, out) = verify(&app);
    assert_eq!(code, Some(0), "{out}");
}
