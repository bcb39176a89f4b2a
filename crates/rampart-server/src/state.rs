//! The composition root: the parts built at start-up (`app::state`) and the services made of
//! them. No globals, and no handler takes the whole: each takes the service it calls
//! (`State<Accounts>`, `State<Items>`, ...; the `FromRef` impls at the end), and the
//! authenticator, the cluster sync and the metrics each hold only their own parts. Only
//! start-up, the router, readiness and the JWKS route read the parts here directly; tests read
//! them too. Backends sit behind `Arc<dyn Trait>` so tests and deployments can swap them.

use std::sync::Arc;

use crate::config::Settings;
use rampart::keys::KeySet;
use rampart::password::PasswordHasher;
use rampart::tokens::Tokens;

use crate::access::AccessState;
use crate::store::Store;

/// Cloned into every handler call, so it is one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    /// The rules, each service with the parts it needs.
    pub services: crate::service::Services,
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    /// Present when tokens are EdDSA-signed (published at `/.well-known/jwks.json`).
    pub keys: Option<KeySet>,
    pub tokens: Tokens,
    pub hasher: PasswordHasher,
    /// Revoked sessions and users' role and lock, checked on every authenticated request.
    pub access: Arc<AccessState>,
    /// Signs and opens the cursors of every list endpoint.
    pub cursors: Arc<rampart::pagination::CursorKey>,
    /// Writes every change together with the security events that record it.
    pub recorder: crate::audit::Recorder,
    /// Rate limits, login backoff and the stuffing signal.
    pub guard: crate::abuse::Guard,
    /// Other nodes sharing the database: broadcasts and the freshness of this node's view.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Access changes made here: applied at once and announced to the other nodes.
    pub revocations: crate::cluster::Revocations,
    /// The shared limiter store, when configured (for readiness).
    pub redis: Option<rampart::limit::RedisStore>,
    /// Counters for the metrics listener (counted whether or not it is on).
    pub metrics: crate::metrics::ServiceMetrics,
    /// This server's own origin (the CSRF check's, and the base of links in messages).
    pub public_origin: crate::browser::PublicOrigin,
    /// Derives the CSRF value of each browser session.
    pub csrf: crate::browser::CsrfKey,
    /// Woken when a stored hash of a cost the login decoys never sampled appears.
    pub decoys_stale: Arc<tokio::sync::Notify>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("env", &self.settings.env)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

/// Each handler takes the one service (or guard) it needs, never the whole state.
macro_rules! sub_state {
    ($($part:ty => |$state:ident| $take:expr;)*) => {
        $(impl axum::extract::FromRef<AppState> for $part {
            fn from_ref($state: &AppState) -> Self {
                $take
            }
        })*
    };
}

sub_state! {
    crate::service::accounts::Accounts => |state| state.services.accounts.clone();
    crate::service::sessions::Sessions => |state| state.services.sessions.clone();
    crate::service::mfa::Mfa => |state| state.services.mfa.clone();
    crate::service::email::EmailLinks => |state| state.services.email.clone();
    crate::service::items::Items => |state| state.services.items.clone();
    crate::service::admin::Admin => |state| state.services.admin.clone();
    crate::abuse::Guard => |state| state.guard.clone();
    crate::browser::CsrfKey => |state| state.csrf.clone();
}
