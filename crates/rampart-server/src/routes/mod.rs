//! The service's routes, each mounted with its access policy.

pub mod health;

use axum::routing::get;
use rampart::SecureRouter;

use crate::state::AppState;

/// Every route of the service. The docs UI is added by `app` when enabled.
pub fn routes() -> SecureRouter<AppState> {
    SecureRouter::new()
        .public("/health", get(health::health))
        .public("/ready", get(health::ready))
}
