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

use super::rows::{
    access_changes, audit_from, ended_session, refresh_state_from, session_from, user_from,
};
use super::{
    bounded, AccessChanges, EndedSession, RefreshState, SessionRecord, Store, StoreError,
    StoreFuture, Tx, UserRecord, USER_COLUMNS,
};

mod items;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// This process's writers queue here, one at a time, before `BEGIN IMMEDIATE` (the file
    /// takes one writer anyway): waiting on a lock is cheaper than SQLite's busy retries.
    writers: Arc<tokio::sync::Mutex<()>>,
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
        let file = options.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            rampart::keys::create_private_dir(dir).map_err(StoreError::Location)?;
        }
        // SQLite would create the file with the umask's mode (often world-readable), and gives
        // its -wal/-shm files the database file's mode. It holds password and refresh-token
        // hashes, so create it owner-only first.
        if file != std::path::Path::new(":memory:") && !file.exists() {
            let mut create = std::fs::OpenOptions::new();
            create.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
            match create.open(file) {
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
        Ok(Self {
            pool,
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

    fn find_user_by_login<'a>(&'a self, login_key: &'a str) -> StoreFuture<'a, Option<UserRecord>> {
        bounded(async move {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email_key = ?1 OR username_key = ?1"
            );
            let row = sqlx::query(&sql)
                .bind(login_key)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.as_ref().map(user_from).transpose()?)
        })
    }

    fn find_user<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<UserRecord>> {
        bounded(async move {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
            let row = sqlx::query(&sql)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.as_ref().map(user_from).transpose()?)
        })
    }

    fn list_users<'a>(
        &'a self,
        after: Option<&'a str>,
        rows: usize,
    ) -> StoreFuture<'a, Vec<UserRecord>> {
        bounded(async move {
            // Two statements so the primary key is seeked, not scanned (see `list_items`).
            let seek = format!("SELECT {USER_COLUMNS} FROM users WHERE id > ? ORDER BY id LIMIT ?");
            let first = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT ?");
            let query = match after {
                Some(after) => sqlx::query(&seek).bind(after),
                None => sqlx::query(&first),
            };
            let found = query.bind(items::limit(rows)).fetch_all(&self.pool).await?;
            Ok(found.iter().map(user_from).collect::<Result<_, _>>()?)
        })
    }

    fn list_sessions<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
        bounded(async move {
            let rows = sqlx::query(
                "SELECT id, created_at, last_used_at, user_agent FROM sessions
                 WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?
                 ORDER BY created_at DESC LIMIT 1000",
            )
            .bind(user_id)
            .bind(super::now())
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(session_from).collect()
        })
    }

    fn session_is_live<'a>(
        &'a self,
        session_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, bool> {
        bounded(async move {
            let row = sqlx::query(
                "SELECT 1 FROM sessions
                 WHERE id = ? AND user_id = ? AND revoked_at IS NULL AND expires_at > ?",
            )
            .bind(session_id)
            .bind(user_id)
            .bind(super::now())
            .fetch_optional(&self.pool)
            .await?;
            Ok(row.is_some())
        })
    }

    fn revoked_sessions_since<'a>(&'a self, since: &'a str) -> StoreFuture<'a, Vec<EndedSession>> {
        bounded(async move {
            let rows = sqlx::query(
                "SELECT id, last_used_at FROM sessions
                 WHERE revoked_at IS NOT NULL AND last_used_at > ?",
            )
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(ended_session).collect()
        })
    }

    fn refresh_state<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<RefreshState>> {
        bounded(async move {
            let row = sqlx::query(
                "SELECT r.session_id, s.user_id, r.expires_at, r.spent_at, r.successor_sealed,
                        r.successor_jti, r.successor_iat, n.expires_at AS successor_expires_at,
                        (s.revoked_at IS NULL AND u.locked_at IS NULL) AS session_live,
                        s.expires_at AS session_expires_at
                 FROM refresh_tokens r
                 JOIN sessions s ON s.id = r.session_id
                 JOIN users u ON u.id = s.user_id
                 LEFT JOIN refresh_tokens n ON n.token_hash = r.successor_hash
                 WHERE r.token_hash = ?",
            )
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            refresh_state_from(&row).map(Some)
        })
    }

    fn changes_since<'a>(&'a self, since: &'a str) -> StoreFuture<'a, AccessChanges> {
        bounded(async move {
            let ended = sqlx::query(
                "SELECT id, last_used_at FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at > ?",
            )
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            let users = sqlx::query(
                "SELECT id, role, locked_at IS NOT NULL AS locked, password_hash FROM users WHERE updated_at > ?",
            )
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            access_changes(&ended, &users)
        })
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn pool_status(&self) -> super::PoolStatus {
        super::PoolStatus::of(&self.pool)
    }

    fn sample_password_hashes(&self, limit: u32) -> StoreFuture<'_, Vec<String>> {
        bounded(async move {
            Ok(sqlx::query_scalar(super::SAMPLE_PASSWORD_HASHES)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
        })
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

    fn audit_page(
        &self,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<crate::audit::StoredEvent>> {
        bounded(async move {
            // Seeks the rowid from the cursor instead of scanning down to it.
            let rows = sqlx::query(
                "SELECT seq, id, at, kind, user_id, ip, request_id, detail, alg, prev_hash, hash FROM audit_events
                 WHERE seq < ? ORDER BY seq DESC LIMIT ?",
            )
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(audit_from).collect()
        })
    }

    fn audit_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<crate::audit::StoredEvent>> {
        bounded(async move {
            let rows = sqlx::query(
                "SELECT seq, id, at, kind, user_id, ip, request_id, detail, alg, prev_hash, hash FROM audit_events
                 WHERE seq > ? ORDER BY seq ASC LIMIT ?",
            )
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(audit_from).collect()
        })
    }
}
