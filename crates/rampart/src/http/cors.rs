//! Cross-origin resource sharing from settings, closed unless origins are listed.
//!
//! Defends against other websites reading API responses with a victim's browser: only exact,
//! configured origins get `Access-Control-Allow-Origin`; a preflight from any other origin is
//! answered without it, so the browser blocks the real request. `*` is refused together with
//! credentials when settings are read (see `settings`), because that pairing would let any site
//! act as the user.

use std::time::Duration;

use futures_util::future::Either;
use http::{header, HeaderName, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::settings::{CorsOrigins, CorsSettings};

/// Headers a browser client may send cross-origin (`x-csrf-token`: a listed origin on the
/// same site sending a cookie session's CSRF value).
const ALLOWED_REQUEST_HEADERS: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::ACCEPT,
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("x-csrf-token"),
];

/// Headers a browser client may read cross-origin (rate-limit state and the request id).
const EXPOSED_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-request-id"),
    header::RETRY_AFTER,
    HeaderName::from_static("ratelimit"),
    HeaderName::from_static("ratelimit-policy"),
    header::LOCATION,
];

/// CORS for preflights and cross-origin requests only. tower-http answers *every* `OPTIONS` as a
/// preflight; an `OPTIONS` without `Access-Control-Request-Method` is not one, so it goes to the
/// router and meets the default-deny policy like any other method.
#[derive(Debug, Clone)]
pub struct PreflightOnlyLayer(CorsLayer);

impl<S: Clone> tower::Layer<S> for PreflightOnlyLayer {
    type Service = PreflightOnly<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PreflightOnly {
            cors: self.0.layer(inner.clone()),
            plain: inner,
        }
    }
}

/// See [`PreflightOnlyLayer`].
#[derive(Debug, Clone)]
pub struct PreflightOnly<S> {
    cors: tower_http::cors::Cors<S>,
    plain: S,
}

impl<S, B> tower::Service<http::Request<B>> for PreflightOnly<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<axum::body::Body>> + Clone,
    B: Default,
{
    type Response = http::Response<axum::body::Body>;
    type Error = S::Error;
    type Future = Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        match self.cors.poll_ready(cx) {
            std::task::Poll::Ready(Ok(())) => self.plain.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let not_a_preflight = request.method() == Method::OPTIONS
            && !request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        if not_a_preflight {
            Either::Right(self.plain.call(request))
        } else {
            Either::Left(self.cors.call(request))
        }
    }
}

/// The CORS layer for these settings, or `None` when no origin is allowed (no CORS headers are
/// ever sent then, and preflights reach the default-deny router like any other request).
pub fn layer(settings: &CorsSettings) -> Option<PreflightOnlyLayer> {
    inner_layer(settings).map(PreflightOnlyLayer)
}

fn inner_layer(settings: &CorsSettings) -> Option<CorsLayer> {
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
