//! The point reads a request makes (its item, its account, its session, a page of its items),
//! answered on the request's own thread from a few read-only SQLite connections with prepared
//! statements, instead of through sqlx.
//!
//! Why: sqlx runs each SQLite connection on a worker thread of its own and hands every query
//! there and its rows back through channels, two thread switches per statement, which on two
//! cores dominated an item read. Measured in one run here (bare axum, a cached token check and
//! the same point read of the same file, wrk -c64): 28-29k reads/s through an sqlx pool, 66-74k
//! through a prepared statement on a connection of the serving thread's, against 104-114k for
//! a bare hello. rusqlite is the well-kept binding for that (it shares sqlx's bundled SQLite
//! through the same `libsqlite3-sys`).
//!
//! What keeps it safe to run inline: each statement is one indexed lookup or one bounded page
//! (at most a few hundred rows of a user's own items), in WAL mode a reader never waits for the
//! writer (it reads the last committed snapshot), and a connection here is read-only
//! (`query_only`; opened read-write only so it may map WAL's shared memory), so a bug cannot
//! turn a read into a write outside the writers' turn-taking.
//! The connections are few (one per core, plus one), each behind its own lock; a request takes
//! the first free one, so reads never queue behind each other unless every core is reading.
//! Writes, transactions and the rarer reads stay on sqlx.

use std::cell::Cell;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::rows::StoreRow;
use crate::store::{StoreError, Timestamp};

/// How long a read waits on a lock SQLite holds (a checkpoint, recovery after a crash); in WAL
/// mode readers otherwise never wait.
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// The read-only connections of one database file.
pub(super) struct Readers {
    connections: Box<[Mutex<Connection>]>,
}

impl Readers {
    /// Opens one read-only connection per core, plus one, on `file` (migrated already).
    pub(super) fn open(file: &std::path::Path) -> Result<Self, StoreError> {
        let count = std::thread::available_parallelism().map_or(2, usize::from) + 1;
        let connections = (0..count)
            .map(|_| {
                let connection = Connection::open_with_flags(
                    file,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(read_error)?;
                connection.busy_timeout(BUSY_TIMEOUT).map_err(read_error)?;
                connection
                    .pragma_update(None, "query_only", true)
                    .map_err(read_error)?;
                Ok(Mutex::new(connection))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self {
            connections: connections.into_boxed_slice(),
        })
    }

    /// Runs `read` on a free connection (waiting for the first one only when all are busy).
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let connection = self.free();
        read(&connection)
    }

    fn free(&self) -> MutexGuard<'_, Connection> {
        for slot in &self.connections {
            if let Ok(connection) = slot.try_lock() {
                return connection;
            }
        }
        // A connection only ever holds a finished read's state, so a poisoned one is usable.
        self.connections[0]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// An inline read's failure, classed as sqlx's are: a lock held past the timeout is the
/// database being busy (503), anything else a failure.
#[allow(clippy::needless_pass_by_value)] // the shape `map_err` takes
pub(super) fn read_error(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Failed(err.to_string()),
    }
}

/// A row of these connections, read like sqlx's (see [`crate::store::rows`]), so a record is
/// decoded by the same function whichever way it was read.
///
/// Columns are asked for by name; rusqlite finds a name by comparing it with every column
/// before it, which for a six-column item was a tenth of the read. The decoders read columns
/// in the order the statements select them, so the column after the last one read is tried
/// first, and the search is the fallback. (Every statement's column names are distinct, so
/// the first column of a name is the only one.)
pub(super) struct InOrder<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    next: Cell<usize>,
}

impl<'a, 'r> InOrder<'a, 'r> {
    pub(super) fn new(row: &'a rusqlite::Row<'r>) -> Self {
        Self {
            row,
            next: Cell::new(0),
        }
    }

    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> Result<T, sqlx::Error> {
        let statement: &rusqlite::Statement<'_> = self.row.as_ref();
        let guess = self.next.get();
        let at = if statement
            .column_name(guess)
            .is_ok_and(|name| name == column)
        {
            guess
        } else {
            statement.column_index(column).map_err(decode)?
        };
        self.next.set(at + 1);
        self.row.get(at).map_err(decode)
    }
}

impl StoreRow for InOrder<'_, '_> {
    fn text(&self, column: &str) -> Result<String, sqlx::Error> {
        self.get(column)
    }
    fn maybe_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.get(column)
    }
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        self.get(column)
    }
    fn maybe_flag(&self, column: &str) -> Result<Option<bool>, sqlx::Error> {
        self.get(column)
    }
    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.get(column)
    }
    fn maybe_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.get(column)
    }
    fn time(&self, column: &str) -> Result<Timestamp, sqlx::Error> {
        let text: String = self.get(column)?;
        Timestamp::parse(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
    }
    fn maybe_time(&self, column: &str) -> Result<Option<Timestamp>, sqlx::Error> {
        let text: Option<String> = self.get(column)?;
        text.map(|text| Timestamp::parse(&text).map_err(|err| sqlx::Error::Decode(Box::new(err))))
            .transpose()
    }
}

fn decode(err: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn url(dir: &tempfile::TempDir) -> String {
        format!("sqlite://{}", dir.path().join("rampart.db").display())
    }

    #[tokio::test]
    async fn the_read_connections_cannot_write() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&url(&dir))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let wrote = store.readers.read(|connection| {
            connection
                .execute("DELETE FROM users", [])
                .map_err(read_error)
        });
        assert!(wrote.is_err(), "a read connection deleted rows");
        let read = store.readers.read(|connection| {
            connection
                .query_row("SELECT count(*) FROM users", [], |row| row.get::<_, i64>(0))
                .map_err(read_error)
        });
        assert_eq!(read.ok(), Some(0));
    }

    #[tokio::test]
    async fn every_read_connection_is_handed_out_before_any_is_waited_for() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&url(&dir))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let held: Vec<_> = (1..store.readers.connections.len())
            .map(|_| store.readers.free())
            .collect();
        // One left: taking it must not wait on the held ones.
        let last = store
            .readers
            .connections
            .last()
            .map(|slot| slot.try_lock().is_ok());
        assert_eq!(last, Some(true));
        drop(held);
    }

    #[tokio::test]
    async fn an_in_memory_database_is_refused() {
        assert!(SqliteStore::open("sqlite::memory:").await.is_err());
    }
}
