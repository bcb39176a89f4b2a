//! The gate each route's requests pass before its handler: who is calling ([`Identify`]), the
//! app's own admission check ([`Admission`]), and whether the route's policy lets them in
//! ([`Require`]); and the answer to a path no route matched.
//!
//! Defends against a request reaching a handler it has no right to: a caller the
//! authenticator does not vouch for gets 401 (503 when it cannot decide), a user on an admin
//! route 403, an anonymous caller on an unknown path the same 401 as on a real one. Each step
//! decides from memory when the authenticator can, and waits (one boxed future) only when it
//! cannot.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::{Access, Authenticator, Charged, Principal, Role};
use crate::error::ApiError;
use crate::http::stage::{around_layer, call_inner, Around, Settled};

/// An app's own check in a route's gate, after the client limit and before the body is
/// received (see [`SecureRouter::admit_before_body`]).
pub trait Admission: Send + Sync + 'static {
    /// Whether `request` is this check's to make, decided at once (by its route, say); any
    /// other request passes untouched.
    fn applies(&self, request: &Request) -> bool;

    /// Admits `request`, annotating it for its handler as needed, or answers it instead.
    fn admit<'a>(&'a self, request: &'a mut Request) -> AdmissionFuture<'a>;
}

/// The future [`Admission::admit`] returns: `Err` is the answer instead of the route's.
pub type AdmissionFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Response>> + Send + 'a>>;

/// Runs the app's [`Admission`]s in the gate, in the order they were added: the first
/// refusal answers.
#[derive(Clone)]
pub(super) struct Admit(pub(super) Arc<[Arc<dyn Admission>]>);

impl Admit {
    /// These admissions and then `next`.
    pub(super) fn and(self, next: Arc<dyn Admission>) -> Self {
        Self(
            self.0
                .iter()
                .cloned()
                .chain(std::iter::once(next))
                .collect(),
        )
    }
}

impl std::fmt::Debug for Admit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Admit({})", self.0.len())
    }
}

impl Around for Admit {
    type Finish = ();

    fn settle(&self, request: &mut Request) -> Settled<()> {
        if self.0.iter().any(|admission| admission.applies(request)) {
            Settled::Wait
        } else {
            Settled::Pass(())
        }
    }

    async fn around<I>(self, mut request: Request, inner: I) -> Response
    where
        I: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        I::Future: Send + 'static,
    {
        for admission in self.0.iter() {
            if admission.applies(&request) {
                if let Err(refused) = admission.admit(&mut request).await {
                    return refused;
                }
            }
        }
        call_inner(inner, request).await
    }
}

around_layer!(Admit);

/// What a caller is told when the authenticator refuses: 401 whatever the reason (nothing about
/// the token leaks), except that an authenticator unable to decide says so (503), since
/// refusing a valid token for an outage must not look like a bad token.
#[derive(Debug, Clone)]
enum Refusal {
    Unauthorized,
    Unavailable(std::time::Duration),
}

impl Refusal {
    fn of(err: &ApiError) -> Self {
        match err {
            ApiError::Unavailable { retry_after }
            | ApiError::DependencyUnavailable { retry_after, .. } => {
                Self::Unavailable(*retry_after)
            }
            _ => Self::Unauthorized,
        }
    }

    /// The answer; `presented` says whether the request carried credentials.
    fn into_response(self, presented: bool) -> Response {
        match self {
            Self::Unavailable(retry_after) => ApiError::Unavailable { retry_after }.into_response(),
            Self::Unauthorized => {
                let mut response = ApiError::Unauthorized.into_response();
                if presented {
                    // RFC 6750 3.1: credentials were sent and are not good (forged, expired,
                    // revoked: which one is not said).
                    response.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                    );
                }
                response
            }
        }
    }
}

/// The first step of the gate: verifies the credentials and puts the outcome on the request, a
/// [`Principal`] or a [`Refusal`], for the limit and [`Require`] after it. Refuses nothing
/// itself, so a request with bad credentials is still charged (to its address) before it is
/// answered.
#[derive(Clone)]
pub(super) struct Identify(pub(super) Arc<dyn Authenticator>);

impl Around for Identify {
    type Finish = ();

    fn settle(&self, request: &mut Request) -> Settled<()> {
        match self.0.authenticate_at_once(request.headers()) {
            None => return Settled::Wait,
            Some(Ok(principal)) => {
                request.extensions_mut().insert(principal);
            }
            Some(Err(refused)) => {
                request.extensions_mut().insert(Refusal::of(&refused));
            }
        }
        Settled::Pass(())
    }

    async fn around<I>(self, mut request: Request, inner: I) -> Response
    where
        I: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        I::Future: Send + 'static,
    {
        match self.0.authenticate(request.headers()).await {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
            }
            Err(refused) => {
                request.extensions_mut().insert(Refusal::of(&refused));
            }
        }
        call_inner(inner, request).await
    }
}

around_layer!(Identify);

/// The last step of the gate: the authenticator's last word on the caller
/// ([`Authenticator::recheck`], told whether the limit store answered), then the route's
/// policy: 401 (or 503) without a verified caller, 403 for a user on an admin route.
#[derive(Clone)]
pub(super) struct Require {
    pub(super) authenticator: Arc<dyn Authenticator>,
    pub(super) access: Access,
}

impl Around for Require {
    type Finish = ();

    /// Settled at once unless the recheck must wait, or a user reached for an admin route
    /// (then [`Authenticator::denied`] is awaited).
    fn settle(&self, request: &mut Request) -> Settled<()> {
        let (presented, charged) = match verified(request) {
            Ok(found) => found,
            Err(refused) => return Settled::Answer(refused),
        };
        // In the place `Identify` left it: the recheck updates the caller where it is.
        let Some(principal) = request.extensions_mut().get_mut::<Principal>() else {
            return Settled::Wait;
        };
        match self.authenticator.recheck_at_once(principal, charged) {
            None => Settled::Wait,
            Some(Err(refused)) => Settled::Answer(Refusal::of(&refused).into_response(presented)),
            Some(Ok(())) if self.access == Access::Admin && principal.role != Role::Admin => {
                Settled::Wait
            }
            Some(Ok(())) => Settled::Pass(()),
        }
    }

    async fn around<I>(self, mut request: Request, inner: I) -> Response
    where
        I: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        I::Future: Send + 'static,
    {
        let (presented, charged) = match verified(&mut request) {
            Ok(found) => found,
            Err(refused) => return refused,
        };
        let Some(principal) = request.extensions_mut().remove::<Principal>() else {
            return Refusal::Unauthorized.into_response(presented);
        };
        let principal = match self.authenticator.recheck(principal, charged).await {
            Ok(principal) => principal,
            Err(refused) => return Refusal::of(&refused).into_response(presented),
        };
        if self.access == Access::Admin && principal.role != Role::Admin {
            let (parts, _body) = request.into_parts();
            self.authenticator.denied(&principal, &parts).await;
            return ApiError::Forbidden.into_response();
        }
        request.extensions_mut().insert(principal);
        call_inner(inner, request).await
    }
}

around_layer!(Require);

/// The gate's last check, run around each handler: [`Require`] once more, for a request that
/// sent a body. The gate admits a caller before its body is received (so a refused caller's
/// body is never read), and a client may take up to the body timeout to send it: without
/// this, a request admitted before a logout, a session's revocation or a lock would act after
/// the change was answered, with a stolen token kept "in flight" by a slow body (outside
/// review). A request without a body reaches its handler within the instant the gate decided
/// in, so it is not asked again; nor is one on a public route.
#[derive(Clone)]
pub struct RequireAfterBody(pub(super) Option<Require>);

impl std::fmt::Debug for RequireAfterBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let access = self.0.as_ref().map(|require| require.access);
        f.debug_tuple("RequireAfterBody").field(&access).finish()
    }
}

impl Around for RequireAfterBody {
    type Finish = ();

    fn settle(&self, request: &mut Request) -> Settled<()> {
        match &self.0 {
            Some(require) if declares_body(request.headers()) => require.settle(request),
            _ => Settled::Pass(()),
        }
    }

    async fn around<I>(self, request: Request, inner: I) -> Response
    where
        I: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
        I::Future: Send + 'static,
    {
        match self.0 {
            Some(require) => require.around(request, inner).await,
            None => call_inner(inner, request).await,
        }
    }
}

around_layer!(RequireAfterBody);

/// Whether the request framed a body: a `Transfer-Encoding`, or a `Content-Length` that is not
/// zero. Its framing, not what arrived: a chunked body that ends empty can still be held open.
fn declares_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

/// What the gate's first steps left on `request`: whether it presented credentials and whether
/// the limit store answered its charge; the refusal when no caller was verified.
// The refusal is a whole response, as every layer's answer is.
#[allow(clippy::result_large_err)]
fn verified(request: &mut Request) -> Result<(bool, Charged), Response> {
    let presented = request.headers().contains_key(http::header::AUTHORIZATION);
    let charged = request
        .extensions()
        .get::<Charged>()
        .copied()
        .unwrap_or(Charged::NotAnswered);
    if request.extensions().get::<Principal>().is_none() {
        let refusal = request
            .extensions_mut()
            .remove::<Refusal>()
            .unwrap_or(Refusal::Unauthorized);
        return Err(refusal.into_response(presented));
    }
    Ok((presented, charged))
}

/// A path no route matched: 404 to a verified caller, the refusal to anyone else (so an
/// anonymous caller learns nothing of which paths exist).
pub(super) async fn unknown_path(request: Request) -> Response {
    let presented = request.headers().contains_key(http::header::AUTHORIZATION);
    if request.extensions().get::<Principal>().is_some() {
        return ApiError::NotFound.into_response();
    }
    request
        .extensions()
        .get::<Refusal>()
        .cloned()
        .unwrap_or(Refusal::Unauthorized)
        .into_response(presented)
}
