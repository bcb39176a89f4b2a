//! A panic in a handler becomes a 500 problem document.
//!
//! Defends against a bug becoming an outage or a leak: without it, a panicking handler drops
//! the connection (every request pipelined on it is lost) and the panic message, which may
//! quote request data, goes nowhere useful. Here the payload goes to the log only (as the
//! response's [`crate::error::InternalCause`]) and the client gets the same 500 as any other
//! internal error, with its request id and headers.
//!
//! tower-http's `CatchPanicLayer` does the same but boxes every response body twice (and axum
//! once more to take it back as its own body): three allocations and three indirections on
//! every answer, for the rare one that panicked. This layer leaves the body alone.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::ApiError;

/// The layer that answers a panic below it, when the service is called or while its future
/// runs, with a 500 problem document.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The service [`CatchPanicLayer`] builds.
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> Service<Request> for CatchPanic<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CatchPanicFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => CatchPanicFuture::Running { future },
            Err(payload) => CatchPanicFuture::Panicked {
                response: Some(panic_response(&*payload)),
            },
        }
    }
}

pin_project! {
    /// The inner answer, or a 500 if producing it panicked.
    #[project = Running]
    pub enum CatchPanicFuture<F> {
        Running { #[pin] future: F },
        Panicked { response: Option<Response> },
    }
}

impl<F> Future for CatchPanicFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Running::Running { future } => {
                match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                    Ok(poll) => poll,
                    Err(payload) => Poll::Ready(Ok(panic_response(&*payload))),
                }
            }
            Running::Panicked { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| panic_response(&"polled again after its answer")))),
        }
    }
}

/// The 500 answer; the payload's text reaches the log only.
fn panic_response(payload: &(dyn Any + Send)) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    /// A service that panics when called, before it returns a future.
    #[derive(Clone)]
    struct PanicsWhenCalled;

    impl Service<Request> for PanicsWhenCalled {
        type Response = Response;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response, Infallible>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: Request) -> Self::Future {
            panic!("called with secret payload")
        }
    }

    async fn answer<S>(service: S) -> (http::StatusCode, String, bool)
    where
        S: Service<Request, Response = Response, Error = Infallible>,
    {
        let response = CatchPanicLayer
            .layer(service)
            .oneshot(Request::new(axum::body::Body::empty()))
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let cause = response
            .extensions()
            .get::<crate::error::InternalCause>()
            .is_some_and(|cause| cause.0.contains("secret payload"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), cause)
    }

    #[tokio::test]
    async fn a_panic_when_called_or_while_running_is_a_500_whose_payload_reaches_only_the_log() {
        let running = tower::service_fn(|_request: Request| async move {
            assert!(!std::hint::black_box(true), "running with secret payload");
            Ok::<Response, Infallible>(Response::default())
        });
        for (status, body, cause) in [answer(PanicsWhenCalled).await, answer(running).await] {
            assert_eq!(status, http::StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!body.contains("secret"), "{body}");
            assert!(body.contains("\"status\":500"), "{body}");
            assert!(cause, "the payload is kept for the log");
        }
        let fine = tower::service_fn(|_request: Request| async move {
            Ok::<Response, Infallible>("fine".into_response())
        });
        let (status, body, _) = answer(fine).await;
        assert_eq!((status, body.as_str()), (http::StatusCode::OK, "fine"));
    }
}
