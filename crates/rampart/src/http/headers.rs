//! Security headers on every response, errors and preflights included.
//!
//! Defends against the browser-side attacks an API can still be pulled into: MIME sniffing of a
//! JSON body into HTML (`nosniff`), framing for clickjacking (`X-Frame-Options`,
//! `frame-ancestors`), script execution if a response is ever rendered (`default-src 'none'`),
//! token leakage through `Referer`, downgrade to plain HTTP (HSTS), and caching of personal data
//! by shared or browser caches (`no-store`). It also strips version banners.
//!
//! A handler or nested router may set its own value first (the docs page needs a looser CSP to
//! run its scripts); these values only fill what is missing.

use axum::extract::Request;
use axum::response::Response;
use http::header::{self, HeaderName, HeaderValue};

use super::stage::{stage_layer, Finish, Stage};

/// The content security policy for API responses (OWASP REST guidance): nothing may load, run
/// or frame. `base-uri` and `form-action` are left out: they only matter for rendered HTML,
/// and a JSON response under `default-src 'none'` never renders.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// How many headers [`DEFAULTS`] holds.
const DEFAULT_COUNT: usize = 7;

const DEFAULTS: [(HeaderName, HeaderValue); DEFAULT_COUNT] = [
    (
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=63072000; includeSubDomains"),
    ),
    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(API_CSP)),
    (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(
            "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()",
        ),
    ),
];

/// Headers that advertise the software and its version; never sent.
const BANNERS: [HeaderName; 2] = [header::SERVER, HeaderName::from_static("x-powered-by")];

/// The layer that puts the security headers on every response below it and strips banners.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecurityHeadersLayer;

impl Stage for SecurityHeadersLayer {
    type Finish = Self;

    fn enter(&self, _request: &mut Request) -> Result<Self, Response> {
        Ok(Self)
    }
}

impl Finish for SecurityHeadersLayer {
    fn finish(self, response: Response) -> Response {
        apply(response)
    }
}

stage_layer!(SecurityHeadersLayer);

/// The layer that keeps the route map to itself: axum's method router puts `Allow` (the methods
/// a path has) on whatever answers a request with a method the path lacks, the 401 of an
/// anonymous caller and a CORS preflight's 200 included, so a wrong method would tell anyone
/// which paths exist. This removes `Allow` from every answer but a 405 (which only a caller
/// the policy admitted gets). Apply it around the whole router, outside its routing (see
/// [`super::Hardening::apply`]): inside, the method router adds the header after it.
#[derive(Debug, Clone, Copy, Default)]
pub struct HideRouteMapLayer;

/// What [`HideRouteMapLayer`] does to a response.
#[derive(Debug)]
pub struct AllowOnlyOn405;

impl Stage for HideRouteMapLayer {
    type Finish = AllowOnlyOn405;

    fn enter(&self, _request: &mut Request) -> Result<AllowOnlyOn405, Response> {
        Ok(AllowOnlyOn405)
    }
}

impl Finish for AllowOnlyOn405 {
    fn finish(self, mut response: Response) -> Response {
        if response.status() != http::StatusCode::METHOD_NOT_ALLOWED {
            remove_in_order(response.headers_mut(), &header::ALLOW);
        }
        response
    }
}

stage_layer!(HideRouteMapLayer);

/// Headers the stack adds to a response on its way out: the rate-limit pair, the request id
/// and the [`DEFAULTS`] (CORS, when an app allows origins, adds its own on top).
pub const STACK_HEADERS: usize = 2 + 1 + DEFAULT_COUNT;

/// An empty header map for a response with `own` headers of its own, with room for the ones
/// the stack adds on its way out ([`STACK_HEADERS`]). A header map that fills up grows: it
/// moves every entry to a new allocation and rehashes it, which cost a small request about
/// 700 instructions (a fiftieth of `GET /health`) when each response started from axum's
/// empty map and grew on the way out. Count `content-length` among `own`: axum adds it.
pub fn response_headers(own: usize) -> http::HeaderMap {
    http::HeaderMap::with_capacity(own + STACK_HEADERS)
}

/// Adds the security headers a response does not already carry and removes version banners.
/// It costs no allocation per response when the response's header map was made with
/// [`response_headers`], and one growth of the map otherwise. (Starting from a clone of a
/// ready map of the defaults and putting the response's own headers back on top measured
/// dearer: a header map insert costs the same either way, and there are as many.)
pub fn apply<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    headers.reserve(DEFAULTS.len());
    for (name, value) in DEFAULTS {
        headers.entry(name).or_insert(value);
    }
    for banner in &BANNERS {
        remove_in_order(headers, banner);
    }
    response
}

/// Removes every value of `name` and leaves the other headers in the order they were in.
///
/// `HeaderMap::remove` moves the last header into the removed one's place, so the order on
/// the wire would tell that a header was removed: an `Allow` taken off the 401 of a wrong
/// method would set it apart from the 401 of a made-up path, and map the routes for anyone
/// (outside review). Only a response that carries `name` pays for the rebuild.
fn remove_in_order(headers: &mut http::HeaderMap, name: &HeaderName) {
    if !headers.contains_key(name) {
        return;
    }
    let all = std::mem::take(headers);
    headers.reserve(all.len());
    // `into_iter` names a header at its first value and leaves the name out for the rest.
    let mut kept: Option<HeaderName> = None;
    for (key, value) in all {
        if let Some(key) = key {
            kept = (key != name).then_some(key);
        }
        if let Some(key) = &kept {
            headers.append(key.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_missing_headers_keeps_explicit_ones_and_strips_banners() {
        let response = http::Response::builder()
            .header(header::CONTENT_SECURITY_POLICY, "default-src 'self'")
            .header(header::SERVER, "nginx/1.2")
            .header("x-powered-by", "Express")
            .body(())
            .unwrap_or_default();
        let response = apply(response);
        let h = response.headers();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], "default-src 'self'");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert!(!h.contains_key(header::SERVER));
        assert!(!h.contains_key("x-powered-by"));
    }

    #[test]
    fn a_removed_header_leaves_no_trace_in_the_order_of_the_others() {
        let with = |allow: bool| {
            let mut response = http::Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::WWW_AUTHENTICATE, "Bearer")
                .header(header::SET_COOKIE, "a=1");
            if allow {
                response = response.header(header::ALLOW, "GET,HEAD");
            }
            let response = response
                .header(header::SET_COOKIE, "b=2")
                .header("ratelimit", "r=1")
                .status(http::StatusCode::UNAUTHORIZED)
                .body(())
                .unwrap_or_default();
            let response =
                AllowOnlyOn405.finish(apply(response).map(|()| axum::body::Body::empty()));
            response
                .headers()
                .iter()
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or_default()))
                .collect::<Vec<_>>()
        };
        assert_eq!(with(true), with(false));
        assert!(!with(true).iter().any(|line| line.starts_with("allow")));
        assert!(with(false).len() > 10);
    }

    #[test]
    fn every_value_of_a_header_the_response_sets_survives_and_replaces_the_default() {
        let response = http::Response::builder()
            .header(header::SET_COOKIE, "a=1")
            .header(header::CACHE_CONTROL, "private")
            .header(header::SET_COOKIE, "b=2")
            .header(header::CACHE_CONTROL, "max-age=0")
            .header(header::SERVER, "one")
            .header(header::SERVER, "two")
            .body(())
            .unwrap_or_default();
        let response = apply(response);
        let h = response.headers();
        let all = |name| h.get_all(name).iter().collect::<Vec<_>>();
        assert_eq!(all(header::SET_COOKIE), ["a=1", "b=2"]);
        assert_eq!(all(header::CACHE_CONTROL), ["private", "max-age=0"]);
        assert!(all(header::SERVER).is_empty());
        assert_eq!(all(header::X_FRAME_OPTIONS), ["DENY"]);
        assert_eq!(h.len(), DEFAULTS.len() + 3);
    }
}
