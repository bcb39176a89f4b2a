//! Persistence behind traits, one module per backend: [`sqlite`] (the embedded default, one
//! node) and [`postgres`] (several nodes sharing one database).
//!
//! Defends against injection and backend lock-in: every query is a parameterised `sqlx::query`
//! (client input is never spliced into SQL), and handlers see only the [`Store`] trait, so each
//! backend is a module rather than `if postgres` branches in every method. Store errors carry
//! the backend's message for the log only; handlers turn them into a generic 500, or a 503 when
//! the database is saturated or unreachable, so an outage never leaks internals.
//!
//! No request can hold a connection for long: every statement is an indexed lookup or an
//! indexed page of at most 101 rows, lock waits and statements are cut by timeouts, and waits
//! for a pooled connection at the acquire timeout, after which the caller gets 503 and the
//! connection is free again.

mod error;
mod factors;
pub mod items;
pub mod postgres;
mod reads;
mod roles;
mod rows;
pub mod sqlite;
mod timestamp;
pub mod tx;

pub use error::{StoreError, Taken};
pub use items::{ItemChanges, ItemRecord, ItemStore, NewItem, Owner};
pub use timestamp::Timestamp;
pub use tx::Tx;

use std::future::Future;
use std::pin::Pin;

use rampart::Role;
use secrecy::{ExposeSecret, SecretString};

/// A boxed store future, so stores can be used as `Arc<dyn Store>`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A stored user. The password hash never leaves the service: response types are built from
/// the fields they need, never by serialising this.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: String,
    pub email: String,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub locked: bool,
    /// A confirmed second factor (TOTP) guards the account's logins.
    pub mfa: bool,
    /// The user proved they read mail at `email`.
    pub email_verified: bool,
    pub created_at: Timestamp,
}

/// A user to create. Built by the service from parsed [`crate::domain`] values only.
#[derive(Debug)]
pub struct NewUser {
    pub id: String,
    pub email: String,
    pub email_key: String,
    pub username: String,
    pub username_key: String,
    pub password_hash: String,
    pub role: Role,
}

/// A session to open, with what its holder keeps.
#[derive(Debug)]
pub struct NewSession {
    pub id: String,
    pub user_id: String,
    pub user_agent: Option<String>,
    pub ip: String,
    /// Absolute end of the session.
    pub expires_at: Timestamp,
    pub held_by: SessionHold,
}

/// What holds a session: an API client's first refresh token, or a browser's cookie (each
/// stored only as a SHA-256).
#[derive(Debug)]
pub enum SessionHold {
    Refresh { hash: String, expires_at: Timestamp },
    Cookie { hash: String },
}

/// An account's TOTP as stored: the secret sealed (see `service::mfa::factor`), whether it is
/// confirmed, and the newest 30-second step whose code was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub sealed_secret: String,
    pub confirmed: bool,
    pub last_step: i64,
}

/// A login's second step, opened by a correct password for an account with MFA.
#[derive(Debug)]
pub struct NewChallenge {
    /// SHA-256 of the opaque token the client holds.
    pub token_hash: String,
    pub user_id: String,
    /// SHA-256 of the password hash the password was verified against.
    pub credential: String,
    pub expires_at: Timestamp,
}

/// A stored challenge (read only while it has not expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub user_id: String,
    pub credential: String,
    pub failures: i64,
}

/// The second factor that completes a login or confirms a removal, spent in the transaction
/// that acts on it, so it works once whatever runs concurrently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecondFactor {
    /// A TOTP code of this 30-second step: accepted only after every step accepted before.
    Totp { step: i64 },
    /// An unused recovery code, by its SHA-256.
    Recovery { code_hash: String },
}

/// What a mailed link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    Reset,
    Verify,
}

impl LinkPurpose {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Verify => "verify",
        }
    }
}

/// A mailed link's token to store (only its hash).
#[derive(Debug)]
pub struct NewEmailToken {
    pub token_hash: String,
    pub user_id: String,
    pub purpose: LinkPurpose,
    /// The address it is sent to.
    pub email: String,
    pub expires_at: Timestamp,
}

/// A mailed link's token as stored (read only while unexpired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailTokenRecord {
    pub user_id: String,
    pub email: String,
}

/// A session that was just revoked (or was revoked recently, when loaded at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    pub id: String,
    /// When the session last issued an access token (its login or latest refresh): its tokens
    /// expire at the latest one access-token lifetime after this.
    pub last_used_at: Timestamp,
}

/// A live session as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub user_agent: Option<String>,
}

/// A refresh token's row with what deciding on it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    pub session_id: String,
    pub user_id: String,
    pub expires_at: Timestamp,
    pub spent_at: Option<Timestamp>,
    pub successor_sealed: Option<String>,
    pub successor_jti: Option<String>,
    pub successor_iat: Option<i64>,
    pub successor_expires_at: Option<Timestamp>,
    /// The successor has itself been presented (and spent).
    pub successor_spent: bool,
    pub session_live: bool,
    pub session_expires_at: Timestamp,
}

/// A user whose role or lock changed (what other nodes must re-apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedUser {
    pub id: String,
    pub role: Role,
    pub locked: bool,
    /// Its stored hash, read only for its cost (an imported cost the login decoys lack).
    pub password_hash: String,
}

/// What changed in access state since a point in time: sessions revoked and users updated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessChanges {
    pub ended: Vec<EndedSession>,
    pub users: Vec<ChangedUser>,
}

/// Spending a refresh token and storing its successor, as one atomic step.
#[derive(Debug)]
pub struct Rotation {
    pub spent_hash: String,
    pub session_id: String,
    pub successor_hash: String,
    pub successor_sealed: String,
    pub successor_jti: String,
    pub successor_iat: i64,
    pub successor_expires_at: Timestamp,
}

/// Where an audit row landed in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// A connection pool's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open, idle or in use.
    pub open: usize,
    pub idle: usize,
    /// The most it opens.
    pub max: usize,
}

impl PoolStatus {
    /// The status of an sqlx pool.
    pub(crate) fn of<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> Self {
        Self {
            open: usize::try_from(pool.size()).unwrap_or(usize::MAX),
            idle: pool.num_idle(),
            max: usize::try_from(pool.options().get_max_connections()).unwrap_or(usize::MAX),
        }
    }
}

/// What the database shows of the audit chain's past: whether an anchor may be made for it
/// without an operator (see `audit::anchor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainEvidence {
    pub users: i64,
    /// Sealed rows other than chain starts.
    pub sealed_events: i64,
    /// Rows from before the chain was keyed.
    pub legacy_rows: i64,
    /// The newest row's number (0 when empty).
    pub newest: i64,
    /// The highest row number the database has handed out (0 when none): above `newest`
    /// when rows were deleted.
    pub issued: i64,
}

/// The query behind [`Store::chain_evidence`]; `{issued}` is the backend's expression for the
/// highest row number handed out.
pub(crate) fn chain_evidence_sql(issued: &str) -> String {
    format!(
        "SELECT (SELECT COUNT(*) FROM users),
                (SELECT COUNT(*) FROM audit_events
                  WHERE alg = '{keyed}' AND kind <> '{started}'),
                (SELECT COUNT(*) FROM audit_events WHERE alg <> '{keyed}'),
                COALESCE((SELECT MAX(seq) FROM audit_events), 0),
                COALESCE(({issued}), 0)",
        keyed = crate::audit::chain::KEYED,
        started = crate::audit::CHAIN_STARTED,
    )
}

/// The query behind [`Store::sample_password_hashes`] (`$1`: how many).
pub(crate) const SAMPLE_PASSWORD_HASHES: &str =
    "SELECT password_hash FROM users ORDER BY random() LIMIT $1";

/// Reads [`chain_evidence_sql`]'s row.
pub(crate) fn chain_evidence_from<R: sqlx::Row>(row: &R) -> Result<ChainEvidence, sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    Ok(ChainEvidence {
        users: row.try_get(0)?,
        sealed_events: row.try_get(1)?,
        legacy_rows: row.try_get(2)?,
        newest: row.try_get(3)?,
        issued: row.try_get(4)?,
    })
}

/// What [`Store::set_role`] did.
#[derive(Debug, Clone)]
pub enum RoleChange {
    /// The user now has the role asked for; `previous` is what they had.
    Changed {
        previous: Role,
        user: UserRecord,
    },
    NotFound,
    /// Refused: it would demote the only admin.
    LastAdmin,
}

/// Everything the service needs from its database. Reads are methods here; changes happen in a
/// transaction ([`Store::begin`]) together with the audit rows that record them.
pub trait Store: ItemStore + std::fmt::Debug + Send + Sync + 'static {
    /// Opens a unit of work (see [`tx`]).
    fn begin(&self) -> StoreFuture<'_, Box<dyn Tx>>;

    /// Users in id order, after `after` when given; at most `rows` (admin listing).
    fn list_users<'a>(
        &'a self,
        after: Option<&'a str>,
        rows: usize,
    ) -> StoreFuture<'a, Vec<UserRecord>>;

    /// Cheap round trip proving the database answers (for `/ready`).
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// The user whose normalised email or username is `login_key`.
    fn find_user_by_login<'a>(&'a self, login_key: &'a str) -> StoreFuture<'a, Option<UserRecord>>;
    fn find_user<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<UserRecord>>;

    /// The refresh token whose SHA-256 is `hash`, with its session's state.
    fn refresh_state<'a>(&'a self, hash: &'a str) -> StoreFuture<'a, Option<RefreshState>>;
    /// Audit rows newest first, older than `before_seq` when given.
    fn audit_page(
        &self,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreFuture<'_, Vec<crate::audit::StoredEvent>>;
    /// Audit rows oldest first, after `after_seq`, for verification.
    fn audit_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> StoreFuture<'_, Vec<crate::audit::StoredEvent>>;
    /// The user's sessions that are neither revoked nor expired, newest first.
    fn list_sessions<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Vec<SessionRecord>>;
    /// Whether `session_id` exists, belongs to `user_id`, and is neither revoked nor past its
    /// end: what a token naming that session stands for.
    fn session_is_live<'a>(
        &'a self,
        session_id: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, bool>;
    /// Revoked sessions that issued an access token after `since`: the ones whose
    /// tokens may still be unexpired. Loaded into memory at start-up.
    fn revoked_sessions_since(&self, since: Timestamp) -> StoreFuture<'_, Vec<EndedSession>>;
    /// Sessions revoked and users updated after `since`: what a node polls to catch
    /// changes made by other nodes, whether or not their broadcast reached it.
    fn changes_since(&self, since: Timestamp) -> StoreFuture<'_, AccessChanges>;
    /// Whether several processes may share this store (and so must keep each other current).
    fn is_shared(&self) -> bool;
    /// What the database shows of the audit chain's past (read when there is no anchor).
    fn chain_evidence(&self) -> StoreFuture<'_, ChainEvidence>;
    /// This node's connection pool now (for metrics).
    fn pool_status(&self) -> PoolStatus;
    /// Up to `limit` stored password hashes drawn at random: the mix of costs the login
    /// decoys mirror.
    fn sample_password_hashes(&self, limit: u32) -> StoreFuture<'_, Vec<String>>;
    /// `user_id`'s TOTP, pending or confirmed.
    fn totp<'a>(&'a self, user_id: &'a str) -> StoreFuture<'a, Option<TotpRecord>>;
    /// The challenge whose token hashes to `token_hash`, unless it has expired.
    fn challenge<'a>(&'a self, token_hash: &'a str) -> StoreFuture<'a, Option<ChallengeRecord>>;
    /// The live session (neither revoked nor past its end) held by the cookie whose value
    /// hashes to `cookie_hash`: its id and its user's.
    fn session_by_cookie<'a>(
        &'a self,
        cookie_hash: &'a str,
    ) -> StoreFuture<'a, Option<(String, String)>>;
    /// The unexpired mailed link of `purpose` whose token hashes to `token_hash`.
    fn email_token<'a>(
        &'a self,
        token_hash: &'a str,
        purpose: LinkPurpose,
    ) -> StoreFuture<'a, Option<EmailTokenRecord>>;
}

/// The longest any one store call may take, whatever the database does: a paused or
/// unreachable server stops answering without closing anything, and the server-side statement
/// timeout cannot fire there. Past it the call fails as busy (503) and its connection is
/// dropped (sqlx checks it before reuse).
const CALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(6);

/// Boxes a store call under [`CALL_DEADLINE`].
pub(crate) fn bounded<'a, T: Send + 'a>(
    call: impl Future<Output = Result<T, StoreError>> + Send + 'a,
) -> StoreFuture<'a, T> {
    Box::pin(async move {
        tokio::time::timeout(CALL_DEADLINE, call)
            .await
            .unwrap_or(Err(StoreError::Deadline(CALL_DEADLINE)))
    })
}

/// Lower-case hex SHA-256: how refresh tokens are stored and audit rows chained.
pub use rampart::tokens::sha256_hex;

/// A new id for a stored row: UUIDv7, so id order is creation order (keyset pages rely on it).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn now() -> Timestamp {
    Timestamp::now()
}

/// Opens the store named by `url` and brings its schema up to date.
pub async fn open(url: &SecretString) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let url = url.expose_secret();
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PostgresStore::open(url).await?,
        ))
    } else {
        Err(StoreError::Unsupported)
    }
}

/// The role as stored (a CHECK constraint allows only these two).
pub(crate) fn role_text(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::User => "user",
    }
}

/// A stored role; anything unexpected is least privilege.
pub(crate) fn role_from(text: &str) -> Role {
    if text == "admin" {
        Role::Admin
    } else {
        Role::User
    }
}

/// A user row's columns, the same on both backends (a macro, so statements are `concat!`ed
/// at compile time rather than formatted per call).
macro_rules! user_columns {
    () => {
        "id, email, username, password_hash, role, locked_at IS NOT NULL AS locked, mfa_enabled_at IS NOT NULL AS mfa, email_verified_at IS NOT NULL AS email_verified, created_at"
    };
}
pub(crate) use user_columns;

/// An item row's columns.
macro_rules! item_columns {
    () => {
        "id, owner_id, title, body, created_at, updated_at"
    };
}
pub(crate) use item_columns;

/// A page size as LIMIT takes it (an i64 on both backends); pages are at most a few hundred.
pub(crate) fn limit(rows: usize) -> i64 {
    i64::try_from(rows).unwrap_or(i64::MAX)
}
