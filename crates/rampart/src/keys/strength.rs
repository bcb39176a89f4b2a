//! Whether an operator-chosen HS256 secret is a key: random bytes, enough of them.
//!
//! Defends against a secret that looks long but is guessable, after which anyone who guesses it
//! can mint tokens offline. Estimating the entropy of free text cannot be done well: Lorem ipsum,
//! a famous speech, a rot13 sentence or the digits of pi score as high as random text, while
//! `openssl rand -hex 32` can score below 256 bits because chance "words" cost it a few. So the
//! secret is parsed instead ([`judge_hs256_secret`]): it must be hex or base64 (standard or
//! URL-safe, padded or not, line breaks allowed) of at least 32 bytes, and look like a
//! random generator's output:
//! - its characters spread over the encoding's alphabet as random output's do (a chi-square
//!   test at one chance in a billion): words, names and decimal digits do not;
//! - its bytes not readable text (hex or base64 of a sentence, base64 of base64), not
//!   repeating, not one of a few well-known constants (pi, e, square roots, the hash of an
//!   empty string, of `password`, the secret printed in FastAPI's JWT tutorial, even with
//!   bytes added, shifted, reversed or flipped; the SHA-256 of a common word), and not a
//!   sequence in which each byte follows from the ones before by a fixed rule (a ramp,
//!   squares, Fibonacci, powers, a half repeated under a mask: judged on the bytes, so the
//!   encoding cannot hide it);
//! - and no reading of the encoded text finding less than half its nominal entropy
//!   ([`secret_bits`]: repeats, counters, ramps, keyboard walks, dictionary words).
//!
//! A phrase or a password is refused however long; `rampart keys generate --hs256` writes 64
//! random bytes. Known limit: a derivation looks random (the SHA-512 of a word), as does output
//! an adversary built to pass these tests; they catch secrets people choose, not ones made to
//! deceive.
//!
//! [`secret_bits`] estimates a string's entropy by the least any of several readings credits:
//! - its alphabet: what each character can carry (hex 4 bits, base64 6, printable ASCII about
//!   6.6; anything else, such as zero-width or combining characters, nothing);
//! - as a compressor would: a stretch of three or more characters that already occurred
//!   (repeats, padding, counters, date lists) costs only the reference to it;
//! - as a phrase: runs of letters, of digits and single separators (and again with letters and
//!   digits together, for leetspeak), each run given to the zxcvbn estimator (already used for
//!   user passwords) sixteen characters at a time, and a word, keyboard walk, sequence, repeat
//!   or date it finds credited only with its guesses; a separator used before costs a bit;
//! - as it stands: the same, sixteen characters at a time without splitting;
//! - as progressions: digits read as numbers, and characters taken every few places; where
//!   the steps between them repeat (a counter, a byte ramp, `AaBbCc…`), only changes cost;
//! - hex or base64 that decodes to readable text is judged as that text.
//!
//! zxcvbn alone cannot do this: its guess counts are 64-bit and saturate, and on long strings
//! it calls words and separators "brute force" at ten guesses a character.

// Lengths of at most 256 characters and guess counts are estimates: f64 loses nothing that
// matters here.
#![allow(clippy::cast_precision_loss)]

use base64::Engine as _;

use super::byte_patterns::{
    few_distinct, follows_a_recurrence, follows_a_sequence, holds_a_well_known_constant,
    repeats_under_a_mask,
};
use zxcvbn::matching::patterns::MatchPattern;

/// Characters judged; far more than any floor needs, and a bound on the work.
const JUDGED_CHARS: usize = 256;
/// What zxcvbn is given at once: 16 characters stay well under 2^64 guesses.
const PIECE_CHARS: usize = 16;
/// Shorter runs, matches and repeats (single characters, pairs) keep the alphabet's credit.
const STRUCTURE_MIN_CHARS: usize = 3;

/// The fewest random bytes an HS256 secret must encode (HMAC-SHA256's key size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Why an HS256 secret is not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Weak {
    #[error("it is not hex or base64 of random bytes (a phrase or a password is not a key, however long)")]
    NotEncoded,
    #[error("it encodes {0} bytes; at least 32 random bytes are needed")]
    TooShort(usize),
    #[error("it is encoded text, not random bytes")]
    EncodedText,
    #[error("its bytes repeat")]
    Repetitive,
    #[error("its characters are not spread as random {0} output is (words, names or digits)")]
    Unbalanced(&'static str),
    #[error("it is a well-known constant")]
    WellKnown,
    #[error("its bytes follow a sequence (each from the ones before by a fixed step)")]
    Sequence,
    #[error("it follows a pattern: about {found} bits where random {encoding} of that length carries {nominal}")]
    Patterned {
        found: u32,
        nominal: u32,
        encoding: &'static str,
    },
}

/// A secret that passed [`judge_hs256_secret`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomKey {
    /// Random bytes it encodes.
    pub bytes: usize,
    /// `hex` or `base64`.
    pub encoding: &'static str,
}

/// Parses `secret` as an HS256 key: hex or base64 of at least [`MIN_SECRET_BYTES`] bytes that
/// look random (see the module header).
pub fn judge_hs256_secret(secret: &str) -> Result<RandomKey, Weak> {
    let text: String = secret
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let (bytes, encoding) = decode_key(&text).ok_or(Weak::NotEncoded)?;
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(Weak::TooShort(bytes.len()));
    }
    let printable = bytes
        .iter()
        .filter(|b| b.is_ascii_graphic() || **b == b' ')
        .count();
    // Random bytes are printable about 37% of the time; 80% of 32 or more is text.
    if printable * 10 >= bytes.len() * 8 {
        return Err(Weak::EncodedText);
    }
    if shortest_period(&bytes) < bytes.len() || few_distinct(&bytes) {
        return Err(Weak::Repetitive);
    }
    if !spread_like_random(&text, encoding) {
        return Err(Weak::Unbalanced(encoding));
    }
    if holds_a_well_known_constant(&bytes) {
        return Err(Weak::WellKnown);
    }
    let per_char = if encoding == "hex" { 4 } else { 6 };
    let judged = u32::try_from(text.chars().take(JUDGED_CHARS).count()).unwrap_or(u32::MAX);
    let nominal = judged.saturating_mul(per_char);
    let found = secret_bits(&text);
    if found * 2 < nominal {
        return Err(Weak::Patterned {
            found,
            nominal,
            encoding,
        });
    }
    if follows_a_sequence(&bytes) || follows_a_recurrence(&bytes) || repeats_under_a_mask(&bytes) {
        return Err(Weak::Sequence);
    }
    Ok(RandomKey {
        bytes: bytes.len(),
        encoding,
    })
}

/// The bytes `text` encodes: hex in one case, or base64 (standard or URL-safe, padded or not).
fn decode_key(text: &str) -> Option<(Vec<u8>, &'static str)> {
    let lower = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let upper = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
    if (lower || upper) && !text.is_empty() && text.len().is_multiple_of(2) {
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .ok()?;
        return Some((bytes, "hex"));
    }
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(|bytes| (bytes, "base64"))
}

/// Whether the characters of `text` fall into the encoding's classes (hex: digits and
/// letters; base64: upper case, lower case, the rest) in the proportions random output
/// has, by a chi-square test at one chance in a billion (at one in a million, one of 60,000
/// random base64 keys of 86 characters was refused: for strings this short the tail is heavier
/// than the chi-square law says).
fn spread_like_random(text: &str, encoding: &str) -> bool {
    let n = text.len() as f64;
    let count = |keep: fn(&u8) -> bool| text.bytes().filter(keep).count() as f64;
    let (observed, shares, critical) = if encoding == "hex" {
        let digits = count(u8::is_ascii_digit);
        // One degree of freedom; P(chi2 > 37.33) = 1e-9.
        (
            vec![digits, n - digits],
            vec![10.0 / 16.0, 6.0 / 16.0],
            37.33,
        )
    } else {
        let (upper, lower) = (count(u8::is_ascii_uppercase), count(u8::is_ascii_lowercase));
        // Two degrees of freedom; P(chi2 > 41.45) = 1e-9.
        (
            vec![upper, lower, n - upper - lower],
            vec![26.0 / 64.0, 26.0 / 64.0, 12.0 / 64.0],
            41.45,
        )
    };
    let chi2: f64 = observed
        .iter()
        .zip(&shares)
        .map(|(seen, share)| {
            let expected = n * share;
            (seen - expected).powi(2) / expected
        })
        .sum();
    chi2 <= critical
}

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
fn shortest_period<T: PartialEq>(chars: &[T]) -> usize {
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

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut hex, b| {
            let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
            hex
        })
    }

    fn refused(secret: &str) -> Weak {
        match judge_hs256_secret(secret) {
            Err(weak) => weak,
            Ok(key) => panic!("{secret:?} accepted as {key:?}"),
        }
    }

    /// Secrets outside reviews got past earlier checks (the first two rounds' estimators),
    /// each then trusted by production; a token signed with one of them was forged.
    #[test]
    #[allow(clippy::format_collect)] // building test strings
    fn the_reviews_secrets_are_not_keys() {
        use sha2::Digest as _;
        let sentence = "the quick brown fox jumps over the lazy dog every single day";
        let b64 = base64::engine::general_purpose::STANDARD;
        let rot = |text: &str, by: u8| -> String {
            text.chars()
                .map(|c| match c {
                    'a'..='z' => char::from((c as u8 - b'a' + by) % 26 + b'a'),
                    'A'..='Z' => char::from((c as u8 - b'A' + by) % 26 + b'A'),
                    _ => c,
                })
                .collect()
        };
        let primes: String = (2u32..400)
            .filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0))
            .map(|n| n.to_string())
            .collect();
        let squares: String = (1u64..60).map(|n| (n * n).to_string()).collect();
        let powers: String = (0u32..60).map(|n| (1u64 << n).to_string()).collect();
        let names = [
            "James",
            "Mary",
            "John",
            "Patricia",
            "Robert",
            "Jennifer",
            "Michael",
            "Linda",
            "William",
            "Elizabeth",
            "David",
            "Barbara",
            "Richard",
            "Susan",
            "Joseph",
            "Jessica",
        ];
        let fastapi = "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7";
        let fastapi_bytes: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&fastapi[i..i + 2], 16).unwrap())
            .collect();
        let fibonacci: Vec<u8> = (0..40)
            .scan((1u8, 1u8), |(a, b), _| {
                let next = a.wrapping_add(*b);
                (*a, *b) = (*b, next);
                Some(next)
            })
            .collect();
        let half = random_bytes(16);
        let weak: Vec<String> = vec![
            // First round.
            "0123456789abcdef0123456789abcdef".into(),
            "passwordpasswordpasswordpassword1234567890".into(),
            "correct horse battery staple, correct horse battery staple!".into(),
            format!("a{}", " ".repeat(63)),
            format!("secret{}", "\u{200b}".repeat(60)),
            (0..100).map(|n| format!("{n:02}")).collect(),
            (0u8..64).map(|b| format!("{b:02x}")).collect(),
            hex(sentence.as_bytes()),
            b64.encode(sentence),
            "Xq7vR2mK9pXq7vR2mK9pXq7vR2mK9pXq7vR2mK9pXq7vR2mK9p".into(),
            // Second round: well-known text, ciphers and encodings of text, constants,
            // number sequences, built strings.
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor \
             incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
             exercitation ullamco laboris"
                .into(),
            "Loremipsumdolorsitametconsecteturadipiscingelitseddoeiusmodtemporincididunt".into(),
            rot(sentence, 13),
            rot(sentence, 3).replace(' ', ""),
            "ORUGKIDROVUWG2ZAMJZG653OEBTG66BANJ2W24DTEBXXMZLSEB2GQZJANRQXU6JAMRXWOIDFOZSXE6JAONUW4Z3MMUQGIYLZ".into(),
            "bZBKDadl~9Yan8BZ+C7WW^Z^PYISXJb0BYaWpW^NXk{R5VS0HWWN&96Wp-t9c_4FXZf9&|AY@^A".into(),
            b64.encode(b64.encode(sentence)),
            sentence.replace(' ', "%20"),
            "OBQXG43XN5ZGI4DBONZXO33SMRYGC43TO5XXEZDQMFZXG53POJSHAYLTON3W64TEOBQXG43XN5ZGI4DBONZXO33SMRYGC43TO5XXEZA=".into(),
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89452821e638d01377be5466cf34e90c6cc0ac29b7c97c50dd3f84d5b5b5470917".into(),
            "2718281828459045235360287471352662497757247093699959574966967627724076630353547594571382178525166427".into(),
            "14142135623730950488016887242096980785696718753769480731766797379907324784621070388503875343276415727".into(),
            primes,
            squares,
            powers,
            (0u32..60).map(|i| char::from_u32(33 + (i * i) % 94).unwrap_or('!')).collect(),
            (0u32..94).map(|i| char::from_u32(33 + (i * 7) % 94).unwrap_or('!')).collect(),
            "Four score and seven years ago our fathers brought forth on this continent, a new \
             nation, conceived in Liberty, and dedicated to the proposition that all men are \
             created equal."
                .into(),
            "When in the Course of human events, it becomes necessary for one people to \
             dissolve the political bands which have connected them with another"
                .into(),
            names.concat(),
            names.join(","),
            sentence.bytes().map(|b| format!("{b},")).collect(),
            "- .... . / --.- ..- .. -.-. -.- / -... .-. --- .-- -. / ..-. --- -..-".into(),
            // 31 random bytes: random, but too few.
            hex(&random_bytes(31)),
            // Third round: FastAPI's tutorial secret, and byte sequences in base64, where the
            // text estimator saw no pattern.
            "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7".into(),
            b64.encode((0u8..32).collect::<Vec<u8>>()),
            b64.encode((0u8..64).collect::<Vec<u8>>()),
            b64.encode((0u8..64).map(|i| i.wrapping_mul(i)).collect::<Vec<u8>>()),
            b64.encode((0u8..48).map(|i| i.wrapping_mul(37).wrapping_add(200)).collect::<Vec<u8>>()),
            hex(&(0u8..48).map(|i| i.wrapping_mul(i).wrapping_mul(i)).collect::<Vec<u8>>()),
            // Fourth round: the tutorial secret shifted, reversed, flipped or with bytes put
            // around it; linear recurrences; a half repeated under a mask; hashed words.
            format!("00{fastapi}"),
            format!("{}{fastapi}", hex(&random_bytes(4))),
            format!("{}{}", &fastapi[2..], hex(&random_bytes(2))),
            hex(&fastapi_bytes.iter().rev().copied().collect::<Vec<u8>>()),
            hex(&fastapi_bytes.iter().map(|b| !b).collect::<Vec<u8>>()),
            hex(&[&fastapi_bytes[1..], &fastapi_bytes[..1]].concat()),
            hex(&fibonacci),
            b64.encode(&fibonacci),
            hex(&(0u32..32).scan(1u32, |x, _| { *x = *x * 3 % 257; Some(u8::try_from(*x % 256).unwrap_or(0)) }).collect::<Vec<u8>>()),
            hex(&[half.clone(), half.iter().map(|b| b ^ 0xff).collect()].concat()),
            hex(&sha2::Sha256::digest(b"changeme")),
            hex(&sha2::Sha256::digest(sha2::Sha256::digest(b""))),
            hex(&sha2::Sha512::digest(b"password")),
            hex(&sha2::Sha512::digest(b"secret")[..48]),
            hex(&sha2::Sha384::digest(b"admin")),
            hex(&sha2::Sha256::digest(b"password\n")),
            hex(&sha2::Sha256::digest(b"Password1")),
        ];
        for secret in &weak {
            refused(secret);
        }
        assert_eq!(refused(&hex(&random_bytes(31))), Weak::TooShort(31));
        assert_eq!(refused(&b64.encode(sentence)), Weak::EncodedText);
        assert_eq!(refused(&weak[19]), Weak::WellKnown);
        assert_eq!(refused(fastapi), Weak::WellKnown);
        assert_eq!(
            refused(&b64.encode((0u8..32).collect::<Vec<u8>>())),
            Weak::Sequence
        );
        assert_eq!(
            refused(&weak[6]),
            Weak::Patterned {
                found: refused_bits(&weak[6]),
                nominal: 512,
                encoding: "hex"
            }
        );
    }

    fn refused_bits(secret: &str) -> u32 {
        secret_bits(secret)
    }

    /// What the usual commands make: `openssl rand -hex 32`, `openssl rand -base64 32/48/64`
    /// (line-wrapped at 64), Python's `secrets.token_urlsafe(32)`, `rampart keys generate`.
    #[test]
    fn random_keys_in_every_common_encoding_pass() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        for _ in 0..300 {
            let wrapped = STANDARD.encode(random_bytes(64));
            let (head, tail) = wrapped.split_at(64);
            for secret in [
                hex(&random_bytes(32)),
                hex(&random_bytes(32)).to_uppercase(),
                STANDARD.encode(random_bytes(32)),
                STANDARD.encode(random_bytes(48)),
                format!("{head}\n{tail}\n"),
                URL_SAFE_NO_PAD.encode(random_bytes(32)),
                URL_SAFE_NO_PAD.encode(random_bytes(64)),
            ] {
                let key = judge_hs256_secret(&secret)
                    .unwrap_or_else(|weak| panic!("{secret:?} refused: {weak}"));
                assert!(key.bytes >= MIN_SECRET_BYTES);
            }
        }
    }

    #[test]
    fn the_estimate_finds_structure_and_credits_randomness() {
        assert!(secret_bits("0123456789abcdef0123456789abcdef") < 64);
        assert!(secret_bits("passwordpasswordpasswordpassword1234567890") < 64);
        assert!(secret_bits(&format!("e{}", "\u{301}".repeat(70))) < 16);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        for _ in 0..50 {
            assert!(secret_bits(&b64.encode(random_bytes(64))) >= 400);
            let hex = hex(&random_bytes(32));
            assert!((160..=256).contains(&secret_bits(&hex)), "{hex}");
        }
        assert_eq!(secret_bits(""), 0);
    }
}
