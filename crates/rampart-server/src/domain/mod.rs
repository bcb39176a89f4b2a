//! Parsed input values: an `Email`, `Username` or `Password` exists only if it passed `parse`.
//!
//! Defends against unchecked input reaching the store or the hasher ("parse, don't validate"):
//! the fields are private and `parse` is the only constructor, so a handler cannot forget a
//! rule. Messages are written for the client and never echo the password.

use secrecy::{ExposeSecret, SecretString};

/// An email address, trimmed, with its domain in lower case. Unique ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if raw.len() > 254 {
            return Err("must be at most 254 characters");
        }
        let (local, domain) = raw
            .rsplit_once('@')
            .ok_or("must be an email address like name@example.com")?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err("must be an email address like name@example.com");
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The uniqueness key: the whole address in lower case.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A username: 3 to 32 of `A-Z a-z 0-9 _ -`. Unique ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let valid = (3..=32).contains(&raw.len())
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be 3 to 32 characters of letters, digits, _ and -")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A new password that meets the policy (NIST SP 800-63B): 12 to 128 characters of anything,
/// not a common or easily guessed password, not containing the username or the email's name.
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_CHARS: usize = 128;

impl Password {
    /// Checks the policy. `username` and `email`, when known, must not appear in it.
    pub fn parse(
        raw: SecretString,
        username: Option<&str>,
        email: Option<&str>,
    ) -> Result<Self, String> {
        let text = raw.expose_secret();
        let chars = text.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err(format!("must be at least {PASSWORD_MIN_CHARS} characters"));
        }
        if chars > PASSWORD_MAX_CHARS {
            return Err(format!("must be at most {PASSWORD_MAX_CHARS} characters"));
        }
        let lower = text.to_lowercase();
        let email_name = email.and_then(|e| e.split('@').next());
        for personal in [username, email_name].into_iter().flatten() {
            if personal.len() >= 3 && lower.contains(&personal.to_lowercase()) {
                return Err("must not contain your username or email".into());
            }
        }
        let inputs: Vec<&str> = [username, email, email_name]
            .into_iter()
            .flatten()
            .collect();
        let estimate = zxcvbn::zxcvbn(text, &inputs);
        if estimate.score() < zxcvbn::Score::Three {
            let hint = estimate
                .feedback()
                .and_then(zxcvbn::feedback::Feedback::warning)
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            return Err(format!(
                "is too common or easy to guess{hint}; use a longer phrase of unrelated words"
            ));
        }
        Ok(Self(raw))
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

/// A record id from the path (`/v1/items/{id}`), as an extractor. Every id rampart issues is a
/// UUID in its canonical form, so anything else names nothing: 404 without a database round
/// trip, and bytes a backend rejects (such as NUL) never reach a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordId(String);

impl RecordId {
    pub fn parse(raw: String) -> Option<Self> {
        Self::is_canonical(&raw).then_some(Self(raw))
    }

    /// Whether `raw` is an id in the one form rampart issues (what [`RecordId::parse`] takes).
    pub fn is_canonical(raw: &str) -> bool {
        let Ok(bytes) = <&[u8; 36]>::try_from(raw.as_bytes()) else {
            return false;
        };
        // One pass without branches over a fixed length, which the compiler unrolls: the
        // token's two ids are checked on every authenticated request.
        #[allow(clippy::needless_bitwise_bool)]
        bytes.iter().enumerate().fold(true, |all, (i, &b)| {
            let dash_here = (i == 8) | (i == 13) | (i == 18) | (i == 23);
            let hex = (b.wrapping_sub(b'0') < 10) | (b.wrapping_sub(b'a') < 6);
            all & ((dash_here & (b == b'-')) | (!dash_here & hex))
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RecordId {
    type Rejection = rampart::ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| rampart::ApiError::NotFound)?;
        Self::parse(raw).ok_or(rampart::ApiError::NotFound)
    }
}

/// An item title: 1 to 200 characters but NUL, stored and returned exactly as given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ItemTitle(String);

/// NUL (U+0000) is refused in stored text: PostgreSQL cannot store it, and C consumers of an
/// export would cut the text short at it.
const NUL_REFUSED: &str = "must not contain the NUL character (U+0000)";

impl TryFrom<String> for ItemTitle {
    type Error = &'static str;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        if raw.contains('\0') {
            return Err(NUL_REFUSED);
        }
        match raw.chars().count() {
            0 => Err("must not be empty"),
            1..=200 => Ok(Self(raw)),
            _ => Err("must be at most 200 characters"),
        }
    }
}

impl ItemTitle {
    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An item body: up to 10,000 characters but NUL, stored and returned exactly as given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ItemBody(String);

impl TryFrom<String> for ItemBody {
    type Error = &'static str;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        if raw.contains('\0') {
            return Err(NUL_REFUSED);
        }
        if raw.chars().count() > 10_000 {
            Err("must be at most 10000 characters")
        } else {
            Ok(Self(raw))
        }
    }
}

impl ItemBody {
    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_id_is_exactly_the_lowercase_hyphenated_uuid_form() {
        let good = "01a248f7-e632-7319-8109-3af1219329f6";
        assert!(RecordId::is_canonical(good));
        // Every byte at every position, against the form spelt out.
        for at in 0..good.len() {
            for b in 0..=u8::MAX {
                let mut raw = good.as_bytes().to_vec();
                raw[at] = b;
                let Ok(raw) = String::from_utf8(raw) else {
                    continue;
                };
                let expected = if matches!(at, 8 | 13 | 18 | 23) {
                    b == b'-'
                } else {
                    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
                };
                assert_eq!(RecordId::is_canonical(&raw), expected, "{raw:?}");
            }
        }
        for bad in ["", &good[1..], &format!("{good}0"), &good.to_uppercase()] {
            assert!(!RecordId::is_canonical(bad), "{bad:?}");
        }
    }

    fn password(
        raw: &str,
        username: Option<&str>,
        email: Option<&str>,
    ) -> Result<Password, String> {
        Password::parse(SecretString::from(raw.to_owned()), username, email)
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        let e = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Alice.Smith@example.com");
        assert_eq!(e.key(), "alice.smith@example.com");
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "a..b@example.com",
            "a@exa mple.com",
            "a@-example.com",
            "alice@example..com",
            "<script>@example.com",
            "a\n@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn usernames_follow_the_pattern() {
        assert_eq!(Username::parse("Alice_01-x").unwrap().key(), "alice_01-x");
        for bad in [
            "ab",
            &"a".repeat(33),
            "alice smith",
            "alice@x",
            "ålice",
            "alice\u{200b}",
            "' OR 1=1 --",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn password_policy() {
        assert!(password(
            "correct horse battery staple",
            Some("alice"),
            Some("alice@example.com")
        )
        .is_ok());
        assert!(
            password("ṡŧřöñğ pässwörd with ünïcode 🦀", None, None).is_ok(),
            "any characters are allowed"
        );
        let cases = [
            ("short1!", "at least 12"),
            (&"x".repeat(129), "at most 128"),
            ("password1234", "too common"),
            ("qwertyuiopasdf", "too common"),
            ("aliceisthebest2024!", "username"),
        ];
        for (raw, expected) in cases {
            let err = password(raw, Some("alice"), Some("alice@example.com"))
                .err()
                .unwrap_or_default();
            assert!(err.contains(expected), "{raw:?}: {err}");
        }
        // Counted in characters, not bytes.
        assert!(password(&"é".repeat(11), None, None).is_err());
    }
}
