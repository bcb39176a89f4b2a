//! The one cloneable application state. No globals: everything a handler needs is reached from
//! here, and backends sit behind `Arc<dyn Trait>` so tests and deployments can swap them.

use std::sync::Arc;

use rampart::keys::KeySet;
use rampart::password::PasswordHasher;
use rampart::tokens::Tokens;
use rampart::Settings;

use crate::access::AccessState;
use crate::store::{EndedSession, Store, StoreError};

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
    /// Thins out `access_denied` events so one caller cannot flood the audit table.
    pub denials: crate::audit::EventSampler,
    /// Rate limits, login backoff and the stuffing signal.
    pub abuse: crate::abuse::AbuseControl,
    /// Other nodes sharing the database: broadcasts and the freshness of this node's view.
    pub cluster: crate::cluster::Cluster,
    /// The shared limiter store, when configured (for readiness).
    pub redis: Option<rampart::limit::RedisStore>,
    /// Counters for the metrics listener (counted whether or not it is on).
    pub metrics: crate::metrics::ServiceMetrics,
    /// Woken when a stored hash of a cost the login decoys never sampled appears.
    pub decoys_stale: tokio::sync::Notify,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }

    /// Makes the access tokens of sessions the store just ended stop working on this node (the
    /// callers below also tell the other nodes).
    pub fn forget_sessions(&self, ended: &[EndedSession]) {
        let now = time::OffsetDateTime::now_utc();
        for session in ended {
            self.access
                .revoke(&session.id, session.last_used_at.age(now));
        }
    }

    /// Opens a unit of work: changes and the events that record them, committed together.
    pub async fn begin(&self) -> Result<Unit, StoreError> {
        Ok(Unit {
            state: self.clone(),
            tx: self.store.begin().await?,
            recorded: Vec::new(),
        })
    }

    /// Records a security event that has no change to commit with (a refused login): its own
    /// transaction, run to completion so a cancelled request cannot cut it short. An error
    /// means the event is not on record, and the caller must not act as if it were.
    pub async fn audit(&self, event: crate::audit::Event) -> Result<(), StoreError> {
        let state = self.clone();
        to_completion(async move { state.audit.record(state.store.as_ref(), event).await }).await
    }

    /// Records an `access_denied` event without making the caller wait for it (the answer's
    /// timing must not reveal that something was there to deny), and at most once per caller
    /// per sampling window; the next recorded event counts the ones left out.
    pub fn audit_denied(&self, mut event: crate::audit::Event) {
        let key = event.user_id.clone().unwrap_or_default();
        let Some(suppressed) = self.denials.admit(&key) else {
            return;
        };
        if suppressed > 0 {
            if let Some(detail) = event.detail.as_object_mut() {
                detail.insert("suppressed_since_last".into(), suppressed.into());
            }
        }
        let state = self.clone();
        tokio::spawn(async move {
            // Sampled and off the request path by design: the refusal it records changed
            // nothing, and its timing must not wait on the audit table.
            if let Err(err) = state.audit.record(state.store.as_ref(), event).await {
                tracing::warn!(error = %err, "a sampled access_denied event was not stored");
            }
        });
    }
}

/// A transaction and the audit events appended in it ([`AppState::begin`]). Dropped without
/// [`Unit::commit`], nothing of it happened: neither the changes nor their record.
pub struct Unit {
    state: AppState,
    tx: Box<dyn crate::store::Tx>,
    recorded: Vec<crate::audit::Recorded>,
}

impl std::fmt::Debug for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unit")
            .field("events", &self.recorded.len())
            .finish_non_exhaustive()
    }
}

impl Unit {
    /// The transaction, for the changes.
    pub fn tx(&mut self) -> &mut dyn crate::store::Tx {
        self.tx.as_mut()
    }

    /// Appends `event` to the audit chain in this transaction. Record events after the
    /// changes: from the first append to the commit, other appends wait.
    pub async fn record(&mut self, event: crate::audit::Event) -> Result<(), StoreError> {
        let recorded = self.state.audit.append_in(self.tx.as_mut(), event).await?;
        self.recorded.push(recorded);
        Ok(())
    }

    /// Commits the changes and their events together, then logs the events and moves the
    /// audit anchor.
    pub async fn commit(self) -> Result<(), StoreError> {
        let Unit {
            state,
            tx,
            recorded,
        } = self;
        tx.commit().await?;
        state.audit.committed(state.store.as_ref(), &recorded).await;
        Ok(())
    }
}

/// Runs `work` on its own task and waits for it: dropping the waiting future (a cancelled
/// request) no longer stops the work half-way.
pub(crate) async fn to_completion<T: Send + 'static, E: From<StoreError> + Send + 'static>(
    work: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, E> {
    tokio::spawn(work)
        .await
        .map_err(|err| E::from(StoreError::Task(err.to_string())))?
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
