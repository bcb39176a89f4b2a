//! The reads of [`super::Store`], written once: `$N` placeholders bind by number on SQLite as on
//! PostgreSQL, the columns and their types are the same in both schemas, and rows are read by
//! [`super::rows`], so [`read_statements!`] expands the same methods into each backend's
//! `impl Store`. A backend adds only what really differs: how a transaction begins, whether
//! the store is shared, and where the audit sequence's high-water mark lives.
//!
//! Every statement is parameterised (no client text is ever spliced into SQL) and is an indexed
//! lookup or an indexed page, so no read holds a connection for long.

/// An account by its email or username key (login).
pub(crate) const USER_BY_LOGIN: &str = concat!(
    "SELECT ",
    super::user_columns!(),
    " FROM users WHERE email_key = $1 OR username_key = $1"
);
/// An account by id.
pub(crate) const USER_BY_ID: &str = concat!(
    "SELECT ",
    super::user_columns!(),
    " FROM users WHERE id = $1"
);
/// Whether a session is live as its user's at `$3`.
pub(crate) const SESSION_IS_LIVE: &str = "SELECT 1 FROM sessions
     WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $3";

/// The point reads a request makes (an account, a session), through the backend's sqlx pool
/// (PostgreSQL; SQLite reads through its own connections, see `sqlite::reader`).
macro_rules! point_reads {
    () => {
        fn find_user_by_login<'a>(
            &'a self,
            login_key: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::UserRecord>> {
            $crate::store::bounded(async move {
                let row = sqlx::query($crate::store::reads::USER_BY_LOGIN)
                    .bind(login_key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row
                    .as_ref()
                    .map($crate::store::rows::user_from)
                    .transpose()?)
            })
        }

        fn find_user<'a>(
            &'a self,
            id: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::UserRecord>> {
            $crate::store::bounded(async move {
                let row = sqlx::query($crate::store::reads::USER_BY_ID)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row
                    .as_ref()
                    .map($crate::store::rows::user_from)
                    .transpose()?)
            })
        }

        fn session_is_live<'a>(
            &'a self,
            session_id: &'a str,
            user_id: &'a str,
        ) -> $crate::store::StoreFuture<'a, bool> {
            $crate::store::bounded(async move {
                let row = sqlx::query($crate::store::reads::SESSION_IS_LIVE)
                    .bind(session_id)
                    .bind(user_id)
                    .bind($crate::store::now())
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            })
        }
    };
}
pub(crate) use point_reads;

/// The shared read methods, expanded inside `impl Store for $store` where `self.pool` is the
/// backend's sqlx pool.
macro_rules! read_statements {
    () => {
        fn list_users<'a>(
            &'a self,
            after: Option<&'a str>,
            rows: usize,
        ) -> $crate::store::StoreFuture<'a, Vec<$crate::store::UserRecord>> {
            $crate::store::bounded(async move {
                // Two statements so the primary key is seeked, not scanned (see `list_items`).
                let seek = concat!(
                    "SELECT ",
                    $crate::store::user_columns!(),
                    " FROM users WHERE id > $1 ORDER BY id LIMIT $2"
                );
                let first = concat!(
                    "SELECT ",
                    $crate::store::user_columns!(),
                    " FROM users ORDER BY id LIMIT $1"
                );
                let query = match after {
                    Some(after) => sqlx::query(seek).bind(after),
                    None => sqlx::query(first),
                };
                let found = query
                    .bind($crate::store::limit(rows))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(found
                    .iter()
                    .map($crate::store::rows::user_from)
                    .collect::<Result<_, _>>()?)
            })
        }

        fn list_sessions<'a>(
            &'a self,
            user_id: &'a str,
        ) -> $crate::store::StoreFuture<'a, Vec<$crate::store::SessionRecord>> {
            $crate::store::bounded(async move {
                let rows = sqlx::query(
                    "SELECT id, created_at, last_used_at, user_agent FROM sessions
                         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
                         ORDER BY created_at DESC LIMIT 1000",
                )
                .bind(user_id)
                .bind($crate::store::now())
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map($crate::store::rows::session_from)
                    .collect()
            })
        }

        fn revoked_sessions_since(
            &self,
            since: $crate::store::Timestamp,
        ) -> $crate::store::StoreFuture<'_, Vec<$crate::store::EndedSession>> {
            $crate::store::bounded(async move {
                let rows = sqlx::query(
                    "SELECT id, last_used_at FROM sessions
                         WHERE revoked_at IS NOT NULL AND last_used_at > $1",
                )
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map($crate::store::rows::ended_session)
                    .collect()
            })
        }

        fn refresh_state<'a>(
            &'a self,
            hash: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::RefreshState>>
        {
            $crate::store::bounded(async move {
                let row = sqlx::query(
                        "SELECT r.session_id, s.user_id, r.expires_at, r.spent_at, r.successor_sealed,
                                r.successor_jti, r.successor_iat, n.expires_at AS successor_expires_at,
                                (n.spent_at IS NOT NULL) AS successor_spent,
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
                $crate::store::rows::refresh_state_from(&row).map(Some)
            })
        }

        fn changes_since(
            &self,
            since: $crate::store::Timestamp,
        ) -> $crate::store::StoreFuture<'_, $crate::store::AccessChanges> {
            $crate::store::bounded(async move {
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
                $crate::store::rows::access_changes(&ended, &users)
            })
        }

        fn sample_password_hashes(
            &self,
            limit: u32,
        ) -> $crate::store::StoreFuture<'_, Vec<String>> {
            $crate::store::bounded(async move {
                Ok(
                    sqlx::query_scalar($crate::store::SAMPLE_PASSWORD_HASHES)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?,
                )
            })
        }

        fn totp<'a>(
            &'a self,
            user_id: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::TotpRecord>> {
            $crate::store::bounded(async move {
                let row = sqlx::query(
                    "SELECT sealed_secret, confirmed_at IS NOT NULL AS confirmed, last_step
                     FROM mfa_totp WHERE user_id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.as_ref().map($crate::store::rows::totp_from).transpose()?)
            })
        }

        fn challenge<'a>(
            &'a self,
            token_hash: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::ChallengeRecord>> {
            $crate::store::bounded(async move {
                let row = sqlx::query(
                    "SELECT user_id, credential, failures FROM mfa_challenges
                     WHERE token_hash = $1 AND expires_at > $2",
                )
                .bind(token_hash)
                .bind($crate::store::now())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row
                    .as_ref()
                    .map($crate::store::rows::challenge_from)
                    .transpose()?)
            })
        }

        fn session_by_cookie<'a>(
            &'a self,
            cookie_hash: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<(String, String)>> {
            $crate::store::bounded(async move {
                let row: Option<(String, String)> = sqlx::query_as(
                    "SELECT s.id, s.user_id FROM sessions s
                     WHERE s.cookie_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > $2",
                )
                .bind(cookie_hash)
                .bind($crate::store::now())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row)
            })
        }

        fn email_token<'a>(
            &'a self,
            token_hash: &'a str,
            purpose: $crate::store::LinkPurpose,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::EmailTokenRecord>> {
            $crate::store::bounded(async move {
                let row = sqlx::query(
                    "SELECT user_id, email FROM email_tokens
                     WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3",
                )
                .bind(token_hash)
                .bind(purpose.as_str())
                .bind($crate::store::now())
                .fetch_optional(&self.pool)
                .await?;
                Ok(row
                    .as_ref()
                    .map($crate::store::rows::email_token_from)
                    .transpose()?)
            })
        }

        fn audit_page(
            &self,
            before_seq: Option<i64>,
            limit: u32,
        ) -> $crate::store::StoreFuture<'_, Vec<crate::audit::StoredEvent>> {
            $crate::store::bounded(async move {
                // Seeks the rowid from the cursor instead of scanning down to it.
                let rows = sqlx::query(
                        "SELECT seq, id, at, kind, user_id, ip, request_id, detail, alg, prev_hash, hash FROM audit_events
                         WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
                    )
                    .bind(before_seq.unwrap_or(i64::MAX))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map($crate::store::rows::audit_from)
                    .collect()
            })
        }

        fn audit_after(
            &self,
            after_seq: i64,
            limit: u32,
        ) -> $crate::store::StoreFuture<'_, Vec<crate::audit::StoredEvent>> {
            $crate::store::bounded(async move {
                let rows = sqlx::query(
                        "SELECT seq, id, at, kind, user_id, ip, request_id, detail, alg, prev_hash, hash FROM audit_events
                         WHERE seq > $1 ORDER BY seq ASC LIMIT $2",
                    )
                    .bind(after_seq)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map($crate::store::rows::audit_from)
                    .collect()
            })
        }
    };
}
pub(crate) use read_statements;
