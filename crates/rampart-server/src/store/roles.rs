//! The statements of roles and locks, written once for both backends like the rest of
//! [`super::tx`] (expanded into each backend's `impl Tx` by [`role_statements!`]): locking and
//! unlocking a user, changing a role, and who may still administer.
//!
//! Defends against nobody being left to administer, and against an admin acting after losing
//! the right to: role and lock changes take turns (an advisory lock on PostgreSQL, `BEGIN
//! IMMEDIATE` on SQLite), so two demotions of the last pair of admins read the count in turn,
//! and an admin action that checks its own caller here sees a demotion or lock committed before.

/// Expanded inside `impl Tx for $tx`, where `self.tx` is the sqlx transaction and
/// `self.role_changes_take_turns()` takes the backend's turn.
macro_rules! role_statements {
    () => {
        fn set_locked<'a>(
            &'a mut self,
            id: &'a str,
            locked: bool,
        ) -> $crate::store::StoreFuture<'a, bool> {
            bounded(async move {
                if locked {
                    let target = sqlx::query_scalar::<_, String>("SELECT role FROM users WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *self.tx)
                        .await?;
                    if target.as_deref() == Some("admin") && self.acting_admins_besides(id).await? == 0 {
                        return Ok(false);
                    }
                }
                let now = $crate::store::now();
                let locked_at = locked.then_some(now.clone());
                sqlx::query("UPDATE users SET locked_at = $1, updated_at = $2 WHERE id = $3")
                    .bind(locked_at)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await?;
                if locked {
                    // Whoever holds a pending reset link or login challenge keeps nothing
                    // across the lock and a later unlock.
                    for statement in [
                        "DELETE FROM email_tokens WHERE user_id = $1 AND purpose = 'reset'",
                        "DELETE FROM mfa_challenges WHERE user_id = $1",
                    ] {
                        sqlx::query(statement).bind(id).execute(&mut *self.tx).await?;
                    }
                }
                Ok(true)
            })
        }

        fn is_acting_admin<'a>(
            &'a mut self,
            id: &'a str,
            session_id: &'a str,
        ) -> $crate::store::StoreFuture<'a, bool> {
            bounded(async move {
                self.role_changes_take_turns().await?;
                self.hold_session(session_id).await?;
                let found: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM users u JOIN sessions s ON s.user_id = u.id
                     WHERE u.id = $1 AND s.id = $2 AND u.role = 'admin' AND u.locked_at IS NULL
                       AND s.revoked_at IS NULL",
                )
                .bind(id)
                .bind(session_id)
                .fetch_one(&mut *self.tx)
                .await?;
                Ok(found > 0)
            })
        }

        fn acting_admins_besides<'a>(
            &'a mut self,
            id: &'a str,
        ) -> $crate::store::StoreFuture<'a, i64> {
            bounded(async move {
                self.role_changes_take_turns().await?;
                let admins: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM users WHERE role = 'admin' AND locked_at IS NULL AND id <> $1",
                )
                .bind(id)
                .fetch_one(&mut *self.tx)
                .await?;
                Ok(admins)
            })
        }

        fn set_role<'a>(
            &'a mut self,
            id: &'a str,
            role: rampart::Role,
        ) -> $crate::store::StoreFuture<'a, $crate::store::RoleChange> {
            bounded(async move {
                let sql = concat!("SELECT ", $crate::store::user_columns!(), " FROM users WHERE id = $1");
                let Some(row) = sqlx::query(sql).bind(id).fetch_optional(&mut *self.tx).await?
                else {
                    return Ok($crate::store::RoleChange::NotFound);
                };
                let before = $crate::store::rows::user_from(&row)?;
                if before.role == rampart::Role::Admin
                    && role != rampart::Role::Admin
                    && self.acting_admins_besides(id).await? == 0
                {
                    return Ok($crate::store::RoleChange::LastAdmin);
                }
                if before.role != role {
                    sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3")
                        .bind($crate::store::role_text(role))
                        .bind($crate::store::now())
                        .bind(id)
                        .execute(&mut *self.tx)
                        .await?;
                }
                let previous = before.role;
                Ok($crate::store::RoleChange::Changed {
                    previous,
                    user: $crate::store::UserRecord { role, ..before },
                })
            })
        }
    };
}
pub(crate) use role_statements;
