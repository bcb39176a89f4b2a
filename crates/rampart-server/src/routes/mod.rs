//! The service's routes, each mounted with its access policy.

pub mod account;
pub mod admin;
pub mod auth;
pub mod browser;
pub mod email;
pub mod health;
pub mod items;
pub mod jwks;
pub mod mfa;
pub mod refresh;
pub mod sessions;
pub mod users;

use rampart::SecureRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The routes that end sessions, where the global limit charges a caller's session rather than
/// its account: a stolen token that spent the account's budget elsewhere cannot keep the owner
/// from ending it (`logout-all` ends the thief's session too). Only routes that end something
/// or are bounded by the login limits are here: each session is a budget of its own on them,
/// and listing sessions (up to a thousand rows an answer) would let an account with many
/// sessions multiply its budget on the costliest read (the second outside review: 270 lists a
/// second from one account with 40 sessions).
pub const SESSION_ENDING_ROUTES: &[&str] = &[
    "/v1/auth/logout",
    "/v1/auth/logout-all",
    "/v1/auth/sessions/{id}",
    "/v1/auth/password",
    "/v1/browser/logout",
];

/// The routes that take credentials (each handler takes [`crate::abuse::AuthQuota`]), whose
/// per-address limit is charged in their gate, before the body is received
/// ([`crate::abuse::CredentialAdmission`]).
pub const CREDENTIAL_ROUTES: &[&str] = &[
    "/v1/auth/register",
    "/v1/auth/login",
    "/v1/auth/refresh",
    "/v1/auth/mfa/verify",
    "/v1/auth/password/forgot",
    "/v1/auth/password/reset",
    "/v1/auth/email/verify",
    "/v1/browser/login",
    "/v1/browser/mfa",
];

/// Every route of the service, each with its access policy. Paths and methods come from the
/// handlers' `#[utoipa::path]` attributes, and the OpenAPI operations from what is mounted here
/// (see [`crate::docs`]), so this list is the only one. `jwks` is mounted only when tokens are
/// EdDSA-signed; the docs UI is added by `app` when enabled, the account page by
/// [`account_page`].
pub fn routes(jwks: bool) -> SecureRouter<AppState> {
    let routes = SecureRouter::new()
        .documented_public(routes!(health::health))
        .documented_public(routes!(health::ready))
        .documented_public(routes!(auth::register))
        .documented_public(routes!(auth::login))
        .documented_public(routes!(refresh::refresh))
        .documented_public(routes!(mfa::verify))
        .documented_public(routes!(email::forgot))
        .documented_public(routes!(email::reset))
        .documented_public(routes!(email::verify))
        .documented_public(routes!(browser::login))
        .documented_public(routes!(browser::mfa))
        .documented_authenticated(routes!(users::me))
        .documented_authenticated(routes!(sessions::logout))
        .documented_authenticated(routes!(sessions::logout_all))
        .documented_authenticated(routes!(sessions::list))
        .documented_authenticated(routes!(sessions::delete))
        .documented_authenticated(routes!(sessions::change_password))
        .documented_authenticated(routes!(mfa::enrol, mfa::remove))
        .documented_authenticated(routes!(mfa::confirm))
        .documented_authenticated(routes!(email::resend))
        .documented_authenticated(routes!(browser::logout))
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

/// `routes` with the account page's files mounted for anyone (`RAMPART_ACCOUNT_PAGE`).
pub fn account_page(routes: SecureRouter<AppState>) -> SecureRouter<AppState> {
    use axum::routing::get;
    let routes = account::PAGE_PATHS.iter().fold(routes, |routes, path| {
        routes.public(path, get(account::page))
    });
    routes
        .public("/account/app.js", get(account::script))
        .public("/account/app.css", get(account::style))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template that matched nothing would leave its route's login limit to the handler,
    /// after the body has been received.
    #[test]
    fn every_credential_route_is_mounted_for_anyone() {
        let mounted = routes(false);
        for template in CREDENTIAL_ROUTES {
            assert!(
                mounted
                    .table()
                    .iter()
                    .any(|(path, access)| path == template
                        && *access == rampart::policy::Access::Public),
                "{template} is not mounted as public"
            );
        }
    }

    /// A template that matched nothing would silently charge those routes by account.
    #[test]
    fn every_session_ending_route_is_mounted_for_authenticated_callers() {
        let mounted = routes(false);
        for template in SESSION_ENDING_ROUTES {
            assert!(
                mounted.table().iter().any(|(path, access)| path == template
                    && *access == rampart::policy::Access::Authenticated),
                "{template} is not mounted as authenticated"
            );
        }
    }
}
