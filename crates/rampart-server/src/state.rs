//! The one cloneable application state. No globals: everything a handler needs is reached from
//! here, and backends sit behind `Arc<dyn Trait>` so tests and deployments can swap them.

use std::sync::Arc;

use rampart::keys::KeySet;
use rampart::password::PasswordHasher;
use rampart::tokens::Tokens;
use rampart::Settings;

use crate::access::AccessState;
use crate::store::{EndedSession, Store};

/// Cloned into every handler call, so it is one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    /// Present when tokens are EdDSA-signed (published at `/.well-known/jwks.json`).
    pub keys: Option<KeySet>,
    pub tokens: Tokens,
    pub hasher: PasswordHasher,
    /// Revoked sessions and users' role and lock, checked on every authenticated request.
    pub access: AccessState,
    /// Signs and opens the cursors of every list endpoint.
    pub cursors: rampart::pagination::CursorKey,
    pub audit: crate::audit::AuditLog,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// Makes the access tokens of sessions the store just ended stop working on this node.
    pub fn forget_sessions(&self, ended: &[EndedSession]) {
        let now = time::OffsetDateTime::now_utc();
        for session in ended {
            self.access
                .revoke(&session.id, crate::store::age(&session.last_used_at, now));
        }
    }

    /// Records a security event (see [`crate::audit`]).
    pub async fn audit(&self, event: crate::audit::Event) {
        self.audit.record(self.store.as_ref(), event).await;
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
