//! Identity over HTTP: registration, login, `/v1/users/me`, tokens, and the attacks on them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use base64::Engine;
use common::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[tokio::test]
async fn register_login_and_me() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("alice").await;
    let pair = app.login("alice", &password).await;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert_eq!(pair["refresh_expires_in"], 14 * 86_400);
    assert!(
        pair["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 43 && t.split('.').count() == 1),
        "refresh tokens are opaque, not JWTs"
    );

    let me = app
        .get_as("/v1/users/me", pair["access_token"].as_str().unwrap())
        .await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["role"], "user");
    let mut fields: Vec<&str> = me.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "email",
            "email_verified",
            "id",
            "mfa",
            "role",
            "username"
        ],
        "no hash or secret in the user"
    );
    assert_eq!(me["mfa"], false);
    assert_eq!(me["email_verified"], false);

    // The email works as the login name too, in any case.
    app.login("ALICE@example.com", &password).await;
}

#[tokio::test]
async fn oauth2_password_form_logs_in() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("formuser").await;
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .form(&[
            ("grant_type", "password"),
            ("username", "formuser"),
            ("password", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Media types are case-insensitive.
    let shouted = app
        .client
        .post(app.url("/v1/auth/login"))
        .header(
            "content-type",
            "APPLICATION/X-WWW-FORM-URLENCODED; Charset=UTF-8",
        )
        .body(format!(
            "grant_type=password&username=formuser&password={}",
            password.replace(' ', "+")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(shouted.status(), StatusCode::OK);
    let wrong_grant = app
        .client
        .post(app.url("/v1/auth/login"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("username", "formuser"),
            ("password", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_grant.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn every_registration_rule_answers_422_per_field() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let cases = [
        (
            json!({"email": "not-an-email", "username": "bob", "password": "a long enough phrase here"}),
            "email",
        ),
        (
            json!({"email": "bob@example.com", "username": "b", "password": "a long enough phrase here"}),
            "username",
        ),
        (
            json!({"email": "bob@example.com", "username": "bob smith", "password": "a long enough phrase here"}),
            "username",
        ),
        (
            json!({"email": "bob@example.com", "username": "bob", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "bob@example.com", "username": "bob", "password": "password12345"}),
            "password",
        ),
        (
            json!({"email": "bob@example.com", "username": "bobby", "password": "bobby-the-builder-99"}),
            "password",
        ),
        (
            json!({"email": "bob@example.com", "username": "bob", "password": "x".repeat(129)}),
            "password",
        ),
        (
            json!({"email": "bob@example.com", "username": "bob", "password": "a long enough phrase here", "role": "admin"}),
            "role",
        ),
    ];
    for (body, field) in cases {
        let response = app.post_json("/v1/auth/register", &body).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        let problem: Value = response.json().await.unwrap();
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{body}: {problem}");
        assert!(
            !problem.to_string().contains("phrase here"),
            "a password must never be echoed"
        );
    }
}

#[tokio::test]
async fn duplicate_email_or_username_is_409_ignoring_case() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    app.register("carol").await;
    for (email, username) in [
        ("CAROL@example.com", "carol2"),
        ("other@example.com", "CaRoL"),
    ] {
        let response = app
            .post_json("/v1/auth/register", &json!({"email": email, "username": username, "password": "an entirely different phrase"}))
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CONFLICT,
            "{email} / {username}"
        );
    }
}

#[tokio::test]
async fn failed_logins_are_indistinguishable_and_do_the_same_work() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("dave").await;
    let locked_password = app.register("erin").await;
    let erin = app
        .state
        .store
        .find_user_by_login("erin")
        .await
        .unwrap()
        .unwrap();
    app.lock_in_store(&erin.id).await;

    let attempts = [
        ("nobody-here", "whatever it may be"),
        ("dave", "not the right phrase"),
        ("erin", locked_password.as_str()),
    ];
    let mut bodies = Vec::new();
    for (username, password) in attempts {
        let before = app.state.hasher.stats().verifications;
        let response = app
            .post_json(
                "/v1/auth/login",
                &json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{username}");
        assert_eq!(
            app.state.hasher.stats().verifications,
            before + 1,
            "{username}: every failure verifies one hash"
        );
        let mut body: Value = response.json().await.unwrap();
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "401 bodies differ: {bodies:?}"
    );
    assert_eq!(
        app.state.hasher.stats().dummy_verifications,
        1,
        "the unknown user was checked against the dummy hash"
    );
    app.login("dave", &password).await;
}

#[tokio::test]
async fn revocations_and_locks_survive_a_restart() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("frank").await;
    app.register("fiona").await;
    let login = |name: &'static str| app.access_token(name, &password);
    let (logged_out, kept, locked) = (
        login("frank").await,
        login("frank").await,
        login("fiona").await,
    );
    let logout = app
        .client
        .post(app.url("/v1/auth/logout"))
        .bearer_auth(&logged_out)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    // Locked behind the service's back (as another node or an operator would): this process
    // has not cached fiona yet, so only the store knows.
    let fiona = app
        .state
        .store
        .find_user_by_login("fiona")
        .await
        .unwrap()
        .unwrap();
    app.lock_in_store(&fiona.id).await;

    // The revoked session's token is still signature-valid and unexpired; only the revocation
    // loaded from the store at start-up can refuse it.
    let app = app.restart(&[]).await;
    assert_eq!(app.state.access.revoked_len(), 1);
    for (token, expected, why) in [
        (&logged_out, StatusCode::UNAUTHORIZED, "logged-out session"),
        (&kept, StatusCode::OK, "the user's other session"),
        (&locked, StatusCode::UNAUTHORIZED, "locked user"),
    ] {
        assert_eq!(
            app.get_as("/v1/users/me", token).await.status(),
            expected,
            "{why}"
        );
    }
}

/// Splits a JWT into its decoded header and claims.
fn jwt_parts(token: &str) -> (Value, Value, String) {
    let mut parts = token.split('.');
    let header = serde_json::from_slice(&B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims = serde_json::from_slice(&B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    (header, claims, parts.next().unwrap().to_owned())
}

/// With the signing key leaked (the outside test's case: a production server started with the
/// secret from a framework tutorial), a token can be signed for any user; it still has to name
/// a session the store holds. One naming a session that was never created is refused, so a
/// forger cannot mint sessions that no logout, revocation or password change can end.
#[tokio::test]
async fn a_correctly_signed_token_for_a_session_that_does_not_exist_is_refused() {
    use hmac::{Hmac, Mac};
    let secret = "5f1c0b9a7e3d2c4b6a8f0e1d3c5b7a9f2e4d6c8b0a1f3e5d7c9b2a4f6e8d0c1b";
    let app = TestApp::spawn(&[
        ("RAMPART_TOKEN_ALG", "HS256"),
        ("RAMPART_JWT_SECRET", secret),
    ])
    .await;
    let password = app.register("forgee").await;
    let token = app.access_token("forgee", &password).await;
    assert_eq!(
        app.get_as("/v1/users/me", &token).await.status(),
        StatusCode::OK
    );
    let sign = |header: &Value, claims: &Value| {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
    };
    let (header, claims, _) = jwt_parts(&token);
    // The harness signs exactly as the server does: the same claims re-signed still work.
    let resigned = sign(&header, &claims);
    assert_eq!(
        app.get_as("/v1/users/me", &resigned).await.status(),
        StatusCode::OK
    );
    let mut made_up = claims.clone();
    made_up["sid"] = json!("0192f1e4-0000-7000-8000-000000000001");
    let forged = sign(&header, &made_up);
    for _ in 0..2 {
        let answer = app.get_as("/v1/users/me", &forged).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    // The second outside test: a real session of the forger's own, warmed by a real request,
    // re-signed naming another user (an admin). The session is not that user's: refused.
    let admin = app.admin_token().await;
    let admin_id = app.user_id(&admin).await;
    let mut swapped = claims.clone();
    swapped["sub"] = json!(admin_id);
    let forged = sign(&header, &swapped);
    for path in ["/v1/users/me", "/v1/admin/users"] {
        let answer = app.get_as(path, &forged).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // A signed `sub` that is no id of this server (a NUL appended) is refused before the
    // store is asked: 401 on every backend, never a 503 from PostgreSQL.
    let mut nul = claims.clone();
    nul["sub"] = json!(format!("{}\u{0}", claims["sub"].as_str().unwrap()));
    let answer = app.get_as("/v1/users/me", &sign(&header, &nul)).await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    // Neither forgery ended anything: the real sessions still work.
    assert_eq!(
        app.get_as("/v1/users/me", &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_as("/v1/admin/users", &admin).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn access_tokens_carry_ids_only_and_forgeries_fail() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("grace").await;
    let token = app.access_token("grace", &password).await;
    let (header, claims, signature) = jwt_parts(&token);
    assert_eq!(
        (header["alg"].as_str(), header["typ"].as_str()),
        (Some("EdDSA"), Some("at+jwt"))
    );
    let text = claims.to_string();
    assert!(
        !text.contains("grace") && !text.contains("example.com") && !text.contains("role"),
        "personal data in {claims}"
    );
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 15 * 60);

    let encode = |v: &Value| B64.encode(v.to_string());
    let mut none = header.clone();
    none["alg"] = "none".into();
    let mut other_user = claims.clone();
    other_user["sub"] = "01a20000-0000-7000-8000-000000000000".into();
    let mut far_future = claims.clone();
    far_future["exp"] = (claims["exp"].as_u64().unwrap() + 86_400).into();
    let forgeries = [
        format!("{}.{}.", encode(&none), encode(&claims)),
        format!("{}.{}.{signature}", encode(&header), encode(&other_user)),
        format!("{}.{}.{signature}", encode(&header), encode(&far_future)),
        format!("{}.{}", encode(&header), encode(&claims)),
        format!("{token}x"),
    ];
    for forged in forgeries {
        assert_eq!(
            app.get_as("/v1/users/me", &forged).await.status(),
            StatusCode::UNAUTHORIZED,
            "{forged}"
        );
    }
}

#[tokio::test]
async fn a_request_with_two_authorization_headers_is_nobodys() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let alice_password = app.register("alice").await;
    let bob_password = app.register("bob").await;
    let alice = app.access_token("alice", &alice_password).await;
    let bob = app.access_token("bob", &bob_password).await;
    // A proxy in front may read the other header than this server would: whichever order,
    // two valid tokens, a token and junk, or the same token twice, nobody is signed in.
    let pairs = [
        (alice.as_str(), bob.as_str()),
        (bob.as_str(), alice.as_str()),
        (alice.as_str(), "junk"),
        ("junk", alice.as_str()),
        (alice.as_str(), alice.as_str()),
    ];
    for (first, second) in pairs {
        let response = app
            .client
            .get(app.url("/v1/users/me"))
            .header("authorization", format!("Bearer {first}"))
            .header("authorization", format!("Bearer {second}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 401, "{problem}");
    }
    // Nothing was created with two credentials either.
    let created = app
        .client
        .post(app.url("/v1/items"))
        .header("authorization", format!("Bearer {alice}"))
        .header("authorization", format!("Bearer {bob}"))
        .json(&json!({"title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get_as("/v1/users/me", &alice).await.status(),
        StatusCode::OK,
        "one header still signs in"
    );
}

#[tokio::test]
async fn jwks_serves_public_keys_only() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert!(keys[0].get("d").is_none(), "private part published: {jwks}");
    let on_disk = std::fs::read_to_string(app.data.path().join("keys.json")).unwrap();
    let private: Value = serde_json::from_str(&on_disk).unwrap();
    let d = private["keys"][0]["d"].as_str().unwrap();
    assert!(!jwks.to_string().contains(d));
}

#[tokio::test]
async fn an_imported_bcrypt_user_logs_in_and_is_rehashed_to_argon2id() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    // A row as `rampart user import` (or a FastAPI/passlib table) would hold it.
    let legacy = bcrypt::hash("imported fastapi passphrase", 4).unwrap();
    app.insert_user(rampart_server::store::NewUser {
        id: "01a20000-0000-7000-8000-00000000b0b0".into(),
        email: "legacy@example.com".into(),
        email_key: "legacy@example.com".into(),
        username: "legacy".into(),
        username_key: "legacy".into(),
        password_hash: legacy.clone(),
        role: rampart::Role::User,
    })
    .await;
    app.login("legacy", "imported fastapi passphrase").await;
    let stored = app
        .state
        .store
        .find_user_by_login("legacy")
        .await
        .unwrap()
        .unwrap()
        .password_hash;
    assert!(stored.starts_with("$argon2id$"), "still {stored}");
    app.login("legacy", "imported fastapi passphrase").await;
    let wrong = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "legacy", "password": "wrong"}),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_names_are_checked_against_decoys_of_the_imported_costs() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    app.register("native").await;
    assert_eq!(app.state.hasher.decoy_costs(), 1, "one cost in the table");
    // The review's timing probe told imported accounts from unknown names: bcrypt at another
    // cost took another time. Once the table holds that cost, unknown names take it too.
    for (n, cost) in [(1, 4), (2, 5)] {
        app.insert_user(rampart_server::store::NewUser {
            id: format!("01a20000-0000-7000-8000-00000000b0b{n}"),
            email: format!("legacy{n}@example.com"),
            email_key: format!("legacy{n}@example.com"),
            username: format!("legacy{n}"),
            username_key: format!("legacy{n}"),
            password_hash: bcrypt::hash("imported fastapi passphrase", cost).unwrap(),
            role: rampart::Role::User,
        })
        .await;
    }
    rampart_server::app::mirror_stored_costs(&app.state)
        .await
        .unwrap();
    assert_eq!(app.state.hasher.decoy_costs(), 3);
    let before = app.state.hasher.stats();
    let response = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "no-such-account", "password": "whatever it may be"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let after = app.state.hasher.stats();
    assert_eq!(after.dummy_verifications, before.dummy_verifications + 1);
}

/// The outside test imported bcrypt accounts into a running server and told them from missing
/// names by timing until the next periodic sample (5 minutes). A cost never sampled before is
/// noticed by the poll for changed users, and the decoys follow within the bound.
#[tokio::test]
async fn an_import_behind_the_servers_back_is_mirrored_within_the_bound() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[("RAMPART_REVOCATION_BOUND", "1s")]).await;
    app.register("native").await;
    assert_eq!(app.state.hasher.decoy_costs(), 1);
    app.insert_user(rampart_server::store::NewUser {
        id: "01a20000-0000-7000-8000-00000000d0d1".into(),
        email: "late@example.com".into(),
        email_key: "late@example.com".into(),
        username: "late".into(),
        username_key: "late".into(),
        password_hash: bcrypt::hash("imported fastapi passphrase", 4).unwrap(),
        role: rampart::Role::User,
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while app.state.hasher.decoy_costs() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the imported cost was not mirrored within the bound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_planted_hash_above_the_cost_ceiling_is_never_computed_at_login() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("bystander").await;
    // Hashes that got into the table behind the importer's back (an old import, a direct
    // write): 2^31 bcrypt rounds, and argon2 at 2 GiB and 1000 passes. Computing either would
    // pin a hashing thread for hours and starve every other login.
    for (n, hash) in [
        "$2b$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234",
        "$argon2id$v=19$m=2097152,t=1000,p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo",
    ]
    .iter()
    .enumerate()
    {
        app.insert_user(rampart_server::store::NewUser {
            id: format!("01a20000-0000-7000-8000-00000000c0c{n}"),
            email: format!("costly{n}@example.com"),
            email_key: format!("costly{n}@example.com"),
            username: format!("costly{n}"),
            username_key: format!("costly{n}"),
            password_hash: (*hash).to_owned(),
            role: rampart::Role::User,
        })
        .await;
    }
    let before = app.state.hasher.stats();
    let mut attempts = tokio::task::JoinSet::new();
    for n in 0..2 {
        for _ in 0..4 {
            let (client, url) = (app.client.clone(), app.url("/v1/auth/login"));
            attempts.spawn(async move {
                client
                    .post(url)
                    .json(
                        &json!({"username": format!("costly{n}"), "password": "any guess at all"}),
                    )
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
        }
    }
    let started = std::time::Instant::now();
    while let Some(status) = attempts.join_next().await {
        // Refused like any wrong password (or shed while the pool is busy), and quickly.
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::SERVICE_UNAVAILABLE].contains(&status.unwrap())
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // The pool is free: an ordinary login goes through.
    app.login("bystander", &password).await;
    let after = app.state.hasher.stats();
    assert!(after.over_ceiling > before.over_ceiling);
    assert_eq!(
        after.over_ceiling - before.over_ceiling,
        after.dummy_verifications - before.dummy_verifications,
        "each one cost a dummy verification, as an unknown user does"
    );
}
