//! Default-deny routing: every route declares who may call it, and everything else is refused.
//!
//! Defends against the most common API flaw, a forgotten auth check (OWASP API1/API5): a
//! [`SecureRouter`] has no way to add a route without choosing [`Access::Public`],
//! [`Access::Authenticated`] or [`Access::Admin`]. The check wraps every method of a path and
//! its 405 alike, and unknown paths, so an anonymous caller gets the same 401 for a real path, a
//! wrong method and a path that does not exist. axum's method router still adds an `Allow`
//! header to the 401 of a wrong method; [`crate::http::HideRouteMapLayer`] (part of
//! [`crate::http::Hardening`]) removes it, so nothing about the route map leaks. Handlers take
//! [`CurrentUser`] or [`AdminUser`]; those extractors fail closed (401/403) if a handler is ever
//! mounted without the matching layer.
//!
//! The gate is two steps with the client rate limit ([`crate::limit::ClientLimitLayer`], set by
//! [`SecureRouter::limit_clients`]) between them: the credentials are verified first, so the
//! limit knows whether the client is a user or an address, and only then is the request
//! refused or admitted, so a request with a bad token is charged to its address first and
//! forged tokens cannot dodge the limit.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, Route};
use axum::Router;
use http::request::Parts;
use http::HeaderMap;
use tower::{Layer, Service};

use crate::error::ApiError;
pub use crate::identity::{Principal, Role};
pub use crate::limit::Charged;
use crate::limit::{ClientLimit, ClientLimitLayer};

#[cfg(feature = "openapi")]
mod documented;
mod gate;
mod route_gate;

pub use gate::RequireAfterBody;
use gate::{unknown_path, Admit, Identify, Require};
pub use gate::{Admission, AdmissionFuture};
use route_gate::{GateLayer, Steps};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any caller with valid credentials.
    Authenticated,
    /// Callers whose current role is admin.
    Admin,
}

/// The future an [`Authenticator`] returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Principal, ApiError>> + Send + 'a>>;

/// Verifies a request's credentials. It runs on every non-public request, so implementations
/// should answer from memory on the hot path (a verified-token cache, a revocation set) and
/// reach a store only on a cache miss. Every credential failure must be
/// [`ApiError::Unauthorized`], with no hint of which check failed; a store outage may be
/// [`ApiError::Unavailable`] or [`ApiError::DependencyUnavailable`].
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> AuthFuture<'a>;

    /// [`Authenticator::authenticate`] decided without waiting, when what it needs is in
    /// memory (a token verified before, a session and user checked recently): the request then
    /// takes no boxed future. `None` (the default) to await `authenticate`.
    fn authenticate_at_once(&self, headers: &HeaderMap) -> Option<Result<Principal, ApiError>> {
        let _ = headers;
        None
    }

    /// Called once the request has been charged to the verified caller, before the handler
    /// runs: the last word on `principal`. A service whose nodes share a limit store can learn
    /// from that charge that another node changed something (a revocation, a lock, a role)
    /// which this one has not applied yet, wait for it here, and answer with the caller as
    /// they now stand. `charged` says whether the limit store answered this request's charge;
    /// when it did not (no client limit, or the store failed open) the service must ask by
    /// other means. The default accepts the caller as authenticated.
    fn recheck(&self, principal: Principal, charged: Charged) -> AuthFuture<'_> {
        let _ = charged;
        Box::pin(std::future::ready(Ok(principal)))
    }

    /// [`Authenticator::recheck`] decided without waiting, on the caller in place: set
    /// `principal` as they now stand (their role) and answer `Some(Ok(()))` to go on with it,
    /// or `Some(Err(..))` to refuse. `None` (the default, so an authenticator that overrides
    /// only `recheck` keeps it) to await `recheck` with `principal` as it is then. In place,
    /// because the usual answer is "as before": it then costs no copy of the caller's ids.
    fn recheck_at_once(
        &self,
        principal: &mut Principal,
        charged: Charged,
    ) -> Option<Result<(), ApiError>> {
        let _ = (principal, charged);
        None
    }

    /// Called when an authenticated caller is refused a route for lack of a role (the 403),
    /// before the answer is sent: the place to record a security event. The default logs a
    /// warning.
    fn denied<'a>(&'a self, principal: &'a Principal, request: &'a Parts) -> DeniedFuture<'a> {
        tracing::warn!(
            user_id = %principal.user_id,
            path = %request.uri.path(),
            "access denied: admin route"
        );
        Box::pin(std::future::ready(()))
    }
}

/// The future [`Authenticator::denied`] returns.
pub type DeniedFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Accepts nobody. The right authenticator for an app that has no identities yet: every
/// non-public route answers 401.
#[derive(Debug, Clone, Copy, Default)]
pub struct DenyAll;

impl Authenticator for DenyAll {
    fn authenticate<'a>(&'a self, _headers: &'a HeaderMap) -> AuthFuture<'a> {
        Box::pin(std::future::ready(Err(ApiError::Unauthorized)))
    }
}

/// Builds a router in which each route carries its access policy.
#[must_use]
#[derive(Debug)]
pub struct SecureRouter<S = ()> {
    /// Each mounted route with its policy; assembled by [`SecureRouter::into_router_around`],
    /// which puts what runs for admitted requests around each method's handler alone.
    mounted: Vec<Mounted<S>>,
    /// Whole routers merged as public (the docs UI).
    merged_public: Router<S>,
    table: Vec<(String, Access)>,
    limit: Option<ClientLimit>,
    admission: Option<Admit>,
    /// The operations of the routes mounted from `#[utoipa::path]` handlers.
    #[cfg(feature = "openapi")]
    document: documented::Operations,
}

/// A route as mounted, until the router is assembled.
#[derive(Debug)]
struct Mounted<S> {
    path: String,
    access: Access,
    route: MethodRouter<S>,
    /// The methods it takes a body on, when known from its documented operations; `None`
    /// (mounted undocumented) reads a body on any method that may have one.
    body_methods: Option<Vec<http::Method>>,
}

impl<S: Clone + Send + Sync + 'static> Default for SecureRouter<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> SecureRouter<S> {
    pub fn new() -> Self {
        Self {
            mounted: Vec::new(),
            merged_public: Router::new(),
            table: Vec::new(),
            limit: None,
            admission: None,
            #[cfg(feature = "openapi")]
            document: documented::Operations::default(),
        }
    }

    /// Charges every request, on every route, to its client under `limit`'s policy: the
    /// authenticated user, or for anyone else the resolved address (which needs the
    /// [`crate::http::Hardening`] stack).
    pub fn limit_clients(mut self, limit: ClientLimit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Runs the app's own `admission` check in every route's gate, after the client limit and
    /// before the body is received (unknown paths excepted): a stricter limit on the routes
    /// that take credentials, say, which a refused caller then cannot dodge by sending a large
    /// or slow body. Called again, the checks run in the order they were added, and the first
    /// refusal answers.
    pub fn admit_before_body(mut self, admission: Arc<dyn Admission>) -> Self {
        self.admission = Some(match self.admission.take() {
            Some(earlier) => earlier.and(admission),
            None => Admit(Arc::new([admission])),
        });
        self
    }

    /// Mounts `route` at `path` for `access`.
    ///
    /// # Panics
    /// When `path` is already mounted under another policy: one path has one policy, and a
    /// second would leave some of its methods guarded differently from the others. Like
    /// axum's own refusal of a route mounted twice, this fails the start, before anything is
    /// served.
    pub fn route(self, path: &str, access: Access, route: MethodRouter<S>) -> Self {
        self.mount(path, access, route, None)
    }

    /// [`SecureRouter::route`], saying which of the route's methods take a body: a body sent
    /// with any other is dropped unread.
    pub(crate) fn mount(
        mut self,
        path: &str,
        access: Access,
        route: MethodRouter<S>,
        body_methods: Option<Vec<http::Method>>,
    ) -> Self {
        match self.table.iter().find(|(mounted, _)| mounted == path) {
            Some((_, existing)) if *existing != access => {
                panic!("{path} is mounted as {existing:?} and again as {access:?}; one path has one policy")
            }
            Some(_) => {}
            None => self.table.push((path.to_owned(), access)),
        }
        self.mounted.push(Mounted {
            path: path.to_owned(),
            access,
            route,
            body_methods,
        });
        self
    }

    pub fn public(self, path: &str, route: MethodRouter<S>) -> Self {
        self.route(path, Access::Public, route)
    }

    pub fn authenticated(self, path: &str, route: MethodRouter<S>) -> Self {
        self.route(path, Access::Authenticated, route)
    }

    pub fn admin(self, path: &str, route: MethodRouter<S>) -> Self {
        self.route(path, Access::Admin, route)
    }

    /// Merges a whole router as public (for example the docs UI with its asset paths);
    /// `paths` lists what it serves, for the route table.
    pub fn merge_public(mut self, paths: &[&str], router: Router<S>) -> Self {
        self.table
            .extend(paths.iter().map(|p| ((*p).to_owned(), Access::Public)));
        self.merged_public = self.merged_public.merge(router);
        self
    }

    /// Every mounted path with its policy, in mounting order.
    pub fn table(&self) -> &[(String, Access)] {
        &self.table
    }

    /// The finished router. Every non-public route (methods and 405s alike) and every unknown
    /// path runs through three steps, in one service per route (see `route_gate`):
    /// [`Identify`] verifies the credentials, the client limit ([`ClientLimitLayer`], when set)
    /// charges the caller or, without valid credentials, the address, and [`Require`] admits
    /// or refuses by the route's policy (then the app's admission checks, if any). Public
    /// routes run through the client limit only. Unknown paths answer 401 to anonymous callers
    /// and 404 to authenticated ones.
    pub fn into_router(self, authenticator: Arc<dyn Authenticator>) -> Router<S> {
        self.into_router_around(authenticator, tower::layer::util::Identity::new())
    }

    /// [`SecureRouter::into_router`] with `inside` between each route's gate and its handler
    /// (around the handler's [`RequireAfterBody`]): what should run only for a request the
    /// gate admitted. [`crate::http::Hardening`] puts
    /// its body intake, in-flight cap and request timeout there, so a body is received only
    /// from a caller that passed the rate limit and the access policy.
    pub fn into_router_around<L>(
        self,
        authenticator: Arc<dyn Authenticator>,
        inside: L,
    ) -> Router<S>
    where
        L: Layer<crate::http::stage::Wrapped<Route, RequireAfterBody>>
            + Clone
            + Send
            + Sync
            + 'static,
        L::Service: Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        let limit = self.limit.map(ClientLimitLayer::new);
        let admission = self.admission;
        let identify = Identify(Arc::clone(&authenticator));
        // The policy step for a route of `access`; none for a public one.
        let require = move |access: Option<Access>| {
            access
                .filter(|access| *access != Access::Public)
                .map(|access| Require {
                    authenticator: Arc::clone(&authenticator),
                    access,
                })
        };
        // The gate for a route of `access`, or (`None`) for a path no route matched: public
        // routes check no credentials, and an unknown path is answered from what the gate
        // found, without the policy or the app's admission.
        let gate = {
            let require = require.clone();
            move |access: Option<Access>| {
                GateLayer::new(Steps {
                    identify: (access != Some(Access::Public)).then(|| identify.clone()),
                    limit: limit.clone(),
                    require: require(access),
                    admit: access.and(admission.clone()),
                })
            }
        };
        // Each method's handler gets its gate and `inside` in one `route_layer`: axum boxes a
        // route again at every layer call and clones through each box per request, so one
        // call is one box. `inside` goes around the handler alone: a method the route does
        // not take is answered without its body read.
        let mut paths: Vec<(String, Access, MethodRouter<S>)> = Vec::new();
        for Mounted {
            path,
            access,
            route,
            body_methods,
        } in self.mounted
        {
            // Last, once the body is in: the caller asked again (see `RequireAfterBody`).
            let after_body = RequireAfterBody(require(Some(access)));
            let route = route.route_layer(
                tower::ServiceBuilder::new()
                    .layer(gate(Some(access)))
                    .option_layer(body_methods.map(crate::http::body_limit::DropBodyLayer::except))
                    .layer(inside.clone())
                    .layer(after_body),
            );
            match paths.iter_mut().find(|(mounted, ..)| *mounted == path) {
                Some((_, _, methods)) => {
                    *methods = std::mem::replace(methods, MethodRouter::new()).merge(route);
                }
                None => paths.push((path, access, route)),
            }
        }
        // A method the path does not take meets the same gate as one it takes: the 405 (and
        // its `Allow`) is for a caller the policy admits, anyone else gets the gate's refusal.
        let mut router = Router::new();
        for (path, access, methods) in paths {
            let method_not_allowed =
                gate(Some(access)).layer(tower::service_fn(|_request: Request| async {
                    Ok::<_, Infallible>(http::StatusCode::METHOD_NOT_ALLOWED.into_response())
                }));
            router = router.route(&path, methods.fallback_service(method_not_allowed));
        }
        if self.merged_public.has_routes() {
            router = router.merge(
                self.merged_public
                    .route_layer(
                        tower::ServiceBuilder::new()
                            .layer(inside)
                            .layer(RequireAfterBody(None)),
                    )
                    .layer(gate(Some(Access::Public))),
            );
        }
        router.merge(Router::new().fallback(unknown_path).layer(gate(None)))
    }
}

/// The authenticated caller. Fails closed with 401 when the route was not mounted as
/// authenticated or admin.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Self)
            .ok_or(ApiError::Unauthorized)
    }
}

/// An authenticated caller whose role is admin; 403 for anyone else.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let CurrentUser(principal) = CurrentUser::from_request_parts(parts, state).await?;
        if principal.role == Role::Admin {
            Ok(Self(principal))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use http::{Method, StatusCode};
    use tower::ServiceExt;

    /// Accepts `Bearer user` and `Bearer admin`.
    struct Fixed;
    impl Authenticator for Fixed {
        fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> AuthFuture<'a> {
            let role = match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                Some("Bearer user") => Some(Role::User),
                Some("Bearer admin") => Some(Role::Admin),
                _ => None,
            };
            Box::pin(std::future::ready(
                role.map(|role| Principal {
                    user_id: "u1".into(),
                    session_id: "s1".into(),
                    role,
                })
                .ok_or(ApiError::Unauthorized),
            ))
        }
    }

    fn app() -> Router {
        SecureRouter::new()
            .public("/open", get(|| async { "open" }))
            .authenticated(
                "/me",
                get(|CurrentUser(p): CurrentUser| async move { p.user_id }),
            )
            .admin("/admin", get(|AdminUser(_): AdminUser| async { "admin" }))
            // Mounted public by mistake: the extractor still refuses.
            .public(
                "/mistake",
                get(|CurrentUser(p): CurrentUser| async move { p.user_id }),
            )
            .into_router(Arc::new(Fixed))
    }

    async fn status(method: Method, path: &str, token: Option<&str>) -> StatusCode {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Body::empty()).unwrap_or_default();
        app()
            .oneshot(req)
            .await
            .map_or(StatusCode::IM_A_TEAPOT, |r| r.status())
    }

    #[tokio::test]
    async fn each_policy_against_each_caller() {
        use Method as M;
        let cases: &[(M, &str, Option<&str>, u16)] = &[
            (M::GET, "/open", None, 200),
            (M::GET, "/me", None, 401),
            (M::GET, "/me", Some("forged"), 401),
            (M::GET, "/me", Some("user"), 200),
            (M::GET, "/admin", None, 401),
            (M::GET, "/admin", Some("user"), 403),
            (M::GET, "/admin", Some("admin"), 200),
            // Wrong method on a protected path: no 405 for anonymous callers.
            (M::DELETE, "/me", None, 401),
            (M::DELETE, "/me", Some("user"), 405),
            (M::DELETE, "/admin", Some("user"), 403),
            // Unknown paths: 401 anonymous, 404 authenticated.
            (M::GET, "/nope", None, 401),
            (M::GET, "/me/", None, 401),
            (M::GET, "/nope", Some("user"), 404),
            (M::GET, "/mistake", None, 401),
        ];
        for (method, path, token, expected) in cases {
            let got = status(method.clone(), path, *token).await;
            assert_eq!(got.as_u16(), *expected, "{method} {path} as {token:?}");
        }
    }

    #[test]
    fn table_lists_every_route() {
        let router: SecureRouter = SecureRouter::new()
            .public("/a", get(|| async {}))
            .admin("/b", get(|| async {}));
        assert_eq!(
            router.table(),
            &[
                ("/a".to_owned(), Access::Public),
                ("/b".to_owned(), Access::Admin)
            ]
        );
    }

    /// Two methods of one path under two policies would leave one of them guarded differently
    /// (a `DELETE` left public beside an authenticated `GET`): the router refuses to be built.
    #[test]
    #[should_panic(expected = "one path has one policy")]
    fn one_path_cannot_take_two_policies() {
        let _router: SecureRouter = SecureRouter::new()
            .authenticated("/items", get(|| async {}))
            .public("/items", axum::routing::delete(|| async {}));
    }

    /// Methods mounted one by one at a path are one route: each is served, a method it lacks
    /// is 405 with `Allow` for an admitted caller, and the same 401 as anywhere for anyone
    /// else.
    #[tokio::test]
    async fn methods_mounted_apart_share_the_path_and_its_gate() {
        let app = SecureRouter::new()
            .authenticated("/items", get(|| async { "list" }))
            .authenticated("/items", axum::routing::post(|| async { "made" }))
            .into_router(Arc::new(Fixed));
        let send = |method: Method, token: Option<&'static str>| {
            let mut request = Request::builder().method(method).uri("/items");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            app.clone()
                .oneshot(request.body(Body::empty()).unwrap_or_default())
        };
        for method in [Method::GET, Method::POST] {
            let response = send(method.clone(), Some("user")).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{method}");
            let response = send(method.clone(), None).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method}");
        }
        let wrong = send(Method::DELETE, Some("user")).await.unwrap();
        assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
        let allow = wrong
            .headers()
            .get(http::header::ALLOW)
            .and_then(|allow| allow.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        for method in ["GET", "POST"] {
            assert!(allow.contains(method), "{allow}");
        }
        let anonymous = send(Method::DELETE, None).await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn one_path_may_gather_methods_under_its_one_policy() {
        let router: SecureRouter = SecureRouter::new()
            .authenticated("/items", get(|| async {}))
            .authenticated("/items", axum::routing::post(|| async {}));
        assert_eq!(
            router.table(),
            &[("/items".to_owned(), Access::Authenticated)]
        );
    }

    /// Reported by an outside re-test: `{"role":{"admin":null}}` promoted a user, and
    /// `{"role":["admin"]}` was called invalid JSON.
    #[test]
    fn a_role_is_one_of_two_strings_and_nothing_else() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Change {
            role: Role,
        }
        let role = |body: &str| crate::json::parse_object::<Change>(body.as_bytes(), 8);
        assert_eq!(
            role(r#"{"role":"admin"}"#).map(|c| c.role).ok(),
            Some(Role::Admin)
        );
        assert_eq!(
            role(r#"{"role":"user"}"#).map(|c| c.role).ok(),
            Some(Role::User)
        );
        for body in [
            r#"{"role":{"admin":null}}"#,
            r#"{"role":{"admin":1}}"#,
            r#"{"role":["admin"]}"#,
            r#"{"role":1}"#,
            r#"{"role":"Admin"}"#,
            r#"{"role":"root"}"#,
            r#"{"role":null}"#,
        ] {
            match role(body) {
                Err(ApiError::Validation(errors)) => assert_eq!(errors[0].field, "role", "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
