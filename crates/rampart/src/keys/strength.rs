//! How much real entropy an operator-chosen secret carries (the HS256 token secret).
//!
//! Defends against a secret that looks long but is guessable: `0123456789abcdef` twice,
//! `password` four times and a digit run, `a` and sixty spaces, a leetspeak phrase or the hex
//! of an English sentence, after which anyone who guesses it can mint tokens offline. The secret
//! is read several ways and credited with the least any of them finds:
//! - its alphabet: what each character can carry (hex 4 bits, base64 6, printable ASCII about
//!   6.6; anything else, such as zero-width or combining characters, nothing);
//! - as a compressor would: a stretch of three or more characters that already occurred
//!   (repeats, padding, counters, date lists) costs only the reference to it;
//! - as a phrase: runs of letters, of digits and single separators (and again with letters and
//!   digits together, for leetspeak), each run given to the zxcvbn estimator (already used for
//!   user passwords) sixteen characters at a time, and a word, keyboard walk, sequence, repeat
//!   or date it finds credited only with its guesses; a separator used before costs a bit;
//! - as it stands: the same, sixteen characters at a time without splitting (keyboard walks and
//!   leetspeak cross the runs);
//! - as progressions: digits read as numbers, and characters taken every few places; where
//!   the steps between them repeat (a counter, a byte ramp, `AaBbCc…`), only changes cost;
//! - hex or base64 that decodes to readable text is judged as that text.
//!
//! zxcvbn alone cannot do this: its guess counts are 64-bit and saturate, and on long strings
//! it calls words and separators "brute force" at ten guesses a character. What no reading of
//! the string can find is a derivation: the SHA-512 of `password` looks as random as any 128
//! hex digits. The estimate errs low (chance words cost a random string a few bits, so one of
//! exactly 256 random bits can fall short of the floor); `rampart keys generate --hs256`
//! writes one of 512.

// Lengths of at most 256 characters and guess counts are estimates: f64 loses nothing that
// matters here.
#![allow(clippy::cast_precision_loss)]

use base64::Engine as _;
use zxcvbn::matching::patterns::MatchPattern;

/// Characters judged; far more than any floor needs, and a bound on the work.
const JUDGED_CHARS: usize = 256;
/// What zxcvbn is given at once: 16 characters stay well under 2^64 guesses.
const PIECE_CHARS: usize = 16;
/// Shorter runs, matches and repeats (single characters, pairs) keep the alphabet's credit.
const STRUCTURE_MIN_CHARS: usize = 3;

/// The estimated entropy of `secret`, in whole bits.
pub fn secret_bits(secret: &str) -> u32 {
    let judged: Vec<char> = secret.chars().take(JUDGED_CHARS).collect();
    let mut bits = estimate(&judged);
    if let Some(text) = decoded_text(secret) {
        let text: Vec<char> = text.chars().take(JUDGED_CHARS).collect();
        bits = bits.min(estimate(&text));
    }
    // At most 256 characters of about 6.6 bits each, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole = bits.floor().max(0.0) as u32;
    whole
}

/// The least credit any reading gives `chars`.
fn estimate(chars: &[char]) -> f64 {
    let chars = &chars[..shortest_period(chars)];
    if chars.is_empty() {
        return 0.0;
    }
    let per_char = bits_per_char(chars);
    let alphabet: f64 = chars.iter().map(|&c| credit(c, per_char)).sum();
    [
        alphabet,
        compressed_bits(chars, per_char),
        pieces_bits(&runs(chars, false), per_char),
        pieces_bits(&runs(chars, true), per_char),
        pieces_bits(&[chars], per_char),
        progression_bits(chars, per_char),
    ]
    .into_iter()
    .fold(f64::INFINITY, f64::min)
}

/// What one character earns: the alphabet's rate for printable ASCII, nothing for the rest.
fn credit(c: char, per_char: f64) -> f64 {
    if c.is_ascii_graphic() || c == ' ' {
        per_char
    } else {
        0.0
    }
}

/// A greedy LZ77 reading: at each point the longest earlier stretch (three characters or
/// more, overlapping allowed) costs the bits to name how far back and how long; anything else
/// costs its own credit.
fn compressed_bits(chars: &[char], per_char: f64) -> f64 {
    let n = chars.len();
    let (mut bits, mut at) = (0.0, 0);
    while at < n {
        let (distance, longest) = (0..at)
            .map(|from| {
                let length = (0..n - at)
                    .take_while(|&k| chars[from + k] == chars[at + k])
                    .count();
                (at - from, length)
            })
            .max_by_key(|&(distance, length)| (length, std::cmp::Reverse(distance)))
            .unwrap_or((0, 0));
        let literal: f64 = chars[at..at + longest]
            .iter()
            .map(|&c| credit(c, per_char))
            .sum();
        let reference = (distance as f64).log2() + (longest as f64).log2() + 1.0;
        if longest >= STRUCTURE_MIN_CHARS && reference < literal {
            bits += reference;
            at += longest;
        } else {
            bits += credit(chars[at], per_char);
            at += 1;
        }
    }
    bits
}

/// Progressions: a string of digits read as numbers of one to four digits, decimal or hex, and
/// any string read as characters taken every one to four places. Where the steps between them
/// repeat (`00010203…`, a counter, a byte ramp, `AaBbCc…`), only the changes of step cost.
fn progression_bits(chars: &[char], per_char: f64) -> f64 {
    let mut least = f64::INFINITY;
    for radix in [10u32, 16] {
        if !chars.iter().all(|c| c.is_digit(radix)) {
            continue;
        }
        for width in 1..=4usize {
            let numbers: Vec<i64> = chars
                .chunks(width)
                .filter_map(|group| {
                    let text: String = group.iter().collect();
                    i64::from_str_radix(&text, radix).ok()
                })
                .collect();
            let group_bits = per_char * width as f64;
            // The first number and the first step, then every change of step.
            let mut bits = group_bits * 2.0;
            for steps in numbers.windows(3) {
                if steps[2] - steps[1] != steps[1] - steps[0] {
                    bits += group_bits;
                }
            }
            least = least.min(bits);
        }
    }
    // Characters themselves, every one to four places (`abcd…`, `AaBbCc…`).
    for stride in 1..=4usize {
        let mut bits = 0.0;
        for start in 0..stride.min(chars.len()) {
            let codes: Vec<i64> = chars[start..]
                .iter()
                .step_by(stride)
                .map(|&c| i64::from(u32::from(c)))
                .collect();
            bits += per_char * 2.0_f64.min(codes.len() as f64);
            for steps in codes.windows(3) {
                if steps[2] - steps[1] != steps[1] - steps[0] {
                    bits += per_char;
                }
            }
        }
        least = least.min(bits);
    }
    least
}

/// zxcvbn's reading of each piece (runs of three or more, sixteen characters at a time; a
/// piece equal to one already judged adds nothing), shorter runs at their own credit.
fn pieces_bits(runs: &[&[char]], per_char: f64) -> f64 {
    let mut seen: Vec<&[char]> = Vec::new();
    let mut bits = 0.0;
    for run in runs {
        if run.len() == 1 && !run[0].is_alphanumeric() && seen.contains(run) {
            // The same separator again: one bit, not a fresh character.
            bits += 1.0;
            continue;
        }
        if run.len() < STRUCTURE_MIN_CHARS {
            seen.push(run);
            bits += run.iter().map(|&c| credit(c, per_char)).sum::<f64>();
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
    bits
}

/// What zxcvbn's reading of `piece` leaves of the alphabet's credit.
fn piece_bits(piece: &[char], per_char: f64) -> f64 {
    let text: String = piece.iter().collect();
    zxcvbn::zxcvbn(&text, &[])
        .sequence()
        .iter()
        .map(|found| {
            let alphabet_credit: f64 = found.token.chars().map(|c| credit(c, per_char)).sum();
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

/// Runs of letters, runs of digits, and every other character on its own; with `words`,
/// letters and digits together (so `p4ssw0rd` stays one word for zxcvbn's l33t reading).
fn runs(chars: &[char], words: bool) -> Vec<&[char]> {
    let class = |c: char| {
        if c.is_alphabetic() || (words && c.is_numeric()) {
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

/// The text a hex or base64 secret decodes to, when it is mostly readable.
fn decoded_text(secret: &str) -> Option<String> {
    let secret = secret.trim();
    let bytes = if secret.len().is_multiple_of(2) && secret.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..secret.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&secret[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .ok()?
    } else {
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        engines
            .iter()
            .find_map(|engine| engine.decode(secret).ok())?
    };
    let readable = bytes
        .iter()
        .filter(|b| b.is_ascii_graphic() || **b == b' ')
        .count();
    (bytes.len() >= 8 && readable * 10 >= bytes.len() * 9)
        .then(|| String::from_utf8_lossy(&bytes).into_owned())
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

    /// Secrets an outside review got past an earlier estimator, each then trusted by
    /// production; a token signed with the first was forged.
    #[test]
    #[allow(clippy::format_collect)] // building test strings
    fn padding_invisible_characters_counters_walks_and_encoded_text_are_not_entropy() {
        let sentence = "the quick brown fox jumps over the lazy dog every single day";
        let hex_sentence: String = sentence.bytes().map(|b| format!("{b:02x}")).collect();
        let b64_sentence = base64::engine::general_purpose::STANDARD.encode(sentence);
        let weak = [
            format!("a{}", " ".repeat(63)),
            format!("password{}", " ".repeat(60)),
            format!("secret{}", "\u{200b}".repeat(60)),
            format!("e{}", "\u{301}".repeat(70)),
            (0..100).map(|n| format!("{n:02}")).collect::<String>(),
            (0..8)
                .map(|n| format!("Sup3rS3cr3t!{n:02}"))
                .collect::<String>(),
            "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p1qaz2wsx3edc4rfv".to_owned(),
            (b'a'..=b'z')
                .map(|c| format!("{}{}", (c as char).to_ascii_uppercase(), c as char))
                .collect::<String>()
                + "0011223344",
            (0u8..64).map(|b| format!("{b:02x}")).collect::<String>(),
            (1..=12)
                .map(|m| format!("2024-{m:02}-01,"))
                .collect::<String>(),
            hex_sentence,
            b64_sentence,
            "c0rr3ct h0rs3 b4tt3ry st4pl3 1s th3 b3st p4ssw0rd 3v3r m4d3 by m3".to_owned(),
        ];
        for secret in &weak {
            let bits = secret_bits(secret);
            assert!(
                bits < crate::keys::MIN_SECRET_BITS,
                "{secret:?}: {bits} bits"
            );
        }
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
