//! Test harness: starts the real service on port 0 with a fresh data directory (SQLite file and
//! development keys) per test, either in-process or as the `rampart` binary.
//!
//! One suite, two backends: each behavioural test file is also built as a second test target
//! named `<file>_postgres` (see Cargo.toml), and in those the harness gives every test a fresh
//! PostgreSQL database instead of the SQLite file. See [`services`] for when the PostgreSQL and
//! Redis tests run, skip or fail.
#![allow(dead_code, unreachable_pub, clippy::expect_used, clippy::unwrap_used)] // test harness: failing loudly is the point

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rampart_server::config::Settings;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const ADMIN_PASSWORD: &str = "granite herons audit every ledger";

pub mod nodes;
pub mod services;
pub mod totp;
pub mod webdriver;

/// Ends the test early, saying so, when a dependency it needs is missing (see
/// [`services::Skip`]); under CI the check itself fails the test instead.
#[macro_export]
macro_rules! require {
    ($check:expr) => {
        match $check {
            Ok(value) => value,
            Err(skip) => {
                skip.report();
                return;
            }
        }
    };
}

/// The database this target's tests run on answers: always on SQLite; PostgreSQL is checked.
pub async fn backend_ready() -> Result<(), services::Skip> {
    match backend() {
        Backend::Sqlite => Ok(()),
        Backend::Postgres => services::postgres().await,
    }
}

/// The database backend this test target runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `Postgres` in the `*_postgres` test targets, which compile the same files.
pub fn backend() -> Backend {
    if env!("CARGO_CRATE_NAME").ends_with("_postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}

/// The service running inside the test process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub data: TempDir,
    /// The database the app runs on (`sqlite://…` in the data directory, or a fresh
    /// PostgreSQL database).
    pub database_url: String,
    /// The running app's state, for tests that must look behind the HTTP surface.
    pub state: rampart_server::state::AppState,
    stop: Option<oneshot::Sender<()>>,
    /// The PostgreSQL database made for this app, dropped with it (a restart hands it on).
    owned_database: Option<String>,
}

impl TestApp {
    /// Starts with development defaults plus `overrides` (`RAMPART_*` pairs).
    pub async fn spawn(overrides: &[(&str, &str)]) -> Self {
        Self::spawn_in(tempfile::tempdir().expect("temp dir"), overrides).await
    }

    /// Stops this instance and starts a new one on the same data directory (database and keys):
    /// what a process restart looks like to clients.
    pub async fn restart(mut self, overrides: &[(&str, &str)]) -> Self {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().expect("temp dir"));
        let mut vars = vec![("RAMPART_DATABASE_URL", self.database_url.as_str())];
        vars.extend_from_slice(overrides);
        let mut restarted = Self::spawn_in(data, &vars).await;
        restarted.owned_database = self.owned_database.take();
        restarted
    }

    /// Starts with the rate limits as shipped (every other test client shares 127.0.0.1, so
    /// [`TestApp::spawn`] raises them).
    pub async fn spawn_with_shipped_limits(overrides: &[(&str, &str)]) -> Self {
        Self::start(tempfile::tempdir().expect("temp dir"), overrides, false).await
    }

    /// Starts on an existing data directory.
    pub async fn spawn_in(data: TempDir, overrides: &[(&str, &str)]) -> Self {
        Self::start(data, overrides, true).await
    }

    async fn start(data: TempDir, overrides: &[(&str, &str)], relaxed_limits: bool) -> Self {
        let (database_url, owned_database) =
            match overrides.iter().find(|(k, _)| *k == "RAMPART_DATABASE_URL") {
                Some((_, url)) => ((*url).to_owned(), None),
                None => match backend() {
                    Backend::Sqlite => (
                        format!("sqlite://{}", data.path().join("rampart.db").display()),
                        None,
                    ),
                    Backend::Postgres => {
                        let url = services::fresh_postgres_database().await;
                        (url.clone(), Some(url))
                    }
                },
            };
        let mut vars: HashMap<String, String> = HashMap::from([
            ("RAMPART_BIND".into(), "127.0.0.1:0".into()),
            ("RAMPART_DATA_DIR".into(), data.path().display().to_string()),
            ("RAMPART_DATABASE_URL".into(), database_url.clone()),
            (
                "RAMPART_AUDIT_ANCHOR".into(),
                data.path().join("audit-anchor").display().to_string(),
            ),
        ]);
        if relaxed_limits {
            for name in [
                "RAMPART_LIMIT_GLOBAL",
                "RAMPART_LIMIT_AUTH",
                "RAMPART_LIMIT_LOGIN_ACCOUNT",
                "RAMPART_LIMIT_LOGIN_IP_ACCOUNT",
            ] {
                vars.insert(name.into(), "100000/minute".into());
            }
        }
        vars.extend(
            overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let settings = Settings::from_map(vars).expect("valid test settings");
        let options = rampart_server::app::serve_options(&settings);
        let hardening = settings.hardening();
        let state = rampart_server::app::state(settings)
            .await
            .expect("app state");
        let hardening = rampart_server::app::with_preflight_limit(hardening, &state);
        let app = rampart_server::app::service(state.clone(), hardening);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        state.public_origin.default_to(addr);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(rampart::server::serve(listener, app, options, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            addr,
            client,
            data,
            database_url,
            state,
            stop: Some(stop),
            owned_database,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a JSON body.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Registers `username` with a strong password; returns the password.
    pub async fn register(&self, username: &str) -> String {
        let password = "violet tandem bicycles rarely whistle".to_owned();
        let response = self
            .post_json(
                "/v1/auth/register",
                &serde_json::json!({"email": format!("{username}@example.com"), "username": username, "password": password}),
            )
            .await;
        assert_eq!(
            response.status().as_u16(),
            201,
            "{}",
            response.text().await.unwrap_or_default()
        );
        password
    }

    /// Logs in and returns the token pair.
    pub async fn login(&self, username: &str, password: &str) -> serde_json::Value {
        let response = self
            .post_json(
                "/v1/auth/login",
                &serde_json::json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(
            response.status().as_u16(),
            200,
            "{}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.expect("token pair")
    }

    /// Creates the admin account `admin` (directly in the store, as `rampart user create
    /// --admin` would) and returns an access token for it.
    pub async fn admin_token(&self) -> String {
        let hash = self
            .state
            .hasher
            .hash(ADMIN_PASSWORD.to_owned().into())
            .await
            .unwrap();
        self.insert_user(rampart_server::store::NewUser {
            id: "01a20000-0000-7000-8000-00000000ad01".into(),
            email: "admin@example.com".into(),
            email_key: "admin@example.com".into(),
            username: "admin".into(),
            username_key: "admin".into(),
            password_hash: hash,
            role: rampart::Role::Admin,
        })
        .await;
        self.access_token("admin", ADMIN_PASSWORD).await
    }

    /// Writes a user straight into the store, as `rampart user import` or an old table would
    /// have left it (no event recorded).
    pub async fn insert_user(
        &self,
        user: rampart_server::store::NewUser,
    ) -> rampart_server::store::UserRecord {
        let mut tx = self.state.store.begin().await.unwrap();
        let user = tx.create_user(user).await.unwrap();
        tx.commit().await.unwrap();
        user
    }

    /// Locks a user straight in the store (no event, no broadcast).
    pub async fn lock_in_store(&self, user_id: &str) {
        let mut tx = self.state.store.begin().await.unwrap();
        assert!(tx.set_locked(user_id, true).await.unwrap());
        tx.commit().await.unwrap();
    }

    /// The newest hundred audit events, only those of `kind` if given, as an admin reads them.
    pub async fn audit_events(&self, admin: &str, kind: Option<&str>) -> Vec<serde_json::Value> {
        let page: serde_json::Value = self
            .get_as("/v1/admin/audit?limit=100", admin)
            .await
            .json()
            .await
            .unwrap();
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| kind.is_none_or(|kind| e["kind"] == kind))
            .cloned()
            .collect()
    }

    /// The id of the user a token belongs to.
    pub async fn user_id(&self, token: &str) -> String {
        let me: serde_json::Value = self
            .get_as("/v1/users/me", token)
            .await
            .json()
            .await
            .unwrap();
        me["id"].as_str().unwrap().to_owned()
    }

    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    /// An admin's lock (`locked`) or unlock of `user_id`, as `admin_token` asks for it; its
    /// status.
    pub async fn set_locked(
        &self,
        admin_token: &str,
        user_id: &str,
        locked: bool,
    ) -> reqwest::StatusCode {
        let action = if locked { "lock" } else { "unlock" };
        self.call(
            reqwest::Method::POST,
            &format!("/v1/admin/users/{user_id}/{action}"),
            Some(admin_token),
            None,
        )
        .await
        .status()
    }

    /// Logs in and returns only the access token.
    pub async fn access_token(&self, username: &str, password: &str) -> String {
        self.login(username, password).await["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// The id of the session `token` belongs to, as the session list marks it current.
    pub async fn current_session_id(&self, token: &str) -> String {
        self.session_id_marked(token, true).await
    }

    /// The id of one of `token`'s user's sessions other than the one `token` belongs to.
    pub async fn other_session_id(&self, token: &str) -> String {
        self.session_id_marked(token, false).await
    }

    /// The id of the first session in `token`'s list whose `current` mark is `current`.
    async fn session_id_marked(&self, token: &str, current: bool) -> String {
        let list: serde_json::Value = self
            .get_as("/v1/auth/sessions", token)
            .await
            .json()
            .await
            .expect("session list");
        list["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .find(|s| s["current"] == current)
            .unwrap_or_else(|| panic!("a session with current = {current}: {list}"))["id"]
            .as_str()
            .expect("session id")
            .to_owned()
    }

    /// GET with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }
}

/// A connection of the test's own to the app's database: what someone with database access
/// (an intruder, a slow batch job) can do behind the service's back.
pub enum RawDatabase {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl RawDatabase {
    pub async fn execute(&mut self, sql: &str) {
        match self {
            Self::Sqlite(conn) => sqlx::query(sql).execute(conn).await.map(drop),
            Self::Postgres(conn) => sqlx::query(sql).execute(conn).await.map(drop),
        }
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }

    /// The single integer a `SELECT COUNT(*) ...` answers.
    pub async fn count(&mut self, sql: &str) -> i64 {
        match self {
            Self::Sqlite(conn) => sqlx::query_scalar(sql).fetch_one(conn).await,
            Self::Postgres(conn) => sqlx::query_scalar(sql).fetch_one(conn).await,
        }
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
    }
}

impl TestApp {
    pub async fn raw_database(&self) -> RawDatabase {
        use sqlx::ConnectOptions;
        let url = &self.database_url;
        match backend() {
            Backend::Sqlite => RawDatabase::Sqlite(
                url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .unwrap()
                    .connect()
                    .await
                    .unwrap(),
            ),
            Backend::Postgres => RawDatabase::Postgres(
                url.parse::<sqlx::postgres::PgConnectOptions>()
                    .unwrap()
                    .connect()
                    .await
                    .unwrap(),
            ),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(url) = self.owned_database.take() {
            services::drop_database(&url);
        }
    }
}

/// The `rampart` binary as a child process.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    /// The metrics listener, when `RAMPART_METRICS_BIND` was set.
    pub metrics: Option<SocketAddr>,
    pub data: TempDir,
}

/// A `rampart` command with a clean environment (no inherited `RAMPART_*`) and `vars`.
pub fn command(data: &TempDir, vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("RAMPART_")) {
        cmd.env_remove(key);
    }
    cmd.env("RAMPART_DATA_DIR", data.path())
        .env("RAMPART_AUDIT_ANCHOR", data.path().join("audit-anchor"))
        .env("RAMPART_BIND", "127.0.0.1:0")
        .envs(vars.iter().copied())
        .current_dir(data.path())
        .stdin(Stdio::null());
    cmd
}

impl Binary {
    /// Starts `rampart serve` and waits for its `listening on` line.
    pub fn start(vars: &[(&str, &str)]) -> Self {
        Self::start_in(tempfile::tempdir().expect("temp dir"), vars)
    }

    /// Starts `rampart serve` on an existing data directory.
    pub fn start_in(data: TempDir, vars: &[(&str, &str)]) -> Self {
        let mut child = command(&data, vars)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rampart");
        let stdout = child.stdout.take().expect("stdout");
        let mut stdout = BufReader::new(stdout);
        let mut announced = |prefix: &str| -> SocketAddr {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("read stdout");
            line.trim()
                .strip_prefix(prefix)
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
        };
        let addr = announced("listening on ");
        let metrics = vars
            .iter()
            .any(|(key, _)| *key == "RAMPART_METRICS_BIND")
            .then(|| announced("metrics on "));
        Self {
            child,
            addr,
            metrics,
            data,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM and waits up to `limit` for exit; returns the exit status and stderr.
    pub fn terminate(self, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
        let (status, stderr, _) = self.terminate_keeping_data(limit);
        (status, stderr)
    }

    /// [`Binary::terminate`], handing back the data directory for commands run after.
    pub fn terminate_keeping_data(
        mut self,
        limit: Duration,
    ) -> (Option<std::process::ExitStatus>, String, TempDir) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                _ if std::time::Instant::now() > deadline => {
                    let _ = self.child.kill();
                    break None;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().expect("temp dir"));
        (status, stderr, data)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
