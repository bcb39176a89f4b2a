//! The service's routes, each mounted with its access policy.

pub mod admin;
pub mod auth;
pub mod health;
pub mod items;
pub mod jwks;
pub mod refresh;
pub mod sessions;
pub mod users;

use rampart::SecureRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Every route of the service, each with its access policy. Paths and methods come from the
/// handlers' `#[utoipa::path]` attributes, and the OpenAPI operations from what is mounted here
/// (see [`crate::docs`]), so this list is the only one. `jwks` is mounted only when tokens are
/// EdDSA-signed; the docs UI is added by `app` when enabled.
pub fn routes(jwks: bool) -> SecureRouter<AppState> {
    let routes = SecureRouter::new()
        .documented_public(routes!(health::health))
        .documented_public(routes!(health::ready))
        .documented_public(routes!(auth::register))
        .documented_public(routes!(auth::login))
        .documented_public(routes!(refresh::refresh))
        .documented_authenticated(routes!(users::me))
        .documented_authenticated(routes!(sessions::logout))
        .documented_authenticated(routes!(sessions::logout_all))
        .documented_authenticated(routes!(sessions::list))
        .documented_authenticated(routes!(sessions::delete))
        .documented_authenticated(routes!(sessions::change_password))
        .documented_authenticated(routes!(items::list, items::create))
        .documented_authenticated(routes!(items::get, items::update, items::delete))
        .documented_admin(routes!(admin::users))
        .documented_admin(routes!(admin::change_user))
        .documented_admin(routes!(admin::audit))
        .documented_admin(routes!(admin::lock))
        .documented_admin(routes!(admin::unlock));
    if jwks {
        routes.documented_public(routes!(jwks::jwks))
    } else {
        routes
    }
}
