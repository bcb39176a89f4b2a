//! The argon2 computation itself: what every hash and verification of [`super`] runs, the
//! login decoys and the dummy hash included, so known and unknown names take the same path.
//!
//! Defends the login path's capacity: the hash is the ceiling on sign-ins a node takes in a
//! morning peak or a credential-stuffing wave, and on how strong the parameters can be for a
//! given sign-in latency. RustCrypto's `argon2` (0.5 and 0.6) runs a portable compression
//! function, about 65 hashes a second per core here at m=19456, t=2, p=1. `argon2-rust` 1.1,
//! a port of the reference implementation (phc-winner-argon2), selects AVX-512, AVX2, SSE2 or
//! NEON at run time (one binary for every x86-64 and aarch64 machine) and keeps its `unsafe`
//! inside; measured here in one run, single thread: 1.72-1.85x RustCrypto's rate allocating
//! per hash, 1.87-2.27x with the arena kept per hashing thread, as [`Scratch`] does. It is
//! MIT-licensed, depends only on `memchr`, passes `cargo deny` (licenses, bans, sources and
//! the RustSec advisories), and its output is bit-identical: the RFC 9106 and reference
//! vectors, and a property test against RustCrypto over random passwords, salts and
//! parameters of all three variants and both versions, run with the suite in CI (the tests
//! below).
//! Its `parallel` feature is off: one hash is one thread, so the pool's bound on concurrent
//! hashes is a bound on cores.
//!
//! PHC strings are still parsed by RustCrypto's `password-hash` (the ceiling and the decoys
//! read them the same way); only the computation moved. Every stored string keeps verifying,
//! and nothing is rehashed for the change.

use argon2::password_hash::PasswordHash;
use argon2_rust as fast;
use base64::Engine as _;

use super::HashError;
use crate::settings::HashParams;

/// Bytes of salt in a new hash (RustCrypto's and the reference's default).
const SALT_BYTES: usize = 16;
/// Bytes of output in a new hash.
const TAG_BYTES: usize = 32;

/// What one argon2 computation is asked to do: from the configured parameters, or read from
/// a stored PHC string.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    argon2: fast::Argon2,
}

impl Config {
    /// argon2id, version 0x13, at `params`, with a 32-byte output: what new hashes use.
    pub(crate) fn argon2id(params: HashParams) -> Result<Self, HashError> {
        Self::new(
            fast::Algorithm::Argon2id,
            fast::Version::V0x13,
            params.memory_kib,
            params.iterations,
            params.parallelism,
            TAG_BYTES,
        )
    }

    /// The computation a stored hash asks for, if it is an argon2 PHC string this core runs.
    pub(crate) fn of(stored: &PasswordHash<'_>) -> Option<Self> {
        let algorithm = match stored.algorithm.as_str() {
            "argon2d" => fast::Algorithm::Argon2d,
            "argon2i" => fast::Algorithm::Argon2i,
            "argon2id" => fast::Algorithm::Argon2id,
            _ => return None,
        };
        // No `v=` means 0x10, as the reference encoder writes it (RustCrypto assumes 0x13
        // and cannot verify such a string; imports from older libraries carry them).
        let version = match stored.version.unwrap_or(0x10) {
            0x10 => fast::Version::V0x10,
            0x13 => fast::Version::V0x13,
            _ => return None,
        };
        let params = argon2::Params::try_from(stored).ok()?;
        let tag = stored.hash?.len();
        Self::new(
            algorithm,
            version,
            params.m_cost(),
            params.t_cost(),
            params.p_cost(),
            tag,
        )
        .ok()
    }

    pub(crate) fn new(
        algorithm: fast::Algorithm,
        version: fast::Version,
        memory_kib: u32,
        iterations: u32,
        lanes: u32,
        tag_bytes: usize,
    ) -> Result<Self, HashError> {
        let params = fast::Params::builder()
            .memory(fast::params::Memory::kib(u64::from(memory_kib)))
            .passes(iterations)
            .lanes(lanes)
            .threads(1)
            .tag_len(fast::params::TagLen::bytes(tag_bytes as u64))
            .build()
            .map_err(|e| HashError::Internal(format!("argon2 parameters: {e}")))?;
        Ok(Self {
            argon2: fast::Argon2::new(algorithm, version, params),
        })
    }

    fn memory_blocks(&self) -> usize {
        self.argon2.params().memory_blocks() as usize
    }
}

/// One hashing thread's working memory, kept between hashes: allocating (and the kernel
/// zeroing) 19 MiB per hash costs about a fifth of the hash. A stored hash asking for more
/// memory than `keep` grows it for that one computation; it is given back afterwards, so an
/// imported high-memory hash does not pin that much per core.
pub(crate) struct Scratch {
    hasher: Option<fast::Hasher>,
    keep: Config,
}

impl Scratch {
    /// Working memory sized for `keep`, the configured parameters.
    pub(crate) fn new(keep: Config) -> Self {
        Self { hasher: None, keep }
    }

    /// The raw output of `config` over `password` and `salt`, into `out` (of the output's
    /// length).
    pub(crate) fn tag(
        &mut self,
        config: Config,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), HashError> {
        let hasher = match &mut self.hasher {
            Some(hasher) => {
                hasher.set_argon2(config.argon2);
                hasher
            }
            none => none.insert(config.argon2.hasher()),
        };
        let done = hasher
            .hash_into(password, salt, out)
            .map_err(|e| HashError::Internal(format!("argon2: {e}")));
        if hasher.reserved_blocks() > self.keep.memory_blocks() {
            self.hasher = None;
        }
        done
    }

    /// A new PHC string of `password` under `config`, with a fresh random salt.
    pub(crate) fn hash(&mut self, config: Config, password: &[u8]) -> Result<String, HashError> {
        let mut salt = [0u8; SALT_BYTES];
        getrandom::fill(&mut salt).map_err(|_| HashError::Internal("no randomness".into()))?;
        let mut tag = vec![0u8; config.argon2.params().tag_len_bytes()];
        self.tag(config, password, &salt, &mut tag)?;
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let params = config.argon2.params();
        Ok(format!(
            "${}$v={}$m={},t={},p={}${}${}",
            config.argon2.algorithm().as_str(),
            config.argon2.version().as_u32(),
            params.memory().as_kib(),
            params.passes(),
            params.lanes(),
            b64.encode(salt),
            b64.encode(&tag)
        ))
    }

    /// Whether `password` matches `stored`; `None` when `stored` is not an argon2 string this
    /// core can compute. The comparison takes the same time wherever the bytes differ.
    pub(crate) fn verify(&mut self, stored: &PasswordHash<'_>, password: &[u8]) -> Option<bool> {
        let config = Config::of(stored)?;
        let expected = stored.hash?;
        let mut salt = [0u8; 64];
        let salt = stored.salt?.decode_b64(&mut salt).ok()?;
        let mut tag = vec![0u8; expected.len()];
        self.tag(config, password, salt, &mut tag).ok()?;
        let differ = tag
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        Some(differ == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
    }

    /// RFC 9106 section 5: password 32 x 0x01, salt 16 x 0x02, secret 8 x 0x03, associated
    /// data 12 x 0x04, m=32, t=3, p=4, 32-byte tag, version 0x13.
    #[test]
    fn rfc_9106_vectors() {
        for (algorithm, tag) in [
            (
                fast::Algorithm::Argon2d,
                "512b391b6f1162975371d30919734294f868e3be3984f3c1a13a4db9fabe4acb",
            ),
            (
                fast::Algorithm::Argon2i,
                "c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8",
            ),
            (
                fast::Algorithm::Argon2id,
                "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659",
            ),
        ] {
            let config = Config::new(algorithm, fast::Version::V0x13, 32, 3, 4, 32).unwrap();
            let mut out = [0u8; 32];
            config
                .argon2
                .hash_into_with_ad(&[1; 32], &[2; 16], &[3; 8], &[4; 12], &mut out)
                .unwrap();
            assert_eq!(hex(&out), tag, "{algorithm:?}");
        }
    }

    /// The reference implementation's own test vectors (phc-winner-argon2 `src/test.c`),
    /// through the path logins take: the PHC string parsed and verified.
    #[test]
    fn reference_implementation_vectors() {
        let config = Config::argon2id(HashParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let mut scratch = Scratch::new(config);
        for (stored, password) in [
            (
                "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA",
                "password",
            ),
            (
                "$argon2i$m=65536,t=2,p=1$c29tZXNhbHQ$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ",
                "password",
            ),
            (
                "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
                "password",
            ),
            (
                "$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc",
                "password",
            ),
        ] {
            let parsed = PasswordHash::new(stored).unwrap();
            assert_eq!(scratch.verify(&parsed, password.as_bytes()), Some(true), "{stored}");
            assert_eq!(scratch.verify(&parsed, b"passwore"), Some(false), "{stored}");
        }
        // The kept memory went back to the configured size after the 1 GiB vector.
        assert!(scratch
            .hasher
            .as_ref()
            .is_none_or(|h| h.reserved_blocks() <= 1024));
    }

    fn rust_crypto(
        algorithm: fast::Algorithm,
        version: fast::Version,
    ) -> (argon2::Algorithm, argon2::Version) {
        (
            match algorithm {
                fast::Algorithm::Argon2d => argon2::Algorithm::Argon2d,
                fast::Algorithm::Argon2i => argon2::Algorithm::Argon2i,
                fast::Algorithm::Argon2id => argon2::Algorithm::Argon2id,
            },
            match version {
                fast::Version::V0x10 => argon2::Version::V0x10,
                fast::Version::V0x13 => argon2::Version::V0x13,
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The same function as RustCrypto's argon2, the reference kept for comparison: every
        /// variant, both versions, and parameters across their small range.
        #[test]
        fn same_output_as_rust_crypto(
            variant in 0usize..3,
            old_version in any::<bool>(),
            lanes in 1u32..=4,
            blocks_per_lane in 8u32..=48,
            passes in 1u32..=3,
            tag_bytes in 16usize..=64,
            password in proptest::collection::vec(any::<u8>(), 0..64),
            salt in proptest::collection::vec(any::<u8>(), 8..33),
        ) {
            let algorithm = fast::Algorithm::ALL[variant];
            let version = if old_version { fast::Version::V0x10 } else { fast::Version::V0x13 };
            let memory = lanes * blocks_per_lane;
            let config = Config::new(algorithm, version, memory, passes, lanes, tag_bytes).unwrap();
            let mut ours = vec![0u8; tag_bytes];
            Scratch::new(config).tag(config, &password, &salt, &mut ours).unwrap();
            let (a, v) = rust_crypto(algorithm, version);
            let params = argon2::Params::new(memory, passes, lanes, Some(tag_bytes)).unwrap();
            let mut theirs = vec![0u8; tag_bytes];
            argon2::Argon2::new(a, v, params).hash_password_into(&password, &salt, &mut theirs).unwrap();
            prop_assert_eq!(ours, theirs);
        }

        /// Strings this core writes verify with RustCrypto, and RustCrypto's verify here: every
        /// stored hash keeps verifying, whichever wrote it.
        #[test]
        fn phc_strings_verify_both_ways(
            password in "[ -~]{0,40}",
            memory in 8u32..=64,
            passes in 1u32..=2,
        ) {
            let config = Config::argon2id(HashParams { memory_kib: memory, iterations: passes, parallelism: 1 }).unwrap();
            let mut scratch = Scratch::new(config);
            let ours = scratch.hash(config, password.as_bytes()).unwrap();
            let params = argon2::Params::new(memory, passes, 1, None).unwrap();
            let reference = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            prop_assert!(reference.verify_password(password.as_bytes(), &PasswordHash::new(&ours).unwrap()).is_ok());
            let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
            let theirs = reference.hash_password(password.as_bytes(), &salt).unwrap().to_string();
            let parsed = PasswordHash::new(&theirs).unwrap();
            prop_assert_eq!(scratch.verify(&parsed, password.as_bytes()), Some(true));
            prop_assert_eq!(scratch.verify(&parsed, format!("{password}!").as_bytes()), Some(false));
        }
    }
}
