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

use super::{Client, ClientLimit, QuotaReport};
use crate::error::ApiError;
use crate::http::stage::{around_layer, call_inner, Around, Finish, Settled};
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

impl ClientLimitLayer {
    /// Who `request` is charged to, with its context; the refusal when the layers this one
    /// needs are missing.
    fn client_of<'r>(
        &self,
        request: &'r Request,
    ) -> Result<(RequestContext, Client<'r>), ApiError> {
        let Some(context) = RequestContext::of(request.extensions()) else {
            return Err(ApiError::internal(
                "client limits need the RequestIdLayer and ClientIpLayer",
            ));
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
        Ok((context, client))
    }
}

/// Marks a charged request and keeps its report for the response.
fn admitted(request: &mut Request, report: Option<QuotaReport>) -> RateLimitHeaders {
    request.extensions_mut().insert(if report.is_some() {
        Charged::Answered
    } else {
        Charged::NotAnswered
    });
    RateLimitHeaders(report)
}

/// The `RateLimit` headers of an admitted request's charge, put on its response.
#[derive(Debug)]
pub struct RateLimitHeaders(Option<QuotaReport>);

impl Finish for RateLimitHeaders {
    fn finish(self, mut response: Response) -> Response {
        if let Some(report) = self.0 {
            report.apply(response.headers_mut());
        }
        response
    }
}

impl Around for ClientLimitLayer {
    type Finish = RateLimitHeaders;

    /// A limit kept in this process answers at once.
    fn settle(&self, request: &mut Request) -> Settled<RateLimitHeaders> {
        let charged = match self.client_of(request) {
            Ok((context, client)) => {
                self.limit
                    .charge_at_once(client, &context, request.uri().path())
            }
            Err(refused) => return Settled::Answer(refused.into_response()),
        };
        match charged {
            None => Settled::Wait,
            Some(Ok(report)) => Settled::Pass(admitted(request, report)),
            Some(Err(limited)) => Settled::Answer(limited.into_response()),
        }
    }

    async fn around<S>(self, mut request: Request, inner: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        let charged = match self.client_of(&request) {
            Ok((context, client)) => {
                self.limit
                    .charge(client, &context, request.uri().path())
                    .await
            }
            Err(refused) => return refused.into_response(),
        };
        let headers = match charged {
            Ok(report) => admitted(&mut request, report),
            Err(limited) => return limited.into_response(),
        };
        headers.finish(call_inner(inner, request).await)
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
    type Finish = RateLimitHeaders;

    fn settle(&self, request: &mut Request) -> Settled<RateLimitHeaders> {
        let preflight = request.method() == http::Method::OPTIONS
            && request
                .headers()
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        if preflight {
            self.charge.settle(request)
        } else {
            Settled::Pass(RateLimitHeaders(None))
        }
    }

    /// Only a preflight whose charge must be awaited gets here.
    async fn around<S>(self, request: Request, inner: S) -> Response
    where
        S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        S::Future: Send + 'static,
    {
        self.charge.around(request, inner).await
    }
}

around_layer!(PreflightLimitLayer);
