//! `rampart serve` processes for multi-node and fault tests: each on its own data directory,
//! sharing one PostgreSQL database (and Redis, when given), logging to `rampart.log` in its
//! data directory.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // test harness

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

use super::services;

pub const PASSWORD: &str = "violet tandem bicycles rarely whistle";

/// One `rampart serve` process.
pub struct Node {
    pub child: Child,
    pub addr: SocketAddr,
    pub data: TempDir,
    pub client: reqwest::Client,
}

/// What the nodes of one test share.
pub struct Shared {
    pub database_url: String,
    pub redis_url: Option<String>,
    pub namespace: String,
}

impl Shared {
    /// What the nodes of one test share: a fresh database, and Redis when given (both checked:
    /// a [`services::Skip`] when missing).
    pub async fn new(redis_url: Option<String>) -> Result<Self, services::Skip> {
        services::postgres().await?;
        if let Some(url) = &redis_url {
            services::require_redis(url).await?;
        }
        Ok(Self {
            database_url: services::fresh_postgres_database().await,
            redis_url,
            namespace: services::fresh_namespace(),
        })
    }

    /// A `rampart` command for a node on `data` (see [`Shared::node`]).
    fn command(
        &self,
        data: &TempDir,
        first: Option<&Node>,
        vars: &[(&str, &str)],
    ) -> std::process::Command {
        let keys = first.map(|node| node.data.path().join("keys.json").display().to_string());
        let mut command = super::command(
            data,
            &[
                ("RAMPART_DATABASE_URL", self.database_url.as_str()),
                ("RAMPART_REDIS_NAMESPACE", self.namespace.as_str()),
                ("RAMPART_LIMIT_GLOBAL", "100000/minute"),
                ("RAMPART_LIMIT_AUTH", "100000/minute"),
                ("RAMPART_LIMIT_LOGIN_ACCOUNT", "100000/minute"),
                ("RAMPART_LIMIT_LOGIN_IP_ACCOUNT", "100000/minute"),
                ("RAMPART_LOG", "info"),
            ],
        );
        if let Some(url) = &self.redis_url {
            command.env("RAMPART_REDIS_URL", url);
        }
        if let Some(keys) = &keys {
            command.env("RAMPART_KEYS_FILE", keys);
        }
        command.envs(vars.iter().copied());
        command
    }

    /// Starts a node; nodes after the first verify the first one's signing keys. Like an
    /// operator adding a node, it anchors the audit chain first (`rampart audit-log anchor`;
    /// a node sharing an anchor file that exists keeps it).
    pub fn node(&self, first: Option<&Node>, vars: &[(&str, &str)]) -> Node {
        let data = tempfile::tempdir().unwrap();
        let anchored = self
            .command(&data, first, vars)
            .args(["audit-log", "anchor"])
            .output()
            .unwrap();
        let shared_anchor_exists = String::from_utf8_lossy(&anchored.stderr).contains("exists");
        assert!(
            anchored.status.success() || shared_anchor_exists,
            "{anchored:?}"
        );
        let log = std::fs::File::create(data.path().join("rampart.log")).unwrap();
        let mut command = self.command(&data, first, vars);
        let mut child = command
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| {
                let log = std::fs::read_to_string(data.path().join("rampart.log"));
                panic!("node did not start: {line:?}\n{log:?}")
            });
        Node {
            child,
            addr,
            data,
            client: reqwest::Client::new(),
        }
    }
}

impl Node {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, format!("http://{}{path}", self.addr));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn register(&self, name: &str) {
        let body =
            json!({"email": format!("{name}@example.com"), "username": name, "password": PASSWORD});
        let response = self
            .call(Method::POST, "/v1/auth/register", None, Some(body))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    pub async fn login_as(&self, name: &str, password: &str) -> reqwest::Response {
        let body = json!({"username": name, "password": password});
        self.call(Method::POST, "/v1/auth/login", None, Some(body))
            .await
    }

    pub async fn login(&self, name: &str) -> Value {
        let response = self.login_as(name, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn me(&self, token: &str) -> StatusCode {
        self.call(Method::GET, "/v1/users/me", Some(token), None)
            .await
            .status()
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        let body = json!({"refresh_token": refresh_token});
        self.call(Method::POST, "/v1/auth/refresh", None, Some(body))
            .await
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The nodes were dropped (killed) first: they were declared after it.
        services::drop_database(&self.database_url);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn access(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

/// Polls `check` until it holds or `limit` passes; returns how long it took.
pub async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
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
