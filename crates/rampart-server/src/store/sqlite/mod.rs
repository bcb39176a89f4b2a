//! The embedded default: SQLite through sqlx, one file, migrations compiled into the binary.
//!
//! Defends against lock contention turning into failures or hangs: WAL journaling lets readers
//! proceed during writes, a busy timeout bounds how long a statement waits for the write lock,
//! the pool is bounded, and acquiring a connection times out instead of queueing forever.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use rampart::Role;
use sqlx::Row;

use super::rows::{
    access_changes, audit_from, ended_session, refresh_state_from, session_from, user_from,
};
use super::{
    conflict, role_text, AccessChanges, EndedSession, NewSession, NewUser, RefreshState,
    RoleChange, Rotation, SessionRecord, Store, StoreError, StoreFuture, UserRecord, USER_COLUMNS,
};

mod items;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The newest audit row's hash, read once: appends are serialised by this lock (one
    /// process owns an SQLite file), so each is a single insert.
    audit_head: tokio::sync::Mutex<Option<String>>,
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
            audit_head: tokio::sync::Mutex::new(None),
        })
    }
}

impl Store for SqliteStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    fn create_user(&self, user: NewUser) -> StoreFuture<'_, UserRecord> {
        Box::pin(async move {
            let now = super::now();
            sqlx::query(
                "INSERT INTO users (id, email, email_key, username, username_key, password_hash, role, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&user.id)
            .bind(&user.email)
            .bind(&user.email_key)
            .bind(&user.username)
            .bind(&user.username_key)
            .bind(&user.password_hash)
            .bind(role_text(user.role))
            .bind(&now)
            .bind(&now)
            .execute(&self.pool)
            .await
            .map_err(conflict)?;
            Ok(UserRecord {
                id: user.id,
                email: user.email,
                username: user.username,
                password_hash: user.password_hash,
                role: user.role,
                locked: false,
                created_at: now,
            })
        })
    }

    fn find_user_by_login<'a>(&'a self, login_key: &'a str) -> StoreFuture<'a, Option<UserRecord>> {
        Box::pin(async move {
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
        Box::pin(async move {
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
        Box::pin(async move {
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

    fn set_password_hash<'a>(&'a self, id: &'a str, hash: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
                .bind(hash)
                .bind(super::now())
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn set_locked<'a>(&'a self, id: &'a str, locked: bool) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let now = super::now();
            let locked_at = locked.then_some(now.clone());
            sqlx::query("UPDATE users SET locked_at = ?, updated_at = ? WHERE id = ?")
                .bind(locked_at)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn set_role<'a>(&'a self, id: &'a str, role: Role) -> StoreFuture<'a, RoleChange> {
        Box::pin(async move {
            // IMMEDIATE takes the write lock at once: two role changes never both read the old
            // admin count.
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let change = super::change_role!(&mut tx, id, role);
            tx.commit().await?;
            Ok(change)
        })
    }

    fn create_session(&self, session: NewSession) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let now = super::now();
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&session.id)
            .bind(&session.user_id)
            .bind(&now)
            .bind(&now)
            .bind(&session.expires_at)
            .bind(&session.user_agent)
            .bind(&session.ip)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            )
            .bind(&session.refresh_hash)
            .bind(&session.id)
            .bind(&now)
            .bind(&session.refresh_expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn list_sessions<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
        Box::pin(async move {
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

    fn revoke_session<'a>(
        &'a self,
        user_id: &'a str,
        session_id: &'a str,
    ) -> StoreFuture<'a, Option<EndedSession>> {
        Box::pin(async move {
            let row = sqlx::query(
                "UPDATE sessions SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL
                 RETURNING id, last_used_at",
            )
            .bind(super::now())
            .bind(session_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(ended_session).transpose()
        })
    }

    fn revoke_user_sessions<'a>(
        &'a self,
        user_id: &'a str,
        keep: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<EndedSession>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "UPDATE sessions SET revoked_at = ?
                 WHERE user_id = ? AND revoked_at IS NULL AND (? IS NULL OR id <> ?)
                 RETURNING id, last_used_at",
            )
            .bind(super::now())
            .bind(user_id)
            .bind(keep)
            .bind(keep)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(ended_session).collect()
        })
    }

    fn revoked_sessions_since<'a>(&'a self, since: &'a str) -> StoreFuture<'a, Vec<EndedSession>> {
        Box::pin(async move {
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
        Box::pin(async move {
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

    fn rotate_refresh(&self, rotation: Rotation) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let now = super::now();
            let mut tx = self.pool.begin().await?;
            // The conditional UPDATE is the lock: of concurrent refreshes, exactly one matches.
            let spent = sqlx::query(
                "UPDATE refresh_tokens
                 SET spent_at = ?, successor_hash = ?, successor_sealed = ?, successor_jti = ?, successor_iat = ?
                 WHERE token_hash = ? AND spent_at IS NULL
                   AND EXISTS (SELECT 1 FROM sessions WHERE id = ? AND revoked_at IS NULL)",
            )
            .bind(&now)
            .bind(&rotation.successor_hash)
            .bind(&rotation.successor_sealed)
            .bind(&rotation.successor_jti)
            .bind(rotation.successor_iat)
            .bind(&rotation.spent_hash)
            .bind(&rotation.session_id)
            .execute(&mut *tx)
            .await?;
            if spent.rows_affected() != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
                .bind(&rotation.successor_hash)
                .bind(&rotation.session_id)
                .bind(&now)
                .bind(&rotation.successor_expires_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE sessions SET last_used_at = ? WHERE id = ?")
                .bind(&now)
                .bind(&rotation.session_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn append_audit<'a>(
        &'a self,
        mut event: crate::audit::StoredEvent,
        key: &'a crate::audit::chain::ChainKey,
    ) -> StoreFuture<'a, super::Appended> {
        Box::pin(async move {
            let mut head = self.audit_head.lock().await;
            let prev_hash = match head.as_ref() {
                Some(hash) => hash.clone(),
                None => sqlx::query("SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|row| row.try_get("hash"))
                    .transpose()?
                    .unwrap_or_else(|| crate::audit::chain::GENESIS.to_owned()),
            };
            event.prev_hash = prev_hash;
            crate::audit::chain::KEYED.clone_into(&mut event.alg);
            event.hash = key.seal(&event.prev_hash, &event);
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO audit_events (id, at, kind, user_id, ip, request_id, detail, alg, prev_hash, hash)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            )
            .bind(&event.id)
            .bind(&event.at)
            .bind(&event.kind)
            .bind(&event.user_id)
            .bind(&event.ip)
            .bind(&event.request_id)
            .bind(event.detail.to_string())
            .bind(&event.alg)
            .bind(&event.prev_hash)
            .bind(&event.hash)
            .fetch_one(&self.pool)
            .await?;
            *head = Some(event.hash.clone());
            Ok(super::Appended {
                seq,
                prev_hash: event.prev_hash,
                hash: event.hash,
            })
        })
    }

    fn changes_since<'a>(&'a self, since: &'a str) -> StoreFuture<'a, AccessChanges> {
        Box::pin(async move {
            let ended = sqlx::query(
                "SELECT id, last_used_at FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at > ?",
            )
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            let users = sqlx::query(
                "SELECT id, role, locked_at IS NOT NULL AS locked FROM users WHERE updated_at > ?",
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

    fn audit_page(
        &self,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<crate::audit::StoredEvent>> {
        Box::pin(async move {
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
        Box::pin(async move {
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
