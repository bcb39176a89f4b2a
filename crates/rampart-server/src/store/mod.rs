//! Persistence behind traits, one module per backend.
//!
//! Defends against injection and backend lock-in: every query is a parameterised `sqlx::query`
//! (no string-built SQL anywhere), and handlers see only the [`Store`] trait, so PostgreSQL can
//! be added as another module rather than as `if postgres` branches in every method. Store
//! errors carry the backend's message for the log only; handlers turn them into a generic 500.

pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use secrecy::{ExposeSecret, SecretString};

/// A boxed store future, so stores can be used as `Arc<dyn Store>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or answered with an error. Logged, never shown.
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot prepare the database location: {0}")]
    Location(std::io::Error),
    #[error("unsupported database URL (expected sqlite:)")]
    Unsupported,
}

/// Everything the service needs from its database.
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip proving the database answers (for `/ready`).
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// Opens the store named by `url` and brings its schema up to date.
pub async fn open(url: &SecretString) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let url = url.expose_secret();
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?))
    } else {
        Err(StoreError::Unsupported)
    }
}
