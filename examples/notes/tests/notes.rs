//! The example app served on port 0 and attacked over HTTP: what its README section promises a
//! team that adopts rampart's layers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::net::SocketAddr;

use rampart::http::Hardening;
use rampart::server::{serve, ServeOptions};
use rampart::settings::HttpLimits;
use rampart::Role;
use rampart_example_notes::{app, ApiKey, Config, MAX_NOTES_PER_OWNER};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ALICE: &str = "alice-key-5f0c8a1e9b7d4c2a8e6f1b3d5a7c9e0f";
const BOB: &str = "bob-key-1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d";
const ROOT: &str = "root-key-9f8e7d6c5b4a39281706f5e4d3c2b1a0";

fn key(owner: &str, role: Role, secret: &str) -> ApiKey {
    ApiKey {
        owner: owner.into(),
        role,
        sha256: Sha256::digest(secret.as_bytes()).into(),
    }
}

struct Served {
    base: String,
    http: Client,
}

impl Served {
    async fn start(requests_per_minute: u32) -> Self {
        let app = app(Config {
            keys: vec![
                key("alice", Role::User, ALICE),
                key("bob", Role::User, BOB),
                key("root", Role::Admin, ROOT),
            ],
            requests_per_minute,
            hardening: Hardening {
                limits: HttpLimits {
                    body_limit: 16 * 1024,
                    ..HttpLimits::default()
                },
                ..Hardening::default()
            },
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            app,
            ServeOptions::default(),
            std::future::pending(),
        ));
        Self {
            base: format!("http://{addr}"),
            http: Client::new(),
        }
    }

    fn get(&self, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let request = self.http.get(format!("{}{path}", self.base));
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(body)
    }
}

fn assert_problem(response: &reqwest::Response, status: StatusCode) {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn health_is_public_and_hardened() {
    let app = Served::start(600).await;
    let response = app.get("/health", None).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let h = response.headers();
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h.contains_key("strict-transport-security"));
    assert!(h.contains_key("x-request-id"));
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn default_deny_answers_the_same_401_for_real_and_made_up_paths() {
    let app = Served::start(600).await;
    for path in ["/v1/notes", "/v1/admin/stats", "/v1/nothing-here", "/.env"] {
        let response = app.get(path, None).send().await.unwrap();
        assert_problem(&response, StatusCode::UNAUTHORIZED);
        let response = app.get(path, Some("not-a-key")).send().await.unwrap();
        assert_problem(&response, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn a_note_is_its_owners_alone() {
    let app = Served::start(600).await;
    let response = app
        .post(
            "/v1/notes",
            ALICE,
            &json!({"title": "plans", "body": "secret"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mine = app
        .get(&format!("/v1/notes/{id}"), Some(ALICE))
        .send()
        .await
        .unwrap();
    assert_eq!(mine.json::<Value>().await.unwrap()["body"], "secret");

    // Bob gets the answer a missing note gets: the id tells him nothing.
    let theirs = app
        .get(&format!("/v1/notes/{id}"), Some(BOB))
        .send()
        .await
        .unwrap();
    assert_problem(&theirs, StatusCode::NOT_FOUND);
    let deleted = app
        .http
        .delete(format!("{}/v1/notes/{id}", app.base))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_problem(&deleted, StatusCode::NOT_FOUND);
    let list = app.get("/v1/notes", Some(BOB)).send().await.unwrap();
    assert_eq!(list.json::<Value>().await.unwrap(), json!([]));
    let still = app
        .get(&format!("/v1/notes/{id}"), Some(ALICE))
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_routes_refuse_users_and_serve_admins() {
    let app = Served::start(600).await;
    let response = app
        .get("/v1/admin/stats", Some(ALICE))
        .send()
        .await
        .unwrap();
    assert_problem(&response, StatusCode::FORBIDDEN);
    let response = app.get("/v1/admin/stats", Some(ROOT)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["notes"], 0);
}

#[tokio::test]
async fn hostile_bodies_are_refused_and_change_nothing() {
    let app = Served::start(600).await;
    let attempts = [
        json!({"title": "x", "owner": "bob"}),
        json!({"title": ""}),
        json!({"title": 7}),
        json!(["title"]),
        json!({"title": "x".repeat(201)}),
    ];
    for body in &attempts {
        let response = app.post("/v1/notes", ALICE, body).send().await.unwrap();
        assert!(
            response.status().is_client_error(),
            "{body}: {}",
            response.status()
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
    }
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let response = app
        .http
        .post(format!("{}/v1/notes", app.base))
        .bearer_auth(ALICE)
        .header("content-type", "application/json")
        .body(format!(r#"{{"title":"deep","body":"x","extra":{deep}}}"#))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    let oversized = app
        .post(
            "/v1/notes",
            ALICE,
            &json!({"title": "big", "body": "x".repeat(20_000)}),
        )
        .send()
        .await
        .unwrap();
    assert_problem(&oversized, StatusCode::PAYLOAD_TOO_LARGE);
    let list = app.get("/v1/notes", Some(ALICE)).send().await.unwrap();
    assert_eq!(list.json::<Value>().await.unwrap(), json!([]));
}

#[tokio::test]
async fn one_owner_cannot_grow_memory_without_bound() {
    let app = Served::start(10_000).await;
    for n in 0..MAX_NOTES_PER_OWNER {
        let response = app
            .post("/v1/notes", ALICE, &json!({"title": format!("note {n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = app
        .post("/v1/notes", ALICE, &json!({"title": "one more"}))
        .send()
        .await
        .unwrap();
    assert_problem(&response, StatusCode::CONFLICT);
}

#[tokio::test]
async fn each_caller_has_its_own_budget_and_forged_keys_spend_the_address() {
    let app = Served::start(5).await;
    let mut last = None;
    for _ in 0..6 {
        last = Some(app.get("/v1/notes", Some(ALICE)).send().await.unwrap());
    }
    let refused = last.unwrap();
    assert_problem(&refused, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(refused.headers().contains_key("ratelimit-policy"));
    // Bob's budget is his own.
    let bob = app.get("/v1/notes", Some(BOB)).send().await.unwrap();
    assert_eq!(bob.status(), StatusCode::OK);
    // Guessing keys is charged to the address, whatever key is made up.
    let mut statuses = Vec::new();
    for n in 0..6 {
        let guess = format!("guess-{n}");
        statuses.push(
            app.get("/v1/notes", Some(&guess))
                .send()
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[test]
fn api_key_entries_are_parsed_strictly() {
    let digest = "a".repeat(64);
    let ok = ApiKey::parse(&format!("alice:user:{digest}")).unwrap();
    assert_eq!((ok.owner.as_str(), ok.role), ("alice", Role::User));
    for bad in [
        format!("alice:root:{digest}"),
        format!("alice:user:{}", "a".repeat(63)),
        format!("alice:user:{}", "g".repeat(64)),
        format!("al ice:user:{digest}"),
        format!(":user:{digest}"),
        "alice:user".to_owned(),
    ] {
        assert!(ApiKey::parse(&bad).is_err(), "{bad}");
    }
}

/// The README's library section shows this app's code: every line of its snippet must still be
/// in `src/lib.rs`, in order, so the documentation cannot drift from what CI builds.
#[test]
fn the_readme_snippet_is_this_apps_code() {
    let readme = include_str!("../../../README.md");
    let section = readme
        .split("## Using the layers in your own axum app")
        .nth(1)
        .expect("the README has the library section");
    let snippet = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a rust snippet");
    let source = include_str!("../src/lib.rs");
    let mut lines = source.lines().map(str::trim);
    for wanted in snippet.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            lines.any(|line| line == wanted),
            "README line not found (in order) in src/lib.rs: {wanted}"
        );
    }
}
