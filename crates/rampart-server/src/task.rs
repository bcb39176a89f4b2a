//! Work a cancelled request cannot cut short.
//!
//! Defends against half-done security changes: axum drops a handler's future when the client
//! goes away or the request times out, and a change to the store, this node's revocation set
//! and the other nodes must not stop between those steps (the store saying revoked while this
//! node still accepts the session's tokens).

use crate::store::StoreError;

/// Runs `work` on its own task and waits for it: dropping the waiting future no longer stops
/// the work half-way.
pub async fn to_completion<T: Send + 'static, E: From<StoreError> + Send + 'static>(
    work: impl std::future::Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, E> {
    tokio::spawn(work)
        .await
        .map_err(|err| E::from(StoreError::Task(err.to_string())))?
}
