//! The real PostgreSQL and Redis the scale-out tests run against, and tools to break them.
//!
//! Where they are: `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and
//! `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). When one cannot be reached, tests that
//! need it fail under CI (`CI=true` or `REQUIRE_TEST_SERVICES=1`, which `.ci/run` sets) and
//! are skipped elsewhere, with a message naming the service, so a laptop without them still
//! runs the rest of the suite.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{ConnectOptions, Connection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn required() -> bool {
    ["CI", "REQUIRE_TEST_SERVICES"]
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false"))
}

/// Fails the test under CI; elsewhere ends this test binary successfully after saying which
/// service is missing (every test in a `*_postgres` or cluster binary needs it).
fn unavailable(service: &str, url: &str, error: &str) -> ! {
    assert!(
        !required(),
        "{service} is required under CI but unreachable at {url}: {error}"
    );
    eprintln!(
        "\nSKIPPED: {service} is not reachable at {url} ({error}); its tests did not run. \
         Start it or set the TEST_*_URL variables (CI requires it).\n"
    );
    std::process::exit(0);
}

async fn admin_connection() -> sqlx::PgConnection {
    let url = postgres_admin_url();
    let options: sqlx::postgres::PgConnectOptions = match url.parse() {
        Ok(options) => options,
        Err(err) => unavailable("PostgreSQL", &url, &err.to_string()),
    };
    match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(err)) => unavailable("PostgreSQL", &url, &err.to_string()),
        Err(_) => unavailable("PostgreSQL", &url, "no answer in 5 s"),
    }
}

/// Creates an empty database for one test and returns its URL. Databases left by earlier runs
/// (their name carries their creation time) are dropped once they are an hour old.
pub async fn fresh_postgres_database() -> String {
    let mut admin = admin_connection().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'rampart_t_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    for name in stale {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        if created + 3600 < now {
            // Another test binary may be dropping it too.
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
    }
    let name = format!("rampart_t_{now}_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    let base = postgres_admin_url();
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// Redis answers at `url`, or the test fails (CI) or the binary skips (elsewhere).
pub async fn require_redis(url: &str) {
    let outcome = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(5), outcome).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => unavailable("Redis", url, &err.to_string()),
        Err(_) => unavailable("Redis", url, "no answer in 5 s"),
    }
}

/// A namespace no other test uses, so tests can share one Redis.
pub fn fresh_namespace() -> String {
    format!("t{}", uuid::Uuid::now_v7().simple())
}

/// A Redis server of the test's own, on its own port, that the test can stop and restart
/// (the machine's shared one must keep serving the other tests).
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.start_again().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port, with nothing kept from before.
    pub async fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => self.child = Some(child),
            Err(err) => unavailable("redis-server (the binary)", "PATH", &err.to_string()),
        }
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                require_redis(&self.url()).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server: every connection drops, every key is lost.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP relay to `target` that the test can cut (every connection dropped, new ones refused)
/// and restore: a database outage as the service sees it, without stopping the database the
/// other tests use.
pub struct Relay {
    pub addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = watch::channel(true);
        let up = Arc::new(up);
        let relay_up = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !*relay_up.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut down = relay_up.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { addr, up }
    }

    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// PostgreSQL's address, from the admin URL.
pub fn postgres_addr() -> SocketAddr {
    let url = postgres_admin_url();
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let host = match options.get_host() {
        "localhost" => "127.0.0.1",
        host => host,
    };
    format!("{host}:{}", options.get_port()).parse().unwrap()
}
