//! Reading the settings' sources: the TOML file flattened to `RAMPART_*` names, then each
//! value parsed into its type, every problem collected so one start reports them all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart::http::client_ip::ForwardedHeader;
use rampart::settings::{
    parse_bool, parse_duration, parse_networks, parse_size, whole_number, CorsOrigins,
    CorsSettings, HashParams, HttpLimits, LogFormat, Rate,
};
use secrecy::SecretString;

use super::{
    Connections, Environment, KeysSource, Settings, SettingsError, StoreFailure, TokenAlgorithm,
    TokenSettings, PREFIX,
};

/// The shortest `RAMPART_REQUEST_TIMEOUT` accepted (see where it is read).
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the TOML file into `NAME -> value` pairs; nested tables are not part of the format.
pub(super) fn read_toml(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read `{}`: {}", path.display(), err.kind()))?;
    let table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
        format!("`{}` is not valid TOML: {}", path.display(), err.message())
    })?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        toml::Value::String(s) => Ok(s),
                        _ => Err(format!("`{key}`: lists may only hold strings")),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                _ => {
                    return Err(format!(
                        "`{key}`: expected a string, number, boolean or list of strings"
                    ))
                }
            };
            Ok((key.to_ascii_uppercase(), text))
        })
        .collect()
}

/// Collects every problem instead of stopping at the first, so one start-up shows them all.
#[derive(Default)]
pub(super) struct Reader {
    pub(super) raw: BTreeMap<String, String>,
    pub(super) problems: Vec<(String, String)>,
}

impl Reader {
    pub(super) fn fail(&mut self, setting: &str, message: String) {
        self.problems.push((setting.to_owned(), message));
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.raw.get(name).map(String::as_str)
    }

    /// Parses `name` when set, else uses `default`; records a problem and returns the default
    /// on a bad value so reading can go on.
    pub(super) fn parse<T: Clone>(
        &mut self,
        name: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        let Some(raw) = self.raw.get(name).cloned() else {
            return default;
        };
        match parse(&raw) {
            Ok(v) => v,
            Err(message) => {
                self.fail(&format!("{PREFIX}{name}"), message);
                default
            }
        }
    }

    pub(super) fn build(mut self) -> Result<Settings, SettingsError> {
        let env = self.parse("ENV", Environment::Development, |s| match s.trim() {
            "development" => Ok(Environment::Development),
            "production" => Ok(Environment::Production),
            other => Err(format!(
                "`{other}` is not an environment; use development or production"
            )),
        });
        let production = env.is_production();
        let bind = self.parse("BIND", SocketAddr::from(([127, 0, 0, 1], 8080)), |s| {
            s.trim()
                .parse()
                .map_err(|_| format!("`{s}` is not an address like 127.0.0.1:8080"))
        });
        let metrics_bind = self.parse("METRICS_BIND", None, |s| {
            s.trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("`{s}` is not an address like 127.0.0.1:9090"))
        });
        if metrics_bind.is_some_and(|metrics: SocketAddr| metrics == bind && bind.port() != 0) {
            self.fail(
                "RAMPART_METRICS_BIND",
                "is RAMPART_BIND: metrics are never served on the public listener; give them \
                 an address of their own (a private interface or 127.0.0.1)"
                    .into(),
            );
        }
        let data_dir = PathBuf::from(self.get("DATA_DIR").unwrap_or("data"));
        let default_db = format!("sqlite://{}/rampart.db", data_dir.display());
        let database_url = self.parse("DATABASE_URL", default_db, |s| {
            let s = s.trim();
            if s.starts_with("sqlite:")
                || s.starts_with("postgres://")
                || s.starts_with("postgresql://")
            {
                Ok(s.to_owned())
            } else {
                Err("must start with sqlite: or postgres://".into())
            }
        });
        let redis_url = self.parse("REDIS_URL", None, |s| {
            let s = s.trim();
            if s.starts_with("redis://") || s.starts_with("rediss://") {
                Ok(Some(s.to_owned()))
            } else {
                Err("must start with redis:// or rediss://".into())
            }
        });
        let audit_anchor = match self.get("AUDIT_ANCHOR").map(str::trim) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => {
                if !database_url.starts_with("sqlite:") {
                    self.fail(
                        "RAMPART_AUDIT_ANCHOR",
                        "required with PostgreSQL: a file outside the database (one per node) \
                         that holds the audit chain's head, so removed rows are noticed"
                            .into(),
                    );
                }
                data_dir.join("audit-anchor")
            }
        };
        let redis_ca_file = self
            .get("REDIS_CA_FILE")
            .map(str::trim)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        if redis_ca_file.is_some()
            && !redis_url
                .as_deref()
                .is_some_and(|u| u.starts_with("rediss://"))
        {
            self.fail(
                "RAMPART_REDIS_CA_FILE",
                "is only used with a rediss:// RAMPART_REDIS_URL".into(),
            );
        }
        let keys = match self.get("KEYS_FILE") {
            Some(path) if !path.trim().is_empty() => KeysSource::File(PathBuf::from(path.trim())),
            _ if production => KeysSource::Missing,
            _ => KeysSource::GeneratedForDevelopment(data_dir.join("keys.json")),
        };
        let origins = self.parse("CORS_ORIGINS", CorsOrigins::None, str::parse);
        let credentials = self.parse("CORS_CREDENTIALS", false, parse_bool);
        if credentials && origins == CorsOrigins::Any {
            // Browsers refuse this combination and it would expose every user's data to every
            // site if they did not; refuse it in every environment.
            self.fail(
                "RAMPART_CORS_ORIGINS",
                "`*` cannot be used with RAMPART_CORS_CREDENTIALS=true; list the exact origins"
                    .into(),
            );
        }
        let trusted_proxies = self.parse("TRUSTED_PROXIES", Vec::new(), parse_networks);
        let forwarded_header = self.parse(
            "FORWARDED_HEADER",
            ForwardedHeader::XForwardedFor,
            |s| match s.trim().to_ascii_lowercase().as_str() {
                "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
                "forwarded" => Ok(ForwardedHeader::Forwarded),
                other => Err(format!("`{other}` is not x-forwarded-for or forwarded")),
            },
        );
        let docs_explicit = self.get("DOCS").is_some();
        let docs = self.parse("DOCS", !production, parse_bool);
        let limit_global = self.parse("LIMIT_GLOBAL", Some(Rate::fixed(300, 60)), |s| {
            if s.trim() == "off" {
                Ok(None)
            } else {
                s.parse().map(Some)
            }
        });
        let limit_auth = self.parse("LIMIT_AUTH", Rate::fixed(10, 60), str::parse);
        let limit_store_failure = self.parse("LIMIT_STORE_FAILURE", StoreFailure::FailOpen, |s| {
            match s.trim() {
                "fail_open" => Ok(StoreFailure::FailOpen),
                "fail_closed" => Ok(StoreFailure::FailClosed),
                _ => Err("must be fail_open or fail_closed".into()),
            }
        });
        let redis_namespace = self.parse("REDIS_NAMESPACE", "rampart".to_owned(), |s| {
            let s = s.trim();
            let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
            if !s.is_empty() && s.len() <= 64 && s.chars().all(allowed) {
                Ok(s.to_owned())
            } else {
                Err("must be 1 to 64 of [A-Za-z0-9._-]".into())
            }
        });
        let revocation_bound =
            self.parse("REVOCATION_BOUND", Duration::from_secs(10), parse_duration);
        if revocation_bound < Duration::from_secs(1) || revocation_bound > Duration::from_secs(300)
        {
            self.fail(
                "RAMPART_REVOCATION_BOUND",
                "must be between 1s and 5m".into(),
            );
        }
        let limit_login_account =
            self.parse("LIMIT_LOGIN_ACCOUNT", Rate::fixed(20, 60), str::parse);
        let limit_login_ip_account =
            self.parse("LIMIT_LOGIN_IP_ACCOUNT", Rate::fixed(10, 60), str::parse);
        let password_hash = self.parse("PASSWORD_HASH", HashParams::OWASP_MINIMUM, str::parse);
        let access_ttl = self.parse("ACCESS_TTL", Duration::from_secs(15 * 60), parse_duration);
        let refresh_ttl = self.parse(
            "REFRESH_TTL",
            Duration::from_secs(14 * 86_400),
            parse_duration,
        );
        let refresh_grace = self.parse("REFRESH_GRACE", Duration::from_secs(10), parse_duration);
        let session_max_age = self.parse(
            "SESSION_MAX_AGE",
            Duration::from_secs(90 * 86_400),
            parse_duration,
        );
        if session_max_age < access_ttl {
            self.fail(
                "RAMPART_SESSION_MAX_AGE",
                "must be at least RAMPART_ACCESS_TTL".into(),
            );
        }
        if access_ttl.is_zero() || access_ttl > crate::posture::MAX_ACCESS_TTL {
            // API contract: never more than 60 minutes, in any environment.
            self.fail("RAMPART_ACCESS_TTL", "must be between 1s and 60m".into());
        }
        if refresh_ttl <= access_ttl {
            self.fail(
                "RAMPART_REFRESH_TTL",
                "must be longer than RAMPART_ACCESS_TTL".into(),
            );
        }
        let log_filter = self.get("LOG").unwrap_or("info").trim().to_owned();
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            self.fail(
                "RAMPART_LOG",
                format!("`{log_filter}` is not a log filter like info or rampart=debug"),
            );
        }
        let default_format = if production {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        };
        let log_format = self.parse("LOG_FORMAT", default_format, |s| match s.trim() {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("`{other}` is not a log format; use pretty or json")),
        });
        let positive = |s: &str| -> Result<usize, String> {
            whole_number::<usize>(s.trim())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`{s}` is not a whole number above zero"))
        };
        let nonzero_duration = |s: &str| {
            parse_duration(s).and_then(|d| {
                if d.is_zero() {
                    Err("must be longer than zero".into())
                } else {
                    Ok(d)
                }
            })
        };
        let defaults = HttpLimits::default();
        let http = HttpLimits {
            body_limit: self.parse("BODY_LIMIT", defaults.body_limit, parse_size),
            // Longer than a store call may take (its deadline is 6 s), so a request waiting on
            // a locked database gets the store's 503, with its transaction rolled back, rather
            // than a 408 that the transaction then outlives.
            request_timeout: self.parse("REQUEST_TIMEOUT", defaults.request_timeout, |s| {
                parse_duration(s).and_then(|d| {
                    if d >= MIN_REQUEST_TIMEOUT {
                        Ok(d)
                    } else {
                        Err(format!(
                            "must be at least {}s, longer than a database call may take",
                            MIN_REQUEST_TIMEOUT.as_secs()
                        ))
                    }
                })
            }),
            body_timeout: self.parse("BODY_TIMEOUT", defaults.body_timeout, nonzero_duration),
            max_in_flight: self.parse("MAX_IN_FLIGHT", defaults.max_in_flight, positive),
            json_max_depth: self.parse("JSON_MAX_DEPTH", defaults.json_max_depth, positive),
        };

        let serve = rampart::server::ServeOptions::default();
        let connections = Connections {
            header_timeout: self.parse(
                "HEADER_TIMEOUT",
                serve.header_read_timeout,
                nonzero_duration,
            ),
            shutdown_timeout: self.parse("SHUTDOWN_TIMEOUT", serve.drain_timeout, parse_duration),
            max_connections: self.parse("MAX_CONNECTIONS", serve.max_connections, |s| {
                positive(s).and_then(|n| {
                    if n <= 1_000_000 {
                        Ok(n)
                    } else {
                        Err("must be at most 1000000".into())
                    }
                })
            }),
            max_connections_per_ip: self.parse(
                "MAX_CONNECTIONS_PER_IP",
                serve.max_connections_per_ip,
                positive,
            ),
        };

        let algorithm = self.parse("TOKEN_ALG", TokenAlgorithm::EdDsa, |s| match s.trim() {
            "EdDSA" => Ok(TokenAlgorithm::EdDsa),
            "HS256" => Ok(TokenAlgorithm::Hs256),
            other => Err(format!("`{other}` is not supported; use EdDSA or HS256")),
        });
        let name_like = |s: &str| {
            let s = s.trim();
            if !s.is_empty() && s.len() <= 256 && s.chars().all(|c| c.is_ascii_graphic()) {
                Ok(s.to_owned())
            } else {
                Err(format!("`{s}` must be 1 to 256 visible ASCII characters"))
            }
        };
        let issuer = self.parse("TOKEN_ISSUER", "rampart".to_owned(), name_like);
        let audience = self.parse("TOKEN_AUDIENCE", "rampart".to_owned(), name_like);
        let hs256_secret = self.get("JWT_SECRET").map(str::to_owned);
        match (algorithm, &hs256_secret) {
            (TokenAlgorithm::Hs256, None) => self.fail(
                "RAMPART_JWT_SECRET",
                "required with RAMPART_TOKEN_ALG=HS256; `rampart keys generate --hs256 --out PATH` \
                 makes one for RAMPART_JWT_SECRET_FILE"
                    .into(),
            ),
            (TokenAlgorithm::Hs256, Some(secret)) if secret.len() < 32 => self.fail(
                "RAMPART_JWT_SECRET",
                "must be at least 32 bytes (production asks for 256 bits of entropy); \
                 `rampart keys generate --hs256 --out PATH` makes one"
                    .into(),
            ),
            (TokenAlgorithm::EdDsa, Some(_)) => self.fail(
                "RAMPART_JWT_SECRET",
                "is only used with RAMPART_TOKEN_ALG=HS256; remove it".into(),
            ),
            _ => {}
        }
        let tokens = TokenSettings {
            algorithm,
            issuer,
            audience,
            hs256_secret: hs256_secret.map(SecretString::from),
        };

        let mail = super::mail::read(&mut self, production);
        let account_page = self.parse("ACCOUNT_PAGE", true, parse_bool);

        if !self.problems.is_empty() {
            return Err(SettingsError {
                problems: self.problems,
            });
        }
        Ok(Settings {
            env,
            bind,
            metrics_bind,
            data_dir,
            database_url: SecretString::from(database_url),
            redis_url: redis_url.map(SecretString::from),
            redis_ca_file,
            audit_anchor,
            redis_namespace,
            revocation_bound,
            keys,
            cors: CorsSettings {
                origins,
                credentials,
            },
            trusted_proxies,
            forwarded_header,
            docs,
            docs_explicit,
            limit_global,
            limit_auth,
            limit_login_account,
            limit_login_ip_account,
            limit_store_failure,
            password_hash,
            access_ttl,
            refresh_ttl,
            refresh_grace,
            session_max_age,
            log_filter,
            log_format,
            http,
            connections,
            tokens,
            mail,
            account_page,
        })
    }
}
