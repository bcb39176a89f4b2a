//! The JSON Web Token toolkit the token checks forge with: splitting a token, HMAC under each
//! JWS algorithm, the Ed25519 token carrying its own key, and the ECDSA "psychic signature".
//!
//! Written here rather than taken from a JOSE crate because every one of them refuses, by
//! design, to produce what these checks need: unsigned tokens, signatures of zeros, tokens
//! signed with an empty key or carrying their own key.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};

/// jwt_tool's `kid` path: whatever the directory, it ends at an empty file.
pub(crate) const KID_DEV_NULL: &str = "../../../../../../dev/null";
/// An ECDSA signature of r = 0 and s = 0, DER-encoded (`30 06 02 01 00 02 01 00`), as some
/// libraries take it instead of the JWS form of raw zeros.
pub(crate) const PSYCHIC_DER: [u8; 8] = [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00];

/// A token split into its decoded parts.
#[derive(Debug, Clone)]
pub(crate) struct Jwt {
    pub(crate) header: Value,
    pub(crate) claims: Value,
    pub(crate) signing_input: String,
    /// The decoded signature; empty when it is missing or not base64url.
    pub(crate) signature: Vec<u8>,
}

impl Jwt {
    pub(crate) fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        // Header and claims must be objects (RFC 7519), which also keeps the forgeries'
        // `value["name"] = ...` edits from panicking on a token that holds an array.
        let decode = |part: &str| -> Option<Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?)
                .ok()
                .filter(Value::is_object)
        };
        Some(Self {
            header: decode(h)?,
            claims: decode(c)?,
            signing_input: format!("{h}.{c}"),
            signature: URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .unwrap_or_default(),
        })
    }

    /// The header's `alg`, or "" when it has none.
    pub(crate) fn alg(&self) -> &str {
        self.header.get("alg").and_then(Value::as_str).unwrap_or("")
    }
}

/// The JWS HMAC algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HmacAlg {
    Hs256,
    Hs384,
    Hs512,
}

/// Runs `$body` with `$mac` bound to an HMAC keyed with `$key` for `$alg`'s hash.
macro_rules! with_hmac {
    ($alg:expr, $key:expr, |$mac:ident| $body:expr, $invalid:expr) => {
        match $alg {
            HmacAlg::Hs256 => match Hmac::<Sha256>::new_from_slice($key) {
                Ok(mut $mac) => $body,
                Err(_) => $invalid,
            },
            HmacAlg::Hs384 => match Hmac::<Sha384>::new_from_slice($key) {
                Ok(mut $mac) => $body,
                Err(_) => $invalid,
            },
            HmacAlg::Hs512 => match Hmac::<Sha512>::new_from_slice($key) {
                Ok(mut $mac) => $body,
                Err(_) => $invalid,
            },
        }
    };
}

impl HmacAlg {
    pub(crate) fn from_name(alg: &str) -> Option<Self> {
        match alg {
            "HS256" => Some(Self::Hs256),
            "HS384" => Some(Self::Hs384),
            "HS512" => Some(Self::Hs512),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
        }
    }

    /// The length of its MAC in bytes.
    pub(crate) fn output_len(self) -> usize {
        match self {
            Self::Hs256 => 32,
            Self::Hs384 => 48,
            Self::Hs512 => 64,
        }
    }

    pub(crate) fn sign(self, key: &[u8], input: &[u8]) -> Vec<u8> {
        // HMAC takes a key of any length: the error arm cannot be reached.
        with_hmac!(
            self,
            key,
            |mac| {
                mac.update(input);
                mac.finalize().into_bytes().to_vec()
            },
            Vec::new()
        )
    }

    /// Whether `signature` is this algorithm's MAC of `input` under `key` (no allocation).
    pub(crate) fn verifies(self, key: &[u8], input: &[u8], signature: &[u8]) -> bool {
        with_hmac!(
            self,
            key,
            |mac| {
                mac.update(input);
                mac.verify_slice(signature).is_ok()
            },
            false
        )
    }
}

/// base64url without padding, as JWS writes every part.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn encode(value: &Value) -> String {
    b64url(value.to_string().as_bytes())
}

/// A token of `header` and `claims` signed with `key` under `alg` (the header's `alg` is set).
pub(crate) fn hmac_token(header: &Value, claims: &Value, alg: HmacAlg, key: &[u8]) -> String {
    let mut header = header.clone();
    header["alg"] = Value::from(alg.name());
    let input = format!("{}.{}", encode(&header), encode(claims));
    let signature = alg.sign(key, input.as_bytes());
    format!("{input}.{}", b64url(&signature))
}

/// An EdDSA token signed with a fresh Ed25519 key and carrying that key as its `jwk` header.
pub(crate) fn embedded_ed25519_token(claims: &Value, seed: &[u8; 32]) -> String {
    use ed25519_dalek::Signer as _;
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    let header = json!({
        "alg": "EdDSA",
        "typ": "JWT",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": b64url(key.verifying_key().as_bytes())},
    });
    let input = format!("{}.{}", encode(&header), encode(claims));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url(&signature.to_bytes()))
}

/// The psychic signatures for an ECDSA token's `alg`: r = s = 0 as JWS writes it (the two
/// zero integers side by side, each as long as the curve's order) and DER-encoded.
pub(crate) fn psychic_signatures(alg: &str) -> Option<[Vec<u8>; 2]> {
    let integer_len = match alg {
        "ES256" => 32,
        "ES384" => 48,
        "ES512" => 66,
        _ => return None,
    };
    Some([vec![0u8; 2 * integer_len], PSYCHIC_DER.to_vec()])
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn is_accepted(status: u16) -> bool {
    (200..300).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_split_and_decoded() {
        let header = encode(&serde_json::json!({"alg": "EdDSA", "kid": "k1"}));
        let claims = encode(&serde_json::json!({"sub": "u1", "exp": 10}));
        let jwt = Jwt::parse(&format!("{header}.{claims}.sig")).unwrap();
        assert_eq!(jwt.header["kid"], "k1");
        assert_eq!(jwt.claims["sub"], "u1");
        assert!(Jwt::parse("opaque-refresh-token").is_none());
        let array = encode(&serde_json::json!(["sub"]));
        assert!(Jwt::parse(&format!("{header}.{array}.sig")).is_none());
        assert!(Jwt::parse("a.b.c.d").is_none());
    }

    #[test]
    fn hmac_tokens_verify_with_their_key_under_each_algorithm() {
        let header = serde_json::json!({"alg": "RS256", "kid": KID_DEV_NULL});
        let claims = serde_json::json!({"sub": "u1", "admin": false});
        for alg in [HmacAlg::Hs256, HmacAlg::Hs384, HmacAlg::Hs512] {
            let jwt = Jwt::parse(&hmac_token(&header, &claims, alg, b"k")).unwrap();
            assert_eq!(jwt.alg(), alg.name());
            assert_eq!(jwt.header["kid"], KID_DEV_NULL);
            assert_eq!(jwt.claims, claims);
            assert_eq!(jwt.signature.len(), alg.output_len());
            assert!(alg.verifies(b"k", jwt.signing_input.as_bytes(), &jwt.signature));
            assert!(!alg.verifies(b"K", jwt.signing_input.as_bytes(), &jwt.signature));
        }
        // The empty key is a key like any other to HMAC.
        let jwt = Jwt::parse(&hmac_token(&header, &claims, HmacAlg::Hs256, b"")).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"").unwrap();
        mac.update(jwt.signing_input.as_bytes());
        assert_eq!(jwt.signature, mac.finalize().into_bytes().to_vec());
    }

    #[test]
    fn the_embedded_jwk_token_verifies_with_the_key_it_carries() {
        use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
        let claims = serde_json::json!({"sub": "u1"});
        let jwt = Jwt::parse(&embedded_ed25519_token(&claims, &[9; 32])).unwrap();
        assert_eq!(jwt.alg(), "EdDSA");
        assert_eq!(jwt.header["jwk"]["kty"], "OKP");
        let x = URL_SAFE_NO_PAD
            .decode(jwt.header["jwk"]["x"].as_str().unwrap())
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        let signature = Signature::from_slice(&jwt.signature).unwrap();
        assert!(key.verify(jwt.signing_input.as_bytes(), &signature).is_ok());
        assert_eq!(jwt.claims, claims);
    }

    #[test]
    fn psychic_signatures_are_zero_integers_in_both_encodings() {
        let [raw, der] = psychic_signatures("ES256").unwrap();
        assert_eq!(raw, vec![0u8; 64]);
        assert_eq!(b64url(&der), "MAYCAQACAQA", "jwt_tool's psychic signature");
        assert_eq!(psychic_signatures("ES384").unwrap()[0].len(), 96);
        assert_eq!(psychic_signatures("ES512").unwrap()[0].len(), 132);
        assert!(psychic_signatures("HS256").is_none());
        assert!(psychic_signatures("EdDSA").is_none());
    }
}
