//! Units of work: the changes of one action and the security events that record it, committed
//! together or not at all.
//!
//! Defends against an action with no record and a record with no action: a login that
//! succeeded while its audit row could not be written (the audit table locked, the database
//! failing between the two statements) left no trace of the session it opened. Here the session,
//! the refresh token and the `login_succeeded` row are one transaction: if the audit row cannot
//! be written within the lock timeout, the login fails too (503) and nothing is left behind.
//!
//! The statements are written once, with `$N` placeholders that sqlx binds by number on SQLite
//! as on PostgreSQL ([`tx_statements!`] expands them into each backend's [`Tx`]); a backend
//! supplies only how a transaction begins and how audit appends are serialised.

use rampart::Role;

use super::{
    Appended, EndedSession, NewSession, NewUser, RoleChange, Rotation, StoreFuture, UserRecord,
};
use crate::audit::chain::ChainKey;
use crate::audit::StoredEvent;

/// An open transaction. Dropped without [`Tx::commit`], everything in it is rolled back.
pub trait Tx: Send {
    /// Inserts a user; [`super::StoreError::Conflict`] when the email or username is taken.
    fn create_user(&mut self, user: NewUser) -> StoreFuture<'_, UserRecord>;
    fn set_password_hash<'a>(&'a mut self, id: &'a str, hash: &'a str) -> StoreFuture<'a, ()>;
    /// Before a session is opened on a password just verified: true only if `verified` is
    /// still the user's stored hash and the user is not locked, replacing it with `rehash`
    /// when given. The row stays locked to the end of the transaction (PostgreSQL; SQLite's
    /// `BEGIN IMMEDIATE` holds the whole file), so a password change or a lock committing
    /// meanwhile either waits for this login and then ends its session, or comes first and
    /// this returns false: a login verified against the old password never outlives the
    /// change.
    fn keep_credential<'a>(
        &'a mut self,
        id: &'a str,
        verified: &'a str,
        rehash: Option<&'a str>,
    ) -> StoreFuture<'a, bool>;
    /// Locks (login refused, sessions unusable) or unlocks a user. Refuses (false, nothing
    /// changed) to lock the last admin who is not locked: nobody could unlock anyone again.
    fn set_locked<'a>(&'a mut self, id: &'a str, locked: bool) -> StoreFuture<'a, bool>;
    /// Gives a user `role`, unless that would leave no unlocked admin
    /// ([`RoleChange::LastAdmin`]).
    fn set_role<'a>(&'a mut self, id: &'a str, role: Role) -> StoreFuture<'a, RoleChange>;
    /// Whether `id` is an admin who is not locked, acting through `session_id`, a session of
    /// theirs that has not ended; read in turn with role and lock changes and with that
    /// session's revocation: an admin action checks its actor here, inside its own
    /// transaction, so one admitted just before its actor was demoted, locked or logged out
    /// is refused rather than applied after.
    fn is_acting_admin<'a>(&'a mut self, id: &'a str, session_id: &'a str)
        -> StoreFuture<'a, bool>;
    /// Admins other than `id` who are not locked: those who could still administer. Role and
    /// lock changes take turns from here (across nodes), so two of them cannot both pass the
    /// count and leave nobody.
    fn acting_admins_besides<'a>(&'a mut self, id: &'a str) -> StoreFuture<'a, i64>;
    /// Opens a session with its first refresh token's hash.
    fn create_session(&mut self, session: NewSession) -> StoreFuture<'_, ()>;
    /// Marks the token spent and stores its successor, only if it was not spent yet and its
    /// session is not revoked; false otherwise (another request spent it first, or the session
    /// ended meanwhile): then nothing was changed.
    fn rotate_refresh(&mut self, rotation: Rotation) -> StoreFuture<'_, bool>;
    /// Revokes one of `user_id`'s live sessions; `None` when it has no such session (someone
    /// else's id and an unknown id look the same).
    fn revoke_session<'a>(
        &'a mut self,
        user_id: &'a str,
        session_id: &'a str,
    ) -> StoreFuture<'a, Option<EndedSession>>;
    /// Revokes every live session of `user_id` except `keep`; returns those that ended.
    fn revoke_user_sessions<'a>(
        &'a mut self,
        user_id: &'a str,
        keep: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<EndedSession>>;
    /// Starts (or restarts) `user_id`'s TOTP enrolment with `sealed_secret`; false, and
    /// nothing changed, when a confirmed TOTP is already on the account.
    fn start_totp<'a>(
        &'a mut self,
        user_id: &'a str,
        sealed_secret: &'a str,
    ) -> StoreFuture<'a, bool>;
    /// Confirms the pending TOTP sealed as `sealed_secret` (the one the code was checked
    /// against) with a code of `step`, replacing the recovery codes with `recovery_hashes`;
    /// false when that secret is no longer the pending one (an enrolment restarted meanwhile)
    /// or that step was already used.
    fn confirm_totp<'a>(
        &'a mut self,
        user_id: &'a str,
        sealed_secret: &'a str,
        step: i64,
        recovery_hashes: &'a [String],
    ) -> StoreFuture<'a, bool>;
    /// Removes `user_id`'s TOTP, recovery codes and open challenges.
    fn remove_totp<'a>(&'a mut self, user_id: &'a str) -> StoreFuture<'a, ()>;
    /// Spends `factor` for `user_id`'s confirmed TOTP: a TOTP step later than every one
    /// accepted, or an unused recovery code. False (nothing spent) otherwise.
    fn spend_factor<'a>(
        &'a mut self,
        user_id: &'a str,
        factor: &'a super::SecondFactor,
    ) -> StoreFuture<'a, bool>;
    fn create_challenge(&mut self, challenge: super::NewChallenge) -> StoreFuture<'_, ()>;
    /// Deletes `user_id`'s unexpired challenge `token_hash`; false when there was none (used,
    /// expired, another account's, or never issued).
    fn claim_challenge<'a>(
        &'a mut self,
        token_hash: &'a str,
        user_id: &'a str,
    ) -> StoreFuture<'a, bool>;
    /// Counts a wrong code against the challenge, deleting it at `max_failures`.
    fn challenge_failed<'a>(
        &'a mut self,
        token_hash: &'a str,
        max_failures: i64,
    ) -> StoreFuture<'a, ()>;
    /// Stores a mailed link's token, ending the user's older ones of its purpose.
    fn issue_email_token(&mut self, token: super::NewEmailToken) -> StoreFuture<'_, ()>;
    /// Spends (deletes) the unexpired link of `purpose` whose token hashes to `token_hash`;
    /// `None` when there was none (unknown, used, expired or superseded).
    fn spend_email_token<'a>(
        &'a mut self,
        token_hash: &'a str,
        purpose: super::LinkPurpose,
    ) -> StoreFuture<'a, Option<super::EmailTokenRecord>>;
    /// Marks `user_id`'s address verified, if it is still `email`: `None` when it is not,
    /// else whether this verified it (false: it was verified already).
    fn mark_email_verified<'a>(
        &'a mut self,
        user_id: &'a str,
        email: &'a str,
    ) -> StoreFuture<'a, Option<bool>>;
    /// Appends an audit row chained to the newest one, sealed with `key`. The backend
    /// serialises appends (across nodes too) from here to the commit, so append last.
    fn append_audit<'a>(
        &'a mut self,
        event: StoredEvent,
        key: &'a ChainKey,
    ) -> StoreFuture<'a, Appended>;
    /// Makes everything in the transaction permanent, at once.
    fn commit(self: Box<Self>) -> StoreFuture<'static, ()>;
}

/// The [`Tx`] methods whose statements both backends share. Expanded inside `impl Tx for $tx`,
/// where `self.tx` is the sqlx transaction, `self.audit_prev()` returns the chain's head under
/// the backend's append lock, and `self.audit_appended(hash)` hears of each new head.
macro_rules! tx_statements {
    () => {
        fn create_user(
            &mut self,
            user: $crate::store::NewUser,
        ) -> $crate::store::StoreFuture<'_, $crate::store::UserRecord> {
            bounded(async move {
                let now = $crate::store::now();
                sqlx::query(
                    "INSERT INTO users (id, email, email_key, username, username_key, password_hash, role, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                )
                .bind(&user.id)
                .bind(&user.email)
                .bind(&user.email_key)
                .bind(&user.username)
                .bind(&user.username_key)
                .bind(&user.password_hash)
                .bind($crate::store::role_text(user.role))
                .bind(&now)
                .execute(&mut *self.tx)
                .await?;
                Ok($crate::store::UserRecord {
                    id: user.id,
                    email: user.email,
                    username: user.username,
                    password_hash: user.password_hash,
                    role: user.role,
                    locked: false,
                    mfa: false,
                    email_verified: false,
                    created_at: now,
                })
            })
        }

        fn set_password_hash<'a>(
            &'a mut self,
            id: &'a str,
            hash: &'a str,
        ) -> $crate::store::StoreFuture<'a, ()> {
            bounded(async move {
                sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                    .bind(hash)
                    .bind($crate::store::now())
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await?;
                // A new password ends every reset link sent for the old one.
                sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = 'reset'")
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            })
        }

        fn keep_credential<'a>(
            &'a mut self,
            id: &'a str,
            verified: &'a str,
            rehash: Option<&'a str>,
        ) -> $crate::store::StoreFuture<'a, bool> {
            bounded(async move {
                // An UPDATE, even of nothing, takes the row lock a SELECT would not.
                let done = match rehash {
                    Some(rehash) => {
                        sqlx::query(
                            "UPDATE users SET password_hash = $1, updated_at = $2
                             WHERE id = $3 AND password_hash = $4 AND locked_at IS NULL",
                        )
                        .bind(rehash)
                        .bind($crate::store::now())
                        .bind(id)
                        .bind(verified)
                        .execute(&mut *self.tx)
                        .await?
                    }
                    None => {
                        sqlx::query(
                            "UPDATE users SET password_hash = password_hash
                             WHERE id = $1 AND password_hash = $2 AND locked_at IS NULL",
                        )
                        .bind(id)
                        .bind(verified)
                        .execute(&mut *self.tx)
                        .await?
                    }
                };
                Ok(done.rows_affected() == 1)
            })
        }

        fn create_session(
            &mut self,
            session: $crate::store::NewSession,
        ) -> $crate::store::StoreFuture<'_, ()> {
            bounded(async move {
                let now = $crate::store::now();
                let cookie_hash = match &session.held_by {
                    $crate::store::SessionHold::Cookie { hash } => Some(hash.as_str()),
                    $crate::store::SessionHold::Refresh { .. } => None,
                };
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip, cookie_hash)
                     VALUES ($1, $2, $3, $3, $4, $5, $6, $7)",
                )
                .bind(&session.id)
                .bind(&session.user_id)
                .bind(&now)
                .bind(&session.expires_at)
                .bind(&session.user_agent)
                .bind(&session.ip)
                .bind(cookie_hash)
                .execute(&mut *self.tx)
                .await?;
                if let $crate::store::SessionHold::Refresh { hash, expires_at } = &session.held_by {
                    sqlx::query(
                        "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(hash)
                    .bind(&session.id)
                    .bind(&now)
                    .bind(expires_at)
                    .execute(&mut *self.tx)
                    .await?;
                }
                Ok(())
            })
        }

        fn rotate_refresh(
            &mut self,
            rotation: $crate::store::Rotation,
        ) -> $crate::store::StoreFuture<'_, bool> {
            bounded(async move {
                let now = $crate::store::now();
                // The conditional UPDATE is the lock: of concurrent refreshes, exactly one
                // matches; the others change nothing.
                let spent = sqlx::query(
                    "UPDATE refresh_tokens
                     SET spent_at = $1, successor_hash = $2, successor_sealed = $3,
                         successor_jti = $4, successor_iat = $5
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
                .execute(&mut *self.tx)
                .await?;
                if spent.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&rotation.successor_hash)
                .bind(&rotation.session_id)
                .bind(&now)
                .bind(&rotation.successor_expires_at)
                .execute(&mut *self.tx)
                .await?;
                sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE id = $2")
                    .bind(&now)
                    .bind(&rotation.session_id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(true)
            })
        }

        fn revoke_session<'a>(
            &'a mut self,
            user_id: &'a str,
            session_id: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::EndedSession>> {
            bounded(async move {
                let row = sqlx::query(
                    "UPDATE sessions SET revoked_at = $1
                     WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL
                     RETURNING id, last_used_at",
                )
                .bind($crate::store::now())
                .bind(session_id)
                .bind(user_id)
                .fetch_optional(&mut *self.tx)
                .await?;
                row.as_ref().map($crate::store::rows::ended_session).transpose()
            })
        }

        fn revoke_user_sessions<'a>(
            &'a mut self,
            user_id: &'a str,
            keep: Option<&'a str>,
        ) -> $crate::store::StoreFuture<'a, Vec<$crate::store::EndedSession>> {
            bounded(async move {
                let rows = sqlx::query(
                    "UPDATE sessions SET revoked_at = $1
                     WHERE user_id = $2 AND revoked_at IS NULL
                       AND (CAST($3 AS TEXT) IS NULL OR id <> $3)
                     RETURNING id, last_used_at",
                )
                .bind($crate::store::now())
                .bind(user_id)
                .bind(keep)
                .fetch_all(&mut *self.tx)
                .await?;
                // Half-finished logins end with the sessions: a pending second step opens none.
                sqlx::query("DELETE FROM mfa_challenges WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *self.tx)
                    .await?;
                rows.iter().map($crate::store::rows::ended_session).collect()
            })
        }

        fn append_audit<'a>(
            &'a mut self,
            mut event: $crate::audit::StoredEvent,
            key: &'a $crate::audit::chain::ChainKey,
        ) -> $crate::store::StoreFuture<'a, $crate::store::Appended> {
            bounded(async move {
                event.prev_hash = self.audit_prev().await?;
                $crate::audit::chain::KEYED.clone_into(&mut event.alg);
                event.hash = key.seal(&event.prev_hash, &event);
                let seq: i64 = sqlx::query_scalar(
                    "INSERT INTO audit_events
                         (id, at, kind, user_id, ip, request_id, detail, alg, prev_hash, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq",
                )
                .bind(&event.id)
                .bind(&event.at)
                .bind(&event.kind)
                .bind(&event.user_id)
                .bind(&event.ip)
                .bind(&event.request_id)
                .bind(&event.detail_text)
                .bind(&event.alg)
                .bind(&event.prev_hash)
                .bind(&event.hash)
                .fetch_one(&mut *self.tx)
                .await?;
                Ok($crate::store::Appended {
                    seq,
                    prev_hash: event.prev_hash,
                    hash: event.hash,
                })
            })
        }
    };
}
pub(crate) use tx_statements;

/// The chain's newest hash, for a backend's `audit_prev`.
pub(crate) const AUDIT_HEAD: &str = "SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1";
