//! The per-client rate limit as a layer of its own.
//!
//! Defends against floods and brute force by volume: every request below it is charged to its
//! client before anything else is done for it. The client is the verified caller's account
//! when an authentication step ran before it and put a [`Principal`] on the request (the
//! [`crate::SecureRouter`] gate does), or its session on the routes that end sessions
//! ([`ClientLimit::by_session_on`]), and the address otherwise ([`crate::http::ClientIp`]),
//! so a request with a forged or expired token is charged to its address and forged tokens
//! cannot dodge the limit. Allowed and refused answers alike carry the `RateLimit` headers.
//!
//! Used alone (no authentication before it), it limits every client by address.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use tower::Service;

use super::{Client, ClientLimit};
use crate::error::ApiError;
use crate::http::stage::{around_layer, call_inner, Around};
use crate::http::RequestContext;
use crate::identity::Principal;

/// Whether the limit store answered a request's charge. [`ClientLimitLayer`] puts it on every
/// request it lets through, for what runs after it (see `Authenticator::recheck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charged {
    /// The store answered (and with it anything it carries, such as an announcement count).
    Answered,
    /// No client limit is configured, or the store failed and the request was let through.
    NotAnswered,
}

/// The layer that charges every request below it under a [`ClientLimit`]. It needs the
/// `RequestIdLayer` and `ClientIpLayer` outside it (the [`crate::http::Hardening`] stack has
/// them): refusals are reported with the request's ids and address.
#[derive(Debug, Clone)]
pub struct ClientLimitLayer {
    /// Behind one `Arc`: the layer is cloned for every request it charges.
    limit: Arc<ClientLimit>,
}

impl ClientLimitLayer {
    pub fn new(limit: ClientLimit) -> Self {
        Self {
            limit: Arc::new(limit),
        }
    }
}

impl Around for ClientLimitLayer {
    async fn around<S>(self, mut request: Request, inner: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let Some(context) = RequestContext::of(request.extensions()) else {
            return ApiError::internal("client limits need the RequestIdLayer and ClientIpLayer")
                .into_response();
        };
        let caller = request.extensions().get::<Principal>();
        let by_session = self.limit.charges_by_session(
            request
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
        );
        let client = match caller {
            None => Client::Address(context.client_ip),
            Some(caller) if by_session => Client::Session {
                user_id: &caller.user_id,
                session_id: &caller.session_id,
            },
            Some(caller) => Client::User {
                user_id: &caller.user_id,
                session_id: &caller.session_id,
            },
        };
        let report = match self
            .limit
            .charge(client, &context, request.uri().path())
            .await
        {
            Ok(report) => report,
            Err(limited) => return limited.into_response(),
        };
        request.extensions_mut().insert(if report.is_some() {
            Charged::Answered
        } else {
            Charged::NotAnswered
        });
        let mut response = call_inner(inner, request).await;
        if let Some(report) = report {
            report.apply(response.headers_mut());
        }
        response
    }
}

around_layer!(ClientLimitLayer);

/// The layer that charges CORS preflights (`OPTIONS` with `Access-Control-Request-Method`) to
/// their address under a [`ClientLimit`], and passes everything else through uncharged. Put it
/// just outside the CORS layer, which answers a preflight itself: without this, no route's
/// client limit ever sees one, and one address could send them without end.
#[derive(Debug, Clone)]
pub struct PreflightLimitLayer {
    /// A preflight carries no credentials and meets no authentication step here, so this
    /// charges its address.
    charge: ClientLimitLayer,
}

impl PreflightLimitLayer {
    pub fn new(limit: ClientLimit) -> Self {
        Self {
            charge: ClientLimitLayer::new(limit),
        }
    }
}

impl Around for PreflightLimitLayer {
    async fn around<S>(self, request: Request, inner: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let preflight = request.method() == http::Method::OPTIONS
            && request
                .headers()
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            self.charge.around(request, inner).await
        } else {
            call_inner(inner, request).await
        }
    }
}

around_layer!(PreflightLimitLayer);
