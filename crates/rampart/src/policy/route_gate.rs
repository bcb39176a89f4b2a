//! A route's whole gate as one service: [`Identify`], the client limit, [`Require`] and the
//! app's [`Admit`], in that order, each settled at once when it can be.
//!
//! Defends nothing of its own: the steps do (see [`super::gate`]). It exists for speed. As four
//! layers, each one optional, a request crossed eight service levels (tower's `option_layer`
//! adds an `Either` above each step) and cloned four handles, because axum clones a route's
//! service for every request. Here the steps share one handle and one level; a request that
//! must wait on a step is handed, from that step on, to the same steps layered as before.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tower::{Layer, Service, ServiceBuilder};

use super::gate::{Admit, Identify, Require};
use crate::http::stage::{call_inner, Around, Finish, Settled, StagedFuture, WrappedFuture};
use crate::limit::{ClientLimitLayer, RateLimitHeaders};

/// The steps of one gate, each left out (`None`) where the route does not take it.
pub(super) struct Steps {
    pub(super) identify: Option<Identify>,
    pub(super) limit: Option<ClientLimitLayer>,
    pub(super) require: Option<Require>,
    pub(super) admit: Option<Admit>,
}

/// Where a request that could not be settled at once takes up the steps again.
#[derive(Clone, Copy)]
enum Step {
    Identify,
    Limit,
    Require,
    Admit,
}

/// The layer that puts a gate of these [`Steps`] in front of a service.
#[derive(Clone)]
pub(super) struct GateLayer(Arc<Steps>);

impl GateLayer {
    pub(super) fn new(steps: Steps) -> Self {
        Self(Arc::new(steps))
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            steps: Arc::clone(&self.0),
            inner,
        }
    }
}

/// The gate in front of `S` (see the module header).
#[derive(Clone)]
pub(super) struct Gate<S> {
    steps: Arc<Steps>,
    inner: S,
}

impl<S> Service<Request> for Gate<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = WrappedFuture<S::Future, Option<RateLimitHeaders>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // Borrowed apart, so the hot path takes no count on the shared steps.
        let Self { steps, inner } = self;
        if let Some(identify) = &steps.identify {
            match identify.settle(&mut request) {
                Settled::Pass(()) => {}
                Settled::Answer(refused) => return answered(refused),
                Settled::Wait => return wait(steps, inner, Step::Identify, request, None),
            }
        }
        let headers = match &steps.limit {
            Some(limit) => match limit.settle(&mut request) {
                Settled::Pass(headers) => Some(headers),
                Settled::Answer(refused) => return answered(refused),
                Settled::Wait => return wait(steps, inner, Step::Limit, request, None),
            },
            None => None,
        };
        if let Some(require) = &steps.require {
            match require.settle(&mut request) {
                Settled::Pass(()) => {}
                Settled::Answer(refused) => return answered(headers.finish(refused)),
                Settled::Wait => return wait(steps, inner, Step::Require, request, headers),
            }
        }
        if let Some(admit) = &steps.admit {
            match admit.settle(&mut request) {
                Settled::Pass(()) => {}
                Settled::Answer(refused) => return answered(headers.finish(refused)),
                Settled::Wait => return wait(steps, inner, Step::Admit, request, headers),
            }
        }
        WrappedFuture::Settled {
            settled: StagedFuture::Running {
                inner: inner.call(request),
                finish: Some(headers),
            },
        }
    }
}

/// Takes up the steps again at `from`, for a request whose step there must wait; `headers`
/// are the limit's, when it settled before.
fn wait<S>(
    steps: &Arc<Steps>,
    inner: &mut S,
    from: Step,
    request: Request,
    headers: Option<RateLimitHeaders>,
) -> WrappedFuture<S::Future, Option<RateLimitHeaders>>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    // The readied service serves this request; a clone takes its place for the next.
    let clone = inner.clone();
    let inner = std::mem::replace(inner, clone);
    let steps = Arc::clone(steps);
    WrappedFuture::Waiting {
        waiting: Box::pin(
            async move { Ok(headers.finish(resume(&steps, from, request, inner).await)) },
        ),
    }
}

/// The steps from `from` on, layered as separate services around `inner` (the rare path: the
/// step that must wait answers through its own [`Around::around`], the ones after it as
/// layers).
async fn resume<S>(steps: &Steps, from: Step, request: Request, inner: S) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let after = ServiceBuilder::new();
    match from {
        Step::Identify => {
            let rest = after
                .option_layer(steps.limit.clone())
                .option_layer(steps.require.clone())
                .option_layer(steps.admit.clone())
                .service(inner);
            around_or_call(steps.identify.clone(), request, rest).await
        }
        Step::Limit => {
            let rest = after
                .option_layer(steps.require.clone())
                .option_layer(steps.admit.clone())
                .service(inner);
            around_or_call(steps.limit.clone(), request, rest).await
        }
        Step::Require => {
            let rest = after.option_layer(steps.admit.clone()).service(inner);
            around_or_call(steps.require.clone(), request, rest).await
        }
        Step::Admit => around_or_call(steps.admit.clone(), request, inner).await,
    }
}

async fn around_or_call<T, S>(step: Option<T>, request: Request, inner: S) -> Response
where
    T: Around,
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    match step {
        Some(step) => step.around(request, inner).await,
        None => call_inner(inner, request).await,
    }
}

/// A step's own answer, instead of the route's.
fn answered<F, E>(response: Response) -> WrappedFuture<F, E> {
    WrappedFuture::Settled {
        settled: StagedFuture::Refused {
            response: Some(response),
        },
    }
}
