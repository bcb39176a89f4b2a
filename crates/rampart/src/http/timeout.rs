//! Whole-request timeout.
//!
//! Defends against slow handlers holding a worker, an in-flight slot and a connection forever
//! (a stuck downstream call, a lock never released): past the limit the handler's future is
//! dropped and the request answered 408 as problem+json. A slow *body* is the body limit's
//! concern ([`super::BodyLimitLayer`] receives it within its own timeout before this clock
//! starts); the header-read timeout for slowloris on the request head lives in
//! [`crate::server`], where the connection is owned.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::error::ApiError;

/// The layer that answers 408 for any request the inner service has not answered within
/// `limit`.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    limit: Duration,
}

impl TimeoutLayer {
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The service [`TimeoutLayer`] builds.
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Request> for Timeout<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        TimeoutFuture {
            inner: tokio::time::timeout(self.limit, self.inner.call(request)),
        }
    }
}

pin_project! {
    /// The inner answer, or 408 once the limit has passed.
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
    }
}

impl<F, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match ready!(self.project().inner.poll(cx)) {
            Ok(answered) => Poll::Ready(answered),
            Err(_elapsed) => Poll::Ready(Ok(ApiError::RequestTimeout.into_response())),
        }
    }
}
