//! The server's settings, read once at start-up from the environment and an optional TOML file.
//! The layers take typed values ([`rampart::settings`]); which variables exist, where they come
//! from and what an unknown one means is decided here, for this server alone.
//!
//! Defends against configuration mistakes becoming vulnerabilities: every value is parsed into
//! a type (a typo'd duration or an unknown variable is an error, not a silent default), secrets
//! live in [`secrecy`] types so they never reach a `Debug` print or a log line, and any secret
//! may come from a file (`X_FILE`) so it need not sit in the process environment.
//!
//! Precedence: environment over file over default. An unknown `RAMPART_*` variable or TOML key is
//! refused, because a misspelt `RAMPART_DOC=false` must not leave the docs on in production.

mod mail;
mod reader;

pub use mail::{MailSettings, MailTransport};

use reader::{read_toml, Reader};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart::http::client_ip::ForwardedHeader;
use rampart::http::Hardening;
use rampart::settings::{CorsSettings, HashParams, HttpLimits, LogFormat, Rate};
use secrecy::{ExposeSecret, SecretString};

const PREFIX: &str = "RAMPART_";

/// Every setting rampart reads, without the `RAMPART_` prefix. The TOML file uses the same names
/// in lower case (`access_ttl = "15m"`).
pub const KNOWN_SETTINGS: &[&str] = &[
    "ENV",
    "BIND",
    "METRICS_BIND",
    "DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_CA_FILE",
    "REDIS_NAMESPACE",
    "REVOCATION_BOUND",
    "AUDIT_ANCHOR",
    "KEYS_FILE",
    "CORS_ORIGINS",
    "CORS_CREDENTIALS",
    "TRUSTED_PROXIES",
    "FORWARDED_HEADER",
    "DOCS",
    "LIMIT_GLOBAL",
    "LIMIT_AUTH",
    "LIMIT_LOGIN_ACCOUNT",
    "LIMIT_LOGIN_IP_ACCOUNT",
    "LIMIT_STORE_FAILURE",
    "PASSWORD_HASH",
    "ACCESS_TTL",
    "REFRESH_TTL",
    "REFRESH_GRACE",
    "SESSION_MAX_AGE",
    "LOG",
    "LOG_FORMAT",
    "BODY_LIMIT",
    "REQUEST_TIMEOUT",
    "HEADER_TIMEOUT",
    "BODY_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "MAX_IN_FLIGHT",
    "JSON_MAX_DEPTH",
    "TOKEN_ALG",
    "TOKEN_ISSUER",
    "TOKEN_AUDIENCE",
    "JWT_SECRET",
    "MAIL",
    "MAIL_FROM",
    "PUBLIC_URL",
    "REQUIRE_VERIFIED_EMAIL",
    "ACCOUNT_PAGE",
];

/// Settings that carry credentials and so may also be given as `X_FILE`.
pub const SECRET_SETTINGS: &[&str] = &["DATABASE_URL", "REDIS_URL", "JWT_SECRET", "MAIL"];

/// Variables that are read but are not settings themselves.
/// Environment variables that are not server settings: the config file's name, and the
/// credentials `rampart audit` reads (a CI job exports them beside a server's own settings).
const META_VARIABLES: &[&str] = &[
    "CONFIG",
    "AUDIT_USERNAME",
    "AUDIT_PASSWORD",
    "AUDIT_TOKEN",
    "AUDIT_USERNAME2",
    "AUDIT_PASSWORD2",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Development => "development",
            Self::Production => "production",
        })
    }
}

/// Where the token signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysSource {
    /// `RAMPART_KEYS_FILE`: must exist; never created.
    File(PathBuf),
    /// Development without a keys file: generated on first start under the data directory.
    GeneratedForDevelopment(PathBuf),
    /// Production without a keys file: refused by the posture check.
    Missing,
}

/// How access tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlgorithm {
    /// Ed25519 keys from the keys file; public keys at `/.well-known/jwks.json`.
    EdDsa,
    /// A shared secret (`RAMPART_JWT_SECRET`, at least 32 bytes).
    Hs256,
}

/// Access-token settings.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub algorithm: TokenAlgorithm,
    pub issuer: String,
    pub audience: String,
    /// Only with [`TokenAlgorithm::Hs256`].
    pub hs256_secret: Option<SecretString>,
}

/// The effective configuration. Built only by [`Settings::from_env`] or [`Settings::from_map`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub env: Environment,
    pub bind: SocketAddr,
    /// Where Prometheus metrics are served (`GET /metrics`), on a listener of their own; off
    /// when unset. Never the public listener's address.
    pub metrics_bind: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    pub redis_url: Option<SecretString>,
    /// PEM certificates that a `rediss://` server's certificate must chain to, instead of the
    /// system's trust store.
    pub redis_ca_file: Option<PathBuf>,
    /// Prefix of every Redis key and channel, so deployments can share one Redis.
    pub redis_namespace: String,
    /// With a shared database: the longest a node accepts tokens without having confirmed the
    /// revocations and account locks made by other nodes (it answers 503 past it).
    pub revocation_bound: Duration,
    /// The file outside the database that holds the audit chain's head.
    pub audit_anchor: PathBuf,
    pub keys: KeysSource,
    pub cors: CorsSettings,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The one forwarding header the trusted proxies write.
    pub forwarded_header: ForwardedHeader,
    pub docs: bool,
    /// `RAMPART_DOCS` was set rather than defaulted (production then allows it, with a warning).
    pub docs_explicit: bool,
    /// Per client on every route; `None` when set to `off` (a limiting gateway in front).
    pub limit_global: Option<Rate>,
    /// Per address on login, registration and refresh.
    pub limit_auth: Rate,
    /// Logins for one account name, from every address together.
    pub limit_login_account: Rate,
    /// Logins for one account name from one address: holds when `limit_auth` is raised for
    /// addresses many people share.
    pub limit_login_ip_account: Rate,
    /// What the per-client limit does when a shared limit store cannot answer. Credential
    /// routes always fail closed.
    pub limit_store_failure: StoreFailure,
    pub password_hash: HashParams,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub refresh_grace: Duration,
    /// Absolute end of a session, however often it is refreshed.
    pub session_max_age: Duration,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub http: HttpLimits,
    pub connections: Connections,
    pub tokens: TokenSettings,
    /// Messages (reset and verification links) and the address their links point at.
    pub mail: MailSettings,
    /// Serve the self-service page at `/account`.
    pub account_page: bool,
}

/// The connection loop's limits (see [`rampart::server::ServeOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connections {
    /// Time to receive a request head, and to wait idle for the next one.
    pub header_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
    pub max_connections: usize,
    /// Open connections from one peer address (trusted proxies are exempt).
    pub max_connections_per_ip: usize,
}

/// What a limit does when its shared store (Redis) cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    /// Let the request through (availability first; the in-flight cap still bounds load).
    FailOpen,
    /// Refuse with 503 until the store answers again.
    FailClosed,
}

/// Every problem found while reading settings, each naming its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for (setting, message) in &self.problems {
            writeln!(f, "  {setting}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SettingsError {}

impl Settings {
    /// Reads the process environment and, when `RAMPART_CONFIG` names one, a TOML file.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_map(
            std::env::vars()
                .filter(|(k, _)| k.starts_with(PREFIX))
                .collect(),
        )
    }

    /// Builds settings from `RAMPART_*` pairs (as the environment would hold them). Tests use
    /// this directly, so no test has to mutate the process environment.
    pub fn from_map(vars: HashMap<String, String>) -> Result<Self, SettingsError> {
        let mut reader = Reader::default();
        let mut raw: BTreeMap<String, String> = BTreeMap::new();

        if let Some(path) = vars.get("RAMPART_CONFIG") {
            match read_toml(Path::new(path)) {
                Ok(file_values) => raw.extend(file_values),
                Err(message) => reader.fail("RAMPART_CONFIG", message),
            }
        }
        let from_env: Vec<(String, String)> = vars
            .into_iter()
            .map(|(key, value)| (key.strip_prefix(PREFIX).unwrap_or(&key).to_owned(), value))
            .filter(|(name, _)| !META_VARIABLES.contains(&name.as_str()))
            .collect();
        for (name, _) in &from_env {
            // The environment wins over the file for a secret, however either one gives it;
            // both forms in the environment itself stay an error (below).
            let counterpart = match name.strip_suffix("_FILE") {
                Some(base) if SECRET_SETTINGS.contains(&base) => base.to_owned(),
                _ if SECRET_SETTINGS.contains(&name.as_str()) => format!("{name}_FILE"),
                _ => continue,
            };
            if !from_env.iter().any(|(other, _)| *other == counterpart) {
                raw.remove(&counterpart);
            }
        }
        raw.extend(from_env);
        for name in raw.keys() {
            let base = name
                .strip_suffix("_FILE")
                .filter(|b| SECRET_SETTINGS.contains(b));
            if !KNOWN_SETTINGS.contains(&name.as_str()) && base.is_none() {
                reader.fail(
                    &format!("{PREFIX}{name}"),
                    "unknown setting (check the spelling against the configuration table)".into(),
                );
            }
        }
        for secret in SECRET_SETTINGS {
            if let Some(path) = raw.remove(&format!("{secret}_FILE")) {
                if raw.contains_key(*secret) {
                    reader.fail(
                        &format!("{PREFIX}{secret}"),
                        format!("set either {PREFIX}{secret} or {PREFIX}{secret}_FILE, not both"),
                    );
                    continue;
                }
                match std::fs::read_to_string(&path) {
                    Ok(contents) => {
                        raw.insert((*secret).to_owned(), contents.trim_end().to_owned());
                    }
                    Err(err) => reader.fail(
                        &format!("{PREFIX}{secret}_FILE"),
                        format!("cannot read `{path}`: {}", err.kind()),
                    ),
                }
            }
        }
        reader.raw = raw;
        reader.build()
    }

    /// The database URL with any password replaced, safe to print.
    pub fn database_url_redacted(&self) -> String {
        redact_url(self.database_url.expose_secret())
    }

    /// The HTTP stack these settings describe (metrics are added by the app).
    pub fn hardening(&self) -> Hardening {
        Hardening {
            limits: self.http,
            cors: self.cors.clone(),
            trusted_proxies: self.trusted_proxies.clone(),
            forwarded_header: self.forwarded_header,
            metrics: None,
            preflight_limit: None,
            json_log: None,
        }
    }
}

/// Replaces credentials in a connection URL with `***`: the password in
/// `scheme://user:password@host`, and `password=` / `sslpassword=` query parameters.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.to_ascii_lowercase().contains("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart::settings::CorsOrigins;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn problem_names(err: &SettingsError) -> Vec<&str> {
        err.problems.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The outside review's finding: at a 2 s request timeout a write waiting on a locked
    /// database was answered 408 and committed seconds later.
    #[test]
    fn the_request_timeout_outlasts_a_database_call() {
        let refused = settings(&[("RAMPART_REQUEST_TIMEOUT", "2s")]);
        let problems = refused.err().map(|e| e.problems).unwrap_or_default();
        assert!(
            problems
                .iter()
                .any(|(name, message)| name == "RAMPART_REQUEST_TIMEOUT"
                    && message.contains("at least 10s")),
            "{problems:?}"
        );
        let accepted = settings(&[("RAMPART_REQUEST_TIMEOUT", "10s")]);
        assert_eq!(
            accepted.map(|s| s.http.request_timeout).ok(),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.env, Environment::Development);
        assert_eq!(s.bind, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(s.database_url.expose_secret(), "sqlite://data/rampart.db");
        assert_eq!(s.access_ttl, Duration::from_secs(900));
        assert_eq!(s.refresh_ttl, Duration::from_secs(14 * 86_400));
        assert_eq!(s.refresh_grace, Duration::from_secs(10));
        assert_eq!(
            s.limit_global.map(|r| r.to_string()).as_deref(),
            Some("300/minute")
        );
        assert_eq!(s.limit_login_account.to_string(), "20/minute");
        assert_eq!(s.limit_login_ip_account.to_string(), "10/minute");
        assert_eq!(s.http.max_in_flight, 1024);
        assert_eq!(s.limit_auth.to_string(), "10/minute");
        assert_eq!(s.password_hash, HashParams::OWASP_MINIMUM);
        assert_eq!(s.cors.origins, CorsOrigins::None);
        assert!(s.docs);
        assert_eq!(s.log_format, LogFormat::Pretty);
        assert_eq!(s.http.body_limit, 1024 * 1024);
        assert_eq!(
            s.keys,
            KeysSource::GeneratedForDevelopment(PathBuf::from("data/keys.json"))
        );
    }

    #[test]
    fn production_flips_docs_logs_and_keys() {
        let s = settings(&[("RAMPART_ENV", "production")]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.docs);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.keys, KeysSource::Missing);
    }

    #[test]
    fn every_bad_value_is_reported_by_name() {
        let err = settings(&[
            ("RAMPART_BIND", "localhost"),
            ("RAMPART_ACCESS_TTL", "15"),
            ("RAMPART_DOCS", "yes"),
            ("RAMPART_DOC", "false"),
        ])
        .err()
        .unwrap_or_else(|| SettingsError { problems: vec![] });
        let names = problem_names(&err);
        for expected in [
            "RAMPART_BIND",
            "RAMPART_ACCESS_TTL",
            "RAMPART_DOCS",
            "RAMPART_DOC",
        ] {
            assert!(names.contains(&expected), "{expected} not reported: {err}");
        }
    }

    #[test]
    fn the_auditors_credentials_in_the_environment_are_not_unknown_settings() {
        let s = settings(&[
            ("RAMPART_AUDIT_USERNAME", "ci-bot"),
            ("RAMPART_AUDIT_PASSWORD", "from the CI secret store"),
            ("RAMPART_AUDIT_TOKEN", "eyJ..."),
        ]);
        assert!(s.is_ok(), "{:?}", s.err());
        // A misspelt server setting under the same prefix is still caught.
        let err = settings(&[("RAMPART_AUDIT_ANCOR", "/var/lib/anchor")])
            .err()
            .unwrap_or_else(|| SettingsError { problems: vec![] });
        assert_eq!(problem_names(&err), vec!["RAMPART_AUDIT_ANCOR"]);
    }

    #[test]
    fn postgres_needs_an_audit_anchor_outside_the_database() {
        let url = ("RAMPART_DATABASE_URL", "postgres://app@db.internal/app");
        let err = settings(&[url])
            .err()
            .unwrap_or_else(|| SettingsError { problems: vec![] });
        assert_eq!(problem_names(&err), vec!["RAMPART_AUDIT_ANCHOR"]);
        let s = settings(&[url, ("RAMPART_AUDIT_ANCHOR", "/var/lib/rampart/anchor")]);
        assert!(s.is_ok());
        let sqlite = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(sqlite.audit_anchor.ends_with("audit-anchor"));
    }

    #[test]
    fn wildcard_cors_with_credentials_is_refused_everywhere() {
        let err = settings(&[
            ("RAMPART_CORS_ORIGINS", "*"),
            ("RAMPART_CORS_CREDENTIALS", "true"),
        ])
        .err()
        .unwrap_or_else(|| SettingsError { problems: vec![] });
        assert_eq!(problem_names(&err), vec!["RAMPART_CORS_ORIGINS"]);
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db");
        std::fs::write(&path, "postgres://app:hunter2hunter2@db.internal/app\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let s = settings(&[
            (
                "RAMPART_DATABASE_URL_FILE",
                path.to_str().unwrap_or_default(),
            ),
            ("RAMPART_AUDIT_ANCHOR", "/var/lib/rampart/audit-anchor"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.database_url.expose_secret(),
            "postgres://app:hunter2hunter2@db.internal/app"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            s.database_url_redacted(),
            "postgres://app:***@db.internal/app"
        );

        let both = settings(&[
            ("RAMPART_DATABASE_URL", "sqlite://x.db"),
            (
                "RAMPART_DATABASE_URL_FILE",
                path.to_str().unwrap_or_default(),
            ),
        ]);
        assert!(both.is_err());
        let missing = settings(&[("RAMPART_REDIS_URL_FILE", "/nonexistent/rampart-secret")]);
        assert!(missing.is_err_and(|e| e
            .problems
            .iter()
            .any(|(name, _)| name == "RAMPART_REDIS_URL_FILE")));
    }

    #[test]
    fn environment_secret_wins_over_the_files_secret_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("rampart.toml");
        std::fs::write(&path, "database_url_file = \"/nonexistent/db-url\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let s = settings(&[
            ("RAMPART_CONFIG", path.to_str().unwrap_or_default()),
            ("RAMPART_DATABASE_URL", "sqlite://from-env.db"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.database_url.expose_secret(), "sqlite://from-env.db");
    }

    #[test]
    fn access_ttl_never_exceeds_an_hour_and_connections_stay_bounded() {
        assert!(settings(&[("RAMPART_ACCESS_TTL", "61m")]).is_err());
        assert!(settings(&[("RAMPART_ACCESS_TTL", "60m")]).is_ok());
        assert!(settings(&[("RAMPART_MAX_CONNECTIONS", "18446744073709551615")]).is_err());
        assert!(settings(&[("RAMPART_FORWARDED_HEADER", "forwarded")]).is_ok());
        assert!(settings(&[("RAMPART_FORWARDED_HEADER", "x-real-ip")]).is_err());
    }

    #[test]
    fn toml_file_sets_the_same_keys_and_env_wins() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("rampart.toml");
        std::fs::write(
            &path,
            "access_ttl = \"5m\"\nbind = \"127.0.0.1:9000\"\ncors_origins = [\"https://a.example\", \"https://b.example\"]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let s = settings(&[
            ("RAMPART_CONFIG", path.to_str().unwrap_or_default()),
            ("RAMPART_BIND", "127.0.0.1:9001"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.access_ttl, Duration::from_secs(300));
        assert_eq!(s.bind.port(), 9001);
        assert!(matches!(s.cors.origins, CorsOrigins::List(ref v) if v.len() == 2));

        std::fs::write(&path, "acess_ttl = \"5m\"\n").unwrap_or_else(|e| panic!("{e}"));
        let err = settings(&[("RAMPART_CONFIG", path.to_str().unwrap_or_default())]);
        assert!(err.is_err_and(|e| problem_names(&e) == vec!["RAMPART_ACESS_TTL"]));
    }

    #[test]
    fn metrics_are_off_by_default_and_never_on_the_public_listener() {
        assert_eq!(settings(&[]).map(|s| s.metrics_bind).ok(), Some(None));
        let on = settings(&[("RAMPART_METRICS_BIND", "127.0.0.1:9090")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            on.metrics_bind,
            Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
        );
        for bad in [
            &[("RAMPART_METRICS_BIND", "127.0.0.1:8080")][..],
            &[
                ("RAMPART_BIND", "0.0.0.0:9000"),
                ("RAMPART_METRICS_BIND", "0.0.0.0:9000"),
            ],
            &[("RAMPART_METRICS_BIND", "localhost")],
        ] {
            let err = settings(bad).err();
            assert!(
                err.is_some_and(|e| problem_names(&e) == vec!["RAMPART_METRICS_BIND"]),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hs256_needs_a_long_secret_and_eddsa_none() {
        let long = "k".repeat(32);
        assert!(settings(&[
            ("RAMPART_TOKEN_ALG", "HS256"),
            ("RAMPART_JWT_SECRET", &long)
        ])
        .is_ok());
        for bad in [
            &[("RAMPART_TOKEN_ALG", "HS256")][..],
            &[
                ("RAMPART_TOKEN_ALG", "HS256"),
                ("RAMPART_JWT_SECRET", "short"),
            ],
            &[("RAMPART_JWT_SECRET", long.as_str())],
            &[("RAMPART_TOKEN_ALG", "none")],
            &[("RAMPART_TOKEN_ALG", "RS256")],
        ] {
            assert!(settings(bad).is_err(), "{bad:?} accepted");
        }
        let s = settings(&[
            ("RAMPART_TOKEN_ALG", "HS256"),
            ("RAMPART_JWT_SECRET", &long),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{s:?}").contains(&long));
    }

    #[test]
    fn redaction_hides_passwords_only() {
        assert_eq!(
            redact_url("redis://:pw@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact_url("sqlite://data/rampart.db"),
            "sqlite://data/rampart.db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://db/app?user=u&password=hunter2&sslpassword=x"),
            "postgres://db/app?user=u&password=***&sslpassword=***"
        );
    }
}
