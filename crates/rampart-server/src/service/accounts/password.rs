//! Checking and changing the caller's own password.
//!
//! Defends against a stolen token becoming a free password oracle: every check of the caller's
//! own password (to change it, or to remove a second factor) counts against the account's login
//! backoff before the hash is verified, like a guess at the login form, and a wrong one is
//! recorded with the streak it reached.

use rampart::http::RequestContext;
use rampart::password::{HashError, Verified};
use rampart::Principal;
use secrecy::SecretString;

use super::Accounts;
use crate::abuse::{Guard, Reports};
use crate::audit::{Event, Kind};
use crate::domain::Password;
use crate::service::ServiceError;
use crate::store::{StoreError, UserRecord};
use crate::task::to_completion;

/// The path a password check behind a token is limited and recorded under.
const PASSWORD_CHANGE_PATH: &str = "/v1/auth/password";

/// How a check of the caller's own password is limited and recorded
/// ([`Accounts::check_own_password`]).
#[derive(Debug)]
pub(crate) struct PasswordCheck {
    /// The path the attempt is limited under.
    pub path: &'static str,
    /// The field a wrong password is reported on.
    pub field: &'static str,
    /// The event a wrong password records, with `detail` and the streak's failures.
    pub failed: Kind,
    pub detail: serde_json::Value,
}

impl Accounts {
    /// Checks the signed-in caller's own `password` (to change it, or to remove a second
    /// factor) under the account's login backoff: the attempt counts against the streak of
    /// every name the account logs in with before the hash is verified, and a wrong password
    /// records `failed` (with the streak) and its lockout, then answers a 422 on `field`.
    /// The streak is left for the caller to clear once the whole action is proven.
    pub(crate) async fn check_own_password(
        &self,
        context: &RequestContext,
        user: &UserRecord,
        password: SecretString,
        check: PasswordCheck,
        reports: &mut Reports,
    ) -> Result<(), ServiceError> {
        if self.hasher.is_saturated() {
            return Err(HashError::Busy.into());
        }
        // The account's names as the login form keys them: a guess here costs what a guess
        // there costs, whichever name the account is logged in with afterwards.
        let (username_key, email_key) = (user.username.to_lowercase(), user.email.to_lowercase());
        let streak = self
            .guard
            .admit_attempt(context, &[&username_key, &email_key], check.path, reports)
            .await
            .map_err(ServiceError::Limited)?;
        let verified = self
            .hasher
            .verify(password, Some(&user.password_hash))
            .await?;
        if verified == Verified::Invalid {
            let mut detail = check.detail;
            detail["failures"] = streak.failures.into();
            let failed = Event::new(check.failed, context)
                .user(&user.id)
                .detail(detail);
            let locked = Guard::lockout_event(context, &username_key, streak, Some(&user.id));
            self.recorder
                .record(std::iter::once(failed).chain(locked).collect())
                .await?;
            return Err(ServiceError::invalid(check.field, "is incorrect"));
        }
        Ok(())
    }

    /// Changes the caller's password after checking the current one under the account's login
    /// backoff; every other session of the caller ends, the calling one stays.
    pub async fn change_password(
        &self,
        context: &RequestContext,
        caller: &Principal,
        current: SecretString,
        new: SecretString,
        reports: &mut Reports,
    ) -> Result<(), ServiceError> {
        let state = self;
        let user = state
            .store
            .find_user(&caller.user_id)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        let check = PasswordCheck {
            path: PASSWORD_CHANGE_PATH,
            field: "current_password",
            failed: Kind::PasswordChangeFailed,
            detail: serde_json::json!({"session_id": caller.session_id}),
        };
        self.check_own_password(context, &user, current, check, reports)
            .await?;
        // The password is proven: the streak it counted in advance ends here, unless the
        // account has a second factor. There the streak also holds wrong codes, and a password
        // alone must not wipe them (an outside attack changed the password to itself between
        // rounds of guesses and walked codes without end); the next completed login does.
        if !user.mfa {
            state
                .guard
                .clear_login_backoff(&[&user.username, &user.email])
                .await;
        }
        let new = parse_password(new, Some(user.username.clone()), Some(user.email.clone()))
            .await?
            .map_err(|m| ServiceError::invalid("new_password", &m))?;
        let hash = state.hasher.hash(new.into_secret()).await?;
        // The new hash, the other sessions' end and the event: one transaction, run to
        // completion.
        let (shared, user_id, keep) = (self.clone(), user.id.clone(), caller.session_id.clone());
        let event = Event::new(Kind::PasswordChanged, context).user(&user.id);
        to_completion(async move {
            let mut unit = shared.recorder.begin().await?;
            unit.tx().set_password_hash(&user_id, &hash).await?;
            let ended = unit
                .tx()
                .revoke_user_sessions(&user_id, Some(&keep))
                .await?;
            unit.record(event.detail(serde_json::json!({"other_sessions_ended": ended.len()})))
                .await?;
            unit.commit().await?;
            shared.sessions.revocations.sessions_ended(&ended).await;
            Ok::<(), StoreError>(())
        })
        .await?;
        Ok(())
    }
}

/// Parses a password against the policy, off the async workers (the strength estimate is CPU
/// work). The outer error is the blocking task failing, the inner the policy's refusal.
pub(crate) async fn parse_password(
    password: SecretString,
    username: Option<String>,
    email: Option<String>,
) -> Result<Result<Password, String>, ServiceError> {
    tokio::task::spawn_blocking(move || {
        Password::parse(password, username.as_deref(), email.as_deref())
    })
    .await
    .map_err(ServiceError::internal)
}
