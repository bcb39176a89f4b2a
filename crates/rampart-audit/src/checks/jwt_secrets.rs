//! Guessable HMAC secrets: an HS256/HS384/HS512 access token's signature is tried, offline and
//! without a single request, against a bundled dictionary of common and framework-default
//! secrets (`data/jwt-secrets.txt`). Defends against the commonest JWT failure there is: the
//! template's `changethis`, the tutorial's `secret`, jwt.io's `your-256-bit-secret` shipped to
//! production, where anyone can sign any token.
//!
//! The dictionary: framework, template and tutorial defaults (FastAPI full-stack template,
//! VAmPI, jwt.io, express-jwt, express-session, Flask, Django, Rails, Laravel, Spring, Node,
//! Supabase), common passwords and their generated variants (case, suffixes such as 123, !,
//! _key, -secret, years), written for rampart-audit; then the list of wallarm/jwt-secrets
//! (MIT License, Copyright (c) 2020 Wallarm; the licence is reproduced in the file's header).
//! `data/build-jwt-secrets.py` rebuilds it.
//!
//! A match is proved, not only claimed: a token with the same claims and a fresh `exp` (a role
//! or admin claim is left as it was: proof, not escalation) is signed with the secret and sent
//! once to the probe route. The secret is never printed whole: the evidence shows its first and
//! last characters and its length. When the secret is known, the API's handling of `exp` is
//! checked too: a token an hour past its `exp`, and one without `exp`, both properly signed.
//!
//! Deliberately not done: guessing beyond the dictionary (no brute force, no rules engine: the
//! run stays well under a second), and any token with elevated claims.

use serde_json::Value;

use super::jwt::{hmac_token, unix_now, HmacAlg, Jwt};
use super::tokens;
use super::Ctx;
use crate::client::{ProbeError, Req};
use crate::findings::{self, Finding, Severity};

/// One secret a line after a header that ends at the first empty line.
const DICTIONARY: &str = include_str!("../../data/jwt-secrets.txt");

/// How far in the future the proof token's `exp` is set, in seconds.
const PROOF_LIFETIME: u64 = 300;
const ONE_HOUR: u64 = 3600;

/// The secret a token's signature verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundSecret {
    pub(crate) secret: &'static str,
    pub(crate) alg: HmacAlg,
}

/// Every candidate secret: the empty one first, then the bundled dictionary in its order.
pub(crate) fn candidates() -> impl Iterator<Item = &'static str> {
    let entries = DICTIONARY
        .split_once("\n\n")
        .map_or("", |(_header, rest)| rest);
    std::iter::once("").chain(entries.lines())
}

pub(crate) fn dictionary_size() -> usize {
    candidates().count()
}

/// The dictionary secret `jwt` is signed with, when it is an HMAC token signed with one.
pub(crate) fn find_secret(jwt: &Jwt) -> Option<FoundSecret> {
    let alg = HmacAlg::from_name(jwt.alg())?;
    if jwt.signature.len() != alg.output_len() {
        return None;
    }
    let input = jwt.signing_input.as_bytes();
    // The key enters the first block HMAC hashes, so no work can be shared across candidates:
    // each costs one keyed state (two compressions) and the message's blocks, with nothing
    // allocated. Two halves run side by side, as the machine usually has a second core free.
    let all: Vec<&'static str> = candidates().collect();
    let (first, second) = all.split_at(all.len() / 2);
    let search = |part: &[&'static str]| {
        part.iter()
            .copied()
            .find(|secret| alg.verifies(secret.as_bytes(), input, &jwt.signature))
    };
    let secret = std::thread::scope(|scope| {
        let other = scope.spawn(|| search(second));
        let found = search(first);
        // A panic in the other half is not possible (no indexing, no unwrapping); if it were,
        // that half would count as not found.
        found.or_else(|| other.join().ok().flatten())
    })?;
    Some(FoundSecret { secret, alg })
}

/// The secret with all but its first and last characters hidden, and its length.
pub(crate) fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let hidden = match chars.as_slice() {
        [] => return "an empty secret".to_owned(),
        // Up to five characters, showing two of them would show most of the secret.
        [first, middle @ .., last] if middle.len() >= 4 => {
            format!("{first}{}{last}", "*".repeat(middle.len()))
        }
        short => "*".repeat(short.len()),
    };
    format!("`{hidden}` (length {})", chars.len())
}

/// The token's claims with `exp` moved `PROOF_LIFETIME` ahead and nothing else changed, signed
/// with the found secret under the token's own header.
pub(crate) fn proof_token(jwt: &Jwt, found: &FoundSecret) -> String {
    let mut claims = jwt.claims.clone();
    claims["exp"] = Value::from(unix_now() + PROOF_LIFETIME);
    hmac_token(&jwt.header, &claims, found.alg, found.secret.as_bytes())
}

/// Reports the secret, proved by one forged token on the probe route when there is one.
pub(crate) async fn report_and_prove(
    ctx: &mut Ctx<'_>,
    jwt: &Jwt,
    found: &FoundSecret,
    probe: Option<&str>,
) -> Result<(), ProbeError> {
    let matched = format!(
        "the token's {} signature verifies with the secret {}, found offline among {} bundled common and framework-default secrets",
        found.alg.name(),
        mask(found.secret),
        dictionary_size()
    );
    let Some(probe) = probe else {
        ctx.report(Finding::new(
            &findings::WEAK_HMAC_SECRET,
            Severity::Critical,
            format!("{matched}; no route tells accepted tokens from refused ones, so no forged token was sent (the signature match alone proves the secret)"),
        ));
        return Ok(());
    };
    let sent = ctx
        .send(&Req::get(probe).bearer(&proof_token(jwt, found)))
        .await;
    let outcome = match &sent {
        Ok(answer) if answer.is_success() => format!(
            "a token with the same claims and a fresh `exp`, signed with it, was accepted: GET {probe} -> {}",
            answer.status
        ),
        Ok(answer) => format!(
            "a token with the same claims and a fresh `exp`, signed with it, was refused: GET {probe} -> {} (the API checks more than the signature; the secret still signs its tokens)",
            answer.status
        ),
        Err(err) => format!("the forged token was not sent: {err}"),
    };
    ctx.report(Finding::new(
        &findings::WEAK_HMAC_SECRET,
        Severity::Critical,
        format!("{matched}; {outcome}"),
    ));
    sent.map(|_| ())
}

/// With the secret known, whether the API refuses a token past its `exp` and one without it.
pub(crate) async fn expiry_enforced(
    ctx: &mut Ctx<'_>,
    jwt: &Jwt,
    found: &FoundSecret,
    probe: &str,
) -> Result<(), ProbeError> {
    let key = found.secret.as_bytes();
    let now = unix_now();
    let mut expired = jwt.claims.clone();
    expired["exp"] = Value::from(now.saturating_sub(ONE_HOUR));
    for earlier in ["iat", "nbf"] {
        if expired.get(earlier).is_some() {
            expired[earlier] = Value::from(now.saturating_sub(2 * ONE_HOUR));
        }
    }
    let mut accepted = Vec::new();
    let token = hmac_token(&jwt.header, &expired, found.alg, key);
    let expired_accepted = tokens::accepted_by(ctx, probe, &token).await?;
    if let Some(status) = expired_accepted {
        accepted.push(format!("`exp` an hour in the past -> {status}"));
    }
    // Without `exp` at all: worth asking only when the API's own tokens carry one (a token
    // without one is reported by the lifetime check already).
    if jwt.claims.get("exp").is_some() {
        let mut timeless = jwt.claims.clone();
        if let Some(object) = timeless.as_object_mut() {
            object.remove("exp");
        }
        let token = hmac_token(&jwt.header, &timeless, found.alg, key);
        if let Some(status) = tokens::accepted_by(ctx, probe, &token).await? {
            accepted.push(format!("no `exp` claim at all -> {status}"));
        }
    }
    if !accepted.is_empty() {
        ctx.report(Finding::new(
            &findings::EXPIRY_IGNORED,
            if expired_accepted.is_some() {
                Severity::High
            } else {
                Severity::Medium
            },
            format!(
                "GET {probe} with the token's claims re-signed with the guessed secret: {}",
                accepted.join("; ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn signed(alg: HmacAlg, secret: &str) -> Jwt {
        let header = json!({"alg": alg.name(), "typ": "JWT"});
        let claims = json!({"sub": "u1", "role": "user", "exp": 2_000_000_000u64});
        Jwt::parse(&hmac_token(&header, &claims, alg, secret.as_bytes())).unwrap()
    }

    #[test]
    fn the_dictionary_holds_the_framework_defaults_and_thousands_more() {
        let all: std::collections::HashSet<&str> = candidates().collect();
        assert!(dictionary_size() > 100_000, "{}", dictionary_size());
        for default in [
            "",
            "secret",
            "changethis",
            "random",
            "your-256-bit-secret",
            "supersecret",
            "secretkey",
            "SECRET_KEY",
            "jwt_secret",
            "change-me",
            "changeme",
            "mysecret",
            "shhhhh",
            "keyboard cat",
            "Changethis123",
            "secret!",
            "password",
            "123456",
        ] {
            assert!(all.contains(default), "{default:?} is missing");
        }
        // The header (licence included) is not read as secrets.
        assert!(!all.iter().any(|s| s.contains("MIT License")));
        assert!(!all.iter().any(|s| s.contains('\r')));
    }

    #[test]
    fn a_token_signed_with_a_listed_secret_is_found_under_each_hmac_algorithm() {
        for (alg, secret) in [
            (HmacAlg::Hs256, "changethis"),
            (HmacAlg::Hs384, "your-256-bit-secret"),
            (HmacAlg::Hs512, "keyboard cat"),
            (HmacAlg::Hs256, ""),
        ] {
            assert_eq!(
                find_secret(&signed(alg, secret)),
                Some(FoundSecret { secret, alg }),
                "{secret:?}"
            );
        }
    }

    #[test]
    fn a_random_secret_or_a_non_hmac_token_is_not_found() {
        let random = super::super::random_hex(32);
        assert_eq!(find_secret(&signed(HmacAlg::Hs256, &random)), None);
        // The right secret under an `alg` that is not HMAC is not tried.
        let mut jwt = signed(HmacAlg::Hs256, "secret");
        jwt.header["alg"] = json!("RS256");
        assert_eq!(find_secret(&jwt), None);
        // A truncated signature cannot match anything.
        let mut jwt = signed(HmacAlg::Hs256, "secret");
        jwt.signature.truncate(16);
        assert_eq!(find_secret(&jwt), None);
    }

    #[test]
    fn secrets_are_masked_but_for_the_first_and_last_characters_of_long_ones() {
        assert_eq!(mask("changethis"), "`c********s` (length 10)");
        assert_eq!(mask("random"), "`r****m` (length 6)");
        // Short secrets are hidden whole: two of five characters would give most away.
        assert_eq!(mask("abcde"), "`*****` (length 5)");
        assert_eq!(mask("abc"), "`***` (length 3)");
        assert_eq!(mask("x"), "`*` (length 1)");
        assert_eq!(mask("é€üöä¿"), "`é****¿` (length 6)");
        assert_eq!(mask(""), "an empty secret");
    }

    #[test]
    fn the_proof_token_verifies_with_the_secret_and_changes_only_exp() {
        let jwt = signed(HmacAlg::Hs384, "changethis");
        let found = find_secret(&jwt).unwrap();
        let proof = Jwt::parse(&proof_token(&jwt, &found)).unwrap();
        assert!(HmacAlg::Hs384.verifies(
            b"changethis",
            proof.signing_input.as_bytes(),
            &proof.signature
        ));
        assert_eq!(proof.header, jwt.header);
        let exp = proof.claims["exp"].as_u64().unwrap();
        assert!(exp > unix_now() && exp <= unix_now() + PROOF_LIFETIME);
        let mut rest = proof.claims.clone();
        rest["exp"] = jwt.claims["exp"].clone();
        assert_eq!(
            rest, jwt.claims,
            "the role and every other claim are unchanged"
        );
    }

    /// A token signed with a secret outside the dictionary is tried against every candidate
    /// and never reported as cracked: a false "weak secret" finding would send a team to
    /// rotate a key that was fine.
    #[test]
    fn a_secret_outside_the_dictionary_is_never_claimed_found() {
        for alg in [HmacAlg::Hs256, HmacAlg::Hs384, HmacAlg::Hs512] {
            let jwt = signed(alg, &super::super::random_hex(32));
            assert_eq!(find_secret(&jwt), None, "{}", alg.name());
        }
    }
}
