//! TLS to the backing services: what rampart sends to PostgreSQL and Redis (password and token
//! hashes, revocations, rate-limit counters) is encrypted, and a server whose certificate cannot
//! be verified is not talked to.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{services, TestApp};
use reqwest::StatusCode;

fn settings(pairs: &[(&str, &str)], data: &tempfile::TempDir) -> rampart_server::config::Settings {
    let mut map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert("RAMPART_DATA_DIR".into(), data.path().display().to_string());
    map.insert(
        "RAMPART_AUDIT_ANCHOR".into(),
        data.path().join("audit-anchor").display().to_string(),
    );
    rampart_server::config::Settings::from_map(map).unwrap()
}

#[tokio::test]
async fn postgres_over_tls_encrypts_every_connection_of_the_pool() {
    crate::require!(services::require_postgres_tls().await);
    let url = services::fresh_postgres_database().await;
    let database = url.rsplit('/').next().unwrap().to_owned();
    let app = TestApp::spawn(&[("RAMPART_DATABASE_URL", &format!("{url}?sslmode=require"))]).await;
    let password = app.register("tina").await;
    app.login("tina", &password).await;

    let mut admin = services::admin_connection().await.unwrap();
    let (connections, encrypted): (i64, Option<bool>) = sqlx::query_as(
        "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = $1 AND a.application_name = 'rampart'",
    )
    .bind(&database)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(
        connections >= 1,
        "the app holds connections to its database"
    );
    assert_eq!(encrypted, Some(true), "every one of them is TLS");
}

#[tokio::test]
async fn postgres_verify_full_refuses_a_server_it_cannot_authenticate() {
    crate::require!(services::require_postgres_tls().await);
    // The machine's server presents Debian's self-signed "snakeoil" certificate, made out to
    // the host's name. Reached by address, it is not the server that was asked for, exactly
    // as a man in the middle's certificate would not be: verify-full must not connect,
    // whether or not the machine's trust store holds the certificate.
    let url = services::fresh_postgres_database()
        .await
        .replace("@localhost", "@127.0.0.1");
    let data = tempfile::tempdir().unwrap();
    let refused = rampart_server::app::state(settings(
        &[(
            "RAMPART_DATABASE_URL",
            &format!("{url}?sslmode=verify-full"),
        )],
        &data,
    ))
    .await;
    let err = format!(
        "{:#}",
        refused.expect_err("an unverifiable server was accepted")
    );
    assert!(
        err.contains("certificate"),
        "refused for its certificate: {err}"
    );
    assert!(
        !err.contains("postgres://"),
        "the URL is never printed: {err}"
    );
}

#[tokio::test]
async fn redis_over_tls_works_with_a_private_ca_and_only_with_it() {
    let redis = crate::require!(services::TlsRedis::start().await);
    let (url, ca) = (redis.url(), redis.ca_file.display().to_string());
    // The server has no plain-text port: everything below went over TLS.
    let app = TestApp::spawn(&[("RAMPART_REDIS_URL", &url), ("RAMPART_REDIS_CA_FILE", &ca)]).await;
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);
    let password = app.register("uma").await;
    // Every login is counted in Redis (per-address, per-account and backoff).
    app.login("uma", &password).await;

    // Without the CA the certificate cannot be verified: Redis counts as down, readiness
    // fails and the credential routes fail closed.
    let untrusting = TestApp::spawn(&[("RAMPART_REDIS_URL", &url)]).await;
    assert_eq!(
        untrusting.get("/ready").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let login = untrusting
        .post_json(
            "/v1/auth/login",
            &serde_json::json!({"username": "uma", "password": password}),
        )
        .await;
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
}
