//! The mail settings: where messages go (`RAMPART_MAIL`), who they are from, the public
//! address their links point at (`RAMPART_PUBLIC_URL`), and whether sign-in waits for a
//! verified address (`RAMPART_REQUIRE_VERIFIED_EMAIL`).
//!
//! Defends against reset links that leak or point elsewhere: production refuses the `log` and
//! `file:` outboxes (a reset token in a log file is a password in a log file), SMTP without TLS
//! to another host, and links that are not `https://`; a link's base is configured, never taken
//! from a request's `Host` header (which a client chooses: the classic reset-poisoning attack).

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::reader::Reader;

/// Where messages go.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// Written to the log (development only).
    Log,
    /// One RFC 5322 `.eml` file per message in this directory (development and tests).
    File(PathBuf),
    /// An SMTP server: `smtps://` (TLS from the start) or `smtp://` (STARTTLS with
    /// `?tls=required`); credentials in the URL.
    Smtp(SecretString),
}

/// The mail settings as read.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `None`: mail is off (production without `RAMPART_MAIL`): reset and verification
    /// messages cannot be sent, and those routes answer 503.
    pub transport: Option<MailTransport>,
    pub from: String,
    /// The base of links in messages, without a trailing slash; `None` in development until
    /// the listener is bound (then `http://<the bound address>`).
    pub public_url: Option<String>,
    pub require_verified_email: bool,
}

/// Reads the mail settings, recording problems in `reader`.
pub(super) fn read(reader: &mut Reader, production: bool) -> MailSettings {
    let transport = reader.parse("MAIL", (!production).then_some(MailTransport::Log), |s| {
        parse_transport(s, production).map(Some)
    });
    let public_url = reader.parse("PUBLIC_URL", None, |s| {
        parse_public_url(s, production).map(Some)
    });
    if production && transport.is_some() && public_url.is_none() {
        reader.fail(
            "RAMPART_PUBLIC_URL",
            "is required in production when RAMPART_MAIL is set: the https:// address users \
             reach this service at, for the links in messages"
                .into(),
        );
    }
    let require_verified_email = reader.parse(
        "REQUIRE_VERIFIED_EMAIL",
        false,
        rampart::settings::parse_bool,
    );
    if require_verified_email && transport.is_none() {
        reader.fail(
            "RAMPART_REQUIRE_VERIFIED_EMAIL",
            "needs RAMPART_MAIL: nobody could verify an address, so nobody could sign in".into(),
        );
    }
    let host = public_url
        .as_deref()
        .and_then(|url: &str| url.split_once("://"))
        .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or_default().to_owned())
        .filter(|host| !host.is_empty() && !host.starts_with('['))
        .unwrap_or_else(|| "localhost".into());
    let from = reader.parse("MAIL_FROM", format!("no-reply@{host}"), |s| {
        let s = s.trim();
        crate::domain::Email::parse(s)
            .map(|_| s.to_owned())
            .map_err(|m| format!("is not an email address ({m})"))
    });
    MailSettings {
        transport,
        from,
        public_url,
        require_verified_email,
    }
}

fn parse_transport(raw: &str, production: bool) -> Result<MailTransport, String> {
    let raw = raw.trim();
    if raw == "log" {
        return if production {
            Err(
                "`log` writes reset links into the log; production needs smtp:// or smtps://"
                    .into(),
            )
        } else {
            Ok(MailTransport::Log)
        };
    }
    if let Some(dir) = raw.strip_prefix("file:") {
        if production {
            return Err(
                "`file:` leaves reset links in files; production needs smtp:// or smtps://".into(),
            );
        }
        if dir.is_empty() {
            return Err("`file:` needs a directory, as in file:data/outbox".into());
        }
        return Ok(MailTransport::File(PathBuf::from(dir)));
    }
    // Read as lettre reads it (the same `url` parser, the first `tls` pair of the query): a
    // `tls=required` in a fragment or after another `tls` value is not what lettre obeys.
    let url = url::Url::parse(raw).map_err(|_| {
        "must be log, file:DIR, smtp://HOST or smtps://HOST (a URL that parses)".to_owned()
    })?;
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or("names no host")?;
    let tls = url
        .query_pairs()
        .find(|(key, _)| key == "tls")
        .map(|(_, value)| value.into_owned());
    let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match (url.scheme(), tls.as_deref()) {
        ("smtps", None | Some("wrapper" | "required")) | ("smtp", Some("required")) => {}
        ("smtp", _) if local || !production => {}
        ("smtp" | "smtps", _) => {
            return Err(
                "sends mail without TLS to another host; use smtps:// or smtp://...?tls=required"
                    .into(),
            )
        }
        _ => return Err("must be log, file:DIR, smtp://HOST or smtps://HOST".into()),
    }
    Ok(MailTransport::Smtp(SecretString::from(raw.to_owned())))
}

fn parse_public_url(raw: &str, production: bool) -> Result<String, String> {
    let url = raw.trim().trim_end_matches('/');
    let rest = match url.split_once("://") {
        Some(("http", _)) if production => {
            return Err("must be https:// in production (links carry reset tokens)".into())
        }
        Some(("https" | "http", rest)) => rest,
        _ => return Err("must be an http:// or https:// address".into()),
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty()
        || url.contains(['?', '#', ' ', '"', '<', '>', '\\'])
        || host.contains('@')
        || !url.is_ascii()
    {
        return Err("must be a plain address like https://api.example.com".into());
    }
    Ok(url.to_owned())
}

impl MailSettings {
    /// The SMTP URL with its password replaced, for `rampart check`.
    pub fn describe(&self) -> String {
        match &self.transport {
            None => "off".into(),
            Some(MailTransport::Log) => "log".into(),
            Some(MailTransport::File(dir)) => format!("file:{}", dir.display()),
            Some(MailTransport::Smtp(url)) => {
                let url = url.expose_secret();
                match (url.split_once("://"), url.rsplit_once('@')) {
                    (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
                    _ => url.to_owned(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_outboxes_that_keep_links_and_smtp_without_tls() {
        for raw in [
            "log",
            "file:data/outbox",
            "smtp://mail.example.com",
            "ftp://x",
        ] {
            assert!(parse_transport(raw, true).is_err(), "{raw}");
        }
        for raw in [
            "smtps://user:pass@mail.example.com",
            "smtp://mail.example.com:587?tls=required",
            "smtp://localhost:25",
        ] {
            assert!(parse_transport(raw, true).is_ok(), "{raw}");
        }
        for raw in ["log", "file:out", "smtp://mail.example.com"] {
            assert!(parse_transport(raw, false).is_ok(), "{raw}");
        }
        for raw in ["", "file:", "smtp://", "smtps://user@"] {
            assert!(parse_transport(raw, false).is_err(), "{raw}");
        }
    }

    #[test]
    fn links_point_at_a_plain_configured_address() {
        assert_eq!(
            parse_public_url("https://api.example.com/", true).as_deref(),
            Ok("https://api.example.com")
        );
        assert!(parse_public_url("http://api.example.com", true).is_err());
        assert!(parse_public_url("http://127.0.0.1:8080", false).is_ok());
        for raw in [
            "api.example.com",
            "https://",
            "https://a.example?x=1",
            "https://user@evil.example",
            "javascript://x",
            "https://a.example/#",
        ] {
            assert!(parse_public_url(raw, false).is_err(), "{raw}");
        }
    }

    #[test]
    fn the_smtp_password_is_never_described() {
        let settings = MailSettings {
            transport: Some(MailTransport::Smtp(SecretString::from(
                "smtps://user:hunter2@mail.example.com:465".to_owned(),
            ))),
            from: "no-reply@example.com".into(),
            public_url: None,
            require_verified_email: false,
        };
        assert!(!settings.describe().contains("hunter2"));
    }
}
