//! `/account`: the self-service page (sign in, sessions, password, two-factor authentication,
//! and the landing pages of the links sent by mail), served from files built into the binary.
//!
//! Defends against the page becoming the way in: it loads nothing from any other origin and
//! runs no inline script or style, under a Content-Security-Policy that allows only this
//! origin's files and forbids framing; it signs in with the browser endpoints, so no token
//! ever reaches its script; and the tokens of mailed links are taken out of the address bar
//! once read.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The page's policy: this origin's script, style, images and requests only; never framed;
/// forms post only here; no `<base>`.
pub const PAGE_CSP: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

const HTML: &str = include_str!("../../web/account.html");
const SCRIPT: &str = include_str!("../../web/account.js");
const STYLE: &str = include_str!("../../web/account.css");

/// The paths that show the page: itself and the landing pages of mailed links.
pub const PAGE_PATHS: &[&str] = &[
    "/account",
    "/account/forgot",
    "/account/reset",
    "/account/verify-email",
];

fn file(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    // A page that opened this one in a new window cannot navigate it elsewhere later.
    headers.insert(
        http::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

pub async fn page() -> Response {
    file("text/html; charset=utf-8", HTML)
}

pub async fn script() -> Response {
    file("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    file("text/css; charset=utf-8", STYLE)
}
