//! The bytes an HS256 secret decodes to, judged for what people pass off as random: a
//! well-known constant or published secret (even altered around the edges), a hash of a
//! common word, or a sequence in which each byte follows from the ones before.
//!
//! Defends against secrets that look random as text but are guessable as bytes, whatever
//! encoding hides them; see [`super::strength`] for the whole judgement. No crate does this:
//! it is a few tables and arithmetic over at most a few hundred bytes.

/// Whether 8 bytes in a row anywhere in `bytes`, read forwards, backwards or with every bit
/// flipped, are 8 bytes in a row of a well-known constant or a published secret, or whether
/// the key is the SHA-256 (once or twice over) of a common word: a constant with a byte or two
/// changed or added is the constant.
pub(super) fn holds_a_well_known_constant(bytes: &[u8]) -> bool {
    let reversed: Vec<u8> = bytes.iter().rev().copied().collect();
    let flipped: Vec<u8> = bytes.iter().map(|b| !b).collect();
    let windows_of = |known: &'static [u8]| known.windows(8);
    let known_windows = WELL_KNOWN
        .iter()
        .map(<[u8; 8]>::as_slice)
        .chain(PUBLISHED.iter().map(<[u8; 32]>::as_slice))
        .flat_map(windows_of);
    for window in known_windows {
        for reading in [bytes, &reversed, &flipped] {
            if reading.windows(8).any(|w| w == window) {
                return true;
            }
        }
    }
    bytes
        .get(..32)
        .is_some_and(|head| common_word_digests().contains(head))
}

/// The first 32 bytes of every digest of every common word reading ([`COMMON_WORDS`]),
/// computed once: a table derived from constants, not state.
fn common_word_digests() -> &'static std::collections::HashSet<[u8; 32]> {
    use sha2::{Digest as _, Sha256};
    static TABLE: std::sync::OnceLock<std::collections::HashSet<[u8; 32]>> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let first_32 = |digest: &[u8]| {
            let mut head = [0u8; 32];
            head.copy_from_slice(&digest[..32]);
            head
        };
        let mut table = std::collections::HashSet::new();
        for word in COMMON_WORDS {
            let mut capitalised = word.to_owned();
            if let Some(first) = capitalised.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            for base in [word.to_owned(), word.to_ascii_uppercase(), capitalised] {
                for text in [
                    base.clone(),
                    format!("{base}\n"),
                    format!("{base}1"),
                    format!("{base}!"),
                ] {
                    let once = Sha256::digest(text.as_bytes());
                    let hex_once = once.iter().fold(String::new(), |mut hex, b| {
                        use std::fmt::Write as _;
                        let _ = write!(hex, "{b:02x}");
                        hex
                    });
                    table.insert(first_32(&once));
                    table.insert(first_32(&Sha256::digest(once)));
                    table.insert(first_32(&Sha256::digest(hex_once.as_bytes())));
                    table.insert(first_32(&sha2::Sha384::digest(text.as_bytes())));
                    table.insert(first_32(&sha2::Sha512::digest(text.as_bytes())));
                }
            }
        }
        table
    })
}

/// Secrets printed in documentation and copied into deployments, whole.
const PUBLISHED: [[u8; 32]; 1] = [
    // FastAPI's OAuth2/JWT tutorial `SECRET_KEY`.
    [
        0x09, 0xd2, 0x5e, 0x09, 0x4f, 0xaa, 0x6c, 0xa2, 0x55, 0x6c, 0x81, 0x81, 0x66, 0xb7, 0xa9,
        0x56, 0x3b, 0x93, 0xf7, 0x09, 0x9f, 0x6f, 0x0f, 0x4c, 0xaa, 0x6c, 0xf6, 0x3b, 0x88, 0xe8,
        0xd3, 0xe7,
    ],
];

/// Words whose hash people use as a "random" secret (each also capitalised and upper case,
/// and each of those alone, with a newline as `echo word | sha256sum` hashes it, with 1, or !).
const COMMON_WORDS: [&str; 30] = [
    "",
    "secret",
    "password",
    "changeme",
    "change-me",
    "changeit",
    "admin",
    "test",
    "key",
    "jwt",
    "jwt_secret",
    "jwtsecret",
    "secretkey",
    "secret_key",
    "mysecret",
    "supersecret",
    "your-256-bit-secret",
    "your-secret-key",
    "default",
    "letmein",
    "123456",
    "qwerty",
    "development",
    "production",
    "fastapi",
    "rampart",
    "hunter2",
    "my-secret-key",
    "secret-key",
    "jwt-secret",
];

/// Whether most bytes follow from the two before by one linear rule, mod 256 or mod 257:
/// `x[n] = a*x[n-1] + b*x[n-2] + c` covers ramps, arithmetic and geometric sequences
/// (3^i mod 257), Fibonacci, squares and byte LCGs. For each `a`, the `b` that fit the first
/// differences (`d[4] = a*d[3] + b*d[2]`) and the `c` that fits the first three bytes are the
/// only candidates; random bytes match such a rule about once in 256 per byte, so three
/// quarters matching never happens by chance.
pub(super) fn follows_a_recurrence(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return false;
    }
    let x = |i: usize| u32::from(bytes[i]);
    let predicted = bytes.len() - 3;
    let allowed_misses = predicted - predicted * 3 / 4;
    let follows = |a: u32, b: u32, modulus: u32| {
        let c = (x(2) + 2 * modulus - a * x(1) % modulus - b * x(0) % modulus) % modulus;
        let mut misses = 0;
        for n in 3..bytes.len() {
            if (a * x(n - 1) + b * x(n - 2) + c) % modulus != x(n) {
                misses += 1;
                if misses > allowed_misses {
                    return false;
                }
            }
        }
        true
    };
    [256_u32, 257].into_iter().any(|modulus| {
        let d = |i: usize| (x(i) + modulus - x(i - 1)) % modulus;
        // Every b, filed under b * d[2]: the b solving b * d[2] = r are `by_product[r]`.
        let mut by_product = vec![Vec::new(); modulus as usize];
        for b in 0..modulus {
            by_product[(b * d(2) % modulus) as usize].push(b);
        }
        (0..modulus).any(|a| {
            let wanted = (d(4) + modulus * modulus - a * d(3)) % modulus;
            by_product[wanted as usize]
                .iter()
                .any(|&b| follows(a, b, modulus))
        })
    })
}

/// Whether the key is one part repeated under a mask: each byte equal to the byte `p` before
/// it XOR (or plus) the same value for most of the key, for some `p` up to half its length
/// (16 random bytes followed by their complement carry 128 bits, not 256).
pub(super) fn repeats_under_a_mask(bytes: &[u8]) -> bool {
    (1..=bytes.len() / 2).any(|p| {
        let pairs = || bytes.iter().zip(&bytes[p..]);
        few_distinct(&pairs().map(|(a, b)| a ^ b).collect::<Vec<u8>>())
            || few_distinct(
                &pairs()
                    .map(|(a, b)| b.wrapping_sub(*a))
                    .collect::<Vec<u8>>(),
            )
    })
}

/// Whether the differences between neighbouring bytes (mod 256), or the differences of those
/// up to the third order, take few values: a ramp has one first difference, squares one second
/// difference. Random bytes' differences are as random as they are (31 differences of random
/// bytes take about 29 values; fewer than half is out of reach by chance).
pub(super) fn follows_a_sequence(bytes: &[u8]) -> bool {
    let mut row = bytes.to_vec();
    for _ in 0..3 {
        row = row.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        if few_distinct(&row) {
            return true;
        }
    }
    false
}

/// Whether `values` take fewer distinct values than half their count: out of reach by chance
/// for random bytes, the mark of a repetition or a rule.
pub(super) fn few_distinct(values: &[u8]) -> bool {
    let mut seen = [false; 256];
    let distinct = values
        .iter()
        .filter(|v| !std::mem::replace(&mut seen[usize::from(**v)], true))
        .count();
    distinct * 2 < values.len()
}

/// The first bytes of constants that look random but are printed in every textbook: pi, e, the
/// square roots of 2 and 3 and the golden ratio (fractional parts; pi and e also whole), and
/// the SHA-256, SHA-1 and MD5 of nothing and SHA-256 of `password` and `secret`; and the
/// `SECRET_KEY` of FastAPI's OAuth2/JWT tutorial, copied into many deployments.
const WELL_KNOWN: [[u8; 8]; 13] = [
    [0x24, 0x3f, 0x6a, 0x88, 0x85, 0xa3, 0x08, 0xd3],
    [0x32, 0x43, 0xf6, 0xa8, 0x88, 0x5a, 0x30, 0x8d],
    [0xb7, 0xe1, 0x51, 0x62, 0x8a, 0xed, 0x2a, 0x6a],
    [0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6],
    [0x6a, 0x09, 0xe6, 0x67, 0xf3, 0xbc, 0xc9, 0x08],
    [0xbb, 0x67, 0xae, 0x85, 0x84, 0xca, 0xa7, 0x3b],
    [0x9e, 0x37, 0x79, 0xb9, 0x7f, 0x4a, 0x7c, 0x15],
    [0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14],
    [0xda, 0x39, 0xa3, 0xee, 0x5e, 0x6b, 0x4b, 0x0d],
    [0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04],
    [0x5e, 0x88, 0x48, 0x98, 0xda, 0x28, 0x04, 0x71],
    [0x2b, 0xb8, 0x0d, 0x53, 0x7b, 0x1d, 0xa3, 0xe3],
    [0x09, 0xd2, 0x5e, 0x09, 0x4f, 0xaa, 0x6c, 0xa2],
];
