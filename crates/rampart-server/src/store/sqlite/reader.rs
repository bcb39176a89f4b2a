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

use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, Statement};

use crate::store::rows::StoreRow;
use crate::store::{StoreError, Timestamp};

/// How long a read waits on a lock SQLite holds (a checkpoint, recovery after a crash); in WAL
/// mode readers otherwise never wait.
const BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// The read-only connections of one database file.
pub(super) struct Readers {
    connections: Box<[Mutex<Reader>]>,
}

/// One read-only connection, and what it has learnt of the statements it ran.
struct Reader {
    connection: Connection,
    /// The statements (by the address and length of their text, which is `'static` and so
    /// never changes) whose parameters are `$1..$n` in order and whose columns their decoder
    /// read in the order they are selected. Those bind by position and read by position,
    /// without comparing a name (see [`InOrder`]).
    in_order: Vec<(usize, usize)>,
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
                Ok(Mutex::new(Reader {
                    connection,
                    in_order: Vec::new(),
                }))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Self {
            connections: connections.into_boxed_slice(),
        })
    }

    /// Runs `read` on a free connection (waiting for the first one only when all are busy).
    #[cfg(test)]
    fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        read(&self.free().connection)
    }

    /// The first row `sql` finds with `params` (`$1`, `$2`, ... in that order), decoded.
    pub(super) fn one<T>(
        &self,
        sql: &'static str,
        params: &[&dyn ToSql],
        decode: impl FnOnce(&InOrder<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut decode = Some(decode);
        let mut found = None;
        self.query(sql, params, |row| {
            found = decode.take().map(|decode| decode(row)).transpose()?;
            Ok(false)
        })?;
        Ok(found)
    }

    /// Every row `sql` finds with `params`, decoded.
    pub(super) fn all<T>(
        &self,
        sql: &'static str,
        params: &[&dyn ToSql],
        decode: impl Fn(&InOrder<'_, '_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut found = Vec::new();
        self.query(sql, params, |row| {
            found.push(decode(row)?);
            Ok(true)
        })?;
        Ok(found)
    }

    /// Runs `sql` on a free connection and hands each row to `each` while it returns `true`.
    fn query(
        &self,
        sql: &'static str,
        params: &[&dyn ToSql],
        mut each: impl FnMut(&InOrder<'_, '_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut reader = self.free();
        let Reader {
            connection,
            in_order,
        } = &mut *reader;
        let key = (sql.as_ptr() as usize, sql.len());
        let known = in_order.contains(&key);
        let mut statement = connection.prepare_cached(sql).map_err(read_error)?;
        let by_position = known || parameters_in_order(&statement, params.len());
        // Names for a statement that numbers its parameters out of order (none does today):
        // bound by name, it still reads right, only without the shortcut.
        let labels: Vec<String> = if by_position {
            Vec::new()
        } else {
            (1..=params.len()).map(|n| format!("${n}")).collect()
        };
        let mut rows = if by_position {
            statement.query(rusqlite::params_from_iter(params))
        } else {
            let named: Vec<(&str, &dyn ToSql)> = labels
                .iter()
                .map(String::as_str)
                .zip(params.iter().copied())
                .collect();
            statement.query(named.as_slice())
        }
        .map_err(read_error)?;
        let mut columns_in_order = !known;
        let mut decoded = false;
        while let Some(row) = rows.next().map_err(read_error)? {
            let row = InOrder::new(row, known);
            let more = each(&row)?;
            decoded = true;
            columns_in_order &= row.guessed_right.get();
            if !more {
                break;
            }
        }
        if !known && by_position && decoded && columns_in_order {
            in_order.push(key);
        }
        Ok(())
    }

    fn free(&self) -> MutexGuard<'_, Reader> {
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
fn read_error(err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Failed(err.to_string()),
    }
}

/// Whether `statement`'s `count` parameters are named `$1..$n` in that order, so binding by
/// position binds each where its name says. (SQLite numbers `$name` parameters in the order
/// they first appear.)
fn parameters_in_order(statement: &Statement<'_>, count: usize) -> bool {
    statement.parameter_count() == count
        && (1..=count).all(|n| {
            statement
                .parameter_name(n)
                .and_then(|name| name.strip_prefix('$'))
                .is_some_and(|number| number.parse() == Ok(n))
        })
}

/// A row of these connections, read like sqlx's (see [`crate::store::rows`]), so a record is
/// decoded by the same function whichever way it was read.
///
/// Columns are asked for by name, and the decoders read them in the order the statements
/// select them. The first time a connection runs a statement, each column's name is compared
/// with the name asked for (the column after the last one read is tried first, and a search
/// by name is the fallback); once a decode found every column where it expected, that
/// connection reads the statement's columns by position. Comparing the names on every row cost
/// a tenth of an item read. (Decoders read every column of a row, unconditionally, so one
/// decode's order is every decode's; debug builds, the tests', still compare every name.)
pub(super) struct InOrder<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    next: Cell<usize>,
    /// The statement's columns are known to be in the order they are read.
    known: bool,
    /// Every name compared so far was at the column guessed.
    guessed_right: Cell<bool>,
}

impl<'a, 'r> InOrder<'a, 'r> {
    fn new(row: &'a rusqlite::Row<'r>, known: bool) -> Self {
        Self {
            row,
            next: Cell::new(0),
            known,
            guessed_right: Cell::new(true),
        }
    }

    fn column(&self, column: &str) -> Result<usize, sqlx::Error> {
        let statement: &rusqlite::Statement<'_> = self.row.as_ref();
        let guess = self.next.get();
        let at = if self.known {
            debug_assert_eq!(statement.column_name(guess).ok(), Some(column));
            guess
        } else if statement
            .column_name(guess)
            .is_ok_and(|name| name == column)
        {
            guess
        } else {
            self.guessed_right.set(false);
            statement.column_index(column).map_err(decode)?
        };
        self.next.set(at + 1);
        Ok(at)
    }

    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> Result<T, sqlx::Error> {
        let at = self.column(column)?;
        self.row.get(at).map_err(decode)
    }

    /// A text column, borrowed from the row rather than copied out of it.
    fn with_text<T>(
        &self,
        column: &str,
        read: impl FnOnce(Option<&str>) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let at = self.column(column)?;
        let value = self.row.get_ref(at).map_err(decode)?;
        read(
            value
                .as_str_or_null()
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?,
        )
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
        self.maybe_time(column)?.ok_or_else(|| {
            sqlx::Error::Decode(format!("{column} is NULL where a time was expected").into())
        })
    }
    fn maybe_time(&self, column: &str) -> Result<Option<Timestamp>, sqlx::Error> {
        self.with_text(column, |text| {
            text.map(|text| {
                Timestamp::parse(text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
            })
            .transpose()
        })
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

    /// Whether `sql` reads by position on the connection that ran it last.
    fn known(store: &SqliteStore, sql: &'static str) -> bool {
        let key = (sql.as_ptr() as usize, sql.len());
        store.readers.connections.iter().any(|slot| {
            slot.lock()
                .is_ok_and(|reader| reader.in_order.contains(&key))
        })
    }

    #[tokio::test]
    async fn parameters_numbered_out_of_order_are_still_bound_by_name() {
        const SQL: &str = "SELECT $2 AS second, $1 AS first";
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&url(&dir))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            let read = store.readers.one(SQL, &[&"one", &"two"], |row| {
                Ok((row.text("second")?, row.text("first")?))
            });
            assert_eq!(read.ok().flatten(), Some(("two".into(), "one".into())));
        }
        assert!(!known(&store, SQL));
    }

    #[tokio::test]
    async fn columns_read_out_of_order_are_always_found_by_name() {
        const SKIPS: &str = "SELECT 'a' AS a, 'b' AS b, 'c' AS c";
        const BACKWARDS: &str = "SELECT 'x' AS x, 'y' AS y";
        const IN_ORDER: &str = "SELECT $1 AS p, 'q' AS q";
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = SqliteStore::open(&url(&dir))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..3 {
            let skipped = store
                .readers
                .one(SKIPS, &[], |row| Ok((row.text("a")?, row.text("c")?)));
            assert_eq!(skipped.ok().flatten(), Some(("a".into(), "c".into())));
            let backwards = store
                .readers
                .one(BACKWARDS, &[], |row| Ok((row.text("y")?, row.text("x")?)));
            assert_eq!(backwards.ok().flatten(), Some(("y".into(), "x".into())));
            let in_order = store.readers.one(IN_ORDER, &[&"p"], |row| {
                Ok((row.text("p")?, row.text("q")?))
            });
            assert_eq!(in_order.ok().flatten(), Some(("p".into(), "q".into())));
        }
        assert!(!known(&store, SKIPS));
        assert!(!known(&store, BACKWARDS));
        assert!(known(&store, IN_ORDER));
    }

    #[tokio::test]
    async fn an_in_memory_database_is_refused() {
        assert!(SqliteStore::open("sqlite::memory:").await.is_err());
    }
}
