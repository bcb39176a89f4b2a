//! Rate limiting: named GCRA policies over a pluggable store, and the per-client limit
//! ([`ClientLimitLayer`]) every request is charged against.
//!
//! Defends against brute force and exhaustion by volume: every request is charged to its client
//! (the authenticated user, or the address [`crate::http::client_ip`] resolved, IPv6 by /64)
//! before a handler runs, and routes that cost more (login, registration) add their own
//! policies. Refusals are 429 problem documents with `Retry-After` and the IETF `RateLimit`
//! headers; allowed responses carry the same headers, so clients can pace themselves.
//!
//! - [`gcra`]: the arithmetic; [`backoff`]: login backoff streaks.
//! - [`store`]: the [`LimitStore`] trait and its keys; [`memory`]: the in-process store;
//!   `redis` (feature `redis`): the store several nodes share.
//! - [`report`]: policies and the response headers; `layer`: [`ClientLimitLayer`].

pub mod backoff;
pub mod gcra;
mod layer;
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod report;
pub mod store;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use backoff::{BackoffPolicy, Streak};
pub use gcra::{Decision, Quota};
pub use layer::{Charged, ClientLimitLayer, PreflightLimitLayer, RateLimitHeaders};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
pub use report::{Policy, QuotaReport};
pub use store::{ClientAddress, LimitError, LimitKey, LimitStore, Subject};

use crate::error::ApiError;
use crate::http::RequestContext;

/// Checks policies against a store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Limiter {
    store: Arc<dyn LimitStore>,
}

/// The answer to one check.
#[derive(Debug, Clone)]
pub enum Outcome {
    Allowed(QuotaReport),
    Limited {
        report: QuotaReport,
        retry_after: Duration,
    },
}

impl Outcome {
    /// The report for an allowed request, or the 429 for a limited one.
    /// [`Outcome::into_result`], after telling `observer` about a refusal.
    pub fn observed(
        self,
        observer: &dyn LimitObserver,
        client: Client<'_>,
        context: &RequestContext,
        path: &str,
    ) -> Result<QuotaReport, ApiError> {
        if let Self::Limited {
            report,
            retry_after,
        } = &self
        {
            observer.limited(&Limited {
                policy: report.policy.name(),
                client,
                context,
                path,
                retry_after: *retry_after,
            });
        }
        self.into_result()
    }

    pub fn into_result(self) -> Result<QuotaReport, ApiError> {
        match self {
            Self::Allowed(report) => Ok(report),
            Self::Limited {
                report,
                retry_after,
            } => Err(ApiError::TooManyRequests {
                retry_after,
                quota: Some(Box::new(report)),
            }),
        }
    }
}

impl Limiter {
    pub fn new(store: Arc<dyn LimitStore>) -> Self {
        Self { store }
    }

    /// An in-process limiter with the default memory budget.
    pub fn in_memory() -> Self {
        Self::new(Arc::new(MemoryStore::default()))
    }

    pub fn store(&self) -> &dyn LimitStore {
        self.store.as_ref()
    }

    /// Spends `cost` of `policy` for `subject` (cost 0 only reports).
    pub async fn check(
        &self,
        policy: &Policy,
        subject: Subject,
        cost: u32,
    ) -> Result<Outcome, LimitError> {
        let key = LimitKey::new(policy.name(), subject);
        let decision = self.store.check(&key, policy.quota(), cost).await?;
        Ok(Outcome::of(policy, decision))
    }

    /// [`Limiter::check`] without waiting, when the store can answer at once (see
    /// [`LimitStore::check_at_once`]).
    pub fn check_at_once(
        &self,
        policy: &Policy,
        subject: Subject,
        cost: u32,
    ) -> Option<Result<Outcome, LimitError>> {
        let key = LimitKey::new(policy.name(), subject);
        let decided = self.store.check_at_once(&key, policy.quota(), cost)?;
        Some(decided.map(|decision| Outcome::of(policy, decision)))
    }
}

impl Outcome {
    fn of(policy: &Policy, decision: Decision) -> Self {
        match decision {
            Decision::Allowed { remaining, reset } => Self::Allowed(QuotaReport {
                policy: policy.clone(),
                remaining,
                reset,
            }),
            Decision::Denied { retry_after, reset } => Self::Limited {
                report: QuotaReport {
                    policy: policy.clone(),
                    remaining: 0,
                    reset,
                },
                retry_after,
            },
        }
    }
}

/// Who a request is charged to.
#[derive(Debug, Clone, Copy)]
pub enum Client<'a> {
    /// A verified caller, counted by account: every session of one user shares one budget, so
    /// logging in again buys no more requests.
    User {
        user_id: &'a str,
        session_id: &'a str,
    },
    /// A verified caller counted by its session alone, on the routes that end sessions
    /// ([`ClientLimit::by_session_on`]): a stolen token that spent its user's budget cannot
    /// keep the owner's other sessions from logging it out or changing the password.
    Session {
        user_id: &'a str,
        session_id: &'a str,
    },
    /// Anyone else, by resolved address.
    Address(IpAddr),
}

impl Client<'_> {
    pub fn subject(self) -> Subject {
        match self {
            Self::User { user_id, .. } => Subject::User(user_id.to_owned()),
            Self::Session { session_id, .. } => Subject::Session(session_id.to_owned()),
            Self::Address(ip) => Subject::Address(ClientAddress::of(ip)),
        }
    }
}

/// A refusal, as an observer sees it.
#[derive(Debug)]
pub struct Limited<'a> {
    pub policy: &'static str,
    pub client: Client<'a>,
    pub context: &'a RequestContext,
    pub path: &'a str,
    pub retry_after: Duration,
}

/// Told about every refusal, for security events. Called on the request path, so it must not
/// block; the default logs.
pub trait LimitObserver: Send + Sync + 'static {
    fn limited(&self, event: &Limited<'_>);
}

/// Logs refusals at `info`, at most one line a second per process, counting the ones left out.
#[derive(Debug, Default)]
pub struct LogRefusals(crate::telemetry::LogThrottle);

impl LimitObserver for LogRefusals {
    fn limited(&self, event: &Limited<'_>) {
        if let Some(left_out) = self.0.admit() {
            tracing::info!(
                policy = event.policy,
                client = %event.context.client_ip,
                path = event.path,
                left_out,
                "rate limited"
            );
        }
    }
}

/// The limit every request is charged against: one policy per client, applied by
/// [`ClientLimitLayer`] (which [`crate::SecureRouter::limit_clients`] mounts between
/// authentication and the access decision). A store failure lets requests through (logged, at most a line a
/// second) unless [`ClientLimit::fail_closed`] is set; the per-route limits on credential
/// endpoints always fail closed.
#[derive(Clone)]
pub struct ClientLimit {
    limiter: Limiter,
    policy: Policy,
    /// Route templates where a verified caller is charged by session, not by user.
    session_routes: Arc<[&'static str]>,
    observer: Arc<dyn LimitObserver>,
    fail_closed: bool,
    store_errors: Arc<crate::telemetry::LogThrottle>,
}

impl fmt::Debug for ClientLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLimit")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ClientLimit {
    pub fn new(limiter: Limiter, policy: Policy) -> Self {
        Self {
            limiter,
            policy,
            session_routes: Arc::new([]),
            observer: Arc::new(LogRefusals::default()),
            fail_closed: false,
            store_errors: Arc::default(),
        }
    }

    /// Refuses requests with 503 while the store cannot answer, instead of letting them through.
    #[must_use]
    pub fn fail_closed(mut self, fail_closed: bool) -> Self {
        self.fail_closed = fail_closed;
        self
    }

    /// Charges a verified caller by session, not by user, on these route templates (as
    /// mounted, `/v1/sessions/{id}`): the routes that end sessions, so the budget a stolen
    /// token spends is never the one its owner needs to end it.
    #[must_use]
    pub fn by_session_on(mut self, templates: &[&'static str]) -> Self {
        self.session_routes = templates.into();
        self
    }

    /// Whether a verified caller on the route `template` is charged by session.
    pub fn charges_by_session(&self, template: Option<&str>) -> bool {
        template.is_some_and(|template| self.session_routes.contains(&template))
    }

    /// Tells `observer` about refusals instead of logging them.
    #[must_use]
    pub fn observed_by(mut self, observer: Arc<dyn LimitObserver>) -> Self {
        self.observer = observer;
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Charges one request to `client`: the report for the response headers, or the 429.
    pub async fn charge(
        &self,
        client: Client<'_>,
        context: &RequestContext,
        path: &str,
    ) -> Result<Option<QuotaReport>, ApiError> {
        let checked = self.limiter.check(&self.policy, client.subject(), 1).await;
        self.charged(checked, client, context, path)
    }

    /// [`ClientLimit::charge`] without waiting, when the store can answer at once.
    pub fn charge_at_once(
        &self,
        client: Client<'_>,
        context: &RequestContext,
        path: &str,
    ) -> Option<Result<Option<QuotaReport>, ApiError>> {
        let checked = self
            .limiter
            .check_at_once(&self.policy, client.subject(), 1)?;
        Some(self.charged(checked, client, context, path))
    }

    /// What a charge comes to: the store's answer observed, or its failure let through or
    /// refused as configured.
    fn charged(
        &self,
        checked: Result<Outcome, LimitError>,
        client: Client<'_>,
        context: &RequestContext,
        path: &str,
    ) -> Result<Option<QuotaReport>, ApiError> {
        match checked {
            Ok(outcome) => outcome
                .observed(self.observer.as_ref(), client, context, path)
                .map(Some),
            Err(err) => {
                if let Some(left_out) = self.store_errors.admit() {
                    tracing::warn!(
                        error = %err,
                        policy = self.policy.name(),
                        fail_closed = self.fail_closed,
                        left_out,
                        "rate-limit store unavailable"
                    );
                }
                if self.fail_closed {
                    return Err(ApiError::Unavailable {
                        retry_after: Duration::from_secs(1),
                    });
                }
                Ok(None)
            }
        }
    }
}
