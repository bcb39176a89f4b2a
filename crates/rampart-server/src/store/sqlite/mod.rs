//! The embedded default: SQLite through sqlx, one file, migrations compiled into the binary.
//!
//! Defends against lock contention turning into failures or hangs: WAL journaling lets readers
//! proceed during writes, a busy timeout bounds how long a statement waits for the write lock,
//! the pool is bounded, and acquiring a connection times out instead of queueing forever.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::{bounded, Store, StoreError, StoreFuture, Tx};
use reader::Readers;

mod reader;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    /// The point reads' own connections (see [`reader`]).
    readers: Readers,
    /// This process's writers queue here, one at a time, before `BEGIN IMMEDIATE` (the file
    /// takes one writer anyway): waiting on a lock is cheaper than SQLite's busy retries.
    writers: Arc<tokio::sync::Mutex<()>>,
}

/// Says which backend, nothing of its options.
impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

/// A transaction on the SQLite file, holding the writer's lock from its start.
struct SqliteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl SqliteTx {
    /// `BEGIN IMMEDIATE` already makes writers take turns.
    #[allow(clippy::unused_async)] // the same call as PostgreSQL's, which does wait
    async fn role_changes_take_turns(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Nothing to hold: `BEGIN IMMEDIATE` makes every writing transaction take turns with
    /// this one, revocations included.
    #[allow(clippy::unused_async)] // the same call as PostgreSQL's, which does wait
    async fn hold_session(&mut self, _session_id: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// The chain's head, read inside the transaction: other processes (the CLI beside a
    /// running server) append to the same file, so no copy of it is kept between
    /// transactions. `BEGIN IMMEDIATE` holds the file's write lock, so it cannot move before
    /// this transaction's row is in.
    async fn audit_prev(&mut self) -> Result<String, StoreError> {
        let head: Option<String> = sqlx::query_scalar(super::tx::AUDIT_HEAD)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(head.unwrap_or_else(|| crate::audit::chain::GENESIS.to_owned()))
    }
}

impl Tx for SqliteTx {
    super::tx::tx_statements!();
    super::factors::factor_statements!();
    super::roles::role_statements!();

    fn commit(self: Box<Self>) -> StoreFuture<'static, ()> {
        bounded(async move {
            self.tx.commit().await?;
            Ok(())
        })
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and runs pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let file = options.get_filename().to_path_buf();
        if file.as_path() == std::path::Path::new(":memory:") {
            // Each connection would hold a database of its own.
            return Err(StoreError::Failed(
                "the SQLite store needs a file; an in-memory database is not supported".into(),
            ));
        }
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            rampart::keys::create_private_dir(dir).map_err(StoreError::Location)?;
        }
        // SQLite would create the file with the umask's mode (often world-readable), and gives
        // its -wal/-shm files the database file's mode. It holds password and refresh-token
        // hashes, so create it owner-only first.
        if !file.exists() {
            let mut create = std::fs::OpenOptions::new();
            create.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
            match create.open(&file) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::Location(e)),
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let readers = Readers::open(&file)?;
        Ok(Self {
            pool,
            readers,
            writers: Arc::default(),
        })
    }
}

impl Store for SqliteStore {
    fn begin(&self) -> StoreFuture<'_, Box<dyn Tx>> {
        bounded(async move {
            // This process's turn first, then the file's write lock: every writer takes them
            // in this order, so none waits on another holding the second.
            let turn = Arc::clone(&self.writers).lock_owned().await;
            let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            Ok(Box::new(SqliteTx { tx, _turn: turn }) as Box<dyn Tx>)
        })
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        bounded(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    super::reads::read_statements!();

    fn find_user_by_login<'a>(
        &'a self,
        login_key: &'a str,
    ) -> StoreFuture<'a, Option<super::UserRecord>> {
        answered(
            self.readers
                .one(super::reads::USER_BY_LOGIN, &[&login_key], |row| {
                    Ok(super::rows::user_from(row)?)
                }),
        )
    }

    fn find_user<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<super::UserRecord>> {
        answered(self.readers.one(super::reads::USER_BY_ID, &[&id], |row| {
            Ok(super::rows::user_from(row)?)
        }))
    }

    fn session_is_live<'a>(
        &'a self,
        session_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, bool> {
        let now = super::now().to_string();
        let found = self.readers.one(
            super::reads::SESSION_IS_LIVE,
            &[&session_id, &user_id, &now],
            |_| Ok(()),
        );
        answered(found.map(|row| row.is_some()))
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn pool_status(&self) -> super::PoolStatus {
        super::PoolStatus::of(&self.pool)
    }

    fn chain_evidence(&self) -> StoreFuture<'_, super::ChainEvidence> {
        bounded(async move {
            let sql = super::chain_evidence_sql(
                "SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'",
            );
            let row = sqlx::query(&sql).fetch_one(&self.pool).await?;
            Ok(super::chain_evidence_from(&row)?)
        })
    }
}

/// An answer already in hand, as the store's future (an inline read has nothing to wait on).
fn answered<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

impl super::ItemStore for SqliteStore {
    super::items::item_writes!();

    fn owned_item<'a>(
        &'a self,
        owner: &'a super::Owner,
        id: &'a str,
    ) -> StoreFuture<'a, Option<super::ItemRecord>> {
        answered(
            self.readers
                .one(super::items::OWNED_ITEM, &[&id, &owner.id()], |row| {
                    super::rows::item_from(row)
                }),
        )
    }

    fn list_items<'a>(
        &'a self,
        owner: &'a super::Owner,
        before: Option<&'a str>,
        rows: usize,
    ) -> StoreFuture<'a, Vec<super::ItemRecord>> {
        let limit = super::limit(rows);
        answered(match before {
            Some(before) => self.readers.all(
                super::items::ITEM_PAGE_AFTER,
                &[&owner.id(), &before, &limit],
                |row| super::rows::item_from(row),
            ),
            None => self.readers.all(
                super::items::ITEM_PAGE_FIRST,
                &[&owner.id(), &limit],
                |row| super::rows::item_from(row),
            ),
        })
    }

    fn item_exists<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        let found = self
            .readers
            .one(super::items::ITEM_EXISTS, &[&id], |_| Ok(()));
        answered(found.map(|row| row.is_some()))
    }
}
