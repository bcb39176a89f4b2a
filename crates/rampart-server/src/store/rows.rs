//! Rows to records, once for both backends: the columns are the same on SQLite and PostgreSQL,
//! so only the SQL text differs between `sqlite` and `postgres`, never how a row is read.

use sqlx::Row as _;

use super::{
    role_from, AccessChanges, ChallengeRecord, ChangedUser, EndedSession, ItemRecord, RefreshState,
    SessionRecord, StoreError, Timestamp, TotpRecord, UserRecord,
};

/// A row of either backend, read by column name.
pub(crate) trait StoreRow {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn maybe_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error>;
    fn maybe_flag(&self, column: &str) -> Result<Option<bool>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn maybe_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn time(&self, column: &str) -> Result<Timestamp, sqlx::Error>;
    fn maybe_time(&self, column: &str) -> Result<Option<Timestamp>, sqlx::Error>;
}

macro_rules! store_row {
    ($row:ty) => {
        impl StoreRow for $row {
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                self.try_get(column)
            }
            fn maybe_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(column)
            }
            fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
                self.try_get(column)
            }
            fn maybe_flag(&self, column: &str) -> Result<Option<bool>, sqlx::Error> {
                self.try_get(column)
            }
            fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
                self.try_get(column)
            }
            fn maybe_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(column)
            }
            fn time(&self, column: &str) -> Result<Timestamp, sqlx::Error> {
                self.try_get(column)
            }
            fn maybe_time(&self, column: &str) -> Result<Option<Timestamp>, sqlx::Error> {
                self.try_get(column)
            }
        }
    };
}

store_row!(sqlx::sqlite::SqliteRow);
store_row!(sqlx::postgres::PgRow);

/// A row of [`super::user_columns!`].
pub(crate) fn user_from(row: &impl StoreRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.text("id")?,
        email: row.text("email")?,
        username: row.text("username")?,
        password_hash: row.text("password_hash")?,
        role: role_from(&row.text("role")?),
        locked: row.flag("locked")?,
        mfa: row.flag("mfa")?,
        email_verified: row.flag("email_verified")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn totp_from(row: &impl StoreRow) -> Result<TotpRecord, sqlx::Error> {
    Ok(TotpRecord {
        sealed_secret: row.text("sealed_secret")?,
        confirmed: row.flag("confirmed")?,
        last_step: row.int("last_step")?,
    })
}

pub(crate) fn challenge_from(row: &impl StoreRow) -> Result<ChallengeRecord, sqlx::Error> {
    Ok(ChallengeRecord {
        user_id: row.text("user_id")?,
        credential: row.text("credential")?,
        failures: row.int("failures")?,
    })
}

pub(crate) fn email_token_from(
    row: &impl StoreRow,
) -> Result<super::EmailTokenRecord, sqlx::Error> {
    Ok(super::EmailTokenRecord {
        user_id: row.text("user_id")?,
        email: row.text("email")?,
    })
}

pub(crate) fn item_from(row: &impl StoreRow) -> Result<ItemRecord, StoreError> {
    Ok(ItemRecord {
        id: row.text("id")?,
        owner_id: row.text("owner_id")?,
        title: row.text("title")?,
        body: row.text("body")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

pub(crate) fn audit_from(row: &impl StoreRow) -> Result<crate::audit::StoredEvent, StoreError> {
    let detail = row.text("detail")?;
    Ok(crate::audit::StoredEvent {
        seq: row.int("seq")?,
        id: row.text("id")?,
        at: row.text("at")?,
        kind: row.text("kind")?,
        user_id: row.maybe_text("user_id")?,
        ip: row.maybe_text("ip")?,
        request_id: row.maybe_text("request_id")?,
        // A row whose detail is not JSON is kept as a string, so verification still sees it.
        detail: serde_json::from_str(&detail)
            .unwrap_or_else(|_| serde_json::Value::String(detail.clone())),
        detail_text: detail,
        alg: row.text("alg")?,
        prev_hash: row.text("prev_hash")?,
        hash: row.text("hash")?,
    })
}

pub(crate) fn ended_session(row: &impl StoreRow) -> Result<EndedSession, StoreError> {
    Ok(EndedSession {
        id: row.text("id")?,
        last_used_at: row.time("last_used_at")?,
    })
}

pub(crate) fn session_from(row: &impl StoreRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: row.text("id")?,
        created_at: row.time("created_at")?,
        last_used_at: row.time("last_used_at")?,
        user_agent: row.maybe_text("user_agent")?,
    })
}

pub(crate) fn refresh_state_from(row: &impl StoreRow) -> Result<RefreshState, StoreError> {
    Ok(RefreshState {
        session_id: row.text("session_id")?,
        user_id: row.text("user_id")?,
        expires_at: row.time("expires_at")?,
        spent_at: row.maybe_time("spent_at")?,
        successor_sealed: row.maybe_text("successor_sealed")?,
        successor_jti: row.maybe_text("successor_jti")?,
        successor_iat: row.maybe_int("successor_iat")?,
        successor_expires_at: row.maybe_time("successor_expires_at")?,
        successor_spent: row.maybe_flag("successor_spent")?.unwrap_or(false),
        session_live: row.flag("session_live")?,
        session_expires_at: row.time("session_expires_at")?,
    })
}

/// The two result sets of `changes_since`: ended sessions and changed users.
pub(crate) fn access_changes<R: StoreRow>(
    ended: &[R],
    users: &[R],
) -> Result<AccessChanges, StoreError> {
    Ok(AccessChanges {
        ended: ended.iter().map(ended_session).collect::<Result<_, _>>()?,
        users: users
            .iter()
            .map(|row| {
                Ok(ChangedUser {
                    id: row.text("id")?,
                    role: role_from(&row.text("role")?),
                    locked: row.flag("locked")?,
                    password_hash: row.text("password_hash")?,
                })
            })
            .collect::<Result<_, StoreError>>()?,
    })
}
