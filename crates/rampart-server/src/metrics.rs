//! The operators' view: Prometheus metrics on a listener of their own (`RAMPART_METRICS_BIND`).
//!
//! Defends against the metrics endpoint becoming a leak or an attack surface: it is never the
//! public listener (settings refuse the same address), it serves `GET /metrics` and nothing
//! else, behind the same hardened stack and connection limits; every label value comes from a
//! fixed set (route templates, outcomes, limit policy names, pool states), never a user id, a
//! name or an address. What is sampled (queues, pools, the revocation set) is read at scrape
//! time, so serving metrics costs requests nothing.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    Success,
    /// A correct password for an account with MFA: the login waits for its code.
    MfaRequired,
    /// A second factor refused: wrong, replayed, or its challenge unusable.
    MfaFailed,
    /// A correct password for an address still to verify (`RAMPART_REQUIRE_VERIFIED_EMAIL`).
    Unverified,
    UnknownUser,
    WrongPassword,
    Locked,
    /// During the name's backoff delay, or over a per-account limit (429). An address over
    /// the auth limit is refused before the login is read: `rate_limited{policy="auth"}`.
    Throttled,
    /// Shed (the hashing pool full) or a dependency down (503).
    Unavailable,
    /// Refused for its input (422, 415).
    Invalid,
}

impl LoginOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::MfaRequired => "mfa_required",
            Self::MfaFailed => "mfa_failed",
            Self::Unverified => "unverified",
            Self::UnknownUser => "unknown_user",
            Self::WrongPassword => "wrong_password",
            Self::Locked => "locked",
            Self::Throttled => "throttled",
            Self::Unavailable => "unavailable",
            Self::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

/// Counters the service increments as things happen; cheap to clone (the series are shared).
#[derive(Debug, Clone, Default)]
pub struct ServiceMetrics {
    logins: Family<OutcomeLabels, Counter>,
    rate_limited: Family<PolicyLabels, Counter>,
}

impl ServiceMetrics {
    pub fn login(&self, outcome: LoginOutcome) {
        self.logins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// A request refused by the limit `policy` (a configured policy's name, never client data).
    pub fn rate_limited(&self, policy: &str) {
        self.rate_limited
            .get_or_create(&PolicyLabels {
                policy: policy.to_owned(),
            })
            .inc();
    }

    fn register(&self, registry: &mut Registry) {
        registry.register("logins", "Login attempts, by outcome", self.logins.clone());
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit or login backoff, by policy",
            self.rate_limited.clone(),
        );
    }
}

/// What is read at each scrape: the hashing pool, the revocation set, the database pool and
/// the shared limiter's connection.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub hasher: rampart::password::PasswordHasher,
    pub access: Arc<crate::access::AccessState>,
    pub store: Arc<dyn crate::store::Store>,
    pub redis: Option<rampart::limit::RedisStore>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self;
        let hashing = state.hasher.stats();
        let load = state.hasher.load();
        gauge(
            &mut encoder,
            "password_hash_queue",
            "Password hashes waiting for a hashing thread",
            load.queued,
        )?;
        gauge(
            &mut encoder,
            "password_hash_running",
            "Password hashes being computed now",
            load.running,
        )?;
        counter(
            &mut encoder,
            "password_hash_shed",
            "Requests refused (503) because the hashing queue was full",
            hashing.rejected_busy,
        )?;
        counter(
            &mut encoder,
            "password_verifications",
            "Password verifications, decoys for unknown names included",
            hashing.verifications,
        )?;
        gauge(
            &mut encoder,
            "revoked_sessions",
            "Revoked sessions held in memory (their tokens may not have expired yet)",
            state.access.revoked_len(),
        )?;
        let pool = state.store.pool_status();
        let in_use = pool.open.saturating_sub(pool.idle);
        let metric = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "db_pool_connections",
            "Database connections open in this node's pool, by state",
            None,
            metric.metric_type(),
        )?;
        for (label, value) in [("in_use", in_use), ("idle", pool.idle)] {
            ConstGauge::new(as_i64(value))
                .encode(family.encode_family(&StateLabels { state: label })?)?;
        }
        gauge(
            &mut encoder,
            "db_pool_max_connections",
            "The most connections this node's pool opens",
            pool.max,
        )?;
        if let Some(redis) = &state.redis {
            counter(
                &mut encoder,
                "redis_errors",
                "Redis calls that failed or timed out (or were refused by the open breaker)",
                redis.errors(),
            )?;
        }
        Ok(())
    }
}

fn as_i64(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl TryInto<i64>,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(as_i64(value));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// Every metric: the HTTP stack's (registered by the caller in `registry`), the service's
/// `counters` and what is `sampled` at each scrape.
pub fn register(registry: &mut Registry, counters: &ServiceMetrics, sampled: Sampled) {
    counters.register(registry);
    registry.register_collector(Box::new(sampled));
}

/// The metrics listener's routes: `GET /metrics`, everything else 404.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = Arc::clone(&registry);
            async move {
                match rampart::metrics::encode(&registry) {
                    Ok(text) => (
                        [(header::CONTENT_TYPE, rampart::metrics::CONTENT_TYPE)],
                        text,
                    )
                        .into_response(),
                    Err(err) => rampart::ApiError::internal(err).into_response(),
                }
            }
        }),
    )
}
