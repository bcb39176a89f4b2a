//! Browser sessions: an opaque `__Host-` cookie instead of tokens, and the cross-site request
//! forgery defence that cookies need.
//!
//! Defends against two things. A token in a page's JavaScript is a token any injected script
//! can steal: a browser session is held by `__Host-rampart_session` (`HttpOnly`, `Secure`,
//! `SameSite=Strict`, `Path=/`, so no script, no other subdomain and no other path can read or
//! plant it), backed by a server-side session listed, limited and revoked like any other. And a
//! cookie rides along with requests other sites make: every cookie-authenticated request that
//! can change something (any method but GET, HEAD and OPTIONS), and every sign-in through
//! `/v1/browser/*`, must come from this server's own origin or a listed CORS origin (`Origin`,
//! else `Sec-Fetch-Site`) and, with the cookie, carry `X-CSRF-Token` equal to
//! `__Host-rampart_csrf`, whose value is a MAC of the session cookie under a key of the
//! deployment (so a value from another session, or made up, does not match). Otherwise 403
//! before anything runs. Bearer clients are untouched: a request with `Authorization` is
//! judged by its token alone.
//!
//! Written here rather than taken from a crate: the check needs the app's own origin, its CORS
//! list and its session cookie together, and runs in the route's gate (`Admission`), before
//! the body is read.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use rampart::http::RequestContext;
use rampart::policy::{Admission, AdmissionFuture};
use rampart::ApiError;

use crate::audit::{Event, Kind, Recorder};

/// The session cookie: opaque, never readable by scripts.
pub const SESSION_COOKIE: &str = "__Host-rampart_session";
/// The CSRF cookie: readable by the page's own script, which echoes it in [`CSRF_HEADER`].
pub const CSRF_COOKIE: &str = "__Host-rampart_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The problem type of a refused cross-site request.
pub const CSRF_PROBLEM: &str = "urn:rampart:problem:csrf";
/// The routes a browser signs in and out through.
pub const BROWSER_PREFIX: &str = "/v1/browser/";
/// The routes that sign a browser in. They read no credential, so only the origin tells where
/// a request to them came from.
const SIGN_IN_ROUTES: [&str; 2] = ["/v1/browser/login", "/v1/browser/mfa"];

/// This server's own origin (`scheme://host[:port]`): the configured public URL, or the bound
/// address in development. Set once, read by the CSRF check and the links in messages.
#[derive(Debug, Clone, Default)]
pub struct PublicOrigin(Arc<OnceLock<String>>);

impl PublicOrigin {
    /// The origin of `url` (configured), or none yet.
    pub fn new(url: Option<&str>) -> Self {
        let origin = Self::default();
        if let Some(url) = url {
            let _ = origin.0.set(url.trim_end_matches('/').to_owned());
        }
        origin
    }

    /// `http://<bound>` when nothing was configured.
    pub fn default_to(&self, bound: std::net::SocketAddr) {
        let _ = self.0.set(format!("http://{bound}"));
    }

    /// The base of links (the configured URL, path included).
    pub fn url(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }

    /// Scheme, host and port only, as browsers send it in `Origin`.
    fn origin(&self) -> Option<&str> {
        let url = self.url()?;
        let after_scheme = url.find("://")? + 3;
        Some(
            url[after_scheme..]
                .find('/')
                .map_or(url, |slash| &url[..after_scheme + slash]),
        )
    }
}

/// Derives and checks CSRF values: a MAC of the session cookie's value.
#[derive(Clone)]
pub struct CsrfKey(Arc<[u8; 32]>);

impl std::fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKey(..)")
    }
}

impl CsrfKey {
    /// The key for the deployment's `secret`, under a label of its own.
    pub fn derive(secret: &[u8]) -> Self {
        Self(Arc::new(rampart::tokens::hmac_sha256(
            secret,
            b"rampart csrf v1",
        )))
    }

    /// The CSRF value that goes with the session cookie `session`.
    pub fn token_for(&self, session: &str) -> String {
        URL_SAFE_NO_PAD.encode(rampart::tokens::hmac_sha256(
            self.0.as_slice(),
            session.as_bytes(),
        ))
    }

    /// Whether `sent` is the CSRF value of `session`, compared in constant time.
    fn matches(&self, session: &str, sent: &str) -> bool {
        URL_SAFE_NO_PAD.decode(sent).is_ok_and(|sent| {
            rampart::tokens::hmac_sha256_matches(self.0.as_slice(), session.as_bytes(), &sent)
        })
    }
}

/// The value of the cookie `name`, if the request carries it exactly once (two cookies of one
/// name are a planted one and the real one: neither is trusted).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for line in headers.get_all(header::COOKIE) {
        let Ok(line) = line.to_str() else { continue };
        for pair in line.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key == name {
                if found.is_some() {
                    return None;
                }
                found = Some(value);
            }
        }
    }
    found.filter(|value| !value.is_empty())
}

/// The two cookies of a new browser session, as `Set-Cookie` values.
pub fn set_cookies(session: &str, csrf: &str, max_age: Duration) -> [HeaderValue; 2] {
    let secs = max_age.as_secs();
    [
        format!(
            "{SESSION_COOKIE}={session}; Path=/; Max-Age={secs}; Secure; HttpOnly; SameSite=Strict"
        ),
        format!("{CSRF_COOKIE}={csrf}; Path=/; Max-Age={secs}; Secure; SameSite=Strict"),
    ]
    .map(|cookie| HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("")))
}

/// `Set-Cookie` values that remove both cookies.
pub fn cleared_cookies() -> [HeaderValue; 2] {
    [
        HeaderValue::from_static(
            "__Host-rampart_session=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict",
        ),
        HeaderValue::from_static(
            "__Host-rampart_csrf=; Path=/; Max-Age=0; Secure; SameSite=Strict",
        ),
    ]
}

/// The CSRF check, run in every route's gate before the body is read.
#[derive(Debug, Clone)]
pub struct CsrfAdmission {
    key: CsrfKey,
    own: PublicOrigin,
    /// `RAMPART_CORS_ORIGINS`: other origins trusted to make requests.
    listed: Arc<[String]>,
    /// Refusals go on the audit trail as `access_denied` (sampled per caller).
    recorder: Recorder,
}

impl CsrfAdmission {
    pub fn new(key: CsrfKey, own: PublicOrigin, listed: Vec<String>, recorder: Recorder) -> Self {
        Self {
            key,
            own,
            listed: listed.into(),
            recorder,
        }
    }

    /// The 403, recorded: a forgery campaign shows on the trail, not only in access logs.
    fn refuse(&self, request: &Request, check: &'static str, detail: &'static str) -> Response {
        if let Some(context) = RequestContext::of(request.extensions()) {
            let mut event = Event::new(Kind::AccessDenied, &context).detail(serde_json::json!({
                "reason": "csrf",
                "check": check,
                "method": request.method().as_str(),
                // Bounded: the path is client-chosen and the audit table keeps it forever.
                "path": request.uri().path().chars().take(256).collect::<String>(),
            }));
            if let Some(principal) = request.extensions().get::<rampart::Principal>() {
                event = event.user(&principal.user_id);
            }
            self.recorder.record_denied(event);
        }
        refused(detail)
    }
}

/// Whether the request comes from this server's origin (`own`, or its own host) or a
/// `listed` one.
fn same_or_listed_origin(own: &PublicOrigin, listed: &[String], headers: &HeaderMap) -> bool {
    // Exactly one of each, as a browser sends them: a second is not a browser's.
    let single =
        |name: &str| rampart::http::sole_header(headers, name).and_then(|v| v.to_str().ok());
    if headers.get_all("sec-fetch-site").iter().nth(1).is_some() {
        return false;
    }
    if headers.contains_key(header::ORIGIN) {
        let Some(origin) = single(header::ORIGIN.as_str()) else {
            return false;
        };
        // The request's own host as the browser addressed it: a page elsewhere cannot make
        // a browser send another site's host (its cookies are that host's alone). Only a
        // well-formed host with a name counts (never `:80`, `[]` or a path).
        let own_host = single(header::HOST.as_str())
            .filter(|host| {
                host.parse::<http::uri::Authority>().is_ok_and(|authority| {
                    let name = authority.host();
                    !name.is_empty() && name != "[]" && authority.as_str() == *host
                })
            })
            .is_some_and(|host| {
                origin.split_once("://").is_some_and(|(scheme, rest)| {
                    matches!(scheme, "http" | "https") && rest == host
                })
            });
        return own_host
            || own.origin() == Some(origin)
            || listed.iter().any(|listed| listed == origin);
    }
    single("sec-fetch-site") == Some("same-origin")
}

fn refused(detail: &'static str) -> Response {
    ApiError::Specific {
        status: StatusCode::FORBIDDEN,
        kind: CSRF_PROBLEM,
        detail: detail.into(),
    }
    .into_response()
}

fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Admission for CsrfAdmission {
    fn applies(&self, request: &Request) -> bool {
        // The browser routes take POST only; another method gets its 405 as anywhere else.
        let signing_in =
            request.method() == Method::POST && request.uri().path().starts_with(BROWSER_PREFIX);
        // Only this server's session cookie makes a request a browser session's: other cookies
        // (a load balancer's stickiness cookie in an API client's jar) change nothing.
        let riding_a_cookie = changes_something(request.method())
            && !request.headers().contains_key(header::AUTHORIZATION)
            && request
                .headers()
                .get_all(header::COOKIE)
                .iter()
                .any(|line| {
                    line.as_bytes()
                        .windows(SESSION_COOKIE.len())
                        .any(|w| w == SESSION_COOKIE.as_bytes())
                });
        signing_in || riding_a_cookie
    }

    fn admit<'a>(&'a self, request: &'a mut Request) -> AdmissionFuture<'a> {
        let headers = request.headers();
        // A request with `Authorization` to a route that reads it (sign-out; a request riding
        // the cookie never carries one, see `applies`) is judged by it: nothing but a good
        // bearer token passes, and no other site can make a browser send one. The sign-in
        // routes read none, and a browser attaches the Basic or Negotiate credentials it holds
        // for this origin to another site's form on its own: there the header proves nothing
        // about where the request came from, and the origin decides.
        if headers.contains_key(header::AUTHORIZATION)
            && !SIGN_IN_ROUTES.contains(&request.uri().path())
        {
            return Box::pin(std::future::ready(Ok(())));
        }
        if !same_or_listed_origin(&self.own, &self.listed, headers) {
            return Box::pin(std::future::ready(Err(self.refuse(
                request,
                "origin",
                "This request did not come from this site: a browser must send it from the \
                 same origin or a listed one.",
            ))));
        }
        let verdict = match cookie(headers, SESSION_COOKIE) {
            // No session to ride on: nothing to forge.
            None => Ok(()),
            Some(session) => {
                // One token: a second is not the page's (see `sole_header`).
                let sent =
                    rampart::http::sole_header(headers, CSRF_HEADER).and_then(|v| v.to_str().ok());
                let paired = cookie(headers, CSRF_COOKIE);
                match (sent, paired) {
                    (Some(sent), Some(paired))
                        if sent == paired && self.key.matches(session, sent) =>
                    {
                        Ok(())
                    }
                    _ => Err(self.refuse(
                        request,
                        "token",
                        "A request with the session cookie must send X-CSRF-Token equal to \
                         the __Host-rampart_csrf cookie.",
                    )),
                }
            }
        };
        Box::pin(std::future::ready(verdict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_cookie_is_read_only_when_sent_once() {
        let one = headers(&[("cookie", "a=1; __Host-rampart_session=abc; b=2")]);
        assert_eq!(cookie(&one, SESSION_COOKIE), Some("abc"));
        let two = headers(&[
            ("cookie", "__Host-rampart_session=abc"),
            ("cookie", "__Host-rampart_session=planted"),
        ]);
        assert_eq!(cookie(&two, SESSION_COOKIE), None);
        let look_alike = headers(&[("cookie", "rampart_session=abc; __host-rampart_session=x")]);
        assert_eq!(cookie(&look_alike, SESSION_COOKIE), None);
        assert_eq!(
            cookie(
                &headers(&[("cookie", "__Host-rampart_session=")]),
                SESSION_COOKIE
            ),
            None
        );
    }

    #[test]
    fn a_csrf_value_belongs_to_one_session_and_one_deployment() {
        let key = CsrfKey::derive(b"deployment one");
        let token = key.token_for("session-a");
        assert!(key.matches("session-a", &token));
        assert!(!key.matches("session-b", &token));
        assert!(!CsrfKey::derive(b"deployment two").matches("session-a", &token));
        assert!(!key.matches("session-a", ""));
        assert!(!key.matches("session-a", "not base64!"));
    }

    #[test]
    fn only_one_well_formed_origin_and_host_make_the_same_origin() {
        let same = |pairs: &[(&'static str, &'static str)]| {
            same_or_listed_origin(&PublicOrigin::new(None), &[], &headers(pairs))
        };
        assert!(same(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(same(&[("sec-fetch-site", "same-origin")]));
        // What an outside review sent: hosts with no name, a path, doubled headers.
        for (host, origin) in [
            (":37007", "http://:37007"),
            (":", "http://:"),
            ("[]:1", "http://[]:1"),
            ("evil.test/x", "http://evil.test/x"),
            ("", "http://"),
        ] {
            assert!(!same(&[("host", host), ("origin", origin)]), "{host}");
        }
        assert!(!same(&[
            ("host", "a.test"),
            ("origin", "http://a.test"),
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "cross-site"),
        ]));
        assert!(!same(&[
            ("host", "a.test"),
            ("origin", "http://a.test"),
            ("origin", "http://evil.test"),
        ]));
    }

    #[test]
    fn the_public_origin_is_scheme_host_and_port() {
        assert_eq!(
            PublicOrigin::new(Some("https://api.example.com/base/")).origin(),
            Some("https://api.example.com")
        );
        assert_eq!(
            PublicOrigin::new(Some("http://127.0.0.1:8080")).origin(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(PublicOrigin::new(None).origin(), None);
    }

    #[test]
    fn cookies_carry_the_flags_the_contract_names() {
        let [session, csrf] = set_cookies("s", "c", Duration::from_secs(60));
        let session = session.to_str().unwrap();
        for flag in [
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=60",
        ] {
            assert!(session.contains(flag), "{session}");
        }
        let csrf = csrf.to_str().unwrap();
        assert!(csrf.contains("Secure") && csrf.contains("SameSite=Strict"));
        assert!(!csrf.contains("HttpOnly"), "the page's script reads it");
    }
}
