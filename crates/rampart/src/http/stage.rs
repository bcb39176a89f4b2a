//! The two shapes every rampart layer takes, each run by one tower service, so a concern is
//! written as its own small type and becomes a layer any axum app can take alone.
//!
//! - A [`Stage`] works around a handler without waiting on anything: a look at the request on
//!   its way in (which may refuse it at once) and a change to the response on its way out.
//!   Security headers, request ids, client addresses, the access log, metrics and load shedding
//!   are stages, run by [`Staged`].
//! - An [`Around`] waits on something before the handler runs (a body to arrive, a limit store,
//!   an authenticator): body limits, client rate limits and the access policy, run by
//!   [`Wrapped`].
//!
//! Why not `axum::middleware::from_fn` or a boxed future per layer: each would allocate and
//! clone a service on every request, for every layer, and the stack would cost several times
//! what its work does. A stage's future is a named type ([`StagedFuture`]) that polls the inner
//! one and applies the stage's [`Finish`] to what it returns: composing six stages costs what
//! one fused service did. Only the layers that must wait box their future.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Service, ServiceExt};

/// One concern's work around a request.
pub trait Stage: Clone + Send + Sync + 'static {
    /// What the stage keeps from the request to apply to its response.
    type Finish: Finish;

    /// Looks at (and may annotate) the request; `Err` is the answer instead of the handler's.
    // The refusal is a whole response, as every layer's answer is; boxing it would buy nothing.
    #[allow(clippy::result_large_err)]
    fn enter(&self, request: &mut Request) -> Result<Self::Finish, Response>;
}

/// What a stage does to the response, once the inner service has answered.
pub trait Finish: Send + 'static {
    fn finish(self, response: Response) -> Response;
}

/// A stage with nothing to do on the way out.
impl Finish for () {
    fn finish(self, response: Response) -> Response {
        response
    }
}

/// The service that runs stage `T` around `S` (what each stage's layer builds).
#[derive(Debug, Clone)]
pub struct Staged<S, T> {
    inner: S,
    stage: T,
}

impl<S, T> Staged<S, T> {
    pub(crate) fn new(inner: S, stage: T) -> Self {
        Self { inner, stage }
    }
}

impl<S, T> Service<Request> for Staged<S, T>
where
    S: Service<Request, Response = Response>,
    T: Stage,
{
    type Response = Response;
    type Error = S::Error;
    type Future = StagedFuture<S::Future, T::Finish>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.stage.enter(&mut request) {
            Ok(finish) => StagedFuture::Running {
                inner: self.inner.call(request),
                finish: Some(finish),
            },
            Err(refused) => StagedFuture::Refused {
                response: Some(refused),
            },
        }
    }
}

pin_project! {
    /// The inner service's answer with the stage's finish applied, or the stage's refusal.
    #[project = StagedProjection]
    pub enum StagedFuture<F, E> {
        Running { #[pin] inner: F, finish: Option<E> },
        Refused { response: Option<Response> },
    }
}

impl<F, E, Error> Future for StagedFuture<F, E>
where
    F: Future<Output = Result<Response, Error>>,
    E: Finish,
{
    type Output = Result<Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            StagedProjection::Running { inner, finish } => {
                let response = ready!(inner.poll(cx))?;
                Poll::Ready(Ok(match finish.take() {
                    Some(finish) => finish.finish(response),
                    None => response,
                }))
            }
            StagedProjection::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_default()))
            }
        }
    }
}

/// Makes a stage its own tower layer, so an app takes it with `.layer(...)` alone.
macro_rules! stage_layer {
    ($stage:ty) => {
        impl<S> tower::Layer<S> for $stage {
            type Service = $crate::http::stage::Staged<S, $stage>;

            fn layer(&self, inner: S) -> Self::Service {
                $crate::http::stage::Staged::new(inner, self.clone())
            }
        }
    };
}
pub(crate) use stage_layer;

/// One concern's work around a request that waits on something before (or instead of) calling
/// the inner service.
pub trait Around: Clone + Send + Sync + 'static {
    /// Answers `request`, calling `inner` (ready to serve it) at most once.
    fn around<S>(self, request: Request, inner: S) -> impl Future<Output = Response> + Send
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static;
}

/// Calls the inner service that [`Around::around`] was handed.
pub async fn call_inner<S>(inner: S, request: Request) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match inner.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The service that runs `T` around `S` (what each such layer builds).
#[derive(Debug, Clone)]
pub struct Wrapped<S, T> {
    inner: S,
    around: T,
}

impl<S, T> Wrapped<S, T> {
    pub(crate) fn new(inner: S, around: T) -> Self {
        Self { inner, around }
    }
}

impl<S, T> Service<Request> for Wrapped<S, T>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    T: Around,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The readied service serves this request; a clone takes its place for the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let around = self.around.clone();
        Box::pin(async move { Ok(around.around(request, inner).await) })
    }
}

/// Makes an [`Around`] its own tower layer.
macro_rules! around_layer {
    ($around:ty) => {
        impl<S> tower::Layer<S> for $around {
            type Service = $crate::http::stage::Wrapped<S, $around>;

            fn layer(&self, inner: S) -> Self::Service {
                $crate::http::stage::Wrapped::new(inner, self.clone())
            }
        }
    };
}
pub(crate) use around_layer;
