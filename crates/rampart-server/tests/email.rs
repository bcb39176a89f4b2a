//! Links sent by mail, attacked: enumeration through `forgot`, reset and verification tokens
//! reused, expired, superseded or outliving a password change, and sign-in before the address is
//! verified. The server writes its messages to a `file:` outbox, which the tests read as a user
//! reads their mail.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const NEW_PASSWORD: &str = "amber otters juggle quiet lanterns";

fn outbox(app: &TestApp) -> PathBuf {
    app.data.path().join("outbox")
}

async fn spawn(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let outbox = format!("file:{}", dir.path().join("outbox").display());
    let mut vars = vec![("RAMPART_MAIL", outbox.as_str())];
    vars.extend_from_slice(extra);
    TestApp::spawn_in(dir, &vars).await
}

/// Every message in the outbox to `to`, as decoded text, oldest first.
fn messages_to(dir: &Path, to: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, String)> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "eml"))
        .map(|path| {
            let raw = std::fs::read_to_string(&path).unwrap();
            // Undo quoted-printable soft breaks and `=` escapes.
            let text = raw.replace("=\r\n", "").replace("=3D", "=");
            (std::fs::metadata(&path).unwrap().modified().unwrap(), text)
        })
        .filter(|(_, text)| text.contains(&format!("To: {to}")))
        .collect();
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, text)| text).collect()
}

/// Waits for the `count`-th message to `to` whose link has `path`; returns its token.
async fn token_in_mail(app: &TestApp, to: &str, path: &str, count: usize) -> String {
    for _ in 0..100 {
        let links: Vec<String> = messages_to(&outbox(app), to)
            .iter()
            .filter_map(|text| {
                let at = text.find(&format!("{path}?token="))?;
                let token: String = text[at + path.len() + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                Some(token)
            })
            .collect();
        if links.len() >= count {
            let token = links[count - 1].clone();
            assert_eq!(token.len(), 43, "{token}");
            return token;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no message {count} to {to} with {path}");
}

async fn forgot(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json("/v1/auth/password/forgot", &json!({"email": email}))
        .await
}

async fn reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/v1/auth/password/reset",
        &json!({"token": token, "new_password": password}),
    )
    .await
}

async fn assert_invalid_token(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:rampart:problem:invalid-token");
}

#[tokio::test]
async fn forgot_answers_alike_whether_or_not_the_address_has_an_account() {
    crate::require!(common::backend_ready().await);
    let app = spawn(&[]).await;
    app.register("alice").await;
    let mut answers = Vec::new();
    for email in ["alice@example.com", "nobody@example.com", "not an address"] {
        let answer = forgot(&app, email).await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED, "{email}");
        let mut headers: Vec<String> = answer
            .headers()
            .iter()
            .filter(|(name, _)| !["x-request-id", "date"].contains(&name.as_str()))
            .filter(|(name, _)| !name.as_str().starts_with("ratelimit"))
            .map(|(name, value)| format!("{name}: {value:?}"))
            .collect();
        headers.sort();
        answers.push((headers, answer.bytes().await.unwrap()));
    }
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "{answers:?}"
    );
    // Only the account's address gets mail; the message carries a link, not a password.
    let token = token_in_mail(&app, "alice@example.com", "/account/reset", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(messages_to(&outbox(&app), "nobody@example.com").is_empty());
    let mail = messages_to(&outbox(&app), "alice@example.com").join("\n");
    assert!(mail.contains(&format!("http://{}/account/reset?token={token}", app.addr)));
    assert!(!mail.contains("violet tandem"), "no password in mail");
}

#[tokio::test]
async fn a_reset_link_works_once_and_ends_every_session() {
    crate::require!(common::backend_ready().await);
    let app = spawn(&[]).await;
    let admin = app.admin_token().await;
    let password = app.register("bruno").await;
    let phone = app.access_token("bruno", &password).await;
    let laptop = app.login("bruno", &password).await;
    assert_eq!(
        forgot(&app, "BRUNO@example.com").await.status(),
        StatusCode::ACCEPTED
    );
    let token = token_in_mail(&app, "bruno@example.com", "/account/reset", 1).await;

    // A password the policy refuses leaves the token usable.
    let weak = reset(&app, &token, "short").await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        reset(&app, &token, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );

    // Every session ended, access and refresh alike; only the new password signs in.
    assert_eq!(
        app.get_as("/v1/users/me", &phone).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let refreshed = app
        .post_json(
            "/v1/auth/refresh",
            &json!({"refresh_token": laptop["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::UNAUTHORIZED);
    let old = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "bruno", "password": password}),
        )
        .await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    let fresh = app.access_token("bruno", NEW_PASSWORD).await;
    // Reading the link proved the mailbox too.
    let me: Value = app
        .get_as("/v1/users/me", &fresh)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_verified"], true);

    // Used: the same answer as unknown, malformed or empty tokens.
    assert_invalid_token(reset(&app, &token, NEW_PASSWORD).await).await;
    for junk in [
        "",
        "x",
        &"A".repeat(43),
        &format!("{token}A"),
        "../../etc/passwd",
    ] {
        assert_invalid_token(reset(&app, junk, NEW_PASSWORD).await).await;
    }
    let events = app.audit_events(&admin, None).await;
    let reset_event = events
        .iter()
        .find(|e| e["kind"] == "password_reset")
        .unwrap();
    assert_eq!(reset_event["detail"]["sessions_ended"], 2);
    assert!(events
        .iter()
        .any(|e| e["kind"] == "password_reset_requested"));
    let trail = serde_json::to_string(&events).unwrap();
    assert!(!trail.contains(&token), "no token in the audit trail");
}

#[tokio::test]
async fn a_reset_link_dies_when_superseded_expired_or_the_password_changes() {
    crate::require!(common::backend_ready().await);
    let app = spawn(&[]).await;
    let password = app.register("carla").await;
    let token = app.access_token("carla", &password).await;

    forgot(&app, "carla@example.com").await;
    let first = token_in_mail(&app, "carla@example.com", "/account/reset", 1).await;
    forgot(&app, "carla@example.com").await;
    let second = token_in_mail(&app, "carla@example.com", "/account/reset", 2).await;
    assert_invalid_token(reset(&app, &first, NEW_PASSWORD).await).await;

    // A password changed another way ends the link sent for the old one.
    let changed = app
        .call(
            Method::POST,
            "/v1/auth/password",
            Some(&token),
            Some(&json!({"current_password": password, "new_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_invalid_token(reset(&app, &second, "cobalt finches argue softly").await).await;

    // Past its 30 minutes (moved there in the database), a link is refused the same way.
    forgot(&app, "carla@example.com").await;
    let third = token_in_mail(&app, "carla@example.com", "/account/reset", 3).await;
    app.raw_database()
        .await
        .execute("UPDATE email_tokens SET expires_at = '2000-01-01T00:00:00.000000Z'")
        .await;
    assert_invalid_token(reset(&app, &third, "cobalt finches argue softly").await).await;
}

#[tokio::test]
async fn registration_mails_a_link_that_verifies_the_address_once() {
    crate::require!(common::backend_ready().await);
    let app = spawn(&[]).await;
    let admin = app.admin_token().await;
    let password = app.register("dora").await;
    let token = app.access_token("dora", &password).await;
    let me: Value = app
        .get_as("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_verified"], false);

    let first = token_in_mail(&app, "dora@example.com", "/account/verify-email", 1).await;
    // A new link ends the old one.
    let resent = app
        .call(
            Method::POST,
            "/v1/auth/email/verify/resend",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(resent.status(), StatusCode::ACCEPTED);
    let second = token_in_mail(&app, "dora@example.com", "/account/verify-email", 2).await;
    let verify = |token: String| {
        let app = &app;
        async move {
            app.post_json("/v1/auth/email/verify", &json!({"token": token}))
                .await
        }
    };
    assert_invalid_token(verify(first).await).await;
    assert_eq!(
        verify(second.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    let me: Value = app
        .get_as("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_verified"], true);
    assert_invalid_token(verify(second).await).await;
    assert!(!app
        .audit_events(&admin, Some("email_verified"))
        .await
        .is_empty());
}

#[tokio::test]
async fn a_link_of_one_kind_does_nothing_as_the_other() {
    crate::require!(common::backend_ready().await);
    let app = spawn(&[]).await;
    app.register("emil").await;
    let verification = token_in_mail(&app, "emil@example.com", "/account/verify-email", 1).await;
    assert_invalid_token(reset(&app, &verification, NEW_PASSWORD).await).await;
    forgot(&app, "emil@example.com").await;
    let reset_token = token_in_mail(&app, "emil@example.com", "/account/reset", 1).await;
    let used_as_verification = app
        .post_json("/v1/auth/email/verify", &json!({"token": reset_token}))
        .await;
    assert_invalid_token(used_as_verification).await;
}

#[tokio::test]
async fn sign_in_can_require_a_verified_address() {
    crate::require!(common::backend_ready().await);
    let app = spawn(&[("RAMPART_REQUIRE_VERIFIED_EMAIL", "true")]).await;
    let password = app.register("fritz").await;
    let refused = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "fritz", "password": password}),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "urn:rampart:problem:email-unverified");
    // Only the right password learns it: a wrong one is the usual 401.
    let wrong = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "fritz", "password": "not the right one at all"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let token = token_in_mail(&app, "fritz@example.com", "/account/verify-email", 1).await;
    let verified = app
        .post_json("/v1/auth/email/verify", &json!({"token": token}))
        .await;
    assert_eq!(verified.status(), StatusCode::NO_CONTENT);
    app.access_token("fritz", &password).await;
}

#[tokio::test]
async fn one_mailbox_gets_a_bounded_number_of_messages_account_or_not() {
    crate::require!(common::backend_ready().await);
    let app = spawn(&[]).await;
    app.register("gina").await;
    // Registration sent gina's mailbox its first message: four more this hour.
    for (email, allowed) in [("gina@example.com", 4), ("ghost@example.com", 5)] {
        for _ in 0..allowed {
            assert_eq!(forgot(&app, email).await.status(), StatusCode::ACCEPTED);
        }
        let limited = forgot(&app, email).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS, "{email}");
        assert!(limited.headers().contains_key("retry-after"));
    }
}

#[tokio::test]
async fn a_lock_ends_pending_reset_links() {
    crate::require!(common::backend_ready().await);
    let app = spawn(&[]).await;
    let admin = app.admin_token().await;
    let password = app.register("hugo").await;
    let id = app
        .user_id(&app.access_token("hugo", &password).await)
        .await;
    forgot(&app, "hugo@example.com").await;
    let token = token_in_mail(&app, "hugo@example.com", "/account/reset", 1).await;
    for action in ["lock", "unlock"] {
        let done = app
            .call(
                Method::POST,
                &format!("/v1/admin/users/{id}/{action}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(done.status(), StatusCode::NO_CONTENT);
    }
    // Whoever held the link (a stolen mailbox) keeps nothing across the lock.
    assert_invalid_token(reset(&app, &token, NEW_PASSWORD).await).await;
    app.access_token("hugo", &password).await;
}

#[tokio::test]
async fn a_reset_verifies_the_address_once_on_record() {
    crate::require!(common::backend_ready().await);
    let app = spawn(&[]).await;
    let admin = app.admin_token().await;
    app.register("iris").await;
    let verification = token_in_mail(&app, "iris@example.com", "/account/verify-email", 1).await;
    forgot(&app, "iris@example.com").await;
    let token = token_in_mail(&app, "iris@example.com", "/account/reset", 1).await;
    assert_eq!(
        reset(&app, &token, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    // The older verification link still works once, and records nothing new.
    let late = app
        .post_json("/v1/auth/email/verify", &json!({"token": verification}))
        .await;
    assert_eq!(late.status(), StatusCode::NO_CONTENT);
    let verified = app.audit_events(&admin, Some("email_verified")).await;
    assert_eq!(verified.len(), 1, "{verified:?}");
    assert_eq!(verified[0]["detail"]["by"], "password_reset");
}

#[tokio::test]
async fn an_account_made_from_the_command_line_starts_verified() {
    use std::io::Write as _;
    crate::require!(common::backend_ready().await);
    let app = spawn(&[("RAMPART_REQUIRE_VERIFIED_EMAIL", "true")]).await;
    let mut child = common::command(
        &app.data,
        &[
            ("RAMPART_DATABASE_URL", &app.database_url),
            ("RAMPART_REQUIRE_VERIFIED_EMAIL", "true"),
            ("RAMPART_MAIL", "log"),
        ],
    )
    .args([
        "user",
        "create",
        "--email",
        "ops@example.com",
        "--username",
        "ops",
        "--admin",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(NEW_PASSWORD.as_bytes())
        .unwrap();
    let created = child.wait_with_output().unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    // The operator vouched for the address: the flag does not lock the admin out.
    app.access_token("ops", NEW_PASSWORD).await;
}
