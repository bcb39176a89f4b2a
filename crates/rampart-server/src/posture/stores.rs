//! The posture items of the server's stores: where its database and Redis are, and whether the
//! way there is encrypted and authenticated.
//!
//! Defends against password and token hashes, revocations and rate-limit counters crossing a
//! network in the clear, and against a check that can be talked past: the URL is parsed by the
//! driver's own options type (`PgConnectOptions`, redis' `ConnectionInfo`), so what is judged
//! is the host and TLS mode the driver will really use: the last of repeated parameters, a
//! `host=` parameter over the URL's host, the `PG*` environment variables it falls back on.
//! A substring match would pass `?sslmode=require&sslmode=disable` or
//! `?application_name=nosslmode=require`.

use std::net::IpAddr;
use std::str::FromStr;

use super::{Item, Verdict};
use crate::config::Settings;
use redis::ConnectionAddr;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// The database's item, and Redis' when one is configured.
pub(super) fn items(settings: &Settings) -> Vec<Item> {
    let mut items = vec![database(settings)];
    if let Some(url) = &settings.redis_url {
        items.push(redis(url.expose_secret()));
    }
    items
}

fn item(setting: &'static str, verdict: Verdict, message: String) -> Item {
    Item {
        setting,
        verdict,
        message,
    }
}

/// Where a PostgreSQL URL really leads, as sqlx reads it.
fn database(settings: &Settings) -> Item {
    const SETTING: &str = "RAMPART_DATABASE_URL";
    let url = settings.database_url.expose_secret();
    if url.starts_with("sqlite:") {
        return item(SETTING, Verdict::Pass, settings.database_url_redacted());
    }
    // sqlx's message could quote the URL, password and all: it is not shown.
    let Ok(options) = PgConnectOptions::from_str(url) else {
        return item(
            SETTING,
            Verdict::Fail,
            "not a PostgreSQL URL the driver can read".into(),
        );
    };
    let local = options.get_socket().is_some() || is_loopback(options.get_host());
    let host = options.get_host();
    let mode = options.get_ssl_mode();
    let (verdict, message) = match (local, mode) {
        (false, PgSslMode::VerifyFull) => (
            Verdict::Pass,
            format!("{host}: TLS, certificate and host name verified"),
        ),
        (false, PgSslMode::VerifyCa) => (
            Verdict::Pass,
            format!("{host}: TLS, certificate verified against the CA (host name not checked)"),
        ),
        (false, PgSslMode::Require) => (
            Verdict::Warn,
            format!(
                "{host}: encrypted, but the server's certificate is not verified, so an active \
                 attacker on the path can read it; use sslmode=verify-full"
            ),
        ),
        (false, mode) => (
            Verdict::Fail,
            format!(
                "{host} is remote and TLS is not required (sslmode={}): password and token \
                 hashes could cross the network in the clear (a `prefer` connection falls back \
                 to plain text when anyone on the path refuses TLS); use sslmode=verify-full",
                mode_name(mode)
            ),
        ),
        (true, _) if settings.redis_url.is_none() => (
            Verdict::Warn,
            "PostgreSQL without RAMPART_REDIS_URL: several nodes would each limit on their \
             own, and revocations reach other nodes by polling (within \
             RAMPART_REVOCATION_BOUND), not at once"
                .into(),
        ),
        (true, _) => (Verdict::Pass, settings.database_url_redacted()),
    };
    // A remote database judged safe still needs Redis for several nodes to act as one.
    if verdict == Verdict::Pass && !local && settings.redis_url.is_none() {
        return item(
            SETTING,
            Verdict::Warn,
            format!("{message}; but without RAMPART_REDIS_URL nodes limit on their own and learn of revocations by polling"),
        );
    }
    item(SETTING, verdict, message)
}

fn mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// Where a Redis URL really leads, as the redis crate reads it.
fn redis(url: &str) -> Item {
    const SETTING: &str = "RAMPART_REDIS_URL";
    let Ok(client) = redis::Client::open(url) else {
        return item(
            SETTING,
            Verdict::Fail,
            "not a Redis URL the driver can read".into(),
        );
    };
    let (verdict, message) = match client.get_connection_info().addr() {
        ConnectionAddr::Unix(_) => (Verdict::Pass, "a local socket".to_owned()),
        ConnectionAddr::Tcp(host, _) if is_loopback(host) => {
            (Verdict::Pass, crate::config::redact_url(url))
        }
        ConnectionAddr::Tcp(host, _) => (
            Verdict::Fail,
            format!(
                "{host} is remote and the connection is plain text: its password, the \
                 revocation broadcast and the rate-limit counters could be read or changed on \
                 the path; use rediss://"
            ),
        ),
        ConnectionAddr::TcpTls { insecure: true, .. } => (
            Verdict::Fail,
            "TLS without certificate verification; remove #insecure".into(),
        ),
        ConnectionAddr::TcpTls { host, .. } => {
            (Verdict::Pass, format!("{host}: TLS, certificate verified"))
        }
        // The enum is non-exhaustive: an address kind this check does not know is not passed.
        _ => (
            Verdict::Fail,
            "a kind of Redis address this check cannot judge".into(),
        ),
    };
    item(SETTING, verdict, message)
}

/// `localhost`, a loopback address (brackets around IPv6 allowed), or a socket directory (the
/// driver's default host where a local server's socket exists).
fn is_loopback(host: &str) -> bool {
    if host.starts_with('/') {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let mut map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        map.insert(
            "RAMPART_AUDIT_ANCHOR".into(),
            "/var/lib/rampart/anchor".into(),
        );
        Settings::from_map(map).unwrap_or_else(|e| panic!("{e}"))
    }

    fn verdict(pairs: &[(&str, &str)], setting: &str) -> (Verdict, String) {
        let posture = super::super::Posture::assess(&settings(pairs));
        let found = posture.items.iter().find(|i| i.setting == setting);
        found.map_or((Verdict::Pass, String::new()), |i| {
            (i.verdict, i.message.clone())
        })
    }

    #[test]
    fn the_reviews_url_tricks_are_judged_as_the_driver_reads_them() {
        let redis = ("RAMPART_REDIS_URL", "rediss://cache.internal:6380");
        for tricked in [
            // The URL's host is local, the effective one is not.
            "postgres://app:pw@localhost/db?host=db.internal&sslmode=prefer",
            "postgres://app:pw@localhost/db?host=db.internal",
            // The last sslmode wins.
            "postgres://app:pw@db.internal/db?sslmode=require&sslmode=disable",
            // Not an sslmode parameter at all.
            "postgres://app:pw@db.internal/db?application_name=nosslmode=require",
            "postgres://app:pw@db.internal/db",
            "postgres://app:pw@10.0.0.5:5432/db?sslmode=allow",
        ] {
            let (verdict, message) = verdict(
                &[("RAMPART_DATABASE_URL", tricked), redis],
                "RAMPART_DATABASE_URL",
            );
            assert_eq!(verdict, Verdict::Fail, "{tricked}: {message}");
            assert!(!message.contains("pw"), "{message}");
        }
        for (safe, expected) in [
            (
                "postgres://app:pw@db.internal/db?sslmode=verify-full",
                Verdict::Pass,
            ),
            (
                "postgres://app:pw@db.internal/db?sslmode=verify-ca",
                Verdict::Pass,
            ),
            (
                "postgres://app:pw@db.internal/db?sslmode=require",
                Verdict::Warn,
            ),
            ("postgres://app:pw@localhost/db", Verdict::Pass),
            (
                "postgres://app:pw@127.0.0.1:5432/db?sslmode=disable",
                Verdict::Pass,
            ),
            ("postgres://app:pw@[::1]/db", Verdict::Pass),
            ("postgres://app@%2Fvar%2Frun%2Fpostgresql/db", Verdict::Pass),
        ] {
            let (verdict, message) = verdict(
                &[("RAMPART_DATABASE_URL", safe), redis],
                "RAMPART_DATABASE_URL",
            );
            assert_eq!(verdict, expected, "{safe}: {message}");
        }
    }

    #[test]
    fn remote_redis_must_use_tls() {
        for (url, expected) in [
            ("redis://cache.internal:6379", Verdict::Fail),
            ("redis://:pw@10.1.2.3", Verdict::Fail),
            ("rediss://cache.internal:6380", Verdict::Pass),
            ("redis://127.0.0.1:6379", Verdict::Pass),
            ("redis://localhost", Verdict::Pass),
        ] {
            let (verdict, message) = verdict(&[("RAMPART_REDIS_URL", url)], "RAMPART_REDIS_URL");
            assert_eq!(verdict, expected, "{url}: {message}");
            assert!(!message.contains("pw"), "{message}");
        }
    }

    #[test]
    fn local_means_exactly_local() {
        for local in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "localhost.attacker.example",
            "127.evil.example",
            "10.0.0.5",
            "",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
