//! PostgreSQL through sqlx: the store several nodes share.
//!
//! Defends against one node's outage or overload becoming a hang or a leak: the pool is
//! bounded, acquiring a connection times out, and every session sets a statement timeout, a
//! lock timeout and an idle-in-transaction timeout, so no request holds a connection or a lock
//! for long. A database that goes away is a 503 (see [`super::StoreError::is_busy`]); broken
//! connections are dropped and new ones opened on demand, and a connection that sat idle is
//! pinged before reuse, so service resumes within a moment of the database's return, with no
//! restart and no trail of failures on dead connections. Audit appends from every node are serialised by a table lock in
//! the appending transaction, so the hash chain stays linear.

use std::str::FromStr;
use std::time::Duration;

use rampart::Role;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

use super::rows::{
    access_changes, audit_from, ended_session, refresh_state_from, session_from, user_from,
};
use super::{
    conflict, role_text, AccessChanges, EndedSession, NewSession, NewUser, RefreshState,
    RoleChange, Rotation, SessionRecord, Store, StoreError, StoreFuture, UserRecord, USER_COLUMNS,
};

mod items;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per node. Every statement is an indexed lookup, so a few connections serve
/// thousands of requests a second; the bound keeps N nodes under the server's own limit.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a pooled (or new) connection before it gets 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest any one store call may take, whatever the database does: a paused or
/// unreachable server stops answering without closing anything, and the server-side statement
/// timeout cannot fire there. Past it the call fails as busy (503) and its connection is
/// dropped (sqlx checks it before reuse).
const CALL_DEADLINE: Duration = Duration::from_secs(6);

/// Boxes a store call under [`CALL_DEADLINE`].
fn bounded<'a, T: Send + 'a>(
    call: impl std::future::Future<Output = Result<T, StoreError>> + Send + 'a,
) -> StoreFuture<'a, T> {
    Box::pin(async move {
        tokio::time::timeout(CALL_DEADLINE, call)
            .await
            .unwrap_or(Err(StoreError::Deadline(CALL_DEADLINE)))
    })
}

/// A pooled connection idle this long is pinged before it is used again. Shorter than any
/// restart, so no connection a restart killed is handed to a request unchecked; longer than
/// the gaps between requests under load, where the ping would double the round trips.
const PING_AFTER_IDLE: Duration = Duration::from_millis(100);
/// Per-session limits, sent at connect time.
const SESSION_LIMITS: [(&str, &str); 3] = [
    ("statement_timeout", "5s"),
    ("lock_timeout", "5s"),
    ("idle_in_transaction_session_timeout", "10s"),
];

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects and runs pending migrations (serialised across nodes by sqlx's advisory lock).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("rampart")
            .options(SESSION_LIMITS);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping before every checkout (it would double the round trips under load), but
            // one before reusing a connection that sat idle: after a database restart every
            // idle connection is dead, and each would otherwise fail the request (or the
            // revocation poll) that drew it, one at a time. A failed ping closes it and a
            // fresh one is opened in its place.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for < PING_AFTER_IDLE {
                        return Ok(true);
                    }
                    sqlx::Connection::ping(connection).await?;
                    Ok(true)
                })
            })
            .idle_timeout(Duration::from_secs(300))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

impl Store for PostgresStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        bounded(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    fn create_user(&self, user: NewUser) -> StoreFuture<'_, UserRecord> {
        bounded(async move {
            let now = super::now();
            sqlx::query(
                "INSERT INTO users (id, email, email_key, username, username_key, password_hash, role, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        bounded(async move {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE email_key = $1 OR username_key = $1"
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
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
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
            let seek =
                format!("SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2");
            let first = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT $1");
            let query = match after {
                Some(after) => sqlx::query(&seek).bind(after),
                None => sqlx::query(&first),
            };
            let found = query.bind(items::limit(rows)).fetch_all(&self.pool).await?;
            Ok(found.iter().map(user_from).collect::<Result<_, _>>()?)
        })
    }

    fn set_password_hash<'a>(&'a self, id: &'a str, hash: &'a str) -> StoreFuture<'a, ()> {
        bounded(async move {
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(hash)
                .bind(super::now())
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn set_locked<'a>(&'a self, id: &'a str, locked: bool) -> StoreFuture<'a, ()> {
        bounded(async move {
            let now = super::now();
            let locked_at = locked.then_some(now.clone());
            sqlx::query("UPDATE users SET locked_at = $1, updated_at = $2 WHERE id = $3")
                .bind(locked_at)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn set_role<'a>(&'a self, id: &'a str, role: Role) -> StoreFuture<'a, RoleChange> {
        bounded(async move {
            let mut tx = self.pool.begin().await?;
            // Serialises role changes across nodes (not other writes): both demotions of a
            // last pair of admins read the count in turn, so one of them is refused.
            sqlx::query("SELECT pg_advisory_xact_lock(7270816)")
                .execute(&mut *tx)
                .await?;
            let change = super::change_role!(&mut tx, id, role);
            tx.commit().await?;
            Ok(change)
        })
    }

    fn create_session(&self, session: NewSession) -> StoreFuture<'_, ()> {
        bounded(async move {
            let now = super::now();
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
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
        bounded(async move {
            let rows = sqlx::query(
                "SELECT id, created_at, last_used_at, user_agent FROM sessions
                 WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
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
        bounded(async move {
            let row = sqlx::query(
                "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL
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
        bounded(async move {
            let rows = sqlx::query(
                "UPDATE sessions SET revoked_at = $1
                 WHERE user_id = $2 AND revoked_at IS NULL AND ($3::text IS NULL OR id <> $3)
                 RETURNING id, last_used_at",
            )
            .bind(super::now())
            .bind(user_id)
            .bind(keep)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(ended_session).collect()
        })
    }

    fn revoked_sessions_since<'a>(&'a self, since: &'a str) -> StoreFuture<'a, Vec<EndedSession>> {
        bounded(async move {
            let rows = sqlx::query(
                "SELECT id, last_used_at FROM sessions
                 WHERE revoked_at IS NOT NULL AND last_used_at > $1",
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
                 WHERE r.token_hash = $1",
            )
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            refresh_state_from(&row).map(Some)
        })
    }

    fn rotate_refresh(&self, rotation: Rotation) -> StoreFuture<'_, bool> {
        bounded(async move {
            let now = super::now();
            let mut tx = self.pool.begin().await?;
            // The conditional UPDATE is the lock: of concurrent refreshes, exactly one matches.
            let spent = sqlx::query(
                "UPDATE refresh_tokens
                 SET spent_at = $1, successor_hash = $2, successor_sealed = $3, successor_jti = $4, successor_iat = $5
                 WHERE token_hash = $6 AND spent_at IS NULL
                   AND EXISTS (SELECT 1 FROM sessions WHERE id = $7 AND revoked_at IS NULL)",
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
            sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(&rotation.successor_hash)
                .bind(&rotation.session_id)
                .bind(&now)
                .bind(&rotation.successor_expires_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE id = $2")
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
        bounded(async move {
            let mut tx = self.pool.begin().await?;
            // EXCLUSIVE blocks other appends (from any node) until commit, not readers.
            sqlx::query("LOCK TABLE audit_events IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            event.prev_hash =
                sqlx::query("SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|row| row.try_get("hash"))
                    .transpose()?
                    .unwrap_or_else(|| crate::audit::chain::GENESIS.to_owned());
            crate::audit::chain::KEYED.clone_into(&mut event.alg);
            event.hash = key.seal(&event.prev_hash, &event);
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO audit_events (id, at, kind, user_id, ip, request_id, detail, alg, prev_hash, hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq",
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
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(super::Appended {
                seq,
                prev_hash: event.prev_hash,
                hash: event.hash,
            })
        })
    }

    fn changes_since<'a>(&'a self, since: &'a str) -> StoreFuture<'a, AccessChanges> {
        bounded(async move {
            let ended = sqlx::query(
                "SELECT id, last_used_at FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at > $1",
            )
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            let users = sqlx::query(
                "SELECT id, role, locked_at IS NOT NULL AS locked FROM users WHERE updated_at > $1",
            )
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            access_changes(&ended, &users)
        })
    }

    fn is_shared(&self) -> bool {
        true
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
                 WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
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
                 WHERE seq > $1 ORDER BY seq ASC LIMIT $2",
            )
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(audit_from).collect()
        })
    }
}
