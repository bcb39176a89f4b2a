//! The access token the login returned (or `--token`): its lifetime and claims, and whether the
//! API accepts forgeries of it: `alg: none`, the signature removed, a claim edited under the
//! old signature, and HS256 signed with a public key from the JWKS (algorithm confusion).
//!
//! A forgery counts as accepted only when the probe route answers 2xx to the real token and
//! 401/403 to garbage: an API that answers 200 to everything proves nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::Ctx;
use crate::client::{ProbeError, Req};
use crate::findings::{self, Finding, Severity};

const ONE_HOUR: u64 = 3600;
const JWKS_PATHS: [&str; 2] = ["/.well-known/jwks.json", "/jwks.json"];
/// Probe routes tried when the document names no secured GET without parameters.
const FALLBACK_PROBES: [&str; 4] = ["/v1/users/me", "/users/me", "/me", "/api/me"];

/// A token split into its decoded parts.
#[derive(Debug, Clone)]
pub(crate) struct Jwt {
    pub(crate) header: Value,
    pub(crate) claims: Value,
    pub(crate) signing_input: String,
}

impl Jwt {
    pub(crate) fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (h, c, _s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let decode = |part: &str| -> Option<Value> {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?).ok()
        };
        Some(Self {
            header: decode(h)?,
            claims: decode(c)?,
            signing_input: format!("{h}.{c}"),
        })
    }
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let Some(token) = ctx.token.clone() else {
        ctx.note(
            "no access token (give --username/--password or --token): token checks were not run",
        );
        return Ok(());
    };
    let probe = probe_route(ctx, &token).await?;
    let Some(jwt) = Jwt::parse(&token) else {
        ctx.note("the access token is not a JWT: claim and forgery checks do not apply");
        return Ok(());
    };
    claims(ctx, &jwt);
    let Some(probe) = probe else {
        return Ok(());
    };
    let accepted = |status: u16| (200..300).contains(&status);
    let forge = |header: &Value, claims: &Value, signature: &str| {
        format!("{}.{}.{signature}", encode(header), encode(claims))
    };

    let mut none_header = jwt.header.clone();
    none_header["alg"] = Value::from("none");
    let unsigned = forge(&none_header, &jwt.claims, "");
    let status = ctx.send(&Req::get(&probe).bearer(&unsigned)).await?.status;
    if accepted(status) {
        ctx.report(Finding::new(
            &findings::ALG_NONE,
            Severity::Critical,
            format!(
            "GET {probe} with the token re-encoded as alg \"none\" and no signature -> {status}"
        ),
        ));
    }

    let stripped = format!("{}.", jwt.signing_input);
    let status = ctx.send(&Req::get(&probe).bearer(&stripped)).await?.status;
    if accepted(status) {
        ctx.report(Finding::new(
            &findings::SIGNATURE_STRIPPED,
            Severity::Critical,
            format!(
            "GET {probe} with the token's header and payload and an empty signature -> {status}"
        ),
        ));
    }

    let signature = token.rsplit('.').next().unwrap_or_default();
    let mut edited = jwt.claims.clone();
    edited["rampart_audit"] = Value::from(true);
    if let Some(exp) = edited.get("exp").and_then(Value::as_u64) {
        edited["exp"] = Value::from(exp.saturating_add(ONE_HOUR));
    }
    let tampered = format!(
        "{}.{}.{signature}",
        token.split('.').next().unwrap_or_default(),
        encode(&edited)
    );
    let status = ctx.send(&Req::get(&probe).bearer(&tampered)).await?.status;
    if accepted(status) {
        ctx.report(Finding::new(&findings::CLAIMS_TAMPERED, Severity::Critical, format!(
            "GET {probe} with `exp` extended by an hour and a claim added, under the original signature -> {status}"
        )));
    }

    confusion(ctx, &jwt, &probe).await
}

/// Lifetime and personal data, read from the claims without sending anything.
fn claims(ctx: &mut Ctx<'_>, jwt: &Jwt) {
    // NumericDate may be written with a fraction; whole seconds are enough here.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let seconds = |name: &str| {
        jwt.claims
            .get(name)
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64)
    };
    let (exp, iat) = (seconds("exp"), seconds("iat"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match (exp, iat) {
        (None, _) => ctx.report(Finding::new(
            &findings::TOKEN_LIFETIME,
            Severity::High,
            "the access token has no `exp` claim: it never expires",
        )),
        (Some(exp), iat) => {
            let lifetime = exp.saturating_sub(iat.unwrap_or(now));
            if lifetime > ONE_HOUR {
                let severity = if lifetime > 24 * ONE_HOUR {
                    Severity::High
                } else {
                    Severity::Medium
                };
                ctx.report(Finding::new(
                    &findings::TOKEN_LIFETIME,
                    severity,
                    format!(
                        "exp - {} = {} minutes",
                        if iat.is_some() { "iat" } else { "now" },
                        lifetime / 60
                    ),
                ));
            }
        }
    }
    let mut personal = Vec::new();
    let mut secret = false;
    if let Some(object) = jwt.claims.as_object() {
        for (key, value) in object {
            let k = key.to_ascii_lowercase();
            if [
                "password",
                "passwd",
                "pwd",
                "secret",
                "api_key",
                "apikey",
                "ssn",
                "credit_card",
            ]
            .iter()
            .any(|s| k.contains(s))
            {
                secret = true;
                personal.push(key.clone());
            } else if [
                "email",
                "username",
                "user_name",
                "preferred_username",
                "name",
                "given_name",
                "family_name",
                "phone",
                "address",
                "birthdate",
            ]
            .contains(&k.as_str())
                || value
                    .as_str()
                    .is_some_and(|s| s.contains('@') && s.contains('.'))
            {
                personal.push(key.clone());
            }
        }
    }
    if !personal.is_empty() {
        ctx.report(Finding::new(
            &findings::TOKEN_PERSONAL_DATA,
            if secret {
                Severity::High
            } else {
                Severity::Medium
            },
            format!(
                "claims anyone holding the token can read: {}",
                personal.join(", ")
            ),
        ));
    }
}

/// A route that answers 2xx to the real token and 401/403 to garbage, or a note saying why the
/// forgery checks could not run.
async fn probe_route(ctx: &mut Ctx<'_>, token: &str) -> Result<Option<String>, ProbeError> {
    let mut candidates: Vec<String> = ctx
        .plain_gets(true)
        .take(3)
        .map(|o| o.path.clone())
        .collect();
    candidates.extend(FALLBACK_PROBES.iter().map(|p| (*p).to_owned()));
    for path in candidates.into_iter().take(5) {
        let real = ctx.send(&Req::get(&path).bearer(token)).await?;
        if !real.is_success() {
            continue;
        }
        let garbage = ctx
            .send(&Req::get(&path).bearer("rampart.audit.garbage"))
            .await?;
        if matches!(garbage.status, 401 | 403) {
            ctx.token_route = Some(path.clone());
            return Ok(Some(path));
        }
        ctx.note(format!(
            "GET {path} answers {} to the token and {} to a garbage token: it cannot tell forgeries apart, so it was not used",
            real.status, garbage.status
        ));
    }
    ctx.note("no route answered 2xx to the token and 401/403 to garbage: forged-token checks were not run");
    Ok(None)
}

/// HS256 tokens signed with each published public key, in the encodings libraries have been
/// known to accept as an HMAC secret.
async fn confusion(ctx: &mut Ctx<'_>, jwt: &Jwt, probe: &str) -> Result<(), ProbeError> {
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
        let input = format!("{}.{}", encode(&header), encode(&jwt.claims));
        for (label, secret) in secrets_of(key) {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret) else {
                continue;
            };
            mac.update(input.as_bytes());
            let token = format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            );
            let status = ctx.send(&Req::get(probe).bearer(&token)).await?.status;
            if (200..300).contains(&status) {
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
    fn tokens_are_split_and_decoded() {
        let header = encode(&serde_json::json!({"alg": "EdDSA", "kid": "k1"}));
        let claims = encode(&serde_json::json!({"sub": "u1", "exp": 10}));
        let jwt = Jwt::parse(&format!("{header}.{claims}.sig")).unwrap();
        assert_eq!(jwt.header["kid"], "k1");
        assert_eq!(jwt.claims["sub"], "u1");
        assert!(Jwt::parse("opaque-refresh-token").is_none());
        assert!(Jwt::parse("a.b.c.d").is_none());
    }

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
