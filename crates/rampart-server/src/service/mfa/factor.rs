//! The second factor's material: TOTP secrets sealed at rest, the codes that prove them, and
//! recovery codes (a login's challenge token is an opaque token like any other:
//! [`crate::service::new_opaque_token`]).
//!
//! Defends against a database copy becoming a copy of everyone's authenticator: a TOTP secret
//! is stored only sealed (XChaCha20-Poly1305 under a key derived from the deployment's secret in
//! the keys file, with the user id as associated data, so a sealed secret moved to another
//! account does not open), and recovery codes only as SHA-256 hashes (80 random bits each, so a
//! fast hash is enough; a password hash would only slow logins).
//! Codes are compared in constant time (`totp-rs`), and a code is matched to its 30-second step
//! so the store can accept each step once.
//!
//! Built on well-kept crates: `totp-rs` (RFC 6238 codes and `otpauth://` URIs), `qrcode` (the
//! QR code as SVG, nothing fetched from elsewhere) and RustCrypto's `chacha20poly1305`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

use crate::store::sha256_hex;

/// Bytes of a new TOTP secret: 160 bits, as RFC 4226 recommends.
const SECRET_BYTES: usize = 20;
/// Seconds per TOTP step, and the steps either side of now that are accepted (clock drift).
const STEP_SECONDS: u64 = 30;
const DRIFT_STEPS: u64 = 1;
/// Recovery codes per enrolment, and characters per code (5 bits each: 80 bits).
pub const RECOVERY_CODES: usize = 10;
const RECOVERY_CHARS: usize = 16;
/// Crockford's base 32: no I, L, O or U, so a code read off paper is not misread.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// What sealed secrets start with: the scheme, so another can follow.
const SEALED_PREFIX: &str = "xc20p1.";

/// Seals and opens TOTP secrets; the key never leaves it.
pub struct SecretSealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer(..)")
    }
}

/// Why a secret or a code could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    #[error("no randomness: {0}")]
    Random(String),
    /// A stored secret that does not open: altered, moved to another account, or sealed under
    /// another deployment's key.
    #[error("a stored TOTP secret does not open")]
    Sealed,
    #[error("the TOTP QR code could not be drawn")]
    Qr,
}

impl SecretSealer {
    /// The sealer for the deployment's `secret` (the keys file's audit key, or the HS256
    /// secret), under a label of its own: no other key derived from it is this one.
    pub fn derive(secret: &[u8]) -> Self {
        let key = Zeroizing::new(rampart::tokens::hmac_sha256(
            secret,
            b"rampart totp secrets v1",
        ));
        Self {
            cipher: XChaCha20Poly1305::new(key.as_slice().into()),
        }
    }

    /// `secret` sealed for `user_id`, as stored text.
    pub fn seal(&self, user_id: &str, secret: &[u8]) -> Result<String, FactorError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|err| FactorError::Random(err.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: user_id.as_bytes(),
                },
            )
            .map_err(|_| FactorError::Sealed)?;
        Ok(format!(
            "{SEALED_PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// The secret `sealed` holds, if it was sealed for `user_id` under this key.
    pub fn open(&self, user_id: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, FactorError> {
        let (nonce, sealed) = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|rest| rest.split_once('.'))
            .ok_or(FactorError::Sealed)?;
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .ok()
            .filter(|n| n.len() == 24)
            .ok_or(FactorError::Sealed)?;
        let sealed = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| FactorError::Sealed)?;
        self.cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: user_id.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| FactorError::Sealed)
    }
}

/// A new random TOTP secret.
pub fn new_secret() -> Result<Zeroizing<Vec<u8>>, FactorError> {
    let mut secret = Zeroizing::new(vec![0u8; SECRET_BYTES]);
    getrandom::fill(&mut secret).map_err(|err| FactorError::Random(err.to_string()))?;
    Ok(secret)
}

fn totp(secret: &[u8], issuer: &str, account: &str) -> TOTP {
    // SHA-1, 6 digits, 30 s: what every authenticator app reads from an otpauth URI (RFC 6238's
    // defaults). Drift is handled by `matching_step`, one step at a time.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        0,
        STEP_SECONDS,
        secret.to_vec(),
        Some(issuer.replace(':', "")),
        account.replace(':', ""),
    )
}

/// What an authenticator app needs to add the account: the secret in base 32, its `otpauth://`
/// URI and that URI as a QR code (SVG).
#[derive(Debug)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// The enrolment material for `secret`, labelled `issuer:account` in the app.
pub fn enrolment(secret: &[u8], issuer: &str, account: &str) -> Result<Enrolment, FactorError> {
    let totp = totp(secret, issuer, account);
    let otpauth_uri = totp.get_url();
    let qr = qrcode::QrCode::new(otpauth_uri.as_bytes()).map_err(|_| FactorError::Qr)?;
    let qr_svg = qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(Enrolment {
        secret: totp.get_secret_base32(),
        otpauth_uri,
        qr_svg,
    })
}

/// The 30-second step `code` belongs to for `secret` at `now` (Unix seconds), within one step
/// of drift either way; `None` when it is not a current code.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> Option<i64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, "", "");
    let current = now / STEP_SECONDS;
    // Every candidate is computed and compared, so the time taken says nothing about which
    // step matched.
    let mut matched = None;
    for step in current.saturating_sub(DRIFT_STEPS)..=current + DRIFT_STEPS {
        if totp.check(code, step * STEP_SECONDS) && matched.is_none() {
            matched = i64::try_from(step).ok();
        }
    }
    matched
}

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Ten new recovery codes as shown to the user (`xxxx-xxxx-xxxx-xxxx`), and their hashes as
/// stored.
pub fn new_recovery_codes() -> Result<(Vec<String>, Vec<String>), FactorError> {
    let mut shown = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut random = Zeroizing::new([0u8; RECOVERY_CHARS]);
        getrandom::fill(random.as_mut_slice())
            .map_err(|err| FactorError::Random(err.to_string()))?;
        let chars: String = random
            .iter()
            .map(|b| char::from(RECOVERY_ALPHABET[usize::from(b & 31)]))
            .collect();
        hashes.push(sha256_hex(chars.as_bytes()));
        let groups: Vec<&str> = (0..RECOVERY_CHARS)
            .step_by(4)
            .map(|at| &chars[at..at + 4])
            .collect();
        shown.push(groups.join("-"));
    }
    Ok((shown, hashes))
}

/// The stored hash of a recovery code as typed (any case, with or without dashes and spaces,
/// Crockford's look-alikes read as their digits), or `None` if it cannot be one.
pub fn recovery_code_hash(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let mut chars = String::with_capacity(RECOVERY_CHARS);
    for c in typed.chars() {
        let c = match c.to_ascii_lowercase() {
            '-' | ' ' => continue,
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        };
        if !c.is_ascii() || !RECOVERY_ALPHABET.contains(&(c as u8)) {
            return None;
        }
        chars.push(c);
    }
    (chars.len() == RECOVERY_CHARS).then(|| sha256_hex(chars.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: the same function every authenticator app computes
    /// (the RFC's codes are 8 digits; an app shows their last 6).
    #[test]
    fn codes_are_rfc_6238s() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let six = &code[2..];
            assert_eq!(
                matching_step(secret, six, time),
                Some(i64::try_from(time / 30).unwrap()),
                "{time}"
            );
        }
    }

    #[test]
    fn a_code_is_matched_to_its_step_within_one_step_of_drift_and_no_further() {
        let secret = new_secret().unwrap();
        let now = 1_700_000_000;
        let code_at = |t: u64| totp(&secret, "", "").generate(t);
        let step = i64::try_from(now / 30).unwrap();
        assert_eq!(matching_step(&secret, &code_at(now), now), Some(step));
        assert_eq!(
            matching_step(&secret, &code_at(now - 30), now),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(&secret, &code_at(now + 30), now),
            Some(step + 1)
        );
        assert_eq!(matching_step(&secret, &code_at(now - 60), now), None);
        assert_eq!(matching_step(&secret, &code_at(now + 60), now), None);
        for malformed in ["", "12345", "1234567", "12345a", " 123456", "１２３４５６"] {
            assert_eq!(matching_step(&secret, malformed, now), None, "{malformed}");
        }
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_user_under_its_key() {
        let ours = SecretSealer::derive(b"deployment secret one");
        let secret = new_secret().unwrap();
        let sealed = ours.seal("user-a", &secret).unwrap();
        assert!(!sealed.contains(&totp(&secret, "", "").get_secret_base32()));
        assert_eq!(
            ours.open("user-a", &sealed).unwrap().as_slice(),
            secret.as_slice()
        );
        // Moved to another account, altered, or opened by another deployment: refused.
        assert!(ours.open("user-b", &sealed).is_err());
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(ours
            .open("user-a", &String::from_utf8(altered).unwrap())
            .is_err());
        assert!(SecretSealer::derive(b"deployment secret two")
            .open("user-a", &sealed)
            .is_err());
        for junk in ["", "xc20p1.", "xc20p1.AAAA.BBBB", "plain"] {
            assert!(ours.open("user-a", junk).is_err(), "{junk}");
        }
        // Two seals of one secret differ (a fresh nonce each).
        assert_ne!(sealed, ours.seal("user-a", &secret).unwrap());
    }

    #[test]
    fn recovery_codes_are_random_and_read_back_however_they_are_typed() {
        let (shown, hashes) = new_recovery_codes().unwrap();
        assert_eq!(shown.len(), RECOVERY_CODES);
        let distinct: std::collections::HashSet<_> = hashes.iter().collect();
        assert_eq!(distinct.len(), RECOVERY_CODES);
        for (code, hash) in shown.iter().zip(&hashes) {
            assert_eq!(code.len(), 19, "{code}");
            assert_eq!(recovery_code_hash(code).as_deref(), Some(hash.as_str()));
            let typed = code.replace('-', " ").to_uppercase();
            assert_eq!(recovery_code_hash(&typed).as_deref(), Some(hash.as_str()));
            assert!(!hash.contains(&code.replace('-', "")));
        }
        for junk in [
            "",
            "abcd",
            "abcd-efgh-jkmn-pqr",
            "abcd-efgh-jkmn-pqrsu",
            "ü",
        ] {
            assert_eq!(recovery_code_hash(junk), None, "{junk}");
        }
        assert_eq!(
            recovery_code_hash("0o1i-l000-0000-0000"),
            recovery_code_hash("0011-1000-0000-0000")
        );
    }

    #[test]
    fn the_qr_code_and_uri_carry_the_secret_for_the_app() {
        let secret = new_secret().unwrap();
        let enrolment = enrolment(&secret, "rampart", "alice").unwrap();
        assert!(enrolment
            .otpauth_uri
            .starts_with("otpauth://totp/rampart:alice?"));
        assert!(enrolment
            .otpauth_uri
            .contains(&format!("secret={}", enrolment.secret)));
        assert!(enrolment.qr_svg.starts_with("<?xml") && enrolment.qr_svg.contains("<svg"));
        assert!(!enrolment.qr_svg.contains("<script"));
    }
}
