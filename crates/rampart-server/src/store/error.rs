//! Store failures in the store's own terms.
//!
//! Defends against driver details deciding what a client sees: a `sqlx::Error` is classified
//! once, here, into unavailable (503: worth retrying), a conflict on a value a client chose, or
//! a failure (500); its text goes to the log only. Conflicts are matched by constraint, never
//! by sniffing the message.

/// What went wrong in the store, in the store's own terms: callers decide on a kind (busy,
/// conflict, failed), never on a driver's error type. Causes are text for the log, never shown.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is saturated or out of reach, not wrong: a lock held past its timeout, no
    /// pooled connection within the acquire timeout, a connection that failed or was cut, a
    /// server shutting down. Worth retrying shortly, so clients get 503, not 500.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database refused or failed a statement for any other reason.
    #[error("database error: {0}")]
    Failed(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("cannot prepare the database location: {0}")]
    Location(std::io::Error),
    #[error("unsupported database URL (expected sqlite: or postgres:)")]
    Unsupported,
    /// A store task panicked or was aborted.
    #[error("store task failed: {0}")]
    Task(String),
    /// The database did not answer within the store's own deadline (a paused server).
    #[error("no answer from the database within {0:?}")]
    Deadline(std::time::Duration),
    /// A unique value is taken.
    #[error("{0} already exists")]
    Conflict(Taken),
}

/// The unique value a write ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    Email,
    Username,
}

impl std::fmt::Display for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Email => "email",
            Self::Username => "username",
        })
    }
}

/// The unique constraints a client can run into, as each backend names them: PostgreSQL by
/// constraint name (the default `<table>_<column>_key`), SQLite by `table.column` in its
/// `UNIQUE constraint failed: ` message. A unique violation on anything else is a failure, not
/// a guess.
const UNIQUE_CONSTRAINTS: [(&str, &str, Taken); 2] = [
    ("users_email_key_key", "users.email_key", Taken::Email),
    (
        "users_username_key_key",
        "users.username_key",
        Taken::Username,
    ),
];

fn taken(db: &dyn sqlx::error::DatabaseError) -> Option<Taken> {
    if !db.is_unique_violation() {
        return None;
    }
    let sqlite_columns = db.message().strip_prefix("UNIQUE constraint failed: ");
    UNIQUE_CONSTRAINTS
        .iter()
        .find(|(constraint, columns, _)| {
            db.constraint() == Some(*constraint) || sqlite_columns == Some(*columns)
        })
        .map(|(_, _, taken)| *taken)
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        let busy = match &err {
            // A protocol error is what a connection cut mid-handshake looks like (a proxy or
            // load balancer in front of a database that is down accepts and closes): the
            // database is out of reach, not the request wrong.
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => {
                if let Some(taken) = taken(db.as_ref()) {
                    return Self::Conflict(taken);
                }
                db.code().is_some_and(|code| {
                    // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
                    code.parse::<i32>()
                        .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
                        // PostgreSQL: connection exceptions (08…), shutdown or start-up
                        // (57P0…), too many connections (53300), lock or statement timeout
                        // (55P03, 57014).
                        || code.starts_with("08")
                        || code.starts_with("57P0")
                        || matches!(&*code, "53300" | "55P03" | "57014")
                })
            }
            _ => false,
        };
        if busy {
            Self::Unavailable(err.to_string())
        } else {
            Self::Failed(err.to_string())
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(err.to_string())
    }
}

impl StoreError {
    /// Worth retrying shortly: the database is unavailable or did not answer in time.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Deadline(_))
    }
}

/// A store failure reaching a handler is an internal error: logged with the request id at the
/// edge, never shown. A saturated database is a 503 with `Retry-After` instead, so clients back
/// off rather than treat it as a bug. Handlers that expect a specific failure (a conflict)
/// match it first.
impl From<StoreError> for rampart::ApiError {
    fn from(err: StoreError) -> Self {
        if err.is_busy() {
            // Logged once a second per kind on the access log, with the cause.
            return Self::DependencyUnavailable {
                retry_after: std::time::Duration::from_secs(1),
                cause: err.to_string(),
            };
        }
        Self::internal(err)
    }
}
