//! The security posture of a configuration: every choice that would be unsafe in production,
//! listed with the setting that causes it.
//!
//! The items here judge the HTTP, token, limit, hashing and logging settings; [`stores`] judges
//! where the database and Redis are and how the server reaches them.
//!
//! Defends against shipping a development configuration: in production any failing item refuses
//! start-up (fail closed), and `rampart check` prints the same list so an operator sees it before
//! deploying. Items are judged by production's rules whatever the environment, so a developer
//! running `check` learns what production would refuse.

use std::fmt::{self, Write as _};
use std::time::Duration;

use secrecy::ExposeSecret;

use rampart::settings::{format_duration, CorsOrigins, HashParams, LogFormat};

use crate::config::{KeysSource, Settings};

mod stores;

/// How production treats an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Pass,
    /// Allowed, but worth a look.
    Warn,
    /// Production refuses to start.
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Warn => "WARN",
            Self::Fail => "FAIL",
        })
    }
}

/// One line of the posture report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub setting: &'static str,
    pub verdict: Verdict,
    pub message: String,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Posture {
    pub items: Vec<Item>,
}

/// The longest access-token lifetime production accepts.
pub const MAX_ACCESS_TTL: Duration = Duration::from_secs(60 * 60);

impl Posture {
    pub fn assess(settings: &Settings) -> Self {
        let mut items = Vec::new();
        let mut add = |setting, verdict, message: String| {
            items.push(Item {
                setting,
                verdict,
                message,
            });
        };

        add(
            "RAMPART_ENV",
            if settings.env.is_production() {
                Verdict::Pass
            } else {
                Verdict::Warn
            },
            if settings.env.is_production() {
                "production: failing items refuse start-up".into()
            } else {
                "development: failing items are only logged; set production to fail closed".into()
            },
        );

        match (settings.docs, settings.docs_explicit) {
            (false, _) => add("RAMPART_DOCS", Verdict::Pass, "docs are not served".into()),
            // API.md: production serves docs only when explicitly enabled; allowed, but flagged.
            (true, true) => add(
                "RAMPART_DOCS",
                Verdict::Warn,
                "explicitly enabled: /docs and /openapi.json publish the API surface".into(),
            ),
            (true, false) => add(
                "RAMPART_DOCS",
                Verdict::Warn,
                "on by the development default; off in production unless set".into(),
            ),
        }

        match settings.metrics_bind {
            None => add(
                "RAMPART_METRICS_BIND",
                Verdict::Pass,
                "metrics are off".into(),
            ),
            Some(addr) if addr.ip().is_loopback() || is_private(addr.ip()) => add(
                "RAMPART_METRICS_BIND",
                Verdict::Pass,
                format!("metrics on {addr}"),
            ),
            Some(addr) => add(
                "RAMPART_METRICS_BIND",
                Verdict::Warn,
                format!(
                    "metrics on {addr}, which may be reachable from anywhere: they show traffic \
                     and login activity; serve them on a private interface or behind a firewall"
                ),
            ),
        }

        let (verdict, said) = match &settings.mail.transport {
            Some(crate::config::MailTransport::Smtp(_)) => (Verdict::Pass, "sent by SMTP"),
            Some(_) => (Verdict::Warn, "a development outbox; production needs SMTP"),
            None => (
                Verdict::Warn,
                "off: password reset and email verification answer 503",
            ),
        };
        add(
            "RAMPART_MAIL",
            verdict,
            format!("{said} ({})", settings.mail.describe()),
        );

        match &settings.cors.origins {
            CorsOrigins::None => add(
                "RAMPART_CORS_ORIGINS",
                Verdict::Pass,
                "no cross-origin access".into(),
            ),
            CorsOrigins::Any if settings.cors.credentials => add(
                "RAMPART_CORS_ORIGINS",
                Verdict::Fail,
                "`*` with credentials lets any site act as the user".into(),
            ),
            CorsOrigins::Any => add(
                "RAMPART_CORS_ORIGINS",
                Verdict::Warn,
                "`*`: any site may read responses; list the exact origins".into(),
            ),
            CorsOrigins::List(origins) => {
                let insecure: Vec<&str> = origins
                    .iter()
                    .filter_map(|o| o.to_str().ok())
                    .filter(|o| o.starts_with("http://"))
                    .collect();
                if insecure.is_empty() {
                    add(
                        "RAMPART_CORS_ORIGINS",
                        Verdict::Pass,
                        format!("{} exact origin(s)", origins.len()),
                    );
                } else {
                    add(
                        "RAMPART_CORS_ORIGINS",
                        Verdict::Warn,
                        format!("plain-http origin(s) allowed: {}", insecure.join(", ")),
                    );
                }
            }
        }

        if settings.password_hash.meets_owasp_minimum() {
            add(
                "RAMPART_PASSWORD_HASH",
                Verdict::Pass,
                settings.password_hash.to_string(),
            );
        } else {
            add(
                "RAMPART_PASSWORD_HASH",
                Verdict::Fail,
                format!(
                    "{} is weaker than the minimum {}",
                    settings.password_hash,
                    HashParams::OWASP_MINIMUM
                ),
            );
        }

        if settings.access_ttl > MAX_ACCESS_TTL {
            add(
                "RAMPART_ACCESS_TTL",
                Verdict::Fail,
                format!(
                    "{} exceeds the 60m maximum for access tokens",
                    format_duration(settings.access_ttl)
                ),
            );
        } else {
            add(
                "RAMPART_ACCESS_TTL",
                Verdict::Pass,
                format_duration(settings.access_ttl),
            );
        }

        if settings.refresh_grace > Duration::from_secs(60) {
            add(
                "RAMPART_REFRESH_GRACE",
                Verdict::Fail,
                format!(
                    "{} lets a stolen refresh token be replayed for too long (max 60s)",
                    format_duration(settings.refresh_grace)
                ),
            );
        } else {
            add(
                "RAMPART_REFRESH_GRACE",
                Verdict::Pass,
                format_duration(settings.refresh_grace),
            );
        }

        if settings.tokens.algorithm == crate::config::TokenAlgorithm::Hs256 {
            let judged = settings
                .tokens
                .hs256_secret
                .as_ref()
                .map_or(Err(rampart::keys::strength::Weak::NotEncoded), |secret| {
                    rampart::keys::strength::judge_hs256_secret(secret.expose_secret())
                });
            match judged {
                Err(weak) => add(
                    "RAMPART_JWT_SECRET",
                    Verdict::Fail,
                    format!(
                        "not a key: {weak}. A token signed with a guessable secret can be \
                         brute-forced offline, then forged; the secret must be hex or base64 of \
                         at least {} random bytes: `rampart keys generate --hs256 --out PATH` \
                         makes one (then set RAMPART_JWT_SECRET_FILE to it), as does `openssl \
                         rand -base64 48`",
                        rampart::keys::strength::MIN_SECRET_BYTES
                    ),
                ),
                Ok(key) => add(
                    "RAMPART_JWT_SECRET",
                    Verdict::Pass,
                    format!("{} random bytes ({})", key.bytes, key.encoding),
                ),
            }
            add(
                "RAMPART_TOKEN_ALG",
                Verdict::Warn,
                "HS256: every service that can verify tokens can also mint them; prefer EdDSA"
                    .into(),
            );
        } else {
            let (verdict, message) = keys_item(&settings.keys);
            add("RAMPART_KEYS_FILE", verdict, message);
        }

        // Judge the parsed filter, so numeric levels (`4`, `hyper=5`) count too.
        let verbose =
            tracing_subscriber::EnvFilter::try_new(&settings.log_filter).map_or(true, |f| {
                f.max_level_hint()
                    .is_none_or(|level| level > tracing::level_filters::LevelFilter::INFO)
            });
        if verbose {
            add(
                "RAMPART_LOG",
                Verdict::Fail,
                format!(
                    "`{}` enables debug logging, which may record request data",
                    settings.log_filter
                ),
            );
        } else {
            add("RAMPART_LOG", Verdict::Pass, settings.log_filter.clone());
        }
        if settings.log_format == LogFormat::Pretty && settings.env.is_production() {
            add(
                "RAMPART_LOG_FORMAT",
                Verdict::Warn,
                "pretty logs are hard to ship and search; use json".into(),
            );
        }

        let too_wide = |net: &ipnet::IpNet| match net {
            ipnet::IpNet::V4(n) => n.prefix_len() < 8,
            ipnet::IpNet::V6(n) => n.prefix_len() < 32,
        };
        if settings.trusted_proxies.iter().any(too_wide) {
            add(
                "RAMPART_TRUSTED_PROXIES",
                Verdict::Fail,
                "a network wider than /8 (IPv4) or /32 (IPv6) trusts arbitrary peers, so clients can forge their address".into(),
            );
        } else if settings.trusted_proxies.is_empty() {
            add(
                "RAMPART_TRUSTED_PROXIES",
                Verdict::Pass,
                "client address is the socket peer; forwarding headers are ignored (logged if they arrive)".into(),
            );
        } else {
            add(
                "RAMPART_TRUSTED_PROXIES",
                Verdict::Pass,
                format!(
                    "{} proxy network(s) trusted",
                    settings.trusted_proxies.len()
                ),
            );
        }

        let http = &settings.http;
        if http.body_limit > 10 * 1024 * 1024 {
            add(
                "RAMPART_BODY_LIMIT",
                Verdict::Warn,
                format!("{} bytes per request body is large", http.body_limit),
            );
        } else {
            add(
                "RAMPART_BODY_LIMIT",
                Verdict::Pass,
                format!("{} bytes", http.body_limit),
            );
        }
        // Each timeout named for itself, so the warning points at the setting to change.
        for (setting, timeout, longest) in [
            (
                "RAMPART_HEADER_TIMEOUT",
                settings.connections.header_timeout,
                60,
            ),
            ("RAMPART_BODY_TIMEOUT", http.body_timeout, 60),
            ("RAMPART_REQUEST_TIMEOUT", http.request_timeout, 300),
        ] {
            if timeout > Duration::from_secs(longest) {
                add(
                    setting,
                    Verdict::Warn,
                    format!(
                        "{} is long: slow clients hold connections (at most {longest}s advised)",
                        format_duration(timeout)
                    ),
                );
            }
        }
        for (setting, rate) in [
            ("RAMPART_LIMIT_AUTH", settings.limit_auth),
            ("RAMPART_LIMIT_LOGIN_ACCOUNT", settings.limit_login_account),
            (
                "RAMPART_LIMIT_LOGIN_IP_ACCOUNT",
                settings.limit_login_ip_account,
            ),
        ] {
            if rate.per_minute() > 60.0 {
                add(
                    setting,
                    Verdict::Warn,
                    format!("{rate} allows fast password guessing"),
                );
            } else {
                add(setting, Verdict::Pass, rate.to_string());
            }
        }
        match settings.limit_global {
            Some(rate) => add("RAMPART_LIMIT_GLOBAL", Verdict::Pass, rate.to_string()),
            None => add(
                "RAMPART_LIMIT_GLOBAL",
                Verdict::Warn,
                "off: no per-client limit; only safe behind a gateway that limits clients".into(),
            ),
        }
        items.extend(stores::items(settings));
        Self { items }
    }

    /// The items production would refuse to start with.
    pub fn failures(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| i.verdict == Verdict::Fail)
    }

    pub fn is_safe_for_production(&self) -> bool {
        self.failures().next().is_none()
    }

    /// A fixed-width table for terminals.
    pub fn table(&self) -> String {
        let width = self
            .items
            .iter()
            .map(|i| i.setting.len())
            .max()
            .unwrap_or(0);
        let mut out = format!("{:<6} {:<width$}  {}\n", "STATUS", "SETTING", "FINDING");
        for item in &self.items {
            // `Display` of the verdict writes without padding; pad its text.
            let _ = writeln!(
                out,
                "{:<6} {:<width$}  {}",
                item.verdict.to_string(),
                item.setting,
                item.message
            );
        }
        out
    }
}

fn keys_item(keys: &KeysSource) -> (Verdict, String) {
    match keys {
        KeysSource::Missing => (
            Verdict::Fail,
            "no signing keys; create them with `rampart keys generate --out PATH`".into(),
        ),
        KeysSource::GeneratedForDevelopment(path) => (
            Verdict::Fail,
            format!(
                "development keys generated at {}; production needs its own keys file",
                path.display()
            ),
        ),
        KeysSource::File(path) => match std::fs::metadata(path) {
            Err(err) => (
                Verdict::Fail,
                format!("cannot read {}: {}", path.display(), err.kind()),
            ),
            Ok(meta) if !meta.is_file() => {
                (Verdict::Fail, format!("{} is not a file", path.display()))
            }
            Ok(meta) => {
                if let Some(mode) = loose_permissions(&meta) {
                    (
                        Verdict::Fail,
                        format!(
                            "{} is readable by others (mode {mode:o}); chmod 600 it",
                            path.display()
                        ),
                    )
                } else if let Err(err) = rampart::keys::KeySet::load(path) {
                    (Verdict::Fail, err.to_string())
                } else {
                    (Verdict::Pass, path.display().to_string())
                }
            }
        },
    }
}

#[cfg(unix)]
fn loose_permissions(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_permissions(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

/// True when the URL's host is exactly `localhost`, a loopback address or a unix socket path.
/// An address only a private network reaches (RFC 1918, IPv6 unique local).
fn is_private(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_private(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn posture(pairs: &[(&str, &str)]) -> Posture {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let settings = Settings::from_map(map).unwrap_or_else(|e| panic!("{e}"));
        Posture::assess(&settings)
    }

    fn failing(p: &Posture) -> Vec<&'static str> {
        p.failures().map(|i| i.setting).collect()
    }

    fn keys_file() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("keys.json");
        rampart::keys::KeySet::generate()
            .and_then(|k| k.write_new(&path))
            .unwrap_or_else(|e| panic!("{e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let p = path.to_string_lossy().into_owned();
        (dir, p)
    }

    /// The second outside review: a long request timeout was reported against
    /// `RAMPART_HEADER_TIMEOUT`.
    #[test]
    fn a_long_timeout_is_named_for_itself() {
        for setting in [
            "RAMPART_HEADER_TIMEOUT",
            "RAMPART_BODY_TIMEOUT",
            "RAMPART_REQUEST_TIMEOUT",
        ] {
            let p = posture(&[(setting, "1h")]);
            let warned: Vec<&str> = p
                .items
                .iter()
                .filter(|i| i.verdict == Verdict::Warn && i.setting.ends_with("_TIMEOUT"))
                .map(|i| i.setting)
                .collect();
            assert_eq!(warned, [setting]);
        }
    }

    #[test]
    fn production_with_a_keys_file_and_defaults_is_safe() {
        let (_dir, keys) = keys_file();
        let p = posture(&[("RAMPART_ENV", "production"), ("RAMPART_KEYS_FILE", &keys)]);
        assert!(p.is_safe_for_production(), "{}", p.table());
    }

    #[test]
    fn each_unsafe_choice_fails_by_name() {
        let (_dir, keys) = keys_file();
        let base = [
            ("RAMPART_ENV", "production"),
            ("RAMPART_KEYS_FILE", keys.as_str()),
        ];
        let cases: &[(&str, &str, &str)] = &[
            ("RAMPART_LOG", "4", "RAMPART_LOG"),
            ("RAMPART_LOG", "info,hyper=5", "RAMPART_LOG"),
            (
                "RAMPART_TRUSTED_PROXIES",
                "0.0.0.0/1,128.0.0.0/1",
                "RAMPART_TRUSTED_PROXIES",
            ),
            (
                "RAMPART_PASSWORD_HASH",
                "argon2id:m=4096,t=1,p=1",
                "RAMPART_PASSWORD_HASH",
            ),
            ("RAMPART_LOG", "debug", "RAMPART_LOG"),
            ("RAMPART_LOG", "info,tower_http=trace", "RAMPART_LOG"),
            (
                "RAMPART_TRUSTED_PROXIES",
                "0.0.0.0/0",
                "RAMPART_TRUSTED_PROXIES",
            ),
            ("RAMPART_REFRESH_GRACE", "5m", "RAMPART_REFRESH_GRACE"),
        ];
        for (name, value, expected) in cases {
            let mut pairs = base.to_vec();
            pairs.push((name, value));
            assert_eq!(failing(&posture(&pairs)), vec![*expected], "{name}={value}");
        }
    }

    #[test]
    fn missing_or_world_readable_keys_fail() {
        let p = posture(&[("RAMPART_ENV", "production")]);
        assert_eq!(failing(&p), vec!["RAMPART_KEYS_FILE"]);
        let p = posture(&[
            ("RAMPART_ENV", "production"),
            ("RAMPART_KEYS_FILE", "/nonexistent/keys.json"),
        ]);
        assert_eq!(failing(&p), vec!["RAMPART_KEYS_FILE"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let (_dir, keys) = keys_file();
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("{e}"));
            let p = posture(&[("RAMPART_ENV", "production"), ("RAMPART_KEYS_FILE", &keys)]);
            assert_eq!(failing(&p), vec!["RAMPART_KEYS_FILE"]);
        }
    }

    #[test]
    fn development_defaults_would_not_pass_production() {
        let p = posture(&[]);
        assert_eq!(failing(&p), vec!["RAMPART_KEYS_FILE"]);
        assert!(p.table().starts_with("STATUS"));
    }

    #[test]
    fn keys_file_content_is_checked_not_just_its_mode() {
        let (dir, keys) = keys_file();
        assert!(
            posture(&[("RAMPART_ENV", "production"), ("RAMPART_KEYS_FILE", &keys)])
                .is_safe_for_production()
        );
        let empty = dir.path().join("empty.json");
        std::fs::write(&empty, "{}").unwrap_or_else(|e| panic!("{e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let p = posture(&[
            ("RAMPART_ENV", "production"),
            ("RAMPART_KEYS_FILE", empty.to_str().unwrap_or_default()),
        ]);
        assert_eq!(failing(&p), vec!["RAMPART_KEYS_FILE"]);
    }

    #[test]
    fn explicit_docs_are_allowed_with_a_warning() {
        let (_dir, keys) = keys_file();
        let p = posture(&[
            ("RAMPART_ENV", "production"),
            ("RAMPART_KEYS_FILE", &keys),
            ("RAMPART_DOCS", "true"),
        ]);
        assert!(p.is_safe_for_production());
        assert!(p
            .items
            .iter()
            .any(|i| i.setting == "RAMPART_DOCS" && i.verdict == Verdict::Warn));
    }

    #[test]
    fn hs256_secrets_that_are_not_random_keys_fail() {
        use secrecy::ExposeSecret as _;
        let hs256 = |secret: &str| {
            posture(&[
                ("RAMPART_ENV", "production"),
                ("RAMPART_TOKEN_ALG", "HS256"),
                ("RAMPART_JWT_SECRET", secret),
            ])
        };
        for weak in [
            "changeme-changeme-changeme-12345",
            // The security review's: both were judged safe by a distinct-bytes count.
            "0123456789abcdef0123456789abcdef",
            "passwordpasswordpasswordpassword1234567890",
            // Random, but only 192 bits.
            "q8ZL0v3x9TbY2mW5rNcJ7hK1sPdG4fEa",
        ] {
            let p = hs256(weak);
            assert_eq!(failing(&p), vec!["RAMPART_JWT_SECRET"], "{weak}");
            let item = p.items.iter().find(|i| i.setting == "RAMPART_JWT_SECRET");
            assert!(item.is_some_and(|i| i.message.contains("keys generate --hs256")));
        }
        let generated = rampart::keys::generate_hs256_secret().unwrap();
        let p = hs256(generated.expose_secret());
        assert!(p.is_safe_for_production(), "{}", p.table());
        assert!(!p.table().contains(generated.expose_secret()));
        // `openssl rand -hex 32`: exactly 256 random bits, which an estimate alone refused.
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        let hex = bytes.iter().fold(String::new(), |mut hex, b| {
            let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
            hex
        });
        let p = hs256(&hex);
        assert!(p.is_safe_for_production(), "{}", p.table());
        assert!(p.table().contains("32 random bytes (hex)"), "{}", p.table());
    }

    #[test]
    fn metrics_reachable_from_anywhere_are_flagged() {
        let verdict = |bind: &str| {
            posture(&[("RAMPART_METRICS_BIND", bind)])
                .items
                .into_iter()
                .find(|i| i.setting == "RAMPART_METRICS_BIND")
                .map(|i| i.verdict)
        };
        assert_eq!(verdict("127.0.0.1:9090"), Some(Verdict::Pass));
        assert_eq!(verdict("10.1.2.3:9090"), Some(Verdict::Pass));
        assert_eq!(verdict("0.0.0.0:9090"), Some(Verdict::Warn));
        assert_eq!(verdict("[::]:9090"), Some(Verdict::Warn));
    }

    #[test]
    fn the_table_lines_up_under_its_header() {
        let table = posture(&[]).table();
        let mut lines = table.lines();
        let header = lines.next().unwrap_or_default();
        let column = header.find("SETTING").unwrap_or(usize::MAX);
        for line in lines {
            assert_eq!(line.find("RAMPART_"), Some(column), "{line}");
        }
    }

    #[test]
    fn report_never_prints_secrets() {
        let p = posture(&[
            ("RAMPART_TOKEN_ALG", "HS256"),
            ("RAMPART_JWT_SECRET", "s3cretpw-s3cretpw-s3cretpw-s3cretpw"),
        ]);
        assert!(!p.table().contains("s3cretpw"));
    }
}
