//! Cross-origin resource sharing from settings, closed unless origins are listed.
//!
//! Defends against other websites reading API responses with a victim's browser: only exact,
//! configured origins get `Access-Control-Allow-Origin`; a preflight from any other origin is
//! answered without it, so the browser blocks the real request. `*` is refused together with
//! credentials when settings are read (see `settings`), because that pairing would let any site
//! act as the user.

use std::time::Duration;

use http::{header, HeaderName, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::settings::{CorsOrigins, CorsSettings};

/// Headers a browser client may send cross-origin.
const ALLOWED_REQUEST_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    HeaderName::from_static("x-request-id"),
];

/// Headers a browser client may read cross-origin (rate-limit state and the request id).
const EXPOSED_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-request-id"),
    header::RETRY_AFTER,
    HeaderName::from_static("ratelimit"),
    HeaderName::from_static("ratelimit-policy"),
    header::LOCATION,
];

/// The CORS layer for these settings, or `None` when no origin is allowed (no CORS headers are
/// ever sent then, and preflights reach the default-deny router like any other request).
pub fn layer(settings: &CorsSettings) -> Option<CorsLayer> {
    let origins = match &settings.origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PATCH,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers(ALLOWED_REQUEST_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .allow_credentials(settings.credentials && settings.origins != CorsOrigins::Any)
            .max_age(Duration::from_secs(600)),
    )
}
