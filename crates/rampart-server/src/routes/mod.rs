//! The service's routes, each mounted with its access policy.

pub mod admin;
pub mod auth;
pub mod health;
pub mod items;
pub mod jwks;
pub mod refresh;
pub mod sessions;
pub mod users;

use axum::routing::{delete, get, patch, post};
use rampart::SecureRouter;

use crate::state::AppState;

/// Every route of the service. `jwks` is mounted only when tokens are EdDSA-signed; the docs UI
/// is added by `app` when enabled.
pub fn routes(jwks: bool) -> SecureRouter<AppState> {
    let routes = SecureRouter::new()
        .public("/health", get(health::health))
        .public("/ready", get(health::ready))
        .public("/v1/auth/register", post(auth::register))
        .public("/v1/auth/login", post(auth::login))
        .public("/v1/auth/refresh", post(refresh::refresh))
        .authenticated("/v1/users/me", get(users::me))
        .authenticated("/v1/auth/logout", post(sessions::logout))
        .authenticated("/v1/auth/logout-all", post(sessions::logout_all))
        .authenticated("/v1/auth/sessions", get(sessions::list))
        .authenticated("/v1/auth/sessions/{id}", delete(sessions::delete))
        .authenticated("/v1/auth/password", post(sessions::change_password))
        .authenticated("/v1/items", get(items::list).post(items::create))
        .authenticated(
            "/v1/items/{id}",
            get(items::get).patch(items::update).delete(items::delete),
        )
        .admin("/v1/admin/users", get(admin::users))
        .admin("/v1/admin/users/{id}", patch(admin::change_user))
        .admin("/v1/admin/audit", get(admin::audit))
        .admin("/v1/admin/users/{id}/lock", post(admin::lock))
        .admin("/v1/admin/users/{id}/unlock", post(admin::unlock));
    if jwks {
        routes.public("/.well-known/jwks.json", get(jwks::jwks))
    } else {
        routes
    }
}
