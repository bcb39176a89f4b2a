//! How much real entropy an operator-chosen secret carries (the HS256 token secret).
//!
//! Defends against a secret that looks long but is guessable: `0123456789abcdef` twice, or
//! `password` four times and a digit run, are 32 and 42 characters yet fall to a dictionary in
//! seconds, after which anyone can mint tokens offline. A secret is credited with what its
//! alphabet allows per character (hex 4 bits, base64 6, any printable ASCII about 6.6) except
//! where structure makes it guessable:
//! - a secret that repeats one block is judged by that block alone;
//! - it is read as runs of letters, runs of digits and single other characters (the way words,
//!   numbers and separators make up a phrase); a run of three or more is given to the zxcvbn
//!   estimator (already used for user passwords), sixteen characters at a time, and a word, a
//!   keyboard walk, a repeat, a sequence or a date it finds there is credited only with the
//!   guesses zxcvbn says it takes; a piece equal to one already judged adds nothing.
//!
//! zxcvbn alone cannot do this: its guess counts are 64-bit and saturate, and on a long string
//! it prefers to call words and spaces "brute force" at ten guesses a character, so a sentence
//! would score like random text. The estimate errs low: chance words in a random string cost
//! it a few bits, so a secret of exactly 256 random bits can fall just short of the floor; the
//! generated one carries 512.

// Lengths of at most 256 characters and guess counts are estimates: f64 loses nothing that
// matters here.
#![allow(clippy::cast_precision_loss)]

use zxcvbn::matching::patterns::MatchPattern;

/// Characters judged; far more than any floor needs, and a bound on the work.
const JUDGED_CHARS: usize = 256;
/// What zxcvbn is given at once: 16 characters stay well under 2^64 guesses.
const PIECE_CHARS: usize = 16;
/// Shorter runs and matches (single characters, pairs) keep the alphabet's credit.
const STRUCTURE_MIN_CHARS: usize = 3;

/// The estimated entropy of `secret`, in whole bits.
pub fn secret_bits(secret: &str) -> u32 {
    let judged: Vec<char> = secret.chars().take(JUDGED_CHARS).collect();
    let judged = &judged[..shortest_period(&judged)];
    let per_char = bits_per_char(judged);
    let mut seen: Vec<&[char]> = Vec::new();
    let mut bits = 0.0_f64;
    for run in runs(judged) {
        if run.len() < STRUCTURE_MIN_CHARS {
            bits += per_char * run.len() as f64;
            continue;
        }
        for piece in run.chunks(PIECE_CHARS) {
            if seen.contains(&piece) {
                continue;
            }
            seen.push(piece);
            bits += piece_bits(piece, per_char);
        }
    }
    // At most 256 characters of about 6.6 bits each, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = bits.floor() as u32;
    whole
}

/// What zxcvbn's reading of `piece` leaves of the alphabet's credit.
fn piece_bits(piece: &[char], per_char: f64) -> f64 {
    let text: String = piece.iter().collect();
    zxcvbn::zxcvbn(&text, &[])
        .sequence()
        .iter()
        .map(|found| {
            let alphabet_credit = per_char * found.token.chars().count() as f64;
            let structured = found.token.chars().count() >= STRUCTURE_MIN_CHARS
                && !matches!(found.pattern, MatchPattern::BruteForce);
            if structured {
                let guesses = found.guesses.unwrap_or(u64::MAX).max(1) as f64;
                guesses.log2().min(alphabet_credit)
            } else {
                alphabet_credit
            }
        })
        .sum()
}

/// Runs of letters, runs of digits, and every other character on its own.
fn runs(chars: &[char]) -> Vec<&[char]> {
    let class = |c: char| {
        if c.is_alphabetic() {
            0
        } else if c.is_numeric() {
            1
        } else {
            2
        }
    };
    let mut runs = Vec::new();
    let mut start = 0;
    for end in 1..=chars.len() {
        let boundary = end == chars.len()
            || class(chars[end]) != class(chars[start])
            || class(chars[start]) == 2;
        if boundary {
            runs.push(&chars[start..end]);
            start = end;
        }
    }
    runs
}

/// The length of the shortest block that `chars` is a repetition of (the whole length when it
/// repeats nothing); a trailing partial copy counts as repetition too.
fn shortest_period(chars: &[char]) -> usize {
    (1..=chars.len() / 2)
        .find(|&period| chars.iter().zip(&chars[period..]).all(|(a, b)| a == b))
        .unwrap_or(chars.len())
}

/// What one character can carry, judged by the narrowest common encoding the secret fits.
fn bits_per_char(secret: &[char]) -> f64 {
    let hex = secret.iter().all(char::is_ascii_hexdigit);
    let base64 = secret
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || "+/=-_".contains(c));
    if hex {
        4.0
    } else if base64 {
        6.0
    } else {
        // The 95 printable ASCII characters; anything beyond them earns no more.
        95_f64.log2()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn random_bytes(n: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; n];
        getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("{e}"));
        bytes
    }

    #[test]
    fn the_reviews_weak_secrets_score_far_below_256_bits() {
        for weak in [
            "0123456789abcdef0123456789abcdef",
            "passwordpasswordpasswordpassword1234567890",
            "correcthorsebatterystaplecorrecthorsebatterystaple",
            "qwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnm",
            "correct horse battery staple, correct horse battery staple!",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "2024-01-01 secret key for our production jwt tokens!",
            // A random block repeated out of step with the 16-character blocks.
            "Xq7vR2mK9pXq7vR2mK9pXq7vR2mK9pXq7vR2mK9pXq7vR2mK9p",
        ] {
            let bits = secret_bits(weak);
            assert!(bits < 200, "{weak}: {bits} bits");
        }
        assert!(secret_bits("0123456789abcdef0123456789abcdef") < 64);
        assert!(secret_bits("passwordpasswordpasswordpassword1234567890") < 64);
    }

    #[test]
    fn random_secrets_are_credited_by_their_encoding() {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for _ in 0..50 {
            // What `rampart keys generate --hs256` makes: 64 bytes, base64url.
            let generated = b64.encode(random_bytes(64));
            assert!(secret_bits(&generated) >= 400, "{generated}");
            // 32 bytes as 64 hex digits: never credited above their 256 bits, and chance words
            // cost them only some.
            let hex = random_bytes(32).iter().fold(String::new(), |mut hex, b| {
                let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
                hex
            });
            assert!(secret_bits(&hex) >= 160, "{hex}");
            assert!(secret_bits(&hex) <= 256, "{hex}");
        }
        assert_eq!(secret_bits(""), 0);
    }
}
