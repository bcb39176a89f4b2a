//! Request metrics for Prometheus: counts and latency by route template, method and status
//! class, on whatever registry the application exposes.
//!
//! Defends against metrics becoming a leak or a memory sink. Every label value comes from a
//! fixed set: the route *template* the router matched (`/v1/items/{id}`), never the path a
//! client sent; one of seven methods or `other`; a status class (`2xx`). So no id, name or
//! address reaches a label, and a client sending random paths and methods adds no series.
//! Requests that matched no route are counted under `unmatched`.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::http::stage::{stage_layer, Finish, Stage};

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Latency buckets, in seconds: from half a millisecond (a cached read) to the request
/// timeout's range.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

/// Request counts and latencies; cheap to clone (the series are shared).
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl HttpMetrics {
    /// New series, registered in `registry` as `http_requests` (counter) and
    /// `http_request_duration_seconds` (histogram).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "http_requests",
            "Requests answered, by route template, method and status class",
            metrics.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from receiving a request to its response, by route template and method",
            Unit::Seconds,
            metrics.latency.clone(),
        );
        metrics
    }

    /// Counts one answered request. `route` is the matched template, `None` when none matched.
    pub fn observe(
        &self,
        route: Option<&str>,
        method: &Method,
        status: StatusCode,
        latency: Duration,
    ) {
        let route = route.unwrap_or(UNMATCHED).to_owned();
        let method = method_label(method);
        self.latency
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method,
            })
            .observe(latency.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status: status_class(status),
            })
            .inc();
    }
}

/// The layer that counts every request below it in [`HttpMetrics`]. Apply it with
/// `Router::layer`, which runs it after routing, so it sees the route template matched.
#[derive(Debug, Clone)]
pub struct HttpMetricsLayer {
    metrics: HttpMetrics,
}

impl HttpMetricsLayer {
    pub fn new(metrics: HttpMetrics) -> Self {
        Self { metrics }
    }
}

/// What [`HttpMetricsLayer`] keeps of a request until its response.
#[derive(Debug)]
pub struct Observation {
    metrics: HttpMetrics,
    route: Option<MatchedPath>,
    method: Method,
    started: Instant,
}

impl Stage for HttpMetricsLayer {
    type Finish = Observation;

    fn enter(&self, request: &mut Request) -> Result<Observation, Response> {
        Ok(Observation {
            metrics: self.metrics.clone(),
            // The template the router matched, never the path.
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: request.method().clone(),
            started: Instant::now(),
        })
    }
}

impl Finish for Observation {
    fn finish(self, response: Response) -> Response {
        self.metrics.observe(
            self.route.as_ref().map(MatchedPath::as_str),
            &self.method,
            response.status(),
            self.started.elapsed(),
        );
        response
    }
}

stage_layer!(HttpMetricsLayer);

/// The method, when it is one a route can be mounted for; `other` for anything a client made up.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// `registry` in the Prometheus text format (0.0.4).
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_fixed_sets_whatever_the_client_sends() {
        let mut registry = Registry::with_prefix("rampart");
        let metrics = HttpMetrics::register(&mut registry);
        let method = Method::from_bytes(b"EXFILTRATE-alice.example.com").unwrap();
        for _ in 0..3 {
            metrics.observe(
                Some("/v1/items/{id}"),
                &Method::GET,
                StatusCode::OK,
                Duration::from_millis(3),
            );
        }
        metrics.observe(
            None,
            &method,
            StatusCode::NOT_FOUND,
            Duration::from_micros(200),
        );
        let text = encode(&registry).unwrap();
        assert!(
            text.contains(
                r#"rampart_http_requests_total{route="/v1/items/{id}",method="GET",status="2xx"} 3"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"rampart_http_requests_total{route="unmatched",method="other",status="4xx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains("rampart_http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"rampart_http_request_duration_seconds_count{route="/v1/items/{id}",method="GET"} 3"#),
            "{text}"
        );
        assert!(!text.contains("alice"), "{text}");
    }
}
