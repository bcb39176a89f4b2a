//! TOTP codes computed by the tests themselves (RFC 6238: HMAC-SHA1, 6 digits, 30 s), from the
//! key the server shows, so a mistake in how the server calls its library cannot hide in both.

use hmac::{Hmac, Mac};

/// The 6-digit code of `secret` (raw bytes) for 30-second step `step`.
pub fn code_at(secret: &[u8], step: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let value = u32::from_be_bytes(digest[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", value % 1_000_000)
}

/// A well-formed code that is not `code`: the same six digits shifted by half the range, so it
/// can never equal `code`.
pub fn wrong_code(code: &str) -> String {
    format!(
        "{:06}",
        (code.parse::<u32>().unwrap() + 500_000) % 1_000_000
    )
}

/// The current 30-second step.
pub fn now_step() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

/// RFC 4648 base 32, without padding, as the enrolment shows the key.
pub fn base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut buffer, mut out) = (0u32, 0u32, Vec::new());
    for c in text.trim().trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|a| *a == c).unwrap();
        buffer = (buffer << 5) | u32::try_from(value).unwrap();
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).unwrap());
        }
    }
    out
}
