//! The hardened HTTP stack: every layer rampart puts between the network and a handler.
//!
//! [`Hardening::apply`] wraps a finished router, so the protections cover every response it can
//! produce: handler answers, extractor rejections, 401/404 from the default-deny fallback, 405s
//! and panics. Each concern is its own module of plain functions; [`HardenedService`] runs them
//! in one future per request (security headers, request id and problem finishing, client
//! address, declared-size check, request timeout, access log), because a layer per concern
//! would box a future and clone a service per request for each of them. Inside it: CORS (when
//! configured), the panic catcher and axum's streaming body limit.
//! It also sheds load ([`in_flight`]): past `max_in_flight` requests at once, in all or for one
//! client, a request is answered 503 with `Retry-After` at once. A request's body is received
//! whole, within the body timeout and a byte budget, before it asks for one of those slots
//! ([`body_intake`]), so a client slow to send its body holds no slot at all.

pub mod access_log;
mod body_intake;
pub mod body_limit;
pub mod client_ip;
pub mod cors;
pub mod headers;
mod in_flight;
pub mod request_id;
pub mod timeout;

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http::request::Parts;
use http::HeaderValue;
use tower::{Layer, Service, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{ApiError, InternalCause};
use crate::json::JsonConfig;
use crate::settings::{CorsSettings, HttpLimits, Settings};
use client_ip::ClientIpConfig;
use request_id::{IdGenerator, REQUEST_ID_HEADER};

/// What the stack needs from settings; build it with [`Hardening::from_settings`] or by hand
/// in an app that has its own configuration.
#[derive(Debug, Clone)]
pub struct Hardening {
    pub limits: HttpLimits,
    pub cors: CorsSettings,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub forwarded_header: client_ip::ForwardedHeader,
    /// Where every answered request is counted, when metrics are exposed.
    pub metrics: Option<crate::metrics::HttpMetrics>,
}

impl Hardening {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            limits: settings.http,
            cors: settings.cors.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            forwarded_header: settings.forwarded_header,
            metrics: None,
        }
    }

    /// Counts every answered request in `metrics` (see [`crate::metrics`]).
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::HttpMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Wraps `router` in the whole stack.
    pub fn apply(self, router: Router) -> Router {
        let limits = self.limits;
        let router = router
            .layer(DefaultBodyLimit::max(limits.body_limit))
            .layer(CatchPanicLayer::custom(panic_response));
        let router = match cors::layer(&self.cors) {
            Some(cors) => router.layer(cors),
            None => router,
        };
        router.layer(HardenedLayer {
            shared: Arc::new(Shared {
                in_flight: in_flight::InFlight::new(limits.max_in_flight),
                intake: body_intake::BodyIntake::new(limits.body_limit, limits.body_timeout),
                access_log: access_log::AccessLog::default(),
                ids: IdGenerator::new(),
                client_ip: ClientIpConfig::new(self.trusted_proxies, self.forwarded_header),
                limits,
                metrics: self.metrics,
            }),
        })
    }
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
    pub json: JsonConfig,
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

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            ApiError::internal("the rampart::http::Hardening stack is not installed")
        })
    }
}

#[derive(Debug)]
struct Shared {
    in_flight: Arc<in_flight::InFlight>,
    intake: Arc<body_intake::BodyIntake>,
    access_log: access_log::AccessLog,
    ids: IdGenerator,
    client_ip: ClientIpConfig,
    limits: HttpLimits,
    metrics: Option<crate::metrics::HttpMetrics>,
}

#[derive(Debug, Clone)]
struct HardenedLayer {
    shared: Arc<Shared>,
}

impl<S> Layer<S> for HardenedLayer {
    type Service = HardenedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HardenedService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The edge of the stack (see the module header).
#[derive(Debug, Clone)]
pub struct HardenedService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for HardenedService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is checked on the clone that serves the request (`oneshot` below).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let inner = self.inner.clone();
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let started = Instant::now();
            let limits = shared.limits;
            let server_id = shared.ids.generate();
            let sent_id = request_id::from_client(request.headers());
            let id = sent_id.clone().unwrap_or_else(|| server_id.clone());
            let client_ip = shared
                .client_ip
                .resolve_request(request.extensions(), request.headers());
            let method = request.method().clone();
            let uri = request.uri().clone();
            // The template the router matched (this stack runs after routing), never the path.
            let route = shared.metrics.as_ref().and(
                request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|matched| matched.as_str().to_owned()),
            );
            request.extensions_mut().insert(RequestContext {
                request_id: id.clone(),
                server_request_id: server_id.clone(),
                client_ip,
                json: JsonConfig {
                    max_depth: limits.json_max_depth,
                    body_limit: limits.body_limit,
                },
            });

            let mut response = match admit(&shared, request, client_ip).await {
                Ok((request, slot, body)) => {
                    let response = timeout::within(limits.request_timeout, async move {
                        match inner.oneshot(request).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    })
                    .await;
                    // Held while the handler runs (the response body streams after).
                    drop((slot, body));
                    response
                }
                Err(refused) => refused,
            };

            if response.status().as_u16() >= 400 {
                request_id::finish_problem(&mut response, &id);
            }
            if let Some(metrics) = &shared.metrics {
                metrics.observe(
                    route.as_deref(),
                    &method,
                    response.status(),
                    started.elapsed(),
                );
            }
            let cause = response.extensions_mut().remove::<InternalCause>();
            shared.access_log.record(&access_log::Entry {
                request_id: server_id.to_str().unwrap_or_default(),
                client_request_id: sent_id.as_ref().and_then(|id| id.to_str().ok()),
                method: &method,
                path: uri.path(),
                status: response.status(),
                latency: started.elapsed(),
                client: client_ip,
                cause: cause.as_ref().map(|c| c.0.as_str()),
            });
            response.headers_mut().insert(REQUEST_ID_HEADER, id);
            Ok(headers::apply(response))
        })
    }
}

/// What a request must pass before its handler runs, cheapest refusal first: a declared size
/// over the limit (413, nothing read), its whole body within the body timeout and budget (408,
/// 413, 503), then an in-flight slot (503).
async fn admit(
    shared: &Shared,
    request: Request,
    client_ip: IpAddr,
) -> Result<(Request, in_flight::Slot, body_intake::Held), Response> {
    if let Some(refused) =
        body_limit::refuse_declared_oversize(request.headers(), shared.limits.body_limit)
    {
        return Err(refused);
    }
    let (request, body) = shared.intake.receive(request, client_ip).await?;
    match shared.in_flight.admit(client_ip) {
        Ok(slot) => Ok((request, slot, body)),
        Err(why) => Err(shared.in_flight.shed(why)),
    }
}

/// A panic in a handler becomes a 500 problem document; the payload goes to the log only.
#[allow(clippy::needless_pass_by_value)] // the signature CatchPanicLayer::custom expects
fn panic_response(payload: Box<dyn Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}
