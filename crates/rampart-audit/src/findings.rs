//! What the auditor can report: the catalogue of checks, each with its CWE, its OWASP API
//! Security Top 10 (2023) category, the checklist item it verifies and the fix, and the
//! findings a run produces from them.

use serde::Serialize;

/// How bad a finding is. Ordered, so `--fail-on medium` means "medium or worse".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// One kind of problem the auditor looks for.
#[derive(Debug)]
pub struct Check {
    pub id: &'static str,
    pub title: &'static str,
    pub cwe: u32,
    /// OWASP API Security Top 10 (2023) category.
    pub owasp: &'static str,
    /// The item of rampart's security checklist (README) this verifies.
    pub checklist: &'static str,
    pub fix: &'static str,
}

const API1: &str = "API1:2023 Broken Object Level Authorization";
const API2: &str = "API2:2023 Broken Authentication";
const API3: &str = "API3:2023 Broken Object Property Level Authorization";
const API4: &str = "API4:2023 Unrestricted Resource Consumption";
const API8: &str = "API8:2023 Security Misconfiguration";
const API9: &str = "API9:2023 Improper Inventory Management";

macro_rules! checks {
    ($($name:ident = $id:literal, $title:literal, $cwe:literal, $owasp:ident, $item:literal, $fix:literal;)*) => {
        $(pub const $name: Check = Check {
            id: $id, title: $title, cwe: $cwe, owasp: $owasp, checklist: $item, fix: $fix,
        };)*
        /// Every check, in report order.
        pub const CATALOGUE: &[&Check] = &[$(&$name),*];
    };
}

checks! {
    HEADERS_SUCCESS = "RA-HDR-1", "Security headers missing on a success response", 693, API8, "6 Security headers",
        "Send X-Content-Type-Options: nosniff, frame protection (X-Frame-Options: DENY or CSP frame-ancestors 'none'), Cache-Control: no-store and Referrer-Policy: no-referrer on every API response.";
    HEADERS_ERROR = "RA-HDR-2", "Security headers missing on error responses", 693, API8, "6 Security headers",
        "Add the security headers in a layer that also wraps error responses (401, 404, 422, 500), not only handlers' success paths.";
    HSTS = "RA-HSTS-1", "HTTPS without Strict-Transport-Security", 319, API8, "24 HTTPS only",
        "Send Strict-Transport-Security: max-age=63072000; includeSubDomains on every HTTPS response.";
    PLAIN_HTTP = "RA-TLS-1", "API served over plain HTTP", 319, API8, "24 HTTPS only",
        "Terminate TLS in front of the API and redirect or refuse plain HTTP; credentials and tokens must never cross the network in clear text.";
    BANNER = "RA-BANNER-1", "Server software banner", 200, API8, "5 No server version banners",
        "Remove the Server and X-Powered-By headers (or at least their product names and versions).";
    CORS_REFLECTED = "RA-CORS-1", "CORS trusts any origin", 942, API8, "7 CORS",
        "List the exact origins allowed to read responses; never echo the request's Origin back.";
    CORS_NULL = "RA-CORS-2", "CORS trusts the null origin", 942, API8, "7 CORS",
        "Never allow the origin `null`: sandboxed iframes and local files send it, so any attacker page can.";
    CORS_WILDCARD_CREDENTIALS = "RA-CORS-3", "CORS wildcard together with credentials", 942, API8, "7 CORS",
        "Do not combine Access-Control-Allow-Origin: * with Access-Control-Allow-Credentials: true; list origins instead.";
    CORS_PREFLIGHT = "RA-CORS-4", "CORS preflight allows any method and header", 942, API8, "7 CORS",
        "Answer preflights only for listed origins, with only the methods and headers the API needs.";
    DOCS_UI = "RA-DOCS-1", "Interactive API docs exposed", 200, API9, "3 Docs and OpenAPI off in production",
        "Turn interactive docs off in production (or put them behind authentication).";
    DOCS_SPEC = "RA-DOCS-2", "OpenAPI document exposed", 200, API9, "3 Docs and OpenAPI off in production",
        "Do not serve the OpenAPI document publicly in production; publish it where only its users can read it.";
    ANONYMOUS_ACCESS = "RA-AUTH-1", "A route the spec marks as secured answers anonymous callers", 306, API2, "1 Deny by default",
        "Require authentication by default (deny unless a route is explicitly public) and check it before routing or handling.";
    ROUTE_MAP = "RA-AUTH-2", "Unknown and secured paths answer differently to anonymous callers", 204, API8, "1 Deny by default",
        "Answer 401 to anonymous callers on every path that is not public, unknown paths included, so the route map cannot be probed.";
    ERROR_LEAK = "RA-ERR-1", "Error responses leak internals", 209, API8, "4 No stack traces, paths, SQL or versions in errors",
        "Return a fixed problem document for errors; log the cause server-side with a request id instead of sending it.";
    DEBUG_PAGE = "RA-ERR-2", "Framework debug page exposed", 489, API8, "4 No stack traces, paths, SQL or versions in errors",
        "Turn debug mode off wherever callers can reach the API (Flask/Werkzeug debug=False, Django DEBUG = False, Laravel APP_DEBUG=false, Rails production mode, ASP.NET customErrors on); an interactive debugger such as Werkzeug's runs code for whoever gets past its PIN.";
    SQL_ERROR = "RA-SQL-1", "SQL error text in answers to malformed parameters", 89, API8, "15 SQL injection: parameterised queries only",
        "Bind every value as a query parameter (never format input into SQL text), validate parameters by type before any query, and answer failures with a fixed problem document.";
    EXPOSURE_ANONYMOUS = "RA-DATA-1", "Secrets or sensitive fields served to anonymous callers", 200, API3, "11 Separate input and output schemas",
        "Require authentication on the route and build responses from an output type that lists the fields callers may see; never serialise rows (passwords, hashes, tokens) directly, and store passwords only as salted slow hashes.";
    EXPOSURE_AUTHENTICATED = "RA-DATA-2", "Secrets or sensitive fields in authenticated answers", 213, API3, "11 Separate input and output schemas",
        "Build responses from an output type that lists the fields the caller may see; password hashes, other users' tokens and keys never leave the server.";
    NO_LOGIN_LIMIT = "RA-RATE-1", "No rate limit on login", 307, API2, "21 Rate limits",
        "Limit login attempts per client address and per account (429 with Retry-After), and back off repeated failures.";
    FORWARDED_BYPASS = "RA-RATE-2", "Login rate limit bypassed by rotating X-Forwarded-For", 348, API2, "14 Client IP through known proxies only",
        "Take the client address from forwarding headers only when the peer is a trusted proxy, and then the rightmost untrusted hop.";
    ENUMERATION = "RA-ENUM-1", "Login reveals which accounts exist", 204, API2, "19 Generic login failure, no timing oracle",
        "Answer every failed login identically and do the same work for unknown users (verify against a dummy hash).";
    TOKEN_LIFETIME = "RA-JWT-1", "Access tokens live longer than 60 minutes", 613, API2, "18 Short-lived access tokens",
        "Issue access tokens for 15 minutes (never more than 60) and renew them with rotating refresh tokens.";
    TOKEN_PERSONAL_DATA = "RA-JWT-2", "Personal or secret data in token claims", 359, API3, "18 Ids-only claims",
        "Put ids only in tokens (sub, sid); anyone holding a token can read its payload.";
    ALG_NONE = "RA-JWT-3", "Unsigned token (alg none) accepted", 347, API2, "18 Pinned algorithm",
        "Pin the verification algorithm to the key; never take it from the token header, and refuse `none`.";
    SIGNATURE_STRIPPED = "RA-JWT-4", "Token with its signature removed accepted", 347, API2, "18 Pinned algorithm",
        "Verify the signature of every token; a token without one must be refused.";
    CLAIMS_TAMPERED = "RA-JWT-5", "Token with edited claims accepted", 347, API2, "18 Pinned algorithm",
        "Verify the signature over the exact header and payload received.";
    ALG_CONFUSION = "RA-JWT-6", "Algorithm confusion: HS256 signed with the public key accepted", 327, API2, "18 Pinned algorithm",
        "Bind each key to one algorithm; an asymmetric public key must never be used as an HMAC secret.";
    WEAK_HMAC_SECRET = "RA-JWT-7", "Access tokens signed with a guessable HMAC secret", 1391, API2, "31 HS256 secret is a random key",
        "Replace the secret with at least 32 random bytes from a generator (`openssl rand -base64 48`), kept out of code, templates and images, or move to EdDSA keys; anyone who knows the old secret can sign any token, so rotate it now and end every session.";
    FOREIGN_SIGNATURE = "RA-JWT-8", "Token carrying another token's signature accepted", 347, API2, "18 Pinned algorithm",
        "Verify the signature cryptographically over the exact header and payload received; a signature that is merely present and well-formed proves nothing.";
    PSYCHIC_SIGNATURE = "RA-JWT-9", "ECDSA signature with r = s = 0 accepted (psychic signature, CVE-2022-21449)", 347, API2, "18 Pinned algorithm",
        "Update the JVM (17.0.3, 18.0.1 or later) or the ECDSA library; a verifier must refuse r or s outside 1..n-1.";
    EMPTY_HMAC_KEY = "RA-JWT-10", "HMAC token signed with an empty key accepted", 347, API2, "18 Pinned algorithm",
        "Never verify with an empty or missing key: fail closed when the key cannot be loaded, and pin the algorithm to the configured key.";
    KID_PATH_TRAVERSAL = "RA-JWT-11", "`kid` path traversal: token signed with the contents of /dev/null accepted", 22, API2, "18 Unknown `kid` refused",
        "Look `kid` up in a fixed set of known keys; never build a file path (or any query) from it, and refuse an unknown `kid`.";
    KID_SQL_INJECTION = "RA-JWT-12", "`kid` SQL injection: token signed with a key the `kid` selects accepted", 89, API2, "15 SQL injection: parameterised queries only",
        "Look `kid` up with a bound parameter (or in an in-memory map of known keys) and refuse an unknown `kid`; never format it into SQL.";
    EMBEDDED_JWK = "RA-JWT-13", "Token verified with the key it carries (`jwk` header) accepted", 347, API2, "18 Pinned algorithm",
        "Verify only with keys the server holds; ignore `jwk`, `jku` and `x5u` in token headers (or accept them only from an allow-list of the issuer's own keys).";
    EXPIRY_IGNORED = "RA-JWT-14", "Expired or non-expiring access token accepted", 613, API2, "18 Short-lived access tokens",
        "Require `exp` and refuse a token past it (allow at most a minute of clock skew); most libraries need this switched on (PyJWT `require: [\"exp\"]`, jsonwebtoken `validate_exp`).";
    OVERSIZED_BODY = "RA-BODY-1", "Oversized request body accepted", 770, API4, "8 Limit request body size",
        "Refuse bodies over a limit (1 MiB is plenty for JSON APIs) with 413 before reading them.";
    HUGE_PAGE = "RA-PAGE-1", "List endpoint serves a huge page size", 770, API4, "22 Capped page sizes",
        "Parse page sizes into a bounded range (such as 1..=100) and refuse larger ones with 422.";
    TRACE = "RA-TRACE-1", "TRACE method enabled", 693, API8, "5 No server banners or debug surface",
        "Disable TRACE (answer 405); it echoes requests, headers included, back to the caller.";
    ACCOUNT_PROBE = "RA-ENUM-2", "A route tells which accounts exist", 204, API2, "19 Generic login failure, no timing oracle",
        "Answer a lookup of an account the caller may not see exactly as a lookup of one that does not exist (same status and body), and require authentication for account lookups.";
    BOLA = "RA-BOLA-1", "Another user's object is readable", 639, API1, "22 Object-level authorization",
        "Check on every object read that the caller owns the object (filter by owner in the query), and answer another user's object exactly as a missing one (404).";
    COOKIE_FLAGS = "RA-COOKIE-1", "Cookie without Secure, HttpOnly or SameSite", 614, API8, "20 Sessions and tokens",
        "Set session cookies with Secure, HttpOnly and SameSite=Lax or Strict.";
}

/// One thing the auditor found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    /// What was sent and what came back, enough to reproduce it.
    pub evidence: String,
    /// `METHOD /path` the finding is about, when it is about one route (made-up path parts
    /// shown as `*`): what suppressions and baselines match on.
    pub route: Option<String>,
    pub fix: &'static str,
    pub checklist: &'static str,
    pub cwe: String,
    pub owasp: &'static str,
}

impl Finding {
    pub fn new(check: &Check, severity: Severity, evidence: impl Into<String>) -> Self {
        let evidence = evidence.into();
        Self {
            id: check.id,
            severity,
            title: check.title,
            route: crate::triage::route_in(&evidence),
            evidence,
            fix: check.fix,
            checklist: check.checklist,
            cwe: format!("CWE-{}", check.cwe),
            owasp: check.owasp,
        }
    }
}
