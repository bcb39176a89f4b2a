//! The statements of the second factor and of mailed links, written once for both backends
//! like the rest of [`super::tx`] (expanded into each backend's `impl Tx` by
//! [`factor_statements!`]): TOTP enrolment and the steps it accepted, recovery codes, login
//! challenges, and reset and verification tokens.
//!
//! Defends against a code, a challenge or a link working twice: each is spent by one
//! conditional statement (an `UPDATE` requiring a later step, a `DELETE` requiring an unexpired
//! row) whose affected-row count decides, so two racing requests cannot both succeed, on SQLite
//! as on PostgreSQL.

/// Expanded inside `impl Tx for $tx`, where `self.tx` is the sqlx transaction.
macro_rules! factor_statements {
    () => {
        fn start_totp<'a>(
            &'a mut self,
            user_id: &'a str,
            sealed_secret: &'a str,
        ) -> $crate::store::StoreFuture<'a, bool> {
            bounded(async move {
                let done = sqlx::query(
                    "INSERT INTO mfa_totp (user_id, sealed_secret, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE
                     SET sealed_secret = excluded.sealed_secret, created_at = excluded.created_at,
                         last_step = 0
                     WHERE mfa_totp.confirmed_at IS NULL",
                )
                .bind(user_id)
                .bind(sealed_secret)
                .bind($crate::store::now())
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        }

        fn confirm_totp<'a>(
            &'a mut self,
            user_id: &'a str,
            sealed_secret: &'a str,
            step: i64,
            recovery_hashes: &'a [String],
        ) -> $crate::store::StoreFuture<'a, bool> {
            bounded(async move {
                let now = $crate::store::now();
                let done = sqlx::query(
                    "UPDATE mfa_totp SET confirmed_at = $1, last_step = $2
                     WHERE user_id = $3 AND sealed_secret = $4
                       AND confirmed_at IS NULL AND last_step < $2",
                )
                .bind(&now)
                .bind(step)
                .bind(user_id)
                .bind(sealed_secret)
                .execute(&mut *self.tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *self.tx)
                    .await?;
                for code_hash in recovery_hashes {
                    sqlx::query("INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                        .bind(user_id)
                        .bind(code_hash)
                        .execute(&mut *self.tx)
                        .await?;
                }
                sqlx::query("UPDATE users SET mfa_enabled_at = $1, updated_at = $1 WHERE id = $2")
                    .bind(&now)
                    .bind(user_id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(true)
            })
        }

        fn remove_totp<'a>(&'a mut self, user_id: &'a str) -> $crate::store::StoreFuture<'a, ()> {
            bounded(async move {
                for statement in [
                    "DELETE FROM mfa_totp WHERE user_id = $1",
                    "DELETE FROM mfa_recovery_codes WHERE user_id = $1",
                    "DELETE FROM mfa_challenges WHERE user_id = $1",
                ] {
                    sqlx::query(statement)
                        .bind(user_id)
                        .execute(&mut *self.tx)
                        .await?;
                }
                sqlx::query("UPDATE users SET mfa_enabled_at = NULL, updated_at = $1 WHERE id = $2")
                    .bind($crate::store::now())
                    .bind(user_id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            })
        }

        fn spend_factor<'a>(
            &'a mut self,
            user_id: &'a str,
            factor: &'a $crate::store::SecondFactor,
        ) -> $crate::store::StoreFuture<'a, bool> {
            bounded(async move {
                let done = match factor {
                    $crate::store::SecondFactor::Totp { step } => {
                        sqlx::query(
                            "UPDATE mfa_totp SET last_step = $1
                             WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $1",
                        )
                        .bind(*step)
                        .bind(user_id)
                        .execute(&mut *self.tx)
                        .await?
                    }
                    $crate::store::SecondFactor::Recovery { code_hash } => {
                        sqlx::query(
                            "UPDATE mfa_recovery_codes SET used_at = $1
                             WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL
                               AND EXISTS (SELECT 1 FROM mfa_totp t
                                           WHERE t.user_id = $2 AND t.confirmed_at IS NOT NULL)",
                        )
                        .bind($crate::store::now())
                        .bind(user_id)
                        .bind(code_hash)
                        .execute(&mut *self.tx)
                        .await?
                    }
                };
                Ok(done.rows_affected() == 1)
            })
        }

        fn create_challenge(
            &mut self,
            challenge: $crate::store::NewChallenge,
        ) -> $crate::store::StoreFuture<'_, ()> {
            bounded(async move {
                let now = $crate::store::now();
                // Expired challenges of anyone go with each new one, so the table holds only
                // the last few minutes' logins.
                sqlx::query("DELETE FROM mfa_challenges WHERE expires_at <= $1")
                    .bind(&now)
                    .execute(&mut *self.tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO mfa_challenges (token_hash, user_id, credential, expires_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&challenge.token_hash)
                .bind(&challenge.user_id)
                .bind(&challenge.credential)
                .bind(&challenge.expires_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            })
        }

        fn claim_challenge<'a>(
            &'a mut self,
            token_hash: &'a str,
            user_id: &'a str,
        ) -> $crate::store::StoreFuture<'a, bool> {
            bounded(async move {
                let done = sqlx::query(
                    "DELETE FROM mfa_challenges
                     WHERE token_hash = $1 AND user_id = $2 AND expires_at > $3",
                )
                .bind(token_hash)
                .bind(user_id)
                .bind($crate::store::now())
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        }

        fn challenge_failed<'a>(
            &'a mut self,
            token_hash: &'a str,
            max_failures: i64,
        ) -> $crate::store::StoreFuture<'a, ()> {
            bounded(async move {
                sqlx::query("UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&mut *self.tx)
                    .await?;
                sqlx::query("DELETE FROM mfa_challenges WHERE token_hash = $1 AND failures >= $2")
                    .bind(token_hash)
                    .bind(max_failures)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            })
        }

        fn issue_email_token(
            &mut self,
            token: $crate::store::NewEmailToken,
        ) -> $crate::store::StoreFuture<'_, ()> {
            bounded(async move {
                let now = $crate::store::now();
                sqlx::query(
                    "DELETE FROM email_tokens
                     WHERE (user_id = $1 AND purpose = $2) OR expires_at <= $3",
                )
                .bind(&token.user_id)
                .bind(token.purpose.as_str())
                .bind(&now)
                .execute(&mut *self.tx)
                .await?;
                sqlx::query(
                    "INSERT INTO email_tokens (token_hash, user_id, purpose, email, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&token.token_hash)
                .bind(&token.user_id)
                .bind(token.purpose.as_str())
                .bind(&token.email)
                .bind(&now)
                .bind(&token.expires_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            })
        }

        fn spend_email_token<'a>(
            &'a mut self,
            token_hash: &'a str,
            purpose: $crate::store::LinkPurpose,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::EmailTokenRecord>> {
            bounded(async move {
                let row = sqlx::query(
                    "DELETE FROM email_tokens
                     WHERE token_hash = $1 AND purpose = $2 AND expires_at > $3
                     RETURNING user_id, email",
                )
                .bind(token_hash)
                .bind(purpose.as_str())
                .bind($crate::store::now())
                .fetch_optional(&mut *self.tx)
                .await?;
                Ok(row
                    .as_ref()
                    .map($crate::store::rows::email_token_from)
                    .transpose()?)
            })
        }

        fn mark_email_verified<'a>(
            &'a mut self,
            user_id: &'a str,
            email: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<bool>> {
            bounded(async move {
                let newly = sqlx::query(
                    "UPDATE users SET email_verified_at = $1
                     WHERE id = $2 AND email = $3 AND email_verified_at IS NULL",
                )
                .bind($crate::store::now())
                .bind(user_id)
                .bind(email)
                .execute(&mut *self.tx)
                .await?;
                if newly.rows_affected() == 1 {
                    return Ok(Some(true));
                }
                let still = sqlx::query("SELECT 1 FROM users WHERE id = $1 AND email = $2")
                    .bind(user_id)
                    .bind(email)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                Ok(still.map(|_| false))
            })
        }

    };
}
pub(crate) use factor_statements;
