//! The real PostgreSQL and Redis the scale-out tests run against, and tools to break them.
//!
//! Where they are: `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and
//! `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). When one cannot be reached, a test that
//! needs it fails under CI (`CI=true` or `REQUIRE_TEST_SERVICES=1`, which `.ci/run` sets);
//! elsewhere it ends early with a `SKIPPED <test>: <why>` line that `cargo test` shows (see
//! [`Skip`] and `require!`), so a laptop without them still runs the rest of the suite and says
//! what it left out.

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

/// A dependency a test needs is missing, off CI: the test ends early and says so.
#[derive(Debug)]
#[must_use]
pub struct Skip(String);

impl Skip {
    /// Writes `SKIPPED <test>: <why>` straight to stderr, where `cargo test` shows it (libtest
    /// captures only the print macros' output).
    pub fn report(&self) {
        use std::io::Write as _;
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a test");
        let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {}", self.0);
    }
}

/// Fails the test under CI; elsewhere the [`Skip`] naming what is missing.
fn unavailable(service: &str, place: &str, error: &str) -> Skip {
    assert!(
        !required(),
        "{service} is required under CI but unavailable at {place}: {error}"
    );
    Skip(format!(
        "{service} is not available at {place} ({error}); start it or set the TEST_*_URL \
         variables (CI requires it)"
    ))
}

pub async fn admin_connection() -> Result<sqlx::PgConnection, Skip> {
    let url = postgres_admin_url();
    let options: sqlx::postgres::PgConnectOptions = match url.parse() {
        Ok(options) => options,
        Err(err) => return Err(unavailable("PostgreSQL", &url, &err.to_string())),
    };
    match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(err)) => Err(unavailable("PostgreSQL", &url, &err.to_string())),
        Err(_) => Err(unavailable("PostgreSQL", &url, "no answer in 5 s")),
    }
}

/// PostgreSQL answers (checked once per test binary).
pub async fn postgres() -> Result<(), Skip> {
    static REACHABLE: tokio::sync::OnceCell<Result<(), String>> =
        tokio::sync::OnceCell::const_new();
    let outcome = REACHABLE
        .get_or_init(|| async {
            match admin_connection().await {
                Ok(connection) => {
                    let _ = connection.close().await;
                    Ok(())
                }
                Err(skip) => Err(skip.0),
            }
        })
        .await;
    outcome.clone().map_err(Skip)
}

/// PostgreSQL answers and has TLS on (`ssl = on`, as Debian's default configuration has it,
/// with its self-signed certificate), or the test fails (CI) or the binary skips (elsewhere).
pub async fn require_postgres_tls() -> Result<(), Skip> {
    let mut admin = admin_connection().await?;
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if ssl != "on" {
        return Err(unavailable(
            "PostgreSQL with TLS",
            &postgres_admin_url(),
            "the server runs with ssl = off",
        ));
    }
    Ok(())
}

/// Creates an empty database for one test and returns its URL. Databases left by earlier runs
/// (their name carries their creation time) are dropped once they are an hour old. Call
/// [`postgres`] first (through `require!`): this one assumes PostgreSQL is there.
pub async fn fresh_postgres_database() -> String {
    let mut admin = admin_connection()
        .await
        .unwrap_or_else(|skip| panic!("PostgreSQL was checked first: {skip:?}"));
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

/// Drops the database `url` names (with its connections), from a thread of its own: called
/// from `Drop`, where the test's runtime cannot be waited on. Databases a crashed run leaves
/// are dropped by later runs once an hour old (see [`fresh_postgres_database`]).
pub fn drop_database(url: &str) {
    let Some(name) = url.rsplit('/').next().map(str::to_owned) else {
        return;
    };
    if !name.starts_with("rampart_t_") {
        return;
    }
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            if let Ok(mut admin) = admin_connection().await {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = sqlx::query(&drop).execute(&mut admin).await;
                let _ = admin.close().await;
            }
        });
    })
    .join();
}

/// Redis answers at `url`, or the test fails (CI) or skips (elsewhere).
pub async fn require_redis(url: &str) -> Result<(), Skip> {
    let outcome = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(5), outcome).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(unavailable("Redis", url, &err.to_string())),
        Err(_) => Err(unavailable("Redis", url, "no answer in 5 s")),
    }
}

/// `program` is on the PATH (the private servers' binaries, `openssl`).
pub fn program(program: &str) -> Result<(), Skip> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    if found {
        Ok(())
    } else {
        Err(unavailable(program, "PATH", "not found"))
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
    pub async fn start() -> Result<Self, Skip> {
        program("redis-server")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.start_again().await;
        Ok(redis)
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
        self.child = Some(child.unwrap_or_else(|err| panic!("redis-server: {err}")));
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                require_redis(&self.url())
                    .await
                    .unwrap_or_else(|skip| panic!("the private Redis: {skip:?}"));
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

/// A Redis server of the test's own that speaks only TLS, with a certificate for `localhost`
/// and `127.0.0.1` signed by a CA made for the test (`openssl` on the PATH makes both).
pub struct TlsRedis {
    pub port: u16,
    /// The CA certificate (PEM) clients must trust.
    pub ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

impl TlsRedis {
    pub async fn start() -> Result<Self, Skip> {
        program("redis-server")?;
        program("openssl")?;
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        std::fs::write(path("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let steps: [Vec<String>; 3] = [
            ["req", "-x509"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain(ec.iter().map(|s| (*s).to_owned()))
                .chain([
                    "-keyout".into(),
                    path("ca.key"),
                    "-out".into(),
                    path("ca.pem"),
                    "-days".into(),
                    "1".into(),
                    "-subj".into(),
                    "/CN=rampart test CA".into(),
                ])
                .collect(),
            ["req"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain(ec.iter().map(|s| (*s).to_owned()))
                .chain([
                    "-keyout".into(),
                    path("server.key"),
                    "-out".into(),
                    path("server.csr"),
                    "-subj".into(),
                    "/CN=localhost".into(),
                ])
                .collect(),
            ["x509", "-req", "-in"]
                .iter()
                .map(|s| (*s).to_owned())
                .chain([
                    path("server.csr"),
                    "-CA".into(),
                    path("ca.pem"),
                    "-CAkey".into(),
                    path("ca.key"),
                    "-CAcreateserial".into(),
                    "-out".into(),
                    path("server.pem"),
                    "-days".into(),
                    "1".into(),
                    "-extfile".into(),
                    path("ext"),
                ])
                .collect(),
        ];
        for args in steps {
            let made = Command::new("openssl")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            match made {
                Ok(status) if status.success() => {}
                Ok(status) => panic!("openssl {args:?} failed: {status}"),
                Err(err) => panic!("openssl: {err}"),
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args([
                "--tls-cert-file",
                &path("server.pem"),
                "--tls-key-file",
                &path("server.key"),
            ])
            .args([
                "--tls-ca-cert-file",
                &path("ca.pem"),
                "--tls-auth-clients",
                "no",
            ])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = child.unwrap_or_else(|err| panic!("redis-server: {err}"));
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(Self {
                    port,
                    ca_file: dir.path().join("ca.pem"),
                    _dir: dir,
                    child,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server with TLS did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server of the test's own (initdb into a temporary directory, its own port,
/// fsync off), which the test can restart, kill, pause and resume. Needs the server binaries
/// (`initdb`, `pg_ctl`; Debian keeps them in /usr/lib/postgresql/*/bin); run as root, it runs
/// them as the `postgres` user, as PostgreSQL refuses root.
pub struct PrivatePostgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
}

impl PrivatePostgres {
    pub fn start() -> Result<Self, Skip> {
        let Some(bin) = postgres_bin_dir() else {
            return Err(unavailable(
                "PostgreSQL server binaries (initdb, pg_ctl)",
                "/usr/lib/postgresql/*/bin or PATH",
                "not found",
            ));
        };
        let dir = tempfile::tempdir().unwrap();
        if running_as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown to postgres failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let postgres = Self { port, dir, bin };
        let data = postgres.data();
        let initdb = postgres.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        assert!(initdb.success(), "initdb failed");
        postgres.start_again();
        Ok(postgres)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of the server's programs, as `postgres` when this process is root.
    fn run(&self, program: &str, args: &[&str]) -> std::process::ExitStatus {
        let program = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|err| panic!("{}: {err}", program.display()))
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        let started = self.run(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
        assert!(started.success(), "pg_ctl start failed");
    }

    /// Stops the server as a crash would (no checkpoint, every connection cut).
    pub fn kill(&self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }

    /// What an operator's `systemctl restart` does: a fast shutdown, then a start.
    pub fn restart(&self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
        self.start_again();
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) every process of this server, the postmaster and
    /// the backends serving connections: a paused VM.
    pub fn pause(&self, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        let pid_file = std::path::Path::new(&self.data()).join("postmaster.pid");
        let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
        else {
            return;
        };
        let _ = Command::new("pkill").args([signal, "-P", &pid]).status();
        let _ = Command::new("kill").args([signal, &pid]).status();
    }

    /// Creates `name` and returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let mut admin = loop {
            let options: sqlx::postgres::PgConnectOptions = self.url("postgres").parse().unwrap();
            match options.connect().await {
                Ok(connection) => break connection,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        self.url(name)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.pause(false);
        self.kill();
    }
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Where initdb and pg_ctl live: on the PATH, or Debian's newest /usr/lib/postgresql/*/bin.
fn postgres_bin_dir() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    });
    on_path.or_else(|| {
        let mut versions: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .collect();
        versions.sort_by_key(|bin| {
            bin.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        });
        versions.pop()
    })
}

/// A TCP relay to `target` that the test can cut (every connection dropped, new ones refused),
/// hang (connections accepted and read, nothing forwarded or answered: a host that drops
/// packets) and restore: an outage as the service sees it, without stopping the server the
/// other tests use. It counts what clients sent while it was not forwarding.
pub struct Relay {
    pub addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    /// Bytes clients sent that were swallowed while hanging.
    swallowed: Arc<std::sync::Mutex<Vec<u8>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Cut,
    Hang,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Up);
        let mode = Arc::new(mode);
        let swallowed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (relay_mode, relay_swallowed) = (mode.clone(), swallowed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let now = *relay_mode.borrow();
                match now {
                    Mode::Cut => drop(inbound),
                    Mode::Hang => {
                        tokio::spawn(swallow(
                            inbound,
                            relay_swallowed.clone(),
                            relay_mode.subscribe(),
                        ));
                    }
                    Mode::Up => {
                        tokio::spawn(forward(
                            inbound,
                            target,
                            relay_mode.subscribe(),
                            relay_swallowed.clone(),
                        ));
                    }
                }
            }
        });
        Self {
            addr,
            mode,
            swallowed,
        }
    }

    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    pub fn hang(&self) {
        self.mode.send_replace(Mode::Hang);
    }

    pub fn restore(&self) {
        self.mode.send_replace(Mode::Up);
    }

    /// How many times `needle` appears in what was swallowed so far.
    pub fn swallowed_count(&self, needle: &[u8]) -> usize {
        let swallowed = self.swallowed.lock().unwrap();
        swallowed
            .windows(needle.len())
            .filter(|window| *window == needle)
            .count()
    }
}

/// Forwards both ways while up; drops the connection when cut; keeps it open but swallows
/// what the client sends (and answers nothing) while hanging.
async fn forward(
    mut inbound: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    swallowed: Arc<std::sync::Mutex<Vec<u8>>>,
) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let outcome = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
        changed = mode.wait_for(|m| *m != Mode::Up) => changed.map(|m| *m),
    };
    if matches!(outcome, Ok(Mode::Hang)) {
        drop(outbound);
        swallow(inbound, swallowed, mode).await;
    }
}

async fn swallow(
    mut inbound: TcpStream,
    swallowed: Arc<std::sync::Mutex<Vec<u8>>>,
    mut mode: watch::Receiver<Mode>,
) {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 4096];
    loop {
        tokio::select! {
            read = inbound.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => swallowed.lock().unwrap().extend_from_slice(&buffer[..n]),
            },
            // Restored or cut: this connection is done either way.
            _ = mode.wait_for(|m| *m != Mode::Hang) => return,
        }
    }
}

/// A TCP relay to a Redis at `target` that holds back what the server sends on subscribed
/// connections by `delay`: a publish/subscribe message that is still on its way (a busy node,
/// a slow network) when the next request arrives, made certain rather than left to chance.
/// Every other connection (the limiter's commands) passes at once.
pub struct LaggingPubSub {
    pub addr: SocketAddr,
}

impl LaggingPubSub {
    pub async fn start(target: SocketAddr, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(lagging(inbound, target, delay));
            }
        });
        Self { addr }
    }
}

async fn lagging(inbound: TcpStream, target: SocketAddr, delay: Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(outbound) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = subscribed.clone();
    let upstream = tokio::spawn(async move {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = client_read.read(&mut buffer).await {
            if n == 0 || server_write.write_all(&buffer[..n]).await.is_err() {
                return;
            }
            if buffer[..n]
                .windows(9)
                .any(|w| w.eq_ignore_ascii_case(b"SUBSCRIBE"))
            {
                watching.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    });
    // Bytes from the server, each released `delay` after it arrived (in order) once the
    // connection has subscribed.
    let (held, mut release) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let downstream = tokio::spawn(async move {
        while let Some((arrived, bytes)) = release.recv().await {
            tokio::time::sleep_until(arrived + delay).await;
            if client_write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buffer = [0u8; 8192];
    while let Ok(n) = server_read.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let now = tokio::time::Instant::now();
        let at = if subscribed.load(std::sync::atomic::Ordering::Acquire) {
            now
        } else {
            now - delay
        };
        if held.send((at, buffer[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(held);
    let _ = downstream.await;
    upstream.abort();
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

/// Debian's Chromium and its ChromeDriver (`apt-get install chromium chromium-driver`, as
/// `.ci/run` does), or the binaries `CHROMIUM` and `CHROMEDRIVER` name.
pub fn chromium() -> Result<(std::path::PathBuf, std::path::PathBuf), Skip> {
    let find = |variable: &str, default: &str| {
        std::path::PathBuf::from(std::env::var(variable).unwrap_or_else(|_| default.into()))
    };
    let browser = find("CHROMIUM", "/usr/bin/chromium");
    let driver = find("CHROMEDRIVER", "/usr/bin/chromedriver");
    for path in [&browser, &driver] {
        if !path.is_file() {
            return Err(unavailable(
                "Chromium",
                &path.display().to_string(),
                "not installed (apt-get install chromium chromium-driver)",
            ));
        }
    }
    Ok((browser, driver))
}
