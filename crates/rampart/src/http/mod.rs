//! The hardened HTTP stack: every layer rampart puts between the network and a handler.
//!
//! [`Hardening::apply`] wraps a finished router, so the layers cover every response it can
//! produce: handler answers, extractor rejections, 401/404 from the default-deny fallback, 405s
//! and panics. Outermost first: security headers, request id (and problem finishing), client
//! address, access log, CORS, declared-size check, request timeout, panic catcher, body limit.

pub mod access_log;
pub mod body_limit;
pub mod client_ip;
pub mod cors;
pub mod headers;
pub mod request_id;
pub mod timeout;

use std::any::Any;

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tower::util::MapResponseLayer;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::json::JsonConfig;
use crate::settings::{CorsSettings, HttpLimits, Settings};
use client_ip::ClientIpConfig;

/// What the stack needs from settings; build it with [`Hardening::from_settings`] or by hand
/// in an app that has its own configuration.
#[derive(Debug, Clone)]
pub struct Hardening {
    pub limits: HttpLimits,
    pub cors: CorsSettings,
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Hardening {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            limits: settings.http,
            cors: settings.cors.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
        }
    }

    /// Wraps `router` in the whole stack.
    pub fn apply(self, router: Router) -> Router {
        let limits = self.limits;
        let router = router
            .layer(DefaultBodyLimit::max(limits.body_limit))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(from_fn_with_state(
                limits.request_timeout,
                timeout::limit_request_time,
            ))
            .layer(from_fn_with_state(
                limits.body_limit,
                body_limit::reject_declared_oversize,
            ))
            .layer(Extension(JsonConfig {
                max_depth: limits.json_max_depth,
                body_limit: limits.body_limit,
            }));
        let router = match cors::layer(&self.cors) {
            Some(cors) => router.layer(cors),
            None => router,
        };
        router
            .layer(from_fn(access_log::record))
            .layer(from_fn_with_state(
                ClientIpConfig::new(self.trusted_proxies),
                client_ip::resolve,
            ))
            .layer(from_fn(request_id::assign))
            .layer(MapResponseLayer::new(headers::apply))
    }
}

/// A panic in a handler becomes a 500 problem document; the payload is logged, never sent.
#[allow(clippy::needless_pass_by_value)] // the signature CatchPanicLayer::custom expects
fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "handler panicked");
    ApiError::internal("handler panicked").into_response()
}
