//! The token attacks against an API whose login signs HS256 tokens with the FastAPI template's
//! `changethis`, in variants that each have one more verification flaw (alg `NONE`, expired
//! tokens, `kid` read as a file path, an embedded `jwk` trusted), and against a hardened twin
//! (a random secret, strict verification) that must produce none of these findings.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use hmac::{Hmac, Mac};
use rampart_audit::{audit, AuditArgs, Report, Severity};
use serde_json::{json, Value};
use sha2::Sha256;

const TEMPLATE_SECRET: &[u8] = b"changethis";

/// What the fixture's verification gets wrong: one flaw per variant, or none.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flaw {
    Strict,
    /// An unsigned token is accepted when its `alg` is exactly `NONE` (a case-sensitive
    /// deny-list of `none`).
    NoneInUpperCase,
    /// `exp` is never checked.
    ExpiryIgnored,
    /// `kid` is a file path the key is read from.
    KidIsAKeyFile,
    /// A `jwk` header is the key the token is verified with.
    EmbeddedJwkTrusted,
    /// `kid` is formatted into SQL that selects the key.
    KidInSql,
    /// ES256 tokens are verified by a JVM with CVE-2022-21449 (r = s = 0 verifies anything);
    /// genuine signatures are [`simulated_es256`]'s.
    PsychicSignature,
}

/// The psychic variant's stand-in for an ES256 signature by its real key (no ECDSA crate here):
/// 64 bytes bound to the signing input, which only the fixture can make.
fn simulated_es256(input: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(b"the fixture's P-256 key").unwrap();
    mac.update(input.as_bytes());
    mac.finalize().into_bytes().repeat(2)
}

#[derive(Clone)]
struct Fixture {
    flaw: Flaw,
    secret: Vec<u8>,
}

fn decode(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

impl Fixture {
    fn issue(&self) -> String {
        let header = json!({"alg": "HS256", "typ": "JWT"});
        // Fifteen minutes, ids only: the token itself draws no lifetime or claims finding.
        let claims = json!({"sub": "u-7f3a", "role": "user", "iat": common::now(), "exp": common::now() + 900});
        let input = format!("{}.{}", common::b64(&header), common::b64(&claims));
        format!("{input}.{}", common::hs256(&input, &self.secret))
    }

    fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(token) = common::bearer(headers) else {
            return false;
        };
        let parts: Vec<&str> = token.split('.').collect();
        let (h, c, s) = match parts[..] {
            [h, c, s] => (h, c, s),
            [h, c] => (h, c, ""),
            _ => return false,
        };
        let (Some(header), Some(claims)) = (decode(h), decode(c)) else {
            return false;
        };
        let input = format!("{h}.{c}");
        let flaw = self.flaw;
        let jwk = header
            .get("jwk")
            .filter(|_| flaw == Flaw::EmbeddedJwkTrusted);
        let signed = match header["alg"].as_str() {
            Some("NONE") if flaw == Flaw::NoneInUpperCase => true,
            Some("HS256") => {
                let key = if let Some(jwk) = jwk {
                    jwk["k"]
                        .as_str()
                        .and_then(|k| URL_SAFE_NO_PAD.decode(k).ok())
                } else if let Some(path) = header["kid"]
                    .as_str()
                    .filter(|_| flaw == Flaw::KidIsAKeyFile)
                {
                    std::fs::read(path).ok()
                } else if let Some(kid) = header["kid"].as_str().filter(|_| flaw == Flaw::KidInSql)
                {
                    // SELECT key FROM keys WHERE kid = '{kid}': the injected UNION's row wins.
                    kid.split_once("UNION SELECT '")
                        .and_then(|(_, rest)| rest.split_once('\''))
                        .map(|(key, _)| key.as_bytes().to_vec())
                } else {
                    Some(self.secret.clone())
                };
                key.is_some_and(|key| s == common::hs256(&input, &key))
            }
            Some("ES256") if flaw == Flaw::PsychicSignature => URL_SAFE_NO_PAD
                .decode(s)
                .is_ok_and(|s| s == simulated_es256(&input) || s == [0u8; 64]),
            Some("EdDSA") => jwk
                .and_then(|jwk| jwk["x"].as_str())
                .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
                .and_then(|x| VerifyingKey::from_bytes(&x.try_into().ok()?).ok())
                .zip(
                    URL_SAFE_NO_PAD
                        .decode(s)
                        .ok()
                        .and_then(|s| Signature::from_slice(&s).ok()),
                )
                .is_some_and(|(key, signature)| key.verify(input.as_bytes(), &signature).is_ok()),
            _ => false,
        };
        let live = flaw == Flaw::ExpiryIgnored
            || claims["exp"]
                .as_u64()
                .is_some_and(|exp| exp > common::now());
        signed && live
    }
}

async fn login(State(fixture): State<Fixture>, body: Bytes) -> Response {
    let form: Value = serde_json::from_slice(&body).unwrap_or_default();
    if form["username"] == "alice" && form["password"] == "correct horse battery staple" {
        axum::Json(json!({"access_token": fixture.issue(), "token_type": "bearer"})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"detail": "Incorrect username or password"})),
        )
            .into_response()
    }
}

async fn me(State(fixture): State<Fixture>, headers: HeaderMap) -> Response {
    if fixture.accepts(&headers) {
        axum::Json(json!({"sub": "u-7f3a"})).into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

async fn start(flaw: Flaw, secret: &[u8]) -> SocketAddr {
    let fixture = Fixture {
        flaw,
        secret: secret.to_vec(),
    };
    let app = Router::new()
        .route("/login", post(login))
        .route("/users/me", get(me))
        .with_state(fixture);
    common::serve(app).await
}

fn args(addr: SocketAddr) -> AuditArgs {
    common::args(addr)
}

async fn audit_with(flaw: Flaw) -> Report {
    let report = audit(&args(start(flaw, TEMPLATE_SECRET).await))
        .await
        .unwrap();
    assert_eq!(
        report.token_route.as_deref(),
        Some("/users/me"),
        "the probe route must be found; notes: {:?}",
        report.notes
    );
    report
}

fn assert_silent(report: &Report, absent: &[&str]) {
    for id in absent {
        assert!(
            report.findings.iter().all(|f| f.id != *id),
            "{id} is a false positive: {:?}",
            report
                .findings
                .iter()
                .find(|f| f.id == *id)
                .map(|f| &f.evidence)
        );
    }
}

/// Every forgery finding; each variant must show only its own.
const FORGERIES: [&str; 11] = [
    "RA-JWT-3",
    "RA-JWT-4",
    "RA-JWT-5",
    "RA-JWT-6",
    "RA-JWT-8",
    "RA-JWT-9",
    "RA-JWT-10",
    "RA-JWT-11",
    "RA-JWT-12",
    "RA-JWT-13",
    "RA-JWT-14",
];

fn others(except: &str) -> Vec<&'static str> {
    FORGERIES.into_iter().filter(|id| *id != except).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_secret_is_found_masked_and_proved_with_a_forged_token() {
    let report = audit_with(Flaw::Strict).await;
    common::assert_fires(
        &report,
        "RA-JWT-7",
        Severity::Critical,
        &[
            "HS256",
            "`c********s` (length 10)",
            "was accepted: GET /users/me -> 200",
        ],
    );
    let weak = report.findings.iter().find(|f| f.id == "RA-JWT-7").unwrap();
    assert!(
        !weak.evidence.contains("changethis"),
        "the secret is never printed whole"
    );
    assert_eq!(weak.cwe, "CWE-1391");
    // Verification is otherwise strict: no forgery works, and expiry is enforced.
    assert_silent(&report, &FORGERIES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_spelled_in_upper_case_is_found() {
    let report = audit_with(Flaw::NoneInUpperCase).await;
    common::assert_fires(
        &report,
        "RA-JWT-3",
        Severity::Critical,
        &["alg \"NONE\"", "GET /users/me", "-> 200"],
    );
    assert_silent(&report, &others("RA-JWT-3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_exp_less_tokens_accepted_are_found() {
    let report = audit_with(Flaw::ExpiryIgnored).await;
    common::assert_fires(
        &report,
        "RA-JWT-14",
        Severity::High,
        &[
            "re-signed with the guessed secret",
            "`exp` an hour in the past -> 200",
            "no `exp` claim at all -> 200",
        ],
    );
    assert_silent(&report, &others("RA-JWT-14"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_read_as_a_file_path_is_found_with_dev_null() {
    let report = audit_with(Flaw::KidIsAKeyFile).await;
    common::assert_fires(
        &report,
        "RA-JWT-11",
        Severity::Critical,
        &["empty key", "kid \"../../../../../../dev/null\"", "-> 200"],
    );
    // The empty key alone is refused: the finding is the kid's doing.
    assert_silent(&report, &others("RA-JWT-11"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_jwk_trusted_as_the_key_is_found() {
    let report = audit_with(Flaw::EmbeddedJwkTrusted).await;
    common::assert_fires(
        &report,
        "RA-JWT-13",
        Severity::Critical,
        &["`jwk` header", "Ed25519", "-> 200"],
    );
    assert_silent(&report, &others("RA-JWT-13"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardened_twin_with_a_random_secret_draws_none_of_these_findings() {
    let mut secret = [0u8; 48];
    getrandom::fill(&mut secret).unwrap();
    let report = audit(&args(start(Flaw::Strict, &secret).await))
        .await
        .unwrap();
    assert_eq!(report.token_route.as_deref(), Some("/users/me"));
    assert_silent(&report, &FORGERIES);
    assert_silent(&report, &["RA-JWT-1", "RA-JWT-2", "RA-JWT-7"]);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("the HMAC secret was not guessed")),
        "expiry could not be checked, and the report says so: {:?}",
        report.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_probe_route_the_secret_is_reported_and_nothing_is_forged() {
    let addr = start(Flaw::Strict, TEMPLATE_SECRET).await;
    let fixture = Fixture {
        flaw: Flaw::Strict,
        secret: TEMPLATE_SECRET.to_vec(),
    };
    // Below a base path nothing answers but 404: no route tells tokens apart.
    let mut arguments = args(addr);
    arguments.target = format!("http://{addr}/elsewhere/");
    arguments.username = None;
    arguments.password = None;
    arguments.token = Some(fixture.issue());
    let report = audit(&arguments).await.unwrap();
    assert!(report.token_route.is_none());
    common::assert_fires(
        &report,
        "RA-JWT-7",
        Severity::Critical,
        &["`c********s` (length 10)", "no forged token was sent"],
    );
    assert_silent(&report, &FORGERIES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_formatted_into_sql_is_found() {
    let report = audit_with(Flaw::KidInSql).await;
    common::assert_fires(
        &report,
        "RA-JWT-12",
        Severity::Critical,
        &["kid \"x' UNION SELECT 'K'-- \"", "-> 200"],
    );
    assert_silent(&report, &others("RA-JWT-12"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_psychic_signature_is_found_on_an_es256_token() {
    let addr = start(Flaw::PsychicSignature, TEMPLATE_SECRET).await;
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "p256-1"});
    let claims = json!({"sub": "u-7f3a", "iat": common::now(), "exp": common::now() + 900});
    let input = format!("{}.{}", common::b64(&header), common::b64(&claims));
    let token = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(simulated_es256(&input))
    );
    let mut arguments = args(addr);
    arguments.username = None;
    arguments.password = None;
    arguments.token = Some(token);
    let report = audit(&arguments).await.unwrap();
    assert_eq!(report.token_route.as_deref(), Some("/users/me"));
    common::assert_fires(
        &report,
        "RA-JWT-9",
        Severity::Critical,
        &[
            "ES256 token under the signature r = 0, s = 0 (raw r || s)",
            "-> 200",
        ],
    );
    // Not an HMAC token: nothing to guess, and the report says expiry went unchecked.
    assert_silent(&report, &others("RA-JWT-9"));
    assert_silent(&report, &["RA-JWT-7"]);
    assert!(report.notes.iter().any(|n| n.contains("expired tokens")));
}

/// Enough for the checks before the token step, the probe route and the proof, not for the
/// forgeries.
const BUDGET: u32 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_during_the_token_checks_stops_them_there() {
    let addr = start(Flaw::Strict, TEMPLATE_SECRET).await;
    let mut arguments = args(addr);
    arguments.max_requests = BUDGET;
    let report = audit(&arguments).await.unwrap();
    assert!(report.requests_sent <= BUDGET, "{}", report.requests_sent);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("--max-requests") && n.contains("access token")),
        "{:?}",
        report.notes
    );
    // The offline guess needs no request: it is reported whatever the budget.
    common::assert_fires(&report, "RA-JWT-7", Severity::Critical, &["`c********s`"]);
}
