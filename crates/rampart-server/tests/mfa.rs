//! The second factor, attacked: codes replayed, recovery codes reused, challenges reused,
//! moved to another account or outliving a password change, codes walked past the login
//! backoff, and the secret looked for where it must not be. Codes are computed here from the
//! enrolment's secret with HMAC-SHA1 directly (RFC 6238), not with the server's library.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::totp::{base32, code_at, now_step, wrong_code};
use common::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A user with TOTP on: their password, a bearer token from before, the secret and the
/// recovery codes. The confirming code used the current step; the next login's code must be
/// a later one (`code_at(secret, now_step() + 1)`).
struct Enrolled {
    password: String,
    token: String,
    secret: Vec<u8>,
    recovery: Vec<String>,
}

async fn enrolled(app: &TestApp, username: &str) -> Enrolled {
    let password = app.register(username).await;
    let token = app.access_token(username, &password).await;
    let started = app
        .call(Method::POST, "/v1/auth/mfa/totp", Some(&token), None)
        .await;
    assert_eq!(started.status(), StatusCode::CREATED);
    let started: Value = started.json().await.unwrap();
    let secret = base32(started["secret"].as_str().unwrap());
    let confirmed = app
        .call(
            Method::POST,
            "/v1/auth/mfa/totp/confirm",
            Some(&token),
            Some(&json!({"code": code_at(&secret, now_step())})),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let confirmed: Value = confirmed.json().await.unwrap();
    let recovery = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    Enrolled {
        password,
        token,
        secret,
        recovery,
    }
}

/// Logs in with the password; returns the `mfa_token` the answer must carry instead of tokens.
async fn challenge(app: &TestApp, username: &str, password: &str) -> String {
    let answer = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": username, "password": password}),
        )
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["mfa_required"], true, "{answer}");
    assert_eq!(answer["expires_in"], 300);
    assert!(answer.get("access_token").is_none(), "{answer}");
    assert!(answer.get("refresh_token").is_none(), "{answer}");
    answer["mfa_token"].as_str().unwrap().to_owned()
}

async fn verify(app: &TestApp, mfa_token: &str, code: &str) -> reqwest::Response {
    app.post_json(
        "/v1/auth/mfa/verify",
        &json!({"mfa_token": mfa_token, "code": code}),
    )
    .await
}

async fn me(app: &TestApp, token: &str) -> Value {
    let me = app.get_as("/v1/users/me", token).await;
    assert_eq!(me.status(), StatusCode::OK);
    me.json().await.unwrap()
}

#[tokio::test]
async fn a_password_alone_no_longer_signs_in_once_totp_is_confirmed() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let admin = app.admin_token().await;
    let password = app.register("ada").await;
    let token = app.access_token("ada", &password).await;
    assert_eq!(me(&app, &token).await["mfa"], false);

    let started = app
        .call(Method::POST, "/v1/auth/mfa/totp", Some(&token), None)
        .await;
    assert_eq!(started.status(), StatusCode::CREATED);
    let started: Value = started.json().await.unwrap();
    let shown = started["secret"].as_str().unwrap().to_owned();
    let secret = base32(&shown);
    assert!(secret.len() >= 20, "a secret of at least 160 bits");
    let uri = started["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/rampart:ada?"), "{uri}");
    assert!(uri.contains(&format!("secret={shown}")), "{uri}");
    let svg = started["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg") && !svg.contains("<script"), "{svg}");

    // Not on until confirmed: the password still signs in, and a wrong code confirms nothing.
    assert_eq!(me(&app, &token).await["mfa"], false);
    app.access_token("ada", &password).await;
    let step = now_step();
    let wrong = format!(
        "{:06}",
        (code_at(&secret, step).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    for code in [wrong.as_str(), "", "abcdef", &code_at(&secret, step + 3)] {
        let refused = app
            .call(
                Method::POST,
                "/v1/auth/mfa/totp/confirm",
                Some(&token),
                Some(&json!({"code": code})),
            )
            .await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{code}");
    }
    assert_eq!(me(&app, &token).await["mfa"], false);

    let confirmed = app
        .call(
            Method::POST,
            "/v1/auth/mfa/totp/confirm",
            Some(&token),
            Some(&json!({"code": code_at(&secret, step)})),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let confirmed: Value = confirmed.json().await.unwrap();
    let codes: std::collections::HashSet<&str> = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 10, "ten distinct recovery codes");
    assert_eq!(me(&app, &token).await["mfa"], true);

    // The secret is never shown again: enrolling again is refused, and nothing returns it.
    let again = app
        .call(Method::POST, "/v1/auth/mfa/totp", Some(&token), None)
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert!(!again.text().await.unwrap().contains(&shown));

    let mfa_token = challenge(&app, "ada", &password).await;
    // The same code that confirmed (its step is spent) is refused; the next one signs in.
    let replayed = verify(&app, &mfa_token, &code_at(&secret, step)).await;
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
    let signed_in = verify(&app, &mfa_token, &code_at(&secret, step + 1)).await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    let pair: Value = signed_in.json().await.unwrap();
    assert_eq!(
        me(&app, pair["access_token"].as_str().unwrap()).await["mfa"],
        true
    );

    // Every step is on record, and no record holds the secret, a code or the token.
    let events = app.audit_events(&admin, None).await;
    for kind in ["mfa_enabled", "mfa_required", "mfa_failed"] {
        assert!(events.iter().any(|e| e["kind"] == kind), "no {kind}");
    }
    assert!(events
        .iter()
        .any(|e| e["kind"] == "login_succeeded" && e["detail"]["mfa"] == "totp"));
    let trail = serde_json::to_string(&events).unwrap();
    for secret_text in codes.iter().copied().chain([shown.as_str(), &mfa_token]) {
        assert!(
            !trail.contains(secret_text),
            "{secret_text} in the audit trail"
        );
    }
}

#[tokio::test]
async fn a_code_and_a_challenge_each_work_once() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let user = enrolled(&app, "bob").await;
    let code = code_at(&user.secret, now_step() + 1);

    let first = challenge(&app, "bob", &user.password).await;
    assert_eq!(verify(&app, &first, &code).await.status(), StatusCode::OK);
    // The challenge is spent, even with a recovery code that is good.
    assert_eq!(
        verify(&app, &first, &user.recovery[0]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The same code in a new challenge: a replay, refused.
    let second = challenge(&app, "bob", &user.password).await;
    assert_eq!(
        verify(&app, &second, &code).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Racing one challenge with a good code and a good recovery code opens one session.
    let third = challenge(&app, "bob", &user.password).await;
    let before = app
        .get_as("/v1/auth/sessions", &user.token)
        .await
        .json::<Value>()
        .await
        .unwrap()["sessions"]
        .as_array()
        .unwrap()
        .len();
    let (a, b) = tokio::join!(
        verify(&app, &third, &user.recovery[1]),
        verify(&app, &third, &user.recovery[2]),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
    let after = app
        .get_as("/v1/auth/sessions", &user.token)
        .await
        .json::<Value>()
        .await
        .unwrap()["sessions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before + 1, "one session for one challenge");

    // Unknown, malformed and empty tokens get the same answer.
    for token in ["", "x", &"A".repeat(43), &third] {
        let refused = verify(&app, token, &user.recovery[3]).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(
            refused.headers()["content-type"],
            "application/problem+json"
        );
    }
}

#[tokio::test]
async fn a_recovery_code_works_once_and_only_for_its_account() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let cyd = enrolled(&app, "cyd").await;
    let dia = enrolled(&app, "dia").await;

    // As typed off paper: upper case, spaces for dashes.
    let typed = cyd.recovery[0].to_uppercase().replace('-', " ");
    let first = challenge(&app, "cyd", &cyd.password).await;
    assert_eq!(verify(&app, &first, &typed).await.status(), StatusCode::OK);
    let second = challenge(&app, "cyd", &cyd.password).await;
    assert_eq!(
        verify(&app, &second, &cyd.recovery[0]).await.status(),
        StatusCode::UNAUTHORIZED,
        "a used recovery code"
    );
    // Another account's recovery code and current code do nothing for this one.
    assert_eq!(
        verify(&app, &second, &dia.recovery[0]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        verify(&app, &second, &code_at(&dia.secret, now_step() + 1))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // dia's own challenge takes dia's codes (none of the refusals above spent them).
    let theirs = challenge(&app, "dia", &dia.password).await;
    assert_eq!(
        verify(&app, &theirs, &dia.recovery[0]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn codes_cannot_be_walked_past_the_challenge_or_the_login_backoff() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let user = enrolled(&app, "eve").await;
    let good = code_at(&user.secret, now_step() + 1);
    let wrong = wrong_code(&good);

    // Five wrong codes end a challenge: the good code is refused after them.
    let first = challenge(&app, "eve", &user.password).await;
    for _ in 0..5 {
        assert_eq!(
            verify(&app, &first, &wrong).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        verify(&app, &first, &good).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Every wrong code counted in the account's backoff like a wrong password (the good code
    // on the dead challenge was refused before it could count): the streak is at 6, one
    // password step and three wrong codes make 10, and then even the good code waits.
    let second = challenge(&app, "eve", &user.password).await;
    for _ in 0..3 {
        assert_eq!(
            verify(&app, &second, &wrong).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let waiting = verify(&app, &second, &good).await;
    assert_eq!(waiting.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(waiting.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_challenge_dies_with_a_password_change() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let user = enrolled(&app, "fay").await;
    let pending = challenge(&app, "fay", &user.password).await;
    let changed = app
        .call(
            Method::POST,
            "/v1/auth/password",
            Some(&user.token),
            Some(&json!({"current_password": user.password, "new_password": "quartz lanterns drift over harbours"})),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        verify(&app, &pending, &code_at(&user.secret, now_step() + 1))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // The new password opens a new challenge, which the same code completes.
    let fresh = challenge(&app, "fay", "quartz lanterns drift over harbours").await;
    assert_eq!(
        verify(&app, &fresh, &code_at(&user.secret, now_step() + 1))
            .await
            .status(),
        StatusCode::OK
    );
}

/// Asks to remove the caller's second factor; returns the status.
async fn remove(app: &TestApp, token: &str, password: &str, code: &str) -> StatusCode {
    app.call(
        Method::DELETE,
        "/v1/auth/mfa/totp",
        Some(token),
        Some(&json!({"password": password, "code": code})),
    )
    .await
    .status()
}

#[tokio::test]
async fn removing_the_factor_takes_the_password_and_a_code() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let user = enrolled(&app, "gus").await;
    let wrong_password = remove(
        &app,
        &user.token,
        "not the password at all",
        &user.recovery[0],
    )
    .await;
    assert_eq!(wrong_password, StatusCode::UNPROCESSABLE_ENTITY);
    let wrong_code = remove(&app, &user.token, &user.password, "000000").await;
    assert_eq!(wrong_code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(me(&app, &user.token).await["mfa"], true, "still on");
    // Without a body, or with unknown fields: refused, nothing changed.
    let bare = app
        .call(Method::DELETE, "/v1/auth/mfa/totp", Some(&user.token), None)
        .await;
    assert!(bare.status().is_client_error(), "{}", bare.status());
    assert_eq!(me(&app, &user.token).await["mfa"], true, "still on");

    assert_eq!(
        remove(&app, &user.token, &user.password, &user.recovery[0]).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(me(&app, &user.token).await["mfa"], false);
    // The password alone signs in again, and removing twice is a conflict.
    app.access_token("gus", &user.password).await;
    assert_eq!(
        remove(&app, &user.token, &user.password, &user.recovery[1]).await,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn nothing_secret_is_stored_readable() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let user = enrolled(&app, "hal").await;
    let pending = challenge(&app, "hal", &user.password).await;
    let mut db = app.raw_database().await;
    let secret_hex: String = user.secret.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    });
    // Each query counts rows holding the value in any form the tests know: none may.
    assert_eq!(db.count("SELECT COUNT(*) FROM mfa_totp").await, 1);
    for (table, column) in [
        ("mfa_totp", "sealed_secret"),
        ("mfa_recovery_codes", "code_hash"),
        ("mfa_challenges", "token_hash"),
    ] {
        for value in user
            .recovery
            .iter()
            .flat_map(|c| [c.clone(), c.replace('-', "")])
            .chain([secret_hex.clone(), pending.clone()])
        {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} LIKE '%{value}%'");
            assert_eq!(db.count(&sql).await, 0, "{table}.{column} holds {value}");
        }
    }
    assert_eq!(
        db.count("SELECT COUNT(*) FROM mfa_recovery_codes").await,
        10
    );
}

/// Someone who lost both the app and the recovery codes gets back in only through an operator.
#[tokio::test]
async fn an_operator_can_remove_a_lost_factor_from_the_command_line() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let admin = app.admin_token().await;
    let user = enrolled(&app, "ida").await;
    let remove = || {
        common::command(&app.data, &[("RAMPART_DATABASE_URL", &app.database_url)])
            .args(["user", "remove-mfa", "IDA@example.com"])
            .output()
            .unwrap()
    };
    let removed = remove();
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert_eq!(me(&app, &user.token).await["mfa"], false);
    app.access_token("ida", &user.password).await;
    let events = app.audit_events(&admin, Some("mfa_disabled")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detail"]["via"], "command line");
    // Nothing left to remove: a failure, not a silent success.
    assert!(!remove().status.success());
}

/// An outside attack confirmed one secret while restarting the enrolment: the restart's new
/// secret ended up on, one whose code was never checked.
#[tokio::test]
async fn a_confirmation_racing_a_restart_never_turns_on_an_unchecked_secret() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    for round in 0..12 {
        let name = format!("racer{round}");
        let password = app.register(&name).await;
        let token = app.access_token(&name, &password).await;
        let started: Value = app
            .call(Method::POST, "/v1/auth/mfa/totp", Some(&token), None)
            .await
            .json()
            .await
            .unwrap();
        let first = base32(started["secret"].as_str().unwrap());
        let code = json!({"code": code_at(&first, now_step())});
        let (confirmed, restarted) = tokio::join!(
            app.call(
                Method::POST,
                "/v1/auth/mfa/totp/confirm",
                Some(&token),
                Some(&code)
            ),
            app.call(Method::POST, "/v1/auth/mfa/totp", Some(&token), None),
        );
        match (confirmed.status(), restarted.status()) {
            // Confirmed first: the restart is refused, and the first secret is the one on.
            (StatusCode::OK, StatusCode::CONFLICT) => {
                let mfa_token = challenge(&app, &name, &password).await;
                let signed_in = verify(&app, &mfa_token, &code_at(&first, now_step() + 1)).await;
                assert_eq!(signed_in.status(), StatusCode::OK, "round {round}");
            }
            // Restarted first: the code of the replaced secret confirms nothing.
            (StatusCode::UNPROCESSABLE_ENTITY, StatusCode::CREATED) => {
                assert_eq!(me(&app, &token).await["mfa"], false, "round {round}");
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_password_alone_never_wipes_the_count_of_wrong_codes() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let user = enrolled(&app, "jon").await;
    let good = code_at(&user.secret, now_step() + 1);
    let wrong = wrong_code(&good);
    let first = challenge(&app, "jon", &user.password).await;
    for _ in 0..5 {
        verify(&app, &first, &wrong).await;
    }
    // Changing the password (to itself) proves the password, not the code: the six failures
    // stay (the password step and five codes), and the change counts one more attempt.
    let changed = app
        .call(
            Method::POST,
            "/v1/auth/password",
            Some(&user.token),
            Some(&json!({"current_password": user.password, "new_password": user.password})),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let second = challenge(&app, "jon", &user.password).await;
    // 7 so far, 8 with this login, 10 with two more wrong codes: then even the good one waits.
    for _ in 0..2 {
        verify(&app, &second, &wrong).await;
    }
    let waiting = verify(&app, &second, &good).await;
    assert_eq!(waiting.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_pending_second_step_ends_with_logout_all_and_with_a_lock() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let admin = app.admin_token().await;
    let user = enrolled(&app, "kai").await;
    let code = code_at(&user.secret, now_step() + 1);

    let pending = challenge(&app, "kai", &user.password).await;
    let out = app
        .call(Method::POST, "/v1/auth/logout-all", Some(&user.token), None)
        .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        verify(&app, &pending, &code).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let pending = challenge(&app, "kai", &user.password).await;
    let me: Value = {
        let pair = verify(
            &app,
            &challenge(&app, "kai", &user.password).await,
            &user.recovery[0],
        )
        .await;
        assert_eq!(pair.status(), StatusCode::OK);
        let pair: Value = pair.json().await.unwrap();
        app.get_as("/v1/users/me", pair["access_token"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap()
    };
    let id = me["id"].as_str().unwrap();
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
    assert_eq!(
        verify(&app, &pending, &code).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
