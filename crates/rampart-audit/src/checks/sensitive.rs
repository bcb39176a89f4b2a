//! Which fields of an answer are sensitive: passwords, password hashes, other secrets, keys,
//! tokens, social security and card numbers, judged by name (and SSN-shaped values by their
//! form), with values masked for the evidence.
//!
//! Defends the report against both kinds of error: a body cut short (the answers the passive
//! checks keep stop at 4 KiB) is still read, by a lenient scan of its `"key": value` pairs
//! rather than a JSON parser that would give up; and look-alikes (`token_type`,
//! `password_changed_at`, `has_password`, masked values) are not secrets.

/// Token fields a login answer hands its caller: the operator's own, not a leak.
pub(crate) const OWN_TOKEN_KEYS: [&str; 6] = [
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "token",
    "idtoken",
    "jwt",
];

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Password,
    PasswordHash,
    Secret,
    Token,
    Key,
    Ssn,
    Card,
}

/// What a field's name says it holds; `None` for ordinary fields (`token_type`,
/// `password_changed_at`, `has_password` are not secrets).
pub(crate) fn kind_of(key: &str) -> Option<Kind> {
    let key = normal(key);
    let key = key.as_str();
    let kind = match key {
        "hash" | "passwordhash" | "hashedpassword" | "passworddigest" | "passwordhashed" => {
            Kind::PasswordHash
        }
        "passwd" | "pwd" | "passphrase" => Kind::Password,
        _ if key.ends_with("password") && !key.starts_with("has") && !key.starts_with("is") => {
            if key.contains("hash") {
                Kind::PasswordHash
            } else {
                Kind::Password
            }
        }
        "token" | "accesstoken" | "refreshtoken" | "authtoken" | "idtoken" | "sessiontoken"
        | "bearertoken" | "apitoken" | "jwt" | "sid" | "sessionid" | "sessionkey" | "sessid"
        | "phpsessid" | "jsessionid" => Kind::Token,
        "secretkey" | "secretaccesskey" | "pin" | "pincode" | "otp" | "seed" => Kind::Secret,
        _ if key.ends_with("seed")
            || key.starts_with("otp")
            || key.starts_with("totp")
            || key.ends_with("recoverycodes")
            || key.ends_with("backupcodes") =>
        {
            Kind::Secret
        }
        _ if key.ends_with("secret") && !key.starts_with("has") && !key.starts_with("is") => {
            Kind::Secret
        }
        _ if key.ends_with("apikey") || key.ends_with("privatekey") => Kind::Key,
        "ssn" | "socialsecuritynumber" => Kind::Ssn,
        "creditcard" | "creditcardnumber" | "cardnumber" | "cardno" | "ccnumber" | "cvv"
        | "cvv2" | "cvc" => Kind::Card,
        _ => return None,
    };
    Some(kind)
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::PasswordHash => "password hash",
            Self::Secret => "secret",
            Self::Token => "token",
            Self::Key => "key",
            Self::Ssn => "SSN",
            Self::Card => "card data",
        }
    }
}

/// One sensitive field found in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) key: String,
    pub(crate) kind: Kind,
    /// The first value, masked.
    pub(crate) sample: String,
    /// A password field whose value does not look like a hash.
    pub(crate) plaintext: bool,
    /// How many records carried it.
    pub(crate) count: usize,
}

impl Field {
    pub(crate) fn describe(&self) -> String {
        let plain = if self.plaintext {
            ", plaintext-looking"
        } else {
            ""
        };
        let times = if self.count > 1 {
            format!(" in {} records", self.count)
        } else {
            String::new()
        };
        format!(
            "{} ({}) = {}{plain}{times}",
            self.key,
            self.kind.label(),
            self.sample
        )
    }
}

/// Every sensitive field in a JSON body, read leniently so a body cut short (the answers kept
/// for the passive checks stop at 4 KiB) still shows its first records.
pub(crate) fn sensitive_fields(body: &str, skip_own_tokens: bool) -> Vec<Field> {
    let mut fields: Vec<Field> = Vec::new();
    for (key, value) in scalar_pairs(body) {
        let kind = match kind_of(&key) {
            Some(Kind::Token)
                if skip_own_tokens && OWN_TOKEN_KEYS.contains(&normal(&key).as_str()) =>
            {
                continue
            }
            Some(kind) => kind,
            None if looks_like_ssn(&value) => Kind::Ssn,
            None => continue,
        };
        if is_blank_or_masked(&value) {
            continue;
        }
        if let Some(field) = fields.iter_mut().find(|f| f.key == key) {
            field.count += 1;
            continue;
        }
        fields.push(Field {
            plaintext: kind == Kind::Password && !looks_like_hash(&value),
            sample: mask(&value),
            key,
            kind,
            count: 1,
        });
    }
    fields
}

pub(crate) fn normal(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Each `"key": "text"` or `"key": number` of a JSON text, in order; nested objects are walked
/// into, booleans, nulls, objects and arrays as values are not pairs. Unterminated input ends
/// the walk.
pub(crate) fn scalar_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut at = 0;
    while let Some(rel) = text.get(at..).and_then(|rest| rest.find('"')) {
        let Some((key, end)) = read_string(text, at + rel) else {
            break;
        };
        let after = skip_space(text, end);
        if !text[after..].starts_with(':') {
            at = end;
            continue;
        }
        let value_at = skip_space(text, after + 1);
        let rest = &text[value_at..];
        if rest.starts_with('"') {
            let Some((value, value_end)) = read_string(text, value_at) else {
                break;
            };
            pairs.push((key, value));
            at = value_end;
        } else if rest.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            let len = rest
                .find(|c: char| !(c.is_ascii_digit() || "-+.eE".contains(c)))
                .unwrap_or(rest.len());
            pairs.push((key, rest[..len].to_owned()));
            at = value_at + len;
        } else {
            at = value_at;
        }
    }
    pairs
}

/// The string starting with the quote at `start` (escapes kept as written) and the index after
/// its closing quote.
pub(crate) fn read_string(text: &str, start: usize) -> Option<(String, usize)> {
    let mut escaped = false;
    for (i, c) in text.get(start + 1..)?.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                let end = start + 1 + i;
                return Some((text[start + 1..end].to_owned(), end + 1));
            }
            _ => {}
        }
    }
    None
}

pub(crate) fn skip_space(text: &str, from: usize) -> usize {
    from + text
        .get(from..)
        .map_or(0, |rest| rest.len() - rest.trim_start().len())
}

pub(crate) fn is_blank_or_masked(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    lower.is_empty()
        || lower.chars().all(|c| "*•x#.".contains(c))
        || [
            "redacted",
            "[redacted]",
            "<redacted>",
            "hidden",
            "<hidden>",
            "null",
            "none",
        ]
        .contains(&lower.as_str())
}

/// A stored hash rather than a password: crypt formats, Django's, or long hex or base64.
pub(crate) fn looks_like_hash(value: &str) -> bool {
    let len = value.len();
    value.starts_with('$')
        || value.starts_with("{SSHA}")
        || value.starts_with("scrypt:")
        || [
            "pbkdf2_sha256$",
            "pbkdf2:sha256:",
            "sha256$",
            "bcrypt$",
            "argon2$",
        ]
        .iter()
        .any(|p| value.starts_with(p))
        || (len >= 32 && value.chars().all(|c| c.is_ascii_hexdigit()))
        || (len >= 40
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=_-".contains(c)))
}

/// `ddd-dd-dddd` somewhere in the value, not inside a longer run of digits and dashes.
pub(crate) fn looks_like_ssn(value: &str) -> bool {
    const SHAPE: &[u8; 11] = b"ddd-dd-dddd";
    let bytes = value.as_bytes();
    let edge = |i: Option<&u8>| i.is_none_or(|b| !(b.is_ascii_digit() || *b == b'-'));
    bytes.windows(SHAPE.len()).enumerate().any(|(i, window)| {
        window.iter().zip(SHAPE).all(|(b, s)| match s {
            b'd' => b.is_ascii_digit(),
            _ => *b == b'-',
        }) && edge(i.checked_sub(1).and_then(|j| bytes.get(j)))
            && edge(bytes.get(i + SHAPE.len()))
    })
}

/// The value with all but its first character or two hidden, and its length.
pub(crate) fn mask(value: &str) -> String {
    let len = value.chars().count();
    let shown = match len {
        0..=3 => 0,
        4..=11 => 1,
        _ => 2,
    };
    let head: String = value.chars().take(shown).collect();
    format!("\"{head}***\" ({len} chars)")
}

/// Evidence as it may be printed, written to a report file and uploaded to code scanning: the
/// run's own credentials (`own`: passwords and tokens, also where a target echoed only their
/// start) replaced by a label, and the value of every sensitive-named field masked. Defends
/// the operator against a target that reflects their token into an error page the auditor
/// quotes, and users whose records a check quotes.
pub(crate) fn redact(evidence: &str, own: &[&str]) -> String {
    // Control and invisible characters first: a credential split by a zero-width space or a
    // NUL reads whole on screen but matches nothing.
    let mut out: String = evidence
        .chars()
        .filter(|c| !c.is_control() && !crate::report::is_invisible(*c))
        .collect();
    // The same characters written as escapes inside a quoted body (`pw-ali\u200bce`).
    out = strip_escaped_invisibles(&out);
    for secret in own.iter().filter(|s| s.chars().count() >= 6) {
        // As echoed verbatim, and as APIs re-encode what they echo: JSON with escaped slashes,
        // URL and form encoding, base64 (of the token and of the whole header).
        for echoed in echoes(secret) {
            out = out.replace(&echoed, "[the run's own credential]");
        }
        // A quote cut short keeps a prefix: any run of the secret's first 16 characters or more.
        let chars: Vec<char> = secret.chars().collect();
        if chars.len() > 16 {
            let head: String = chars[..16].iter().collect();
            while let Some(at) = out.find(&head) {
                let matched = out[at..]
                    .chars()
                    .zip(chars.iter())
                    .take_while(|(a, b)| a == *b)
                    .map(|(a, _)| a.len_utf8())
                    .sum::<usize>();
                out.replace_range(at..at + matched, "[the run's own credential]");
            }
        }
    }
    out = mask_assignments(&out);
    for (key, value) in scalar_pairs(&out) {
        if kind_of(&key).is_some()
            && !is_blank_or_masked(&value)
            && !value.contains("***")
            && value.chars().count() >= 2
        {
            out = out.replace(&format!("\"{value}\""), &mask(&value));
        }
    }
    out
}

/// `text` without `\uXXXX` escapes (and `\r`, `\0`) that stand for a control or invisible
/// character: in a quoted JSON body they would split a credential as the characters do.
fn strip_escaped_invisibles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let escaped = tail
            .get(2..6)
            .filter(|_| tail.starts_with("\\u"))
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .and_then(char::from_u32)
            .filter(|c| c.is_control() || crate::report::is_invisible(*c));
        if escaped.is_some() {
            rest = &tail[6..];
        } else if tail.starts_with("\\r") || tail.starts_with("\\0") {
            rest = &tail[2..];
        } else {
            out.push('\\');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Every value assigned to a sensitive name in any notation a quoted page uses: `password='x'`,
/// `password=x&`, `<password>x</password>`, `api_key: x`, JSON inside a string
/// (`{\"password\": \"x\"}`), masked.
fn mask_assignments(text: &str) -> String {
    const BETWEEN: &[char] = &[' ', '"', '\'', '\\', ':', '=', '>'];
    const ENDS: &[char] = &[
        ' ', '"', '\'', '\\', '<', '&', ',', ';', '}', ']', ')', '\n',
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic()) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let word_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let (word, after) = rest.split_at(word_len);
        // `</password>` closes a value, it does not start one.
        let closing = out.ends_with("</");
        out.push_str(word);
        rest = after;
        if closing || kind_of(word).is_none() {
            continue;
        }
        let gap = rest
            .find(|c: char| !BETWEEN.contains(&c))
            .unwrap_or(rest.len());
        let separator = &rest[..gap];
        if gap > 8 || !separator.contains([':', '=', '>']) {
            continue;
        }
        let value_len = rest[gap..].find(ENDS).unwrap_or(rest.len() - gap);
        let value = &rest[gap..gap + value_len];
        // A backtick opens the auditor's own quoting in its evidence prose, not a value.
        if value.chars().count() < 2 || value.contains("***") || value.starts_with('`') {
            continue;
        }
        out.push_str(separator);
        out.push_str(mask(value).replacen('"', "", 2).as_str());
        rest = &rest[gap + value_len..];
    }
    out.push_str(rest);
    out
}

/// `url` with the hex digits of its `%XX` escapes in lower case.
fn lower_escapes(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut hex_left = 0;
    for c in url.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The forms a target may echo a credential in.
fn echoes(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use percent_encoding::utf8_percent_encode;
    // URL-encoded as a query or form would carry it: upper- or lower-case escapes, `+` for a
    // space.
    let url = utf8_percent_encode(secret, crate::paths::UNRESERVED).to_string();
    let url_lower = lower_escapes(&url);
    let form = url.replace("%20", "+");
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.trim_matches('"').to_owned();
    let bytes = secret.as_bytes();
    let each = |f: &dyn Fn(u8) -> String| bytes.iter().map(|b| f(*b)).collect::<String>();
    let mut forms = vec![
        each(&|b| format!("{b:02x}")),
        each(&|b| format!("{b:02X}")),
        each(&|b| format!("%{b:02X}")),
        each(&|b| format!("%{b:02x}")),
        each(&|b| format!("&#{b};")),
        each(&|b| format!("&#x{b:x};")),
        each(&|b| format!("\\u{b:04x}")),
        // Full-width forms (U+FF01..FF5E stand for the printable ASCII characters).
        secret
            .chars()
            .map(|c| match c {
                '!'..='~' => char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c),
                _ => c,
            })
            .collect(),
        secret.to_owned(),
        json.replace('/', "\\/"),
        json,
        secret.replace('/', "\\/"),
        secret.replace('"', "\\\""),
        url,
        url_lower,
        form,
    ];
    // In base64 the secret's letters depend on where it falls in the encoded text (a header
    // `Authorization: Bearer ...` quoted whole, say): the run of characters that encodes only
    // the secret, at each of the three alignments.
    if secret.len() >= 12 {
        for offset in 0..3 {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(secret.as_bytes());
            let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&padded);
            let start = if offset == 0 { 0 } else { 4 };
            let end = encoded.len().saturating_sub(4);
            if end > start + 12 {
                forms.push(encoded[start..end].to_owned());
            }
        }
    }
    forms.retain(|f| !f.is_empty());
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_secrets_are_masked_in_any_notation() {
        let quoted = r#"note: password='USERSEC-A1' {\"password\": \"USERSEC-B2\"} <password>USERSEC-C3</password> password=USERSEC-D4&next=1 api_key: USERSEC-E5 "token_type": "bearer""#;
        let out = redact(quoted, &[]);
        for secret in [
            "USERSEC-A1",
            "USERSEC-B2",
            "USERSEC-C3",
            "USERSEC-D4",
            "USERSEC-E5",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.contains("bearer"),
            "a token type is not a secret: {out}"
        );
    }

    #[test]
    fn the_runs_own_credentials_are_redacted_however_they_are_encoded() {
        let password = "pw-alice-SECRET";
        let full_width: String = password
            .chars()
            .map(|c| char::from_u32(u32::from(c) + 0xFEE0).unwrap())
            .collect();
        for echoed in [
            "70772d616c6963652d534543524554".to_owned(),
            "70772D616C6963652D534543524554".to_owned(),
            "&#112;&#119;&#45;&#97;&#108;&#105;&#99;&#101;&#45;&#83;&#69;&#67;&#82;&#69;&#84;".to_owned(),
            "%70%77%2D%61%6C%69%63%65%2D%53%45%43%52%45%54".to_owned(),
            "\\u0070\\u0077\\u002d\\u0061\\u006c\\u0069\\u0063\\u0065\\u002d\\u0053\\u0045\\u0043\\u0052\\u0045\\u0054".to_owned(),
            full_width,
            "pw-ali\u{200b}ce-SEC\u{0}RET".to_owned(),
            "pw-ali\\u200bce-SEC\\u00adRET".to_owned(),
            "pw-ali\\u2060ce-SEC\\rRET".to_owned(),
        ] {
            let out = redact(&format!("P={echoed} end"), &[password]);
            assert_eq!(out, "P=[the run's own credential] end", "{echoed}");
        }
    }
}
