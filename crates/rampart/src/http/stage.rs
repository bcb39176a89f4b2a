//! The two shapes every rampart layer takes, each run by one tower service, so a concern is
//! written as its own small type and becomes a layer any axum app can take alone.
//!
//! - A [`Stage`] works around a handler without waiting on anything: a look at the request on
//!   its way in (which may refuse it at once) and a change to the response on its way out.
//!   Security headers, request ids, client addresses, the access log, metrics and load shedding
//!   are stages, run by [`Staged`].
//! - An [`Around`] may wait on something before the handler runs (a body to arrive, a limit
//!   store, an authenticator): body limits, client rate limits and the access policy, run by
//!   [`Wrapped`]. It first tries to settle the request without waiting ([`Around::settle`]: a
//!   request with no body, a limit kept in this process); only a request that must wait pays
//!   for a boxed future and a clone of the services inside.
//!
//! Why not `axum::middleware::from_fn` or a boxed future per layer: each would allocate and
//! clone a service on every request, for every layer, and the stack would cost several times
//! what its work does. A stage's future is a named type ([`StagedFuture`]) that polls the inner
//! one and applies the stage's [`Finish`] to what it returns: composing six stages costs what
//! one fused service did. Only a request that must wait boxes its future.

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

/// Two stages run as one, `A` outside `B`: `B` sees the request after `A` and its response
/// before `A`, and `A` finishes `B`'s refusal, exactly as `A`'s layer around `B`'s would. A
/// stack of stages composed this way (nested pairs) is one service with one future, which
/// saves a move of the request and of every inner future per layer.
impl<A: Stage, B: Stage> Stage for (A, B) {
    type Finish = (A::Finish, B::Finish);

    fn enter(&self, request: &mut Request) -> Result<Self::Finish, Response> {
        let outer = self.0.enter(request)?;
        match self.1.enter(request) {
            Ok(inner) => Ok((outer, inner)),
            Err(refused) => Err(outer.finish(refused)),
        }
    }
}

impl<A: Finish, B: Finish> Finish for (A, B) {
    fn finish(self, response: Response) -> Response {
        self.0.finish(self.1.finish(response))
    }
}

/// A stage that may be left out (configured off): `None` passes everything untouched.
impl<T: Stage> Stage for Option<T> {
    type Finish = Option<T::Finish>;

    fn enter(&self, request: &mut Request) -> Result<Self::Finish, Response> {
        match self {
            Some(stage) => stage.enter(request).map(Some),
            None => Ok(None),
        }
    }
}

impl<F: Finish> Finish for Option<F> {
    fn finish(self, response: Response) -> Response {
        match self {
            Some(finish) => finish.finish(response),
            None => response,
        }
    }
}

/// Runs `stages` (a stage, or nested pairs of them) around what it wraps, as a layer.
#[derive(Debug, Clone)]
pub struct StagesLayer<T>(pub T);

impl<S, T: Stage> tower::Layer<S> for StagesLayer<T> {
    type Service = Staged<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Staged::new(inner, self.0.clone())
    }
}

/// Stages listed outermost first, composed into nested pairs for [`StagesLayer`].
macro_rules! stages {
    ($only:expr $(,)?) => { $only };
    ($first:expr, $($rest:expr),+ $(,)?) => { ($first, $crate::http::stage::stages!($($rest),+)) };
}
pub(crate) use stages;

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

/// What an [`Around`] makes of a request before anything would have to wait.
#[derive(Debug)]
pub enum Settled<F> {
    /// Nothing to wait on: the inner service is called at once, and `F` finishes its answer.
    Pass(F),
    /// The layer's own answer, instead of the inner service's.
    Answer(Response),
    /// Settling it needs a wait: [`Around::around`] takes the request.
    Wait,
}

/// One concern's work around a request that may wait on something before (or instead of)
/// calling the inner service.
pub trait Around: Clone + Send + Sync + 'static {
    /// What the layer does to the inner service's answer when it settled the request at once.
    type Finish: Finish;

    /// Settles `request` without waiting, when the layer can (and may annotate it for what
    /// runs inside). The default always waits.
    fn settle(&self, request: &mut Request) -> Settled<Self::Finish> {
        let _ = request;
        Settled::Wait
    }

    /// Answers a request [`Around::settle`] left waiting, calling `inner` (ready to serve it)
    /// at most once.
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
    type Future = WrappedFuture<S::Future, T::Finish>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.around.settle(&mut request) {
            Settled::Pass(finish) => WrappedFuture::Settled {
                settled: StagedFuture::Running {
                    inner: self.inner.call(request),
                    finish: Some(finish),
                },
            },
            Settled::Answer(response) => WrappedFuture::Settled {
                settled: StagedFuture::Refused {
                    response: Some(response),
                },
            },
            Settled::Wait => {
                // The readied service serves this request; a clone takes its place for the
                // next.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                let around = self.around.clone();
                WrappedFuture::Waiting {
                    waiting: Box::pin(async move { Ok(around.around(request, inner).await) }),
                }
            }
        }
    }
}

pin_project! {
    /// A request [`Around::settle`] settled (run like a stage's), or one that waits, boxed.
    #[project = WrappedProjection]
    pub enum WrappedFuture<F, E> {
        Settled { #[pin] settled: StagedFuture<F, E> },
        Waiting { waiting: Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>> },
    }
}

impl<F, E> Future for WrappedFuture<F, E>
where
    F: Future<Output = Result<Response, Infallible>>,
    E: Finish,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            WrappedProjection::Settled { settled } => settled.poll(cx),
            WrappedProjection::Waiting { waiting } => waiting.as_mut().poll(cx),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::{HeaderValue, StatusCode};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Settles by the request's `x-settle` header: `pass`, `answer`, anything else waits.
    #[derive(Clone)]
    struct ByHeader {
        waited: Arc<AtomicUsize>,
    }

    /// Appends its name to `x-finished`.
    struct Trail(&'static str);

    impl Finish for Trail {
        fn finish(self, mut response: Response) -> Response {
            response
                .headers_mut()
                .append("x-finished", HeaderValue::from_static(self.0));
            response
        }
    }

    impl Around for ByHeader {
        type Finish = Trail;

        fn settle(&self, request: &mut Request) -> Settled<Trail> {
            match request.headers().get("x-settle").map(HeaderValue::as_bytes) {
                Some(b"pass") => Settled::Pass(Trail("at once")),
                Some(b"answer") => Settled::Answer(StatusCode::TOO_MANY_REQUESTS.into_response()),
                _ => Settled::Wait,
            }
        }

        async fn around<S>(self, request: Request, inner: S) -> Response
        where
            S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
            S::Future: Send + 'static,
        {
            self.waited.fetch_add(1, Ordering::SeqCst);
            Trail("after waiting").finish(call_inner(inner, request).await)
        }
    }

    use axum::response::IntoResponse as _;

    /// Appends its name to `x-seen` on the way in and to `x-finished` on the way out; refuses
    /// with 429 when the request asks it to by name.
    #[derive(Clone)]
    struct Named(&'static str);

    impl Stage for Named {
        type Finish = Trail;

        fn enter(&self, request: &mut Request) -> Result<Trail, Response> {
            let seen = request
                .headers()
                .get("x-seen")
                .and_then(|seen| seen.to_str().ok())
                .unwrap_or_default();
            let seen = HeaderValue::from_str(&format!("{seen}{}", self.0))
                .unwrap_or(HeaderValue::from_static("?"));
            request.headers_mut().insert("x-seen", seen);
            if request.headers().get("x-refuse").map(HeaderValue::as_bytes)
                == Some(self.0.as_bytes())
            {
                return Err(StatusCode::TOO_MANY_REQUESTS.into_response());
            }
            Ok(Trail(self.0))
        }
    }

    /// Composed stages run as nested layers would: entered outermost first, finished
    /// innermost first, and a refusal finished by every stage outside the one that refused
    /// (and by none inside it); a stage left out (`None`) does nothing.
    #[tokio::test]
    async fn composed_stages_run_in_the_order_of_nested_layers() {
        let inner = tower::service_fn(|request: Request| {
            let seen = request.headers().get("x-seen").cloned();
            let mut response = StatusCode::OK.into_response();
            if let Some(seen) = seen {
                response.headers_mut().insert("x-seen", seen);
            }
            std::future::ready(Ok::<_, Infallible>(response))
        });
        let service = tower::Layer::layer(
            &StagesLayer(stages!(Named("a"), None::<Named>, Named("b"), Named("c"))),
            inner,
        );
        let send = |refuse: &'static str| {
            let request = Request::builder()
                .header("x-refuse", refuse)
                .body(Body::empty())
                .unwrap();
            service.clone().oneshot(request)
        };
        let finished = |response: &Response| {
            response
                .headers()
                .get_all("x-finished")
                .iter()
                .map(|value| value.to_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };

        let passed = send("").await.unwrap();
        assert_eq!(passed.status(), StatusCode::OK);
        assert_eq!(passed.headers()["x-seen"], "abc");
        assert_eq!(finished(&passed), ["c", "b", "a"]);

        let refused = send("b").await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(finished(&refused), ["a"]);
        let refused_first = send("a").await.unwrap();
        assert_eq!(refused_first.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(finished(&refused_first).is_empty());
    }

    #[tokio::test]
    async fn a_settled_request_skips_the_wait_and_an_answer_skips_the_inner_service() {
        let waited = Arc::new(AtomicUsize::new(0));
        let called = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&called);
        let inner = tower::service_fn(move |_request: Request| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, Infallible>(StatusCode::OK.into_response()))
        });
        let service = Wrapped::new(
            inner,
            ByHeader {
                waited: Arc::clone(&waited),
            },
        );
        let send = |settle: &'static str| {
            let request = Request::builder()
                .header("x-settle", settle)
                .body(Body::empty())
                .unwrap();
            service.clone().oneshot(request)
        };

        let passed = send("pass").await.unwrap();
        assert_eq!(passed.status(), StatusCode::OK);
        assert_eq!(passed.headers()["x-finished"], "at once");
        assert_eq!(
            (called.load(Ordering::SeqCst), waited.load(Ordering::SeqCst)),
            (1, 0)
        );

        let answered = send("answer").await.unwrap();
        assert_eq!(answered.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(answered.headers().get("x-finished").is_none());
        assert_eq!(
            (called.load(Ordering::SeqCst), waited.load(Ordering::SeqCst)),
            (1, 0)
        );

        let waiting = send("wait").await.unwrap();
        assert_eq!(waiting.headers()["x-finished"], "after waiting");
        assert_eq!(
            (called.load(Ordering::SeqCst), waited.load(Ordering::SeqCst)),
            (2, 1)
        );
    }
}
