//! Access tokens: short-lived JWTs (RFC 9068 `at+jwt`), issued and verified.
//!
//! Defends against forged and replayed tokens: every verification key has exactly one
//! algorithm, and a token whose header names another one is refused, so `alg: none`, HS256
//! signed with a public key (algorithm confusion) and unknown `kid`s all fail. `typ`, `iss`,
//! `aud`, `exp` and `nbf` are checked (5 s leeway at most), oversized tokens are refused before
//! parsing, and every failure is the same [`TokenError`], so a client learns nothing about
//! which check failed. Claims hold ids only, no personal data.
//!
//! Verified tokens are cached by their full text until they expire, so the hot path pays one
//! hash-map lookup instead of a signature check. Only tokens that passed verification enter
//! the cache, so garbage cannot fill it, and its size is capped. The cache hashes a token's
//! last bytes only (see `SignatureTail`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::KeySet;

/// The JWT `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// Longer tokens are refused unparsed; real ones are about 400 bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 5;
const CACHE_CAPACITY: usize = 100_000;
/// Key id of the shared secret when HS256 is configured.
const HS256_KID: &str = "hs256";

/// The claims of an access token. Ids only: no email, username or role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Session id.
    pub sid: String,
    pub jti: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub typ: String,
}

/// Why a token was refused. Deliberately opaque: callers answer a generic 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid access token")]
pub struct TokenError;

/// A freshly issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_in: Duration,
    pub claims: AccessClaims,
}

/// Who tokens are from and for, and how long they live.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

struct VerificationKey {
    algorithm: Algorithm,
    key: DecodingKey,
    /// Unix time the key stopped signing: it verifies only tokens issued before then, and only
    /// until the retention has passed.
    retired_at: Option<u64>,
}

/// Issues and verifies access tokens. Cheap to clone.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    policy: TokenPolicy,
    signing_kid: String,
    signing_algorithm: Algorithm,
    signing_key: EncodingKey,
    verification: HashMap<String, VerificationKey>,
    validation: HashMap<String, Validation>,
    cache: Mutex<HashMap<Box<[u8]>, Arc<AccessClaims>, SignatureTail>>,
}

/// The token cache's hasher: a keyed SipHash (as `HashMap`'s default) of a token's length and
/// its last 32 bytes, which are signature bytes.
///
/// Why not the whole token: hashing ~500 bytes per request cost more than the rest of the cache
/// lookup. The tail keeps what the keyed hash defends: only verified tokens enter the cache,
/// and their signature bytes are not the caller's to choose, so nobody can line entries up in
/// one bucket. Keys are still compared whole, so two tokens that share a tail are two entries.
#[derive(Debug, Clone, Default)]
struct SignatureTail(std::hash::RandomState);

impl std::hash::BuildHasher for SignatureTail {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

struct TailHasher(std::hash::DefaultHasher);

impl std::hash::Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write_usize(bytes.len());
        self.0.write(&bytes[bytes.len().saturating_sub(32)..]);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.inner.policy.issuer)
            .field("signing_kid", &self.inner.signing_kid)
            .field(
                "verification_kids",
                &self.inner.verification.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot use the signing keys: {0}")]
pub struct KeyUseError(String);

impl Tokens {
    /// EdDSA with the key set: the current key signs, every key verifies.
    pub fn eddsa(keys: &KeySet, policy: TokenPolicy) -> Result<Self, KeyUseError> {
        let current = keys.current();
        let der = current
            .signing_key()
            .to_pkcs8_der()
            .map_err(|e| KeyUseError(e.to_string()))?;
        let signing_key = EncodingKey::from_ed_der(der.as_bytes());
        let mut verification = HashMap::new();
        for key in keys.keys() {
            let x = URL_SAFE_NO_PAD.encode(key.public_key());
            let decoding =
                DecodingKey::from_ed_components(&x).map_err(|e| KeyUseError(e.to_string()))?;
            verification.insert(
                key.kid().to_owned(),
                VerificationKey {
                    algorithm: Algorithm::EdDSA,
                    key: decoding,
                    retired_at: key
                        .retired_at()
                        .map(|at| u64::try_from(at.unix_timestamp()).unwrap_or(0)),
                },
            );
        }
        Ok(Self::build(
            policy,
            current.kid().to_owned(),
            Algorithm::EdDSA,
            signing_key,
            verification,
        ))
    }

    /// HS256 with a shared secret of at least 32 bytes (anyone who can verify can also mint).
    pub fn hs256(secret: &[u8], policy: TokenPolicy) -> Result<Self, KeyUseError> {
        if secret.len() < 32 {
            return Err(KeyUseError(
                "the HS256 secret must be at least 32 bytes".into(),
            ));
        }
        let verification = HashMap::from([(
            HS256_KID.to_owned(),
            VerificationKey {
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
                retired_at: None,
            },
        )]);
        Ok(Self::build(
            policy,
            HS256_KID.to_owned(),
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
            verification,
        ))
    }

    fn build(
        policy: TokenPolicy,
        signing_kid: String,
        signing_algorithm: Algorithm,
        signing_key: EncodingKey,
        verification: HashMap<String, VerificationKey>,
    ) -> Self {
        let validation = verification
            .iter()
            .map(|(kid, key)| {
                let mut v = Validation::new(key.algorithm);
                v.set_issuer(&[&policy.issuer]);
                v.set_audience(&[&policy.audience]);
                v.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
                v.leeway = LEEWAY_SECS;
                v.validate_exp = true;
                v.validate_nbf = true;
                (kid.clone(), v)
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                policy,
                signing_kid,
                signing_algorithm,
                signing_key,
                verification,
                validation,
                cache: Mutex::new(HashMap::default()),
            }),
        }
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.inner.policy
    }

    /// Signs a token for `user_id` in session `session_id`.
    pub fn issue(&self, user_id: &str, session_id: &str) -> Result<Issued, TokenError> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| TokenError)?;
        self.issue_as(
            user_id,
            session_id,
            &URL_SAFE_NO_PAD.encode(jti),
            unix_now(),
        )
    }

    /// Signs the token with exactly these `jti` and `iat`. Ed25519 and HMAC signatures are
    /// deterministic, so the same inputs give the byte-identical token: this is how a refresh
    /// retried inside the grace window gets the same access token again.
    pub fn issue_as(
        &self,
        user_id: &str,
        session_id: &str,
        jti: &str,
        iat: u64,
    ) -> Result<Issued, TokenError> {
        self.issue_until(user_id, session_id, jti, iat, u64::MAX)
    }

    /// [`Tokens::issue_as`], expiring no later than `not_after` (Unix seconds): a session's
    /// absolute end, so no token outlives the session it belongs to.
    pub fn issue_until(
        &self,
        user_id: &str,
        session_id: &str,
        jti: &str,
        iat: u64,
        not_after: u64,
    ) -> Result<Issued, TokenError> {
        let policy = &self.inner.policy;
        let claims = AccessClaims {
            iss: policy.issuer.clone(),
            aud: policy.audience.clone(),
            sub: user_id.to_owned(),
            sid: session_id.to_owned(),
            jti: jti.to_owned(),
            iat,
            nbf: iat,
            exp: iat.saturating_add(policy.ttl.as_secs()).min(not_after),
            typ: ACCESS_TOKEN_TYPE.to_owned(),
        };
        let mut header = Header::new(self.inner.signing_algorithm);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(self.inner.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.inner.signing_key)
            .map_err(|_| TokenError)?;
        Ok(Issued {
            token,
            expires_in: Duration::from_secs(claims.exp.saturating_sub(unix_now())),
            claims,
        })
    }

    /// Verifies a token (or finds it in the cache of verified tokens).
    pub fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, TokenError> {
        self.verify_bytes(token.as_bytes())
    }

    /// Verifies a token as it arrived, in bytes (the credential of an `Authorization: Bearer`
    /// header). A token verified before is found in the cache by its bytes; any other must be
    /// RFC 6750 `b64token` characters, valid as text, before it is parsed.
    ///
    /// Why the order: checking the characters of every request's ~500-byte token cost twice
    /// the cache lookup, and a token in the cache passed that check when it was verified (the
    /// cache compares its keys whole, so only those exact bytes are found).
    pub fn verify_bytes(&self, token: &[u8]) -> Result<Arc<AccessClaims>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError);
        }
        let now = unix_now();
        if let Some(claims) = self.cached(token) {
            return if claims.exp + LEEWAY_SECS > now {
                Ok(claims)
            } else {
                Err(TokenError)
            };
        }
        if token.is_empty() || !is_b64token(token) {
            return Err(TokenError);
        }
        let text = std::str::from_utf8(token).map_err(|_| TokenError)?;
        let claims = Arc::new(self.verify_uncached(text, now)?);
        self.remember(token, &claims, now);
        Ok(claims)
    }

    fn verify_uncached(&self, token: &str, now: u64) -> Result<AccessClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError)?;
        if !matches!(header.typ.as_deref(), Some(t) if t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt"))
        {
            return Err(TokenError);
        }
        let kid = header.kid.as_deref().ok_or(TokenError)?;
        let key = self.inner.verification.get(kid).ok_or(TokenError)?;
        // The algorithm is the key's, never the token's choice.
        if header.alg != key.algorithm {
            return Err(TokenError);
        }
        let validation = self.inner.validation.get(kid).ok_or(TokenError)?;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key.key, validation)
            .map_err(|_| TokenError)?
            .claims;
        let retired_ok = key.retired_at.is_none_or(|retired| {
            claims.iat <= retired && now < retired + crate::keys::RETIRED_KEY_RETENTION.as_secs()
        });
        let sane = retired_ok
            && claims.typ == ACCESS_TOKEN_TYPE
            && !claims.sid.is_empty()
            && !claims.sub.is_empty()
            && !claims.jti.is_empty()
            && claims.iat <= now + LEEWAY_SECS
            && claims.exp > claims.iat
            // Not longer than this deployment issues now: after the TTL is lowered, older
            // long-lived tokens stop verifying rather than outliving the revocations that
            // are only remembered for the new TTL.
            && claims.exp - claims.iat <= self.inner.policy.ttl.as_secs();
        if sane {
            Ok(claims)
        } else {
            Err(TokenError)
        }
    }

    fn cached(&self, token: &[u8]) -> Option<Arc<AccessClaims>> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    fn remember(&self, token: &[u8], claims: &Arc<AccessClaims>, now: u64) {
        let mut cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, c| c.exp + LEEWAY_SECS > now);
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(token.into(), Arc::clone(claims));
    }
}

/// Whether every byte of `token` is one of RFC 6750's `b64token` characters (letters, digits,
/// `-._~+/=`), the only ones a bearer token may hold.
///
/// Written as one pass without branches, which the compiler turns into vector compares.
#[allow(clippy::needless_bitwise_bool)] // no short-circuits: that is what lets it vectorise
pub fn is_b64token(token: &[u8]) -> bool {
    token.iter().fold(true, |all, &b| {
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let digit = b.wrapping_sub(b'0') < 10;
        let mark = (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~');
        let base64 = (b == b'+') | (b == b'/') | (b == b'=');
        all & (letter | digit | mark | base64)
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// HMAC-SHA256 of `message` under `key`: derived keys (a label under a deployment secret),
/// seals and MACs. HMAC takes keys of any length, so this cannot fail.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac as _;
    hmac_of(key, message).finalize().into_bytes().into()
}

/// Whether `tag` is the HMAC-SHA256 of `message` under `key`, compared in constant time.
pub fn hmac_sha256_matches(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
    use hmac::Mac as _;
    hmac_of(key, message).verify_slice(tag).is_ok()
}

fn hmac_of(key: &[u8], message: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac as _;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(message);
    mac
}

/// Lower-case hex SHA-256 of `bytes`: how opaque tokens are stored (never the token itself),
/// and how shared stores name a subject without holding it in the clear.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ttl: u64) -> TokenPolicy {
        TokenPolicy {
            issuer: "rampart".into(),
            audience: "rampart-api".into(),
            ttl: Duration::from_secs(ttl),
        }
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    /// Splits a token into (header json, claims json, signature).
    fn parts(token: &str) -> (serde_json::Value, serde_json::Value, String) {
        let mut it = token.split('.');
        let h = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
        let c = URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap();
        (
            serde_json::from_slice(&h).unwrap(),
            serde_json::from_slice(&c).unwrap(),
            it.next().unwrap().to_owned(),
        )
    }

    #[test]
    fn bytes_around_a_verified_token_are_not_taken_for_it() {
        let keys = KeySet::generate().unwrap();
        let tokens = Tokens::eddsa(&keys, policy(900)).unwrap();
        let token = tokens.issue("user-1", "session-1").unwrap().token;
        // Verified once, so cached: the lookup by bytes must still compare all of them.
        assert!(tokens.verify_bytes(token.as_bytes()).is_ok());
        let mut longer = token.clone().into_bytes();
        longer.push(b'A');
        let mut non_ascii = token.clone().into_bytes();
        non_ascii.push(0xe9);
        let mut with_space = token.clone().into_bytes();
        with_space.insert(10, b' ');
        // One signature character changed (not the last, whose low bits base64 leaves unused).
        let mut swapped = token.clone().into_bytes();
        let at = swapped.len() - 5;
        swapped[at] = if swapped[at] == b'A' { b'B' } else { b'A' };
        for (what, bytes) in [
            ("a byte more", longer.as_slice()),
            ("a non-ASCII byte", &non_ascii),
            ("a space inside", &with_space),
            ("a signature byte changed", &swapped),
            (
                "the token less a byte",
                &token.as_bytes()[..token.len() - 1],
            ),
            ("nothing", b"".as_slice()),
        ] {
            assert_eq!(
                tokens.verify_bytes(bytes),
                Err(TokenError),
                "{what} accepted"
            );
        }
        assert!(tokens.verify_bytes(token.as_bytes()).is_ok());
    }

    #[test]
    fn issued_tokens_verify_and_hold_ids_only() {
        let keys = KeySet::generate().unwrap();
        let tokens = Tokens::eddsa(&keys, policy(900)).unwrap();
        let issued = tokens.issue("user-1", "session-1").unwrap();
        let claims = tokens.verify(&issued.token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.sid.as_str()),
            ("user-1", "session-1")
        );
        let (header, body, _) = parts(&issued.token);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], keys.current().kid());
        let mut names: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["aud", "exp", "iat", "iss", "jti", "nbf", "sid", "sub", "typ"]
        );
        // Cached answers are the same answers.
        assert_eq!(tokens.verify(&issued.token).unwrap(), claims);
    }

    #[test]
    fn forged_tokens_are_refused() {
        let keys = KeySet::generate().unwrap();
        let tokens = Tokens::eddsa(&keys, policy(900)).unwrap();
        let good = tokens.issue("user-1", "s-1").unwrap().token;
        let (header, claims, signature) = parts(&good);
        let forge = |h: &serde_json::Value, c: &serde_json::Value, sig: &str| {
            format!("{}.{}.{sig}", b64(h), b64(c))
        };

        let mut none = header.clone();
        none["alg"] = "none".into();
        let mut admin = claims.clone();
        admin["sub"] = "someone-else".into();
        let mut unknown_kid = header.clone();
        unknown_kid["kid"] = "nope".into();
        let mut no_typ = header.clone();
        no_typ.as_object_mut().unwrap().remove("typ");
        let mut id_token = header.clone();
        id_token["typ"] = "JWT".into();

        // HS256 "signed" with the public key: the classic confusion attack.
        let public = URL_SAFE_NO_PAD.encode(keys.current().public_key());
        let mut hs = header.clone();
        hs["alg"] = "HS256".into();
        let confused = {
            let mut h = Header::new(Algorithm::HS256);
            h.typ = Some("at+jwt".into());
            h.kid = Some(keys.current().kid().to_owned());
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(public.as_bytes())).unwrap()
        };
        let other_keys = KeySet::generate().unwrap();
        let other_issuer = Tokens::eddsa(&other_keys, policy(900))
            .unwrap()
            .issue("user-1", "s-1")
            .unwrap()
            .token;
        let mut other_kid = parts(&other_issuer).0;
        other_kid["kid"] = keys.current().kid().into();
        let foreign_signed = format!(
            "{}.{}",
            b64(&other_kid),
            other_issuer.split_once('.').unwrap().1
        );

        let attacks = [
            ("alg none, no signature", forge(&none, &claims, "")),
            (
                "alg none, kept signature",
                forge(&none, &claims, &signature),
            ),
            ("stripped signature", forge(&header, &claims, "")),
            ("tampered claims", forge(&header, &admin, &signature)),
            ("unknown kid", forge(&unknown_kid, &claims, &signature)),
            ("missing typ", forge(&no_typ, &claims, &signature)),
            ("wrong typ", forge(&id_token, &claims, &signature)),
            ("header says HS256", forge(&hs, &claims, &signature)),
            ("HS256 with the public key", confused),
            ("another issuer's key", foreign_signed),
            (
                "oversized",
                format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES)),
            ),
            ("garbage", "not.a.jwt".to_owned()),
            ("empty", String::new()),
        ];
        for (what, token) in attacks {
            assert_eq!(tokens.verify(&token), Err(TokenError), "{what} accepted");
        }
    }

    #[test]
    fn wrong_issuer_audience_and_times_are_refused() {
        let keys = KeySet::generate().unwrap();
        let tokens = Tokens::eddsa(&keys, policy(900)).unwrap();
        let sign = |claims: &serde_json::Value| {
            let mut h = Header::new(Algorithm::EdDSA);
            h.typ = Some("at+jwt".into());
            h.kid = Some(keys.current().kid().to_owned());
            let der = keys.current().signing_key().to_pkcs8_der().unwrap();
            jsonwebtoken::encode(&h, claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
        };
        let now = unix_now();
        let base = serde_json::json!({
            "iss": "rampart", "aud": "rampart-api", "sub": "u", "sid": "s", "jti": "j",
            "iat": now, "nbf": now, "exp": now + 600, "typ": "at+jwt"
        });
        assert!(
            tokens.verify(&sign(&base)).is_ok(),
            "the control token must verify"
        );
        let variants: [(&str, serde_json::Value); 7] = [
            ("iss", "someone-else".into()),
            ("aud", "other-api".into()),
            ("exp", (now - 60).into()),
            ("nbf", (now + 600).into()),
            ("iat", (now + 600).into()),
            ("typ", "refresh".into()),
            ("exp", (now + 2 * 3600).into()),
        ];
        for (claim, value) in variants {
            let mut c = base.clone();
            c[claim] = value.clone();
            assert_eq!(
                tokens.verify(&sign(&c)),
                Err(TokenError),
                "{claim}={value} accepted"
            );
        }
        let mut missing_sid = base.clone();
        missing_sid.as_object_mut().unwrap().remove("sid");
        assert_eq!(tokens.verify(&sign(&missing_sid)), Err(TokenError));
    }

    #[test]
    fn rotated_keys_keep_verifying_old_tokens() {
        let mut keys = KeySet::generate().unwrap();
        let before = Tokens::eddsa(&keys, policy(900))
            .unwrap()
            .issue("u", "s")
            .unwrap()
            .token;
        keys.rotate(time::OffsetDateTime::now_utc()).unwrap();
        let after = Tokens::eddsa(&keys, policy(900)).unwrap();
        assert!(
            after.verify(&before).is_ok(),
            "a token signed before rotation must still verify"
        );
        let fresh = after.issue("u", "s").unwrap().token;
        assert_eq!(parts(&fresh).0["kid"], keys.current().kid());
    }

    #[test]
    fn a_retired_key_cannot_sign_new_tokens() {
        let mut keys = KeySet::generate().unwrap();
        let old_kid = keys.current().kid().to_owned();
        let old_signer = Tokens::eddsa(&keys, policy(900)).unwrap();
        // Rotated a minute ago; a token the old key signs now (e.g. after a leak) is refused.
        keys.rotate(time::OffsetDateTime::now_utc() - Duration::from_secs(60))
            .unwrap();
        let verifier = Tokens::eddsa(&keys, policy(900)).unwrap();
        let forged_after_retirement = old_signer.issue("admin", "s").unwrap().token;
        assert_eq!(parts(&forged_after_retirement).0["kid"], old_kid.as_str());
        assert_eq!(verifier.verify(&forged_after_retirement), Err(TokenError));
    }

    #[test]
    fn the_same_claims_sign_to_the_same_token() {
        let tokens = Tokens::eddsa(&KeySet::generate().unwrap(), policy(900)).unwrap();
        let first = tokens.issue_as("u", "s", "jti-1", unix_now()).unwrap();
        let again = tokens
            .issue_as("u", "s", "jti-1", first.claims.iat)
            .unwrap();
        assert_eq!(first.token, again.token);
        assert_ne!(first.token, tokens.issue("u", "s").unwrap().token);
    }

    #[test]
    fn no_token_outlives_the_bound_it_is_issued_under() {
        let tokens = Tokens::eddsa(&KeySet::generate().unwrap(), policy(900)).unwrap();
        let now = unix_now();
        let bounded = tokens.issue_until("u", "s", "j", now, now + 60).unwrap();
        assert_eq!(bounded.claims.exp, now + 60);
        assert!(bounded.expires_in <= Duration::from_secs(60));
        assert_eq!(tokens.verify(&bounded.token).unwrap().exp, now + 60);
        let unbounded = tokens.issue_until("u", "s", "j", now, u64::MAX).unwrap();
        assert_eq!(unbounded.claims.exp, now + 900);
    }

    #[test]
    fn hs256_needs_a_long_secret_and_pins_its_algorithm() {
        assert!(Tokens::hs256(b"short", policy(900)).is_err());
        let tokens = Tokens::hs256(&[7u8; 32], policy(900)).unwrap();
        let issued = tokens.issue("u", "s").unwrap();
        assert_eq!(parts(&issued.token).0["alg"], "HS256");
        assert!(tokens.verify(&issued.token).is_ok());
        let eddsa = Tokens::eddsa(&KeySet::generate().unwrap(), policy(900)).unwrap();
        assert!(eddsa.verify(&issued.token).is_err());
    }
}
