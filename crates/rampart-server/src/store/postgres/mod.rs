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

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::rows::{
    access_changes, audit_from, ended_session, refresh_state_from, session_from, user_from,
};
use super::{
    bounded, AccessChanges, EndedSession, RefreshState, SessionRecord, Store, StoreError,
    StoreFuture, Tx, UserRecord, USER_COLUMNS,
};

mod items;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per node. Every statement is an indexed lookup, so a few connections serve
/// thousands of requests a second; the bound keeps N nodes under the server's own limit.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a pooled (or new) connection before it gets 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
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

/// A transaction on PostgreSQL.
struct PgTx {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// This transaction holds the audit table's append lock.
    audit_locked: bool,
}

/// The advisory lock role changes take in turn, on every node.
const ROLE_CHANGE_LOCK: i64 = 7_270_816;

impl PgTx {
    /// Serialises role changes across nodes (not other writes): both demotions of a last pair
    /// of admins read the count in turn, so one of them is refused.
    async fn role_changes_take_turns(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ROLE_CHANGE_LOCK)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// The chain's head, under a table lock that blocks other appends (from any node) until
    /// this transaction ends, but not readers.
    async fn audit_prev(&mut self) -> Result<String, StoreError> {
        if !self.audit_locked {
            sqlx::query("LOCK TABLE audit_events IN EXCLUSIVE MODE")
                .execute(&mut *self.tx)
                .await?;
            self.audit_locked = true;
        }
        let head: Option<String> = sqlx::query_scalar(super::tx::AUDIT_HEAD)
            .fetch_optional(&mut *self.tx)
            .await?;
        Ok(head.unwrap_or_else(|| crate::audit::chain::GENESIS.to_owned()))
    }
}

impl Tx for PgTx {
    super::tx::tx_statements!();

    fn commit(self: Box<Self>) -> StoreFuture<'static, ()> {
        bounded(async move {
            self.tx.commit().await?;
            Ok(())
        })
    }
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
    fn begin(&self) -> StoreFuture<'_, Box<dyn Tx>> {
        bounded(async move {
            let tx = self.pool.begin().await?;
            Ok(Box::new(PgTx {
                tx,
                audit_locked: false,
            }) as Box<dyn Tx>)
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

    fn session_is_live<'a>(
        &'a self,
        session_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, bool> {
        bounded(async move {
            let row = sqlx::query(
                "SELECT 1 FROM sessions
                 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $3",
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

    fn changes_since<'a>(&'a self, since: &'a str) -> StoreFuture<'a, AccessChanges> {
        bounded(async move {
            let ended = sqlx::query(
                "SELECT id, last_used_at FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at > $1",
            )
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
            let users = sqlx::query(
                "SELECT id, role, locked_at IS NOT NULL AS locked, password_hash FROM users WHERE updated_at > $1",
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
                "SELECT pg_sequence_last_value(pg_get_serial_sequence('audit_events', 'seq')::regclass)",
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
