//! Routes mounted from `#[utoipa::path]` handlers: the route table written once.
//!
//! Defends against documentation that drifts from what is served: a route's path and methods
//! come from its handler's own `#[utoipa::path]` attribute (collected by utoipa-axum's
//! `routes!`), and the OpenAPI operations are gathered from exactly what was mounted, so the
//! document can neither list a route that is not served nor leave out one that is, and each
//! operation sits under the policy it is mounted with.

use utoipa::openapi::OpenApi;
use utoipa_axum::router::UtoipaMethodRouter;

use super::{Access, SecureRouter};

/// The document being gathered (utoipa's types implement `Debug` only behind a feature).
#[derive(Default)]
pub(super) struct Operations(OpenApi);

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("paths", &self.0.paths.paths.len())
            .finish()
    }
}

impl<S: Clone + Send + Sync + 'static> SecureRouter<S> {
    /// Mounts the handlers of `routes` (built by `utoipa_axum::routes!`) for `access`, and adds
    /// their operations and schemas to [`SecureRouter::document`].
    ///
    /// # Panics
    /// As [`SecureRouter::route`]: when a path is already mounted under another policy.
    pub fn documented(mut self, access: Access, routes: UtoipaMethodRouter<S>) -> Self {
        let (schemas, paths, method_router) = routes;
        for (path, item) in paths.paths {
            // A method whose operation declares no request body never reads one.
            let body_methods = [
                (http::Method::GET, &item.get),
                (http::Method::PUT, &item.put),
                (http::Method::POST, &item.post),
                (http::Method::DELETE, &item.delete),
                (http::Method::OPTIONS, &item.options),
                (http::Method::HEAD, &item.head),
                (http::Method::PATCH, &item.patch),
                (http::Method::TRACE, &item.trace),
            ]
            .into_iter()
            .filter(|(_, operation)| {
                operation
                    .as_ref()
                    .is_some_and(|operation| operation.request_body.is_some())
            })
            .map(|(method, _)| method)
            .collect();
            self = self.mount(&path, access, method_router.clone(), Some(body_methods));
            match self.document.0.paths.paths.get_mut(&path) {
                Some(mounted) => mounted.merge_operations(item),
                None => {
                    self.document.0.paths.paths.insert(path, item);
                }
            }
        }
        self.document
            .0
            .components
            .get_or_insert_with(Default::default)
            .schemas
            .extend(schemas);
        self
    }

    /// Mounts `routes` for anyone, without credentials.
    pub fn documented_public(self, routes: UtoipaMethodRouter<S>) -> Self {
        self.documented(Access::Public, routes)
    }

    /// Mounts `routes` for any caller with valid credentials.
    pub fn documented_authenticated(self, routes: UtoipaMethodRouter<S>) -> Self {
        self.documented(Access::Authenticated, routes)
    }

    /// Mounts `routes` for admins only.
    pub fn documented_admin(self, routes: UtoipaMethodRouter<S>) -> Self {
        self.documented(Access::Admin, routes)
    }

    /// The operations and schemas of every route mounted with [`SecureRouter::documented`]; a
    /// base for the service's OpenAPI document (info, security schemes and tags are the
    /// service's to add).
    pub fn document(&self) -> &OpenApi {
        &self.document.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[utoipa::path(get, path = "/things/{id}", responses((status = 200, description = "A thing")))]
    async fn get_thing() {}

    #[utoipa::path(delete, path = "/things/{id}", responses((status = 204, description = "Gone")))]
    async fn delete_thing() {}

    #[utoipa::path(get, path = "/health", responses((status = 200, description = "Up")))]
    async fn health() {}

    #[test]
    fn the_document_holds_what_is_mounted_under_its_policy() {
        let router: SecureRouter = SecureRouter::new()
            .documented_public(utoipa_axum::routes!(health))
            .documented_authenticated(utoipa_axum::routes!(get_thing, delete_thing));
        assert_eq!(
            router.table(),
            &[
                ("/health".to_owned(), Access::Public),
                ("/things/{id}".to_owned(), Access::Authenticated),
            ]
        );
        let paths = &router.document().paths.paths;
        assert_eq!(
            paths.keys().collect::<Vec<_>>(),
            ["/health", "/things/{id}"]
        );
        let things = &paths["/things/{id}"];
        assert!(things.get.is_some() && things.delete.is_some() && things.post.is_none());
    }

    #[test]
    #[should_panic(expected = "one path has one policy")]
    fn a_documented_path_cannot_take_a_second_policy() {
        let _router: SecureRouter = SecureRouter::new()
            .documented_authenticated(utoipa_axum::routes!(get_thing))
            .documented_public(utoipa_axum::routes!(delete_thing));
    }
}
