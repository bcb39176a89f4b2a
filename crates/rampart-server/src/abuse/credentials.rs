//! The credential routes' per-address limit where it is charged: in their gate, before the
//! body is received ([`CredentialAdmission`]), with the report handed to the handler
//! ([`AuthQuota`]) for the answer's `RateLimit` headers ([`Reports`]).
//!
//! Defends against a client over the login limit still spending the server's byte budget and
//! time: it is answered 429 before a byte of its login, registration or refresh body is read.

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use axum::response::{IntoResponse, IntoResponseParts, ResponseParts};
use http::request::Parts;
use rampart::http::RequestContext;
use rampart::limit::{Client, ClientAddress, QuotaReport, Subject};
use rampart::policy::{Admission, AdmissionFuture};
use rampart::ApiError;

use super::{store_down, Guard, STUFFING_COST};

/// Limit reports to add to a successful response's `RateLimit` headers.
#[derive(Debug, Default)]
pub struct Reports(pub(super) Vec<QuotaReport>);

impl IntoResponseParts for Reports {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Self::Error> {
        for report in &self.0 {
            report.apply(parts.headers_mut());
        }
        Ok(parts)
    }
}

/// The per-address limit of the credential endpoints. [`CredentialAdmission`] charges it in
/// each credential route's gate, before the body is received, and hands the report on; a
/// handler that takes this extractor gets that report, or charges the limit itself on a
/// router built without the admission (then after the body). The 429 is its rejection.
#[derive(Debug)]
pub struct AuthQuota(pub Reports);

/// The credential limit's report, as the gate's admission leaves it for the handler.
#[derive(Debug, Clone)]
struct AuthCharged(Vec<QuotaReport>);

impl<S: Send + Sync> FromRequestParts<S> for AuthQuota
where
    Guard: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(AuthCharged(reports)) = parts.extensions.remove::<AuthCharged>() {
            return Ok(Self(Reports(reports)));
        }
        let context = RequestContext::from_request_parts(parts, state).await?;
        let report = Guard::from_ref(state)
            .charge_credentials(&context, parts.uri.path())
            .await?;
        Ok(Self(Reports(vec![report])))
    }
}

/// Charges the credential routes' per-address limit in their gate, before the body: an
/// address over it is answered 429 without a byte of its login, registration or refresh body
/// read (and is never sent `100 Continue`).
#[derive(Debug, Clone)]
pub struct CredentialAdmission {
    guard: Guard,
    routes: &'static [&'static str],
}

impl CredentialAdmission {
    /// The admission for the route templates in `routes` (each handler of which takes
    /// [`AuthQuota`]).
    pub fn new(guard: Guard, routes: &'static [&'static str]) -> Self {
        Self { guard, routes }
    }
}

impl Admission for CredentialAdmission {
    fn applies(&self, request: &axum::extract::Request) -> bool {
        request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|template| self.routes.contains(&template.as_str()))
    }

    fn admit<'a>(&'a self, request: &'a mut axum::extract::Request) -> AdmissionFuture<'a> {
        Box::pin(async move {
            let Some(context) = RequestContext::of(request.extensions()) else {
                return Err(
                    ApiError::internal("credential limits need the hardening stack")
                        .into_response(),
                );
            };
            match self
                .guard
                .charge_credentials(&context, request.uri().path())
                .await
            {
                Ok(report) => {
                    request.extensions_mut().insert(AuthCharged(vec![report]));
                    Ok(())
                }
                Err(refused) => Err(refused.into_response()),
            }
        })
    }
}

impl Guard {
    /// Charges one credential request (login, registration, refresh) to its address under
    /// the auth limit, at five times the cost from an address marked as stuffing.
    async fn charge_credentials(
        &self,
        context: &RequestContext,
        path: &str,
    ) -> Result<QuotaReport, ApiError> {
        let abuse = &self.control;
        let address = ClientAddress::of(context.client_ip);
        let cost = if abuse.is_stuffing(address).await? {
            STUFFING_COST
        } else {
            1
        };
        let outcome = abuse
            .limiter
            .check(&abuse.auth, Subject::Address(address), cost)
            .await
            .map_err(store_down)?;
        outcome.observed(self, Client::Address(context.client_ip), context, path)
    }
}
