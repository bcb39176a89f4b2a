//! The hardened HTTP stack: every layer rampart puts between the network and a handler.
//!
//! Each concern is its own tower layer with its own small configuration, usable alone on any
//! axum router: [`SecurityHeadersLayer`], [`RequestIdLayer`] (ids, and every error finished as
//! problem+json), [`ClientIpLayer`] (the client address through trusted proxies only),
//! [`AccessLogLayer`], [`crate::metrics::HttpMetricsLayer`], [`BodyLimitLayer`] (declared size,
//! bodies received whole within a timeout and a byte budget), [`LoadShedLayer`] (a cap on
//! requests in flight, in all and per client), [`TimeoutLayer`], CORS ([`cors::layer`]),
//! [`catch_panics`] and [`HideRouteMapLayer`] (no `Allow` but on a 405). [`Hardening`]
//! composes all of them in the one order that keeps each protection whole: outermost the route
//! map's guard, then the headers and the request id, so every answer any layer,
//! extractor, the access policy or a panic produces carries both; then the client address,
//! which the limits after it key on; the log and metrics, which see every refusal; a declared
//! size over the limit refused on arrival, nothing read ([`DeclaredSizeLayer`]); CORS; and,
//! last, what only an admitted request needs: its body received, so a slow body holds no
//! in-flight slot; then the slot; then the handler's timeout. [`Hardening::apply_secured`] puts a
//! [`crate::SecureRouter`]'s gate (authentication, client limit, policy, the app's admission)
//! before that last part, which runs around each method's handler alone: no body is read from
//! a caller the gate refuses, nor for a method the route does not take.
//!
//! The layers that only look at a request and touch its response are [`stage::Stage`]s: they
//! add no allocation and no service clone per request, and [`Hardening`] runs the arrival
//! ones as one service with one future ([`stage::StagesLayer`]), so the composed stack costs
//! what one fused service did. [`Hardening::secured_service`] hands a server the stack itself,
//! without a `Router` (and its boxed service and future) around it.

pub mod access_log;
mod body_intake;
pub mod body_limit;
pub mod client_ip;
pub mod cors;
pub mod headers;
mod in_flight;
pub mod panics;
pub mod request_id;
pub mod stage;
pub mod timeout;

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use axum::response::Response;
use axum::routing::Route;
use axum::Router;
use http::request::Parts;
use http::HeaderValue;
use tower::Layer;

use crate::error::ApiError;
use crate::json::JsonConfig;
use crate::settings::{CorsSettings, HttpLimits};

pub use access_log::AccessLogLayer;
pub use body_limit::{BodyLimitLayer, BodyLimits, DeclaredSizeLayer, DropBodyLayer};
pub use client_ip::{ClientIp, ClientIpConfig, ClientIpLayer};
pub use headers::{HideRouteMapLayer, SecurityHeadersLayer};
pub use in_flight::LoadShedLayer;
pub use request_id::{RequestIdLayer, RequestIds};
pub use timeout::TimeoutLayer;

/// The whole stack's settings. Start from [`Hardening::default`] (rampart's defaults: 1 MiB
/// bodies within 10 s, 30 s per request, 1024 requests in flight, JSON nesting 32, no
/// cross-origin access, no trusted proxies) and change the fields the app needs.
#[derive(Debug, Clone, Default)]
pub struct Hardening {
    pub limits: HttpLimits,
    pub cors: CorsSettings,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub forwarded_header: client_ip::ForwardedHeader,
    /// Where every answered request is counted, when metrics are exposed.
    pub metrics: Option<crate::metrics::HttpMetrics>,
    /// The per-address limit CORS preflights are charged to (the CORS layer answers them
    /// before any route's client limit sees them); used only when origins are allowed.
    pub preflight_limit: Option<crate::limit::ClientLimit>,
    /// rampart's JSON log, which the access log then writes to directly (see
    /// [`access_log`]); without it, access lines are tracing events.
    pub json_log: Option<crate::telemetry::JsonLines>,
}

impl Hardening {
    /// Counts every answered request in `metrics` (see [`crate::metrics`]).
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::HttpMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Wraps `router` in the whole stack (see the module header for the order): what every
    /// request meets on arrival goes around the router as one service, outside its routing,
    /// so it covers the fallback and a 405 alike; what only an admitted request needs goes
    /// around each route (`Router::layer`), and the whole is wrapped once more in
    /// [`HideRouteMapLayer`].
    ///
    /// As few boxes as it can: axum boxes a route's service again at every `Router::layer`
    /// and clones and allocates through each box on every request, so the arrival part
    /// wraps the finished router once instead, and each part is composed with
    /// `ServiceBuilder` into one value of one type.
    pub fn apply(self, router: Router) -> Router {
        let (outside, admitted, counted) = self.split();
        Router::new().fallback_service(stack(outside, counted, router.layer(admitted)))
    }

    /// Wraps the routes of a [`crate::SecureRouter`] (finished with `state`) in the whole
    /// stack, with the body intake, the in-flight cap and the request timeout inside each
    /// route's gate: a body is received only from a caller the rate limit and the access
    /// policy admitted. A client over its limit, or without the credentials a route needs,
    /// is answered before a byte of its body is read (and is never sent `100 Continue`), so it
    /// cannot spend the shared byte budget that admitted callers' bodies need.
    pub fn apply_secured<S>(
        self,
        routes: crate::SecureRouter<S>,
        authenticator: std::sync::Arc<dyn crate::policy::Authenticator>,
        state: S,
    ) -> Router
    where
        S: Clone + Send + Sync + 'static,
    {
        Router::new().fallback_service(self.secured_service(routes, authenticator, state))
    }

    /// [`Hardening::apply_secured`] as the stack's own service rather than a `Router`: what a
    /// server hands its connections ([`crate::server::serve`] takes it). A `Router` around
    /// the stack costs each request one more boxed service and future; this does not.
    pub fn secured_service<S>(
        self,
        routes: crate::SecureRouter<S>,
        authenticator: std::sync::Arc<dyn crate::policy::Authenticator>,
        state: S,
    ) -> impl HardenedService
    where
        S: Clone + Send + Sync + 'static,
    {
        let (outside, admitted, counted) = self.split();
        let gated = routes
            .into_router_around(authenticator, admitted)
            .with_state(state);
        stack(outside, counted, gated)
    }

    /// The stack in two parts: what every request meets on arrival, and what only an admitted
    /// request needs (its body received, an in-flight slot, the handler's timeout), which a
    /// gate may go between; and whether requests are counted (see [`stack`]).
    fn split(
        self,
    ) -> (
        impl Layer<Router, Service: HardenedService>
            + Layer<Route, Service: HardenedService>
            + Clone
            + Send
            + Sync
            + 'static,
        impl Layer<Route, Service: HardenedService>
            + Layer<stage::Wrapped<Route, crate::policy::RequireAfterBody>, Service: HardenedService>
            + Clone
            + Send
            + Sync
            + 'static,
        bool,
    ) {
        let limits = self.limits;
        let cors = cors::layer(&self.cors);
        // The preflight charge only exists in front of a CORS layer that answers preflights.
        let preflight_limit = cors
            .as_ref()
            .and(self.preflight_limit)
            .map(crate::limit::PreflightLimitLayer::new);
        let counted = self.metrics.is_some();
        // The stages run as one service with one future (see `stage::StagesLayer`).
        let arrival = stage::StagesLayer(stage::stages!(
            SecurityHeadersLayer,
            RequestIdLayer::new(),
            ClientIpLayer::new(ClientIpConfig::new(
                self.trusted_proxies,
                self.forwarded_header,
            )),
            self.metrics.map(crate::metrics::HttpMetricsLayer::new),
            self.json_log
                .map_or_else(AccessLogLayer::new, AccessLogLayer::json),
            JsonConfig {
                max_depth: limits.json_max_depth,
                body_limit: limits.body_limit,
            },
            DeclaredSizeLayer::new(limits.body_limit),
        ));
        let outside = tower::ServiceBuilder::new()
            .layer(arrival)
            .option_layer(preflight_limit)
            .option_layer(cors)
            .layer(catch_panics());
        let admitted = tower::ServiceBuilder::new()
            .layer(BodyLimitLayer::new(BodyLimits {
                max_bytes: limits.body_limit,
                receive_timeout: limits.body_timeout,
            }))
            .layer(LoadShedLayer::new(limits.max_in_flight))
            .layer(TimeoutLayer::new(limits.request_timeout));
        (outside, admitted, counted)
    }
}

/// `router` inside the arrival part of the stack, inside [`HideRouteMapLayer`], as one
/// service.
///
/// The arrival part wraps the finished router once, outside its routing, which costs one box
/// a request where `Router::layer` costs one per route level. When requests are `counted`, it
/// goes around each route instead (after routing): the metrics label every answer, a refusal
/// of the arrival part included (a declared size over the limit, a CORS preflight), with the
/// route template the router matched, which exists only once it has routed.
fn stack<L>(outside: L, counted: bool, router: Router) -> impl HardenedService
where
    L: Layer<Router, Service: HardenedService> + Layer<Route, Service: HardenedService>,
    L: Clone + Send + Sync + 'static,
{
    if counted {
        tower::util::Either::Left(HideRouteMapLayer.layer(router.layer(outside)))
    } else {
        tower::util::Either::Right(HideRouteMapLayer.layer(outside.layer(router)))
    }
}

/// What the stack and each of its parts build: a service that answers axum requests, cheap to
/// clone, which axum can mount and [`crate::server::serve`] can serve.
pub trait HardenedService:
    tower::Service<
        axum::extract::Request,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> HardenedService for T where
    T: tower::Service<
            axum::extract::Request,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// `name`'s value when the request carries it exactly once, `None` when it is missing or
/// repeated.
///
/// A header that can only mean one thing (a credential, a CSRF token, the body's content type)
/// sent twice is ambiguous: this server would read the first, a proxy or firewall in front of
/// it may read the last, and they would then judge different requests. Read such headers
/// through this, and treat a repeated one as not sent well.
pub fn sole_header<K: http::header::AsHeaderName>(
    headers: &http::HeaderMap,
    name: K,
) -> Option<&HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// A panic in a handler becomes a 500 problem document; the payload goes to the log only.
pub fn catch_panics() -> panics::CatchPanicLayer {
    panics::CatchPanicLayer
}

/// Per-request facts the stack establishes, available to handlers as an extractor.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The id on the response's `x-request-id` and in any problem document: the client's, when
    /// it sent a sane one, else [`RequestContext::server_request_id`].
    pub request_id: HeaderValue,
    /// The id this server gave the request, whatever the client sent: what logs and audit
    /// records are filed under.
    pub server_request_id: HeaderValue,
    /// The client address (see [`client_ip`]): the key for rate limits and audit records.
    pub client_ip: IpAddr,
}

impl RequestContext {
    /// The id the response carries.
    pub fn request_id(&self) -> &str {
        // Only ever built from ASCII (validated or generated).
        self.request_id.to_str().unwrap_or_default()
    }

    /// The server's own id for the request.
    pub fn server_request_id(&self) -> &str {
        self.server_request_id.to_str().unwrap_or_default()
    }

    /// The id the client chose, when it sent one.
    pub fn client_request_id(&self) -> Option<&str> {
        (self.request_id != self.server_request_id).then(|| self.request_id())
    }
}

impl RequestContext {
    /// What [`RequestIdLayer`] and [`ClientIpLayer`] put on a request, when both ran.
    pub fn of(extensions: &http::Extensions) -> Option<Self> {
        let ids = extensions.get::<RequestIds>()?;
        let ClientIp(client_ip) = *extensions.get::<ClientIp>()?;
        Some(Self {
            request_id: ids.echoed.clone(),
            server_request_id: ids.server.clone(),
            client_ip,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Self::of(&parts.extensions).ok_or_else(|| {
            ApiError::internal(
                "the RequestIdLayer and ClientIpLayer (or the Hardening stack) are not installed",
            )
        })
    }
}
