//! The `rampart` binary: commands, exit codes, production refusal, shutdown and logs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{command, Binary};

/// Runs `rampart` to completion, killing it after 20 s so a server that should have refused
/// to start fails the test instead of hanging it.
fn run(vars: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let data = tempfile::tempdir().expect("temp dir");
    let mut child = command(&data, vars)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rampart");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// (settings, the setting that must be named, expected exit code)
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, i32);

fn keys_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("keys.json");
    let (code, _, err) = run(&[], &["keys", "generate", "--out", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    path.display().to_string()
}

#[test]
fn production_refuses_to_start_on_each_unsafe_setting() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_file(&dir);
    // (settings, the setting that must be named, exit code: 1 posture refusal, 2 invalid value)
    let cases: &[Case] = &[
        (
            &[
                ("RAMPART_KEYS_FILE", &keys),
                ("RAMPART_TRUSTED_PROXIES", "0.0.0.0/0"),
            ],
            "RAMPART_TRUSTED_PROXIES",
            1,
        ),
        (
            &[
                ("RAMPART_KEYS_FILE", &keys),
                ("RAMPART_REFRESH_GRACE", "5m"),
            ],
            "RAMPART_REFRESH_GRACE",
            1,
        ),
        (
            &[
                ("RAMPART_KEYS_FILE", &keys),
                ("RAMPART_PASSWORD_HASH", "argon2id:m=4096,t=1,p=1"),
            ],
            "RAMPART_PASSWORD_HASH",
            1,
        ),
        (
            &[("RAMPART_KEYS_FILE", &keys), ("RAMPART_LOG", "debug")],
            "RAMPART_LOG",
            1,
        ),
        (
            &[
                ("RAMPART_KEYS_FILE", &keys),
                ("RAMPART_LOG", "info,hyper=5"),
            ],
            "RAMPART_LOG",
            1,
        ),
        (
            &[("RAMPART_KEYS_FILE", &keys), ("RAMPART_ACCESS_TTL", "2h")],
            "RAMPART_ACCESS_TTL",
            2,
        ),
        (
            // Password hashes must not cross the network in the clear.
            &[
                ("RAMPART_KEYS_FILE", &keys),
                (
                    "RAMPART_DATABASE_URL",
                    "postgres://rampart@db.internal/rampart",
                ),
            ],
            "RAMPART_DATABASE_URL",
            1,
        ),
        (
            // The review's tricks: a local-looking URL whose `host=` is remote, and a later
            // sslmode that undoes the first.
            &[
                ("RAMPART_KEYS_FILE", &keys),
                (
                    "RAMPART_DATABASE_URL",
                    "postgres://app:pw@localhost/db?host=db.internal",
                ),
            ],
            "RAMPART_DATABASE_URL",
            1,
        ),
        (
            &[
                ("RAMPART_KEYS_FILE", &keys),
                (
                    "RAMPART_DATABASE_URL",
                    "postgres://app:pw@db.internal/db?sslmode=require&sslmode=disable",
                ),
            ],
            "RAMPART_DATABASE_URL",
            1,
        ),
        (
            &[
                ("RAMPART_KEYS_FILE", &keys),
                ("RAMPART_REDIS_URL", "redis://cache.internal:6379"),
            ],
            "RAMPART_REDIS_URL",
            1,
        ),
        (&[], "RAMPART_KEYS_FILE", 1),
    ];
    for (vars, named, expected) in cases {
        let mut vars = vars.to_vec();
        vars.push(("RAMPART_ENV", "production"));
        let (code, out, err) = run(&vars, &["serve"]);
        assert_eq!(code, Some(*expected), "{named}: {err}");
        assert!(err.contains(named), "{named} not named: {err}");
        assert!(!out.contains("listening on"), "{named}: it started anyway");
    }
}

#[test]
fn invalid_configuration_exits_2_naming_every_variable() {
    let (code, _, err) = run(
        &[("RAMPART_ACCESS_TTL", "fifteen"), ("RAMPART_DOC", "false")],
        &["serve"],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("RAMPART_ACCESS_TTL") && err.contains("RAMPART_DOC:"),
        "{err}"
    );
}

#[test]
fn check_reports_posture_and_exit_code() {
    let (code, out, _) = run(&[], &["check"]);
    assert_eq!(
        code,
        Some(1),
        "development defaults are not production-safe: {out}"
    );
    assert!(
        out.contains("FAIL") && out.contains("RAMPART_KEYS_FILE"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let keys = keys_file(&dir);
    let (code, out, _) = run(
        &[("RAMPART_ENV", "production"), ("RAMPART_KEYS_FILE", &keys)],
        &["check"],
    );
    assert_eq!(
        code,
        Some(0),
        "production with a keys file and defaults passes: {out}"
    );
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn keys_generate_is_private_never_overwrites_and_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_file(&dir);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let before = std::fs::read_to_string(&keys).unwrap();
    let (code, _, err) = run(&[], &["keys", "generate", "--out", &keys]);
    assert_eq!(code, Some(1));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), before);

    let (code, out, err) = run(&[("RAMPART_KEYS_FILE", &keys)], &["keys", "rotate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("2 key(s) still verify"), "{out}");
    let rotated: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&keys).unwrap()).unwrap();
    assert_eq!(rotated["keys"].as_array().map(Vec::len), Some(2));
    assert!(rotated["keys"][1]["retired_at"].is_string());

    // Into a folder that does not exist yet, as in the README's `/etc/rampart/keys.json`.
    let nested = dir.path().join("etc/rampart/keys.json");
    let (code, out, err) = run(
        &[],
        &["keys", "generate", "--out", nested.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("created") && out.contains("mode 0700"),
        "{out}"
    );
    assert!(nested.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let folder = nested.parent().unwrap();
        let mode = std::fs::metadata(folder).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}

#[test]
fn weak_hs256_secrets_are_refused_and_keys_generate_makes_a_strong_one() {
    let dir = tempfile::tempdir().unwrap();
    for weak in [
        "0123456789abcdef0123456789abcdef",
        "passwordpasswordpasswordpassword1234567890",
    ] {
        let (code, out, err) = run(
            &[
                ("RAMPART_ENV", "production"),
                ("RAMPART_TOKEN_ALG", "HS256"),
                ("RAMPART_JWT_SECRET", weak),
            ],
            &["serve"],
        );
        assert_eq!(code, Some(1), "{weak}: {err}");
        assert!(err.contains("RAMPART_JWT_SECRET"), "{err}");
        assert!(!out.contains("listening on"), "{weak}: it started anyway");
        assert!(!err.contains(weak), "the secret itself is never printed");
    }

    let secret = dir.path().join("hs256.secret");
    let secret = secret.to_str().unwrap();
    let (code, out, err) = run(&[], &["keys", "generate", "--hs256", "--out", secret]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("RAMPART_JWT_SECRET_FILE"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let written = std::fs::read_to_string(secret).unwrap();
    assert_eq!(written.len(), 86, "64 bytes, base64url without padding");
    let (code, _, err) = run(&[], &["keys", "generate", "--hs256", "--out", secret]);
    assert_eq!(code, Some(1));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(secret).unwrap(), written);

    let (code, out, err) = run(
        &[
            ("RAMPART_ENV", "production"),
            ("RAMPART_TOKEN_ALG", "HS256"),
            ("RAMPART_JWT_SECRET_FILE", secret),
        ],
        &["check"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains(&written), "the secret is never printed");
}

/// A supervisor waits for `listening on`: a node whose metrics port is taken must not print
/// it and then exit.
#[test]
fn a_taken_metrics_port_fails_the_start_before_anything_is_announced() {
    let data = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let output = command(&data, &[("RAMPART_METRICS_BIND", &port)])
        .arg("serve")
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(!output.status.success(), "{out}{err}");
    assert!(!out.contains("listening on"), "{out}");
    assert!(err.contains("RAMPART_METRICS_BIND"), "{err}");
}

/// `rampart hash-params` measures and prints a setting that parses, meets OWASP's minimum
/// and fits the budget; a budget nothing fits is exit 2, with the reason.
#[test]
fn hash_params_prints_the_strongest_setting_that_fits_the_budget() {
    let data = tempfile::tempdir().unwrap();
    let output = command(&data, &[])
        .args(["hash-params", "--budget", "80ms"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("strongest within the budget:"))
        .unwrap_or_else(|| panic!("{out}"));
    let setting = line
        .split("RAMPART_PASSWORD_HASH=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    let params: rampart::settings::HashParams = setting.parse().unwrap();
    assert!(params.meets_owasp_minimum(), "{setting}");
    let measured: f64 = line
        .split('(')
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.trim().parse().ok())
        .unwrap();
    assert!(measured <= 80.0, "{line}");
    assert!(
        out.contains("now: RAMPART_PASSWORD_HASH=argon2id:m=19456,t=2,p=1"),
        "{out}"
    );

    let output = command(&data, &[])
        .args(["hash-params", "--budget", "1ms"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not even OWASP's minimum"));
    for bad in ["0ms", "fast", "2h"] {
        let output = command(&data, &[])
            .args(["hash-params", "--budget", bad])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
    }
}

#[test]
fn migrate_creates_the_database() {
    let data = tempfile::tempdir().unwrap();
    let output = command(&data, &[]).arg("migrate").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(data.path().join("rampart.db").exists());
    #[cfg(unix)]
    for file in ["rampart.db", "rampart.db-wal", "rampart.db-shm"] {
        use std::os::unix::fs::PermissionsExt;
        // SQLite removes -wal/-shm when the last connection closes cleanly; check what is left.
        let Ok(meta) = std::fs::metadata(data.path().join(file)) else {
            assert_ne!(file, "rampart.db", "the database file must exist");
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} must be readable by its owner only");
    }
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&[], &["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("rampart "), "{out}");
    for sub in [
        &["serve", "--help"][..],
        &["migrate", "--help"],
        &["check", "--help"],
        &["keys", "generate", "--help"],
    ] {
        let (code, out, _) = run(&[], sub);
        assert_eq!(code, Some(0), "{sub:?}");
        assert!(out.contains("Usage:"), "{sub:?}: {out}");
    }
}

/// A supervisor may stop the server the moment it says it is listening; that SIGTERM must
/// drain it like any other, not kill it by the signal's default action.
#[test]
fn a_sigterm_right_after_listening_on_is_a_clean_stop() {
    for _ in 0..3 {
        let server = Binary::start(&[]);
        let (status, stderr) = server.terminate(Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "exit {status:?}: {stderr}"
        );
        assert!(stderr.contains("shutting down"), "{stderr}");
    }
}

#[test]
fn serves_with_generated_dev_keys_and_stops_on_sigterm() {
    let server = Binary::start(&[]);
    let keys = server.data.path().join("keys.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "generated development keys must be private");
    }
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let addr = server.addr;
    let started = Instant::now();
    let (status, stderr) = server.terminate(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after exit"
    );
}

#[test]
fn real_server_drops_slowloris() {
    let server = Binary::start(&[("RAMPART_HEADER_TIMEOUT", "1s")]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET /health HTTP/1.1\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'))
        .take(50)
    {
        if stream.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "slow client still connected after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn logs_hold_no_bodies_tokens_or_query_strings() {
    let server = Binary::start(&[("RAMPART_LOG_FORMAT", "json")]);
    let secret_requests = [
        "POST /v1/auth/login?password=QUERY-SECRET-1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer TOKEN-SECRET-2\r\nContent-Type: application/json\r\nContent-Length: 39\r\nConnection: close\r\n\r\n{\"username\":\"a\",\"password\":\"BODY-SEC3\"}",
        "GET /health?token=QUERY-SECRET-4 HTTP/1.1\r\nHost: t\r\nCookie: session=COOKIE-SECRET-5\r\nConnection: close\r\n\r\n",
        // A registration whose password must not reach the log either.
        "POST /v1/auth/register HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 87\r\nConnection: close\r\n\r\n{\"email\":\"log@example.com\",\"username\":\"logger\",\"password\":\"REGISTER-SEC7 tandem bells\"}",
        // A malformed body that the login route reads and refuses (400).
        "POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 40\r\nConnection: close\r\n\r\n{\"username\":\"a\",\"password\":\"BROKEN-SEC6\"",
    ];
    for raw in secret_requests {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 "), "{response}");
    }
    let (_, logs) = server.terminate(Duration::from_secs(10));
    assert!(
        logs.contains("\"path\":\"/health\""),
        "access log missing: {logs}"
    );
    assert!(
        logs.contains("\"path\":\"/v1/auth/login\",\"status\":400"),
        "the malformed login body must have been read and refused: {logs}"
    );
    assert!(
        logs.contains("\"path\":\"/v1/auth/register\",\"status\":201"),
        "the registration must have succeeded: {logs}"
    );
    for secret in [
        "REGISTER-SEC7",
        "BROKEN-SEC6",
        "QUERY-SECRET-1",
        "TOKEN-SECRET-2",
        "BODY-SEC3",
        "QUERY-SECRET-4",
        "COOKIE-SECRET-5",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into logs: {logs}");
    }
}

#[test]
fn each_security_event_log_line_witnesses_its_audit_row() {
    let server = Binary::start(&[("RAMPART_LOG_FORMAT", "json")]);
    for _ in 0..2 {
        let response = raw_login(server.addr, "nobody", "not a password at all");
        assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    }
    let (_, logs, data) = server.terminate_keeping_data(Duration::from_secs(10));
    let witnesses: Vec<String> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == "security event")
        .map(|line| {
            format!(
                "{}:{}",
                line["seq"],
                line["seal"].as_str().expect("a seal on every event line")
            )
        })
        .collect();
    assert_eq!(witnesses.len(), 2, "one line per failed login: {logs}");
    let mut args = vec!["audit-log", "verify"];
    for witness in &witnesses {
        args.extend(["--witness", witness]);
    }
    let output = command(&data, &[]).args(&args).output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("holds the 2 witnessed row(s)"), "{out}");
}

#[test]
fn metrics_are_served_on_their_own_listener_and_name_no_one() {
    let server = Binary::start(&[("RAMPART_METRICS_BIND", "127.0.0.1:0")]);
    let metrics = server.metrics.expect("announced after the listening line");
    assert_ne!(metrics, server.addr);
    let body = serde_json::json!({
        "email": "metered@example.com",
        "username": "metered-user",
        "password": "quartz lanterns hum beneath cold rivers",
    })
    .to_string();
    let registered = raw_request(
        server.addr,
        "POST /v1/auth/register HTTP/1.1\r\nContent-Type: application/json",
        &body,
    );
    assert!(registered.starts_with("HTTP/1.1 201"), "{registered}");
    let ok = raw_login(
        server.addr,
        "metered-user",
        "quartz lanterns hum beneath cold rivers",
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let wrong = raw_login(server.addr, "metered-user", "not the right passphrase");
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let unknown = raw_login(
        server.addr,
        "nobody-by-this-name",
        "not the right passphrase",
    );
    assert!(unknown.starts_with("HTTP/1.1 401"), "{unknown}");
    // Past the auth limit (10 a minute per address): refused, and counted by policy.
    let mut throttled = 0;
    for _ in 0..10 {
        if raw_login(server.addr, "nobody-by-this-name", "x").starts_with("HTTP/1.1 429") {
            throttled += 1;
        }
    }
    assert!(throttled > 0);
    let probe = raw_request(server.addr, "GET /v1/items/secret-item-id-42 HTTP/1.1", "");
    assert!(probe.starts_with("HTTP/1.1 401"), "{probe}");
    // Not on the public listener; nothing but /metrics on its own.
    let public = raw_request(server.addr, "GET /metrics HTTP/1.1", "");
    assert!(public.starts_with("HTTP/1.1 401"), "{public}");
    let other = raw_request(metrics, "GET /debug HTTP/1.1", "");
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");

    let scraped = raw_request(metrics, "GET /metrics HTTP/1.1", "");
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    assert!(
        scraped.contains("content-type: text/plain; version=0.0.4"),
        "{scraped}"
    );
    for expected in [
        r#"rampart_logins_total{outcome="success"} 1"#,
        r#"rampart_logins_total{outcome="wrong_password"} 1"#,
        r#"rampart_logins_total{outcome="unknown_user"}"#,
        r#"rampart_rate_limited_total{policy="auth"}"#,
        r#"rampart_http_requests_total{route="/v1/auth/register",method="POST",status="2xx"} 1"#,
        r#"rampart_http_requests_total{route="/v1/auth/login",method="POST",status="4xx"}"#,
        r#"rampart_http_requests_total{route="/v1/items/{id}",method="GET",status="4xx"} 1"#,
        r#"rampart_http_request_duration_seconds_bucket{route="/v1/auth/login",method="POST",le="0.005"}"#,
        "rampart_password_hash_queue 0",
        "rampart_password_hash_running 0",
        "rampart_password_hash_shed_total 0",
        "rampart_revoked_sessions 0",
        r#"rampart_db_pool_connections{state="idle"}"#,
        "rampart_db_pool_max_connections 8",
    ] {
        assert!(scraped.contains(expected), "{expected} missing: {scraped}");
    }
    for personal in [
        "metered",
        "example.com",
        "nobody-by-this-name",
        "secret-item-id-42",
        "127.0.0.1",
    ] {
        assert!(
            !scraped.contains(personal),
            "{personal} in the metrics: {scraped}"
        );
    }
}

/// Runs `rampart ARGS` on `data` with `stdin` piped in; returns the finished output.
fn run_with_stdin(data: &tempfile::TempDir, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = command(data, &[])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Sends one raw HTTP/1.1 request (`Connection: close` added) and returns the whole response.
fn raw_request(addr: std::net::SocketAddr, head: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    let request = format!(
        "{head}\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Logs in over a raw socket; returns the response.
fn raw_login(addr: std::net::SocketAddr, username: &str, password: &str) -> String {
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    raw_request(
        addr,
        "POST /v1/auth/login HTTP/1.1\r\nContent-Type: application/json",
        &body,
    )
}

#[test]
fn user_create_reads_the_password_from_stdin_and_makes_an_admin() {
    let data = tempfile::tempdir().unwrap();
    let passphrase = "quartz lanterns hum beneath cold rivers";
    let args = [
        "user",
        "create",
        "--email",
        "root@example.com",
        "--username",
        "root-admin",
        "--admin",
    ];
    let output = run_with_stdin(&data, &args, &format!("{passphrase}\n"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains(passphrase));

    let weak = run_with_stdin(
        &data,
        &[
            "user",
            "create",
            "--email",
            "w@example.com",
            "--username",
            "weakling",
        ],
        "password123\n",
    );
    assert_eq!(
        weak.status.code(),
        Some(1),
        "a weak password must be refused"
    );

    let server = Binary::start_in(data, &[]);
    let response = raw_login(server.addr, "root-admin", passphrase);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let token = response
        .split("\"access_token\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let me = raw_request(
        server.addr,
        &format!("GET /v1/users/me HTTP/1.1\r\nAuthorization: Bearer {token}"),
        "",
    );
    assert!(me.contains("\"role\":\"admin\""), "{me}");
}

#[test]
fn user_import_takes_fastapi_hashes_rejects_garbage_and_never_prints_hashes() {
    let data = tempfile::tempdir().unwrap();
    let bcrypt_hash = bcrypt::hash("fastapi era passphrase", 4).unwrap();
    let argon2_hash =
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo";
    let csv = format!(
        "email,username,hashed_password\n\
         old@example.com,olduser,{bcrypt_hash}\n\
         argon@example.com,argonuser,\"{argon2_hash}\"\n\
         not-an-email,baduser,{bcrypt_hash}\n\
         plain@example.com,plainuser,hunter2-PLAINTEXT\n\
         OLD@example.com,olduser2,{bcrypt_hash}\n"
    );
    let file = data.path().join("users.csv");
    std::fs::write(&file, csv).unwrap();
    let output = command(&data, &[])
        .args(["user", "import", file.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "rejected rows must fail the command: {stderr}"
    );
    assert!(
        stdout.contains("imported 2 user(s), rejected 3"),
        "{stdout}"
    );
    for line in ["line 4:", "line 5:", "line 6:"] {
        assert!(stderr.contains(line), "{line} not reported: {stderr}");
    }
    for secret in [bcrypt_hash.as_str(), argon2_hash, "hunter2-PLAINTEXT"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a hash was printed"
        );
    }

    let server = Binary::start_in(data, &[]);
    let response = raw_login(server.addr, "old@example.com", "fastapi era passphrase");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn user_import_refuses_hashes_above_the_cost_ceiling_naming_line_and_limit() {
    let data = tempfile::tempdir().unwrap();
    let salt_and_hash = "c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo";
    let jsonl = format!(
        "{{\"email\":\"ok@example.com\",\"username\":\"okuser\",\"hash\":\"$argon2id$v=19$m=65536,t=3,p=4${salt_and_hash}\"}}\n\
         {{\"email\":\"slow@example.com\",\"username\":\"slowuser\",\"hash\":\"$2b$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234\"}}\n\
         {{\"email\":\"huge@example.com\",\"username\":\"hugeuser\",\"hash\":\"$argon2id$v=19$m=2097152,t=1000,p=1${salt_and_hash}\"}}\n"
    );
    let file = data.path().join("users.jsonl");
    std::fs::write(&file, jsonl).unwrap();
    let output = command(&data, &[])
        .args(["user", "import", file.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains("imported 1 user(s), rejected 2"),
        "{stdout}"
    );
    assert!(
        stderr.contains("line 2:") && stderr.contains("bcrypt cost 31 is above the ceiling of 13"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3:") && stderr.contains("above the ceiling of 131072 KiB"),
        "{stderr}"
    );
    assert!(!stderr.contains(salt_and_hash), "hashes are never printed");
}

/// What one request of the load generator saw.
#[derive(Debug)]
enum Seen {
    /// A whole response (status line, headers, and as many body bytes as Content-Length says).
    Complete(u16),
    /// The connection was refused, or closed before a single response byte.
    Refused,
    /// Some of a response and then the connection closed: a request cut off mid-answer.
    Truncated(String),
}

/// One `Connection: close` request; what came back, judged by its own Content-Length.
fn send_once(addr: std::net::SocketAddr, request: &[u8]) -> Seen {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return Seen::Refused;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    if stream.write_all(request).is_err() {
        return Seen::Refused;
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        return Seen::Refused;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Seen::Truncated(text);
    };
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok());
    let status = head.get(9..12).and_then(|s| s.parse().ok());
    match (status, length) {
        (Some(status), Some(length)) if body.len() == length => Seen::Complete(status),
        _ => Seen::Truncated(text),
    }
}

/// Graceful degradation under load: SIGTERM while clients keep sending slow logins and health
/// checks. Every request sent before the signal gets its whole answer, connections opened after
/// it are refused, no answer is ever cut off, and the process exits well within the drain
/// timeout.
#[test]
fn sigterm_under_load_finishes_accepted_requests_and_refuses_new_ones() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let drain = Duration::from_secs(10);
    let server = Binary::start(&[
        // The access log would fill the test's stderr pipe under load.
        ("RAMPART_LOG", "warn"),
        ("RAMPART_SHUTDOWN_TIMEOUT", "10s"),
        ("RAMPART_LIMIT_GLOBAL", "1000000/second"),
        ("RAMPART_LIMIT_AUTH", "1000000/second"),
        ("RAMPART_LIMIT_LOGIN_ACCOUNT", "1000000/second"),
        ("RAMPART_LIMIT_LOGIN_IP_ACCOUNT", "1000000/second"),
    ]);
    let addr = server.addr;
    let body = r#"{"username":"nobody-here","password":"not the right password at all"}"#;
    let login = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let health = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<(Instant, Instant, Seen)>::new()));
    let workers: Vec<_> = [&login, &login, &login, &health, &health]
        .into_iter()
        .map(|request| {
            let (request, stop, seen) = (request.clone(), Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let outcome = send_once(addr, request.as_bytes());
                    let refused = matches!(outcome, Seen::Refused);
                    seen.lock().unwrap().push((sent, Instant::now(), outcome));
                    if refused {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    let signalled = Instant::now();
    let (status, stderr) = server.terminate(drain + Duration::from_secs(5));
    let exited_after = signalled.elapsed();
    // Keep the clients knocking a while after the exit, so "refused" is observed, not assumed.
    std::thread::sleep(
        (Instant::now().max(signalled + Duration::from_millis(300)) + Duration::from_millis(400))
            .saturating_duration_since(Instant::now()),
    );
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }

    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}: {stderr}"
    );
    assert!(exited_after < drain, "took {exited_after:?} to exit");
    let seen = seen.lock().unwrap();
    let before: Vec<_> = seen
        .iter()
        .filter(|(sent, _, _)| *sent + Duration::from_millis(100) < signalled)
        .collect();
    assert!(
        before.len() > 10,
        "too little load before the signal: {}",
        before.len()
    );
    for (_, _, outcome) in &before {
        assert!(
            matches!(outcome, Seen::Complete(200 | 401 | 429 | 503)),
            "a request sent before the signal was not answered: {outcome:?}"
        );
    }
    let in_flight = before
        .iter()
        .filter(|(_, done, _)| *done > signalled)
        .count();
    let drained = seen
        .iter()
        .filter(|(sent, done, o)| {
            *sent < signalled && *done > signalled && matches!(o, Seen::Complete(_))
        })
        .count();
    assert!(
        drained >= 1,
        "no request was in flight at the signal, so nothing was drained ({in_flight} sent early)"
    );
    let late: Vec<_> = seen
        .iter()
        .filter(|(sent, _, _)| *sent > signalled + Duration::from_millis(300))
        .collect();
    assert!(
        !late.is_empty(),
        "the clients stopped before the listener closed"
    );
    for (_, _, outcome) in &late {
        assert!(
            matches!(outcome, Seen::Refused),
            "a connection opened after the signal was served: {outcome:?}"
        );
    }
    for (_, _, outcome) in seen.iter() {
        if let Seen::Truncated(partial) = outcome {
            panic!("an answer was cut off: {partial:?}");
        }
    }
}

#[test]
fn audit_command_prints_the_report_and_sets_the_exit_code() {
    let server = Binary::start(&[]);
    let target = server.url("/");
    // Development serves its docs: low findings, so --fail-on low fails and medium passes.
    let (code, out, err) = run(
        &[],
        &[
            "audit",
            &target,
            "--format",
            "sarif",
            "--fail-on",
            "low",
            "--quiet",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    let sarif: serde_json::Value = serde_json::from_str(&out).expect("SARIF on stdout");
    assert_eq!(sarif["version"], "2.1.0");
    let (code, out, err) = run(
        &[],
        &["audit", &target, "--format", "json", "--fail-on", "medium"],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(report["authenticated"], false);
    assert!(
        err.contains("GET /openapi.json -> 200"),
        "every request is printed: {err}"
    );

    let (code, _, err) = run(&[], &["audit", "http://127.0.0.1:9", "--quiet"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot reach"), "{err}");
    let (code, _, err) = run(&[], &["audit", "ftp://example.com"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("http:// or https://"), "{err}");
}
