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

use super::{bounded, Store, StoreError, StoreFuture, Tx};

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

#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

/// Says which backend, nothing of its options (the URL may carry a password).
impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStore")
    }
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

    /// Holds the acting session's row until this transaction ends, so a revocation of it
    /// (logout, logout-all) and this transaction take turns: the revocation waits for this
    /// one, or this one waits for the revocation and then sees it. The check that follows
    /// reads afresh (read committed), after the wait.
    async fn hold_session(&mut self, session_id: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM sessions WHERE id = $1 FOR SHARE")
            .bind(session_id)
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
    super::factors::factor_statements!();
    super::roles::role_statements!();

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

    super::reads::read_statements!();
    super::reads::point_reads!();

    fn is_shared(&self) -> bool {
        true
    }

    fn pool_status(&self) -> super::PoolStatus {
        super::PoolStatus::of(&self.pool)
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
}

impl super::ItemStore for PostgresStore {
    super::items::item_writes!();
    super::items::item_reads!();
}
