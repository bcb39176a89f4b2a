//! A second factor: TOTP (RFC 6238) with single-use recovery codes.
//!
//! Defends against a stolen or guessed password being enough. For an account with a confirmed
//! TOTP, a correct password only opens a challenge ([`super::accounts`]); the session opens when
//! a current code or an unused recovery code is sent with it, and the challenge, the code's
//! 30-second step (or the recovery code) and the session are one transaction, so a code or a
//! challenge works once however many requests race with it. A wrong code counts in the
//! account's login backoff before it is checked, like a wrong password, so six digits cannot be
//! walked; a challenge dies after [`MAX_CHALLENGE_FAILURES`] wrong codes or five minutes, and
//! with any password change or lock. Secrets are sealed at rest and shown only while enrolling
//! ([`factor`]); removing the factor takes the password and a code.

pub mod factor;

use std::sync::Arc;

use rampart::http::RequestContext;
use rampart::Principal;
use secrecy::SecretString;

use super::accounts::{Accounts, PasswordCheck};
use super::sessions::{Opened, Opening, Sessions};
use super::ServiceError;
use crate::abuse::{Guard, Reports};
use crate::audit::{Event, Kind, Recorder};
use crate::metrics::{LoginOutcome, ServiceMetrics};
use crate::store::{sha256_hex, SecondFactor, Store, StoreError, UserRecord};
use crate::task::to_completion;
use factor::{Enrolment, SecretSealer};

/// Wrong codes a challenge survives; the next one ends it (the login starts over, with the
/// password, under the backoff).
pub const MAX_CHALLENGE_FAILURES: i64 = 5;
/// The name authenticator apps show above the account's codes.
const ISSUER: &str = "rampart";
/// The paths second-factor checks are limited and recorded under.
const VERIFY_PATH: &str = "/v1/auth/mfa/verify";
const REMOVE_PATH: &str = "/v1/auth/mfa/totp";

/// The MFA service; a handler takes it as `State<Mfa>`.
#[derive(Debug, Clone)]
pub struct Mfa(Arc<MfaParts>);

#[derive(Debug)]
pub struct MfaParts {
    store: Arc<dyn Store>,
    recorder: Recorder,
    accounts: Accounts,
    sessions: Sessions,
    guard: Guard,
    metrics: ServiceMetrics,
    sealer: SecretSealer,
}

impl std::ops::Deref for Mfa {
    type Target = MfaParts;
    fn deref(&self) -> &MfaParts {
        &self.0
    }
}

/// What a refused second factor was, for the audit row.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    UnknownChallenge,
    WrongCode,
}

impl Mfa {
    pub fn new(
        store: Arc<dyn Store>,
        recorder: Recorder,
        accounts: Accounts,
        sessions: Sessions,
        guard: Guard,
        metrics: ServiceMetrics,
        sealer: SecretSealer,
    ) -> Self {
        Self(Arc::new(MfaParts {
            store,
            recorder,
            accounts,
            sessions,
            guard,
            metrics,
            sealer,
        }))
    }

    /// Starts (or restarts) the caller's enrolment with a new secret: the only time the secret
    /// is shown. Nothing guards logins until [`Mfa::confirm`]; an account that already has a
    /// confirmed factor is refused (remove it first).
    pub async fn enrol(&self, caller: &Principal) -> Result<Enrolment, ServiceError> {
        let user = self.caller(caller).await?;
        if user.mfa {
            return Err(ServiceError::Refused(
                "Two-factor authentication is already on; remove it before enrolling again.",
            ));
        }
        let secret = factor::new_secret().map_err(ServiceError::internal)?;
        let sealed = self
            .sealer
            .seal(&user.id, &secret)
            .map_err(ServiceError::internal)?;
        let enrolment =
            factor::enrolment(&secret, ISSUER, &user.username).map_err(ServiceError::internal)?;
        let (store, user_id) = (Arc::clone(&self.store), user.id.clone());
        let started = to_completion(async move {
            let mut tx = store.begin().await?;
            let started = tx.start_totp(&user_id, &sealed).await?;
            tx.commit().await?;
            Ok::<bool, StoreError>(started)
        })
        .await?;
        if !started {
            return Err(ServiceError::Refused(
                "Two-factor authentication is already on; remove it before enrolling again.",
            ));
        }
        Ok(enrolment)
    }

    /// Confirms the caller's pending enrolment with a current code of its secret; returns the
    /// ten recovery codes, shown this once and stored only hashed.
    pub async fn confirm(
        &self,
        context: &RequestContext,
        caller: &Principal,
        code: &str,
    ) -> Result<Vec<String>, ServiceError> {
        let wrong = || {
            ServiceError::invalid(
                "code",
                "is not a current code of the secret being enrolled (or nothing is being enrolled)",
            )
        };
        let user = self.caller(caller).await?;
        let pending = self
            .store
            .totp(&user.id)
            .await?
            .filter(|totp| !totp.confirmed)
            .ok_or_else(wrong)?;
        let secret = self.open(&user.id, &pending.sealed_secret)?;
        let step = factor::matching_step(&secret, code, factor::unix_now()).ok_or_else(wrong)?;
        let (shown, hashes) = factor::new_recovery_codes().map_err(ServiceError::internal)?;
        let (recorder, user_id, checked) = (
            self.recorder.clone(),
            user.id.clone(),
            pending.sealed_secret.clone(),
        );
        let event = Event::new(Kind::MfaEnabled, context)
            .user(&user.id)
            .detail(serde_json::json!({"method": "totp", "recovery_codes": hashes.len()}));
        let confirmed = to_completion(async move {
            let mut unit = recorder.begin().await?;
            // Only the secret the code was checked against: an enrolment restarted meanwhile
            // (another tab, a stolen token) replaced it, and this confirms nothing.
            if !unit
                .tx()
                .confirm_totp(&user_id, &checked, step, &hashes)
                .await?
            {
                return Ok(false);
            }
            unit.record(event).await?;
            unit.commit().await?;
            Ok::<bool, StoreError>(true)
        })
        .await?;
        if !confirmed {
            return Err(wrong());
        }
        Ok(shown)
    }

    /// Removes the caller's second factor, given their password and a current code or an
    /// unused recovery code; both count in the account's login backoff.
    pub async fn remove(
        &self,
        context: &RequestContext,
        caller: &Principal,
        password: SecretString,
        code: &str,
        reports: &mut Reports,
    ) -> Result<(), ServiceError> {
        let user = self.caller(caller).await?;
        if !user.mfa {
            return Err(ServiceError::Refused(
                "Two-factor authentication is not on for this account.",
            ));
        }
        let check = PasswordCheck {
            path: REMOVE_PATH,
            field: "password",
            failed: Kind::MfaFailed,
            detail: serde_json::json!({"reason": "wrong_password", "action": "remove"}),
        };
        // Counts the attempt in the streak for the code too: a wrong code below is a failure
        // the backoff already holds.
        self.accounts
            .check_own_password(context, &user, password, check, reports)
            .await?;
        let wrong =
            || ServiceError::invalid("code", "is not a current code or an unused recovery code");
        let factor = self.factor(&user, code).await?;
        let event = Event::new(Kind::MfaDisabled, context).user(&user.id);
        let (recorder, user_id) = (self.recorder.clone(), user.id.clone());
        let removed = to_completion(async move {
            let mut unit = recorder.begin().await?;
            let Some(factor) = factor else {
                return Ok(false);
            };
            if !unit.tx().spend_factor(&user_id, &factor).await? {
                return Ok(false);
            }
            unit.tx().remove_totp(&user_id).await?;
            unit.record(event.detail(serde_json::json!({"with": factor_name(&factor)})))
                .await?;
            unit.commit().await?;
            Ok::<bool, StoreError>(true)
        })
        .await?;
        if !removed {
            let failed = Event::new(Kind::MfaFailed, context)
                .user(&user.id)
                .detail(serde_json::json!({"reason": "wrong_code", "action": "remove"}));
            self.recorder.record(vec![failed]).await?;
            return Err(wrong());
        }
        self.guard
            .clear_login_backoff(&[&user.username, &user.email])
            .await;
        Ok(())
    }

    /// Removes the second factor of the user known by `login` (username or email) at an
    /// operator's word (`rampart user remove-mfa`), recorded as from the command line; false
    /// when there is no such user or it has none.
    pub async fn remove_by_operator(&self, login: &str) -> Result<bool, ServiceError> {
        let Some(user) = self
            .store
            .find_user_by_login(&login.trim().to_lowercase())
            .await?
            .filter(|user| user.mfa)
        else {
            return Ok(false);
        };
        let mut event = Event::command_line(Kind::MfaDisabled).user(&user.id);
        event.detail["with"] = "operator".into();
        let mut unit = self.recorder.begin().await?;
        unit.tx().remove_totp(&user.id).await?;
        unit.record(event).await?;
        unit.commit().await?;
        Ok(true)
    }

    /// Completes a login's second step: `mfa_token` from the password step and a current code
    /// or an unused recovery code of the same account, opening a session for an API client or
    /// (`browser`) one held by a cookie. Every refusal is the same 401.
    pub async fn verify(
        &self,
        context: &RequestContext,
        mfa_token: &str,
        code: &str,
        user_agent: Option<String>,
        browser: bool,
        reports: &mut Reports,
    ) -> Result<Opened, ServiceError> {
        let challenge = match super::opaque_token_hash(mfa_token) {
            Some(hash) => self
                .store
                .challenge(&hash)
                .await?
                .map(|challenge| (hash, challenge)),
            None => None,
        };
        let Some((token_hash, challenge)) = challenge else {
            return Err(self
                .refused(context, None, None, Refusal::UnknownChallenge)
                .await);
        };
        let Some(user) = self.store.find_user(&challenge.user_id).await? else {
            return Err(self
                .refused(context, Some(&token_hash), None, Refusal::UnknownChallenge)
                .await);
        };
        let (username_key, email_key) = (user.username.to_lowercase(), user.email.to_lowercase());
        let streak = self
            .guard
            .admit_attempt(context, &[&username_key, &email_key], VERIFY_PATH, reports)
            .await
            .map_err(ServiceError::Limited)?;
        // A password changed since the challenge was opened leaves it unusable (and the
        // session would not open on it either: `keep_credential`).
        let current = sha256_hex(user.password_hash.as_bytes()) == challenge.credential;
        let factor = if current {
            self.factor(&user, code).await?
        } else {
            None
        };
        let Some(factor) = factor else {
            return Err(self
                .refused(
                    context,
                    Some(&token_hash),
                    Some((&user, streak)),
                    Refusal::WrongCode,
                )
                .await);
        };
        let opening = Opening {
            user_id: user.id.clone(),
            user_agent,
            verified_hash: user.password_hash.clone(),
            rehash: None,
            event: Event::new(Kind::LoginSucceeded, context)
                .user(&user.id)
                .detail(serde_json::json!({"mfa": factor_name(&factor)})),
            second_factor: Some((token_hash.clone(), factor)),
            browser,
        };
        match self.sessions.open(context, opening).await {
            Ok(pair) => {
                self.metrics.login(LoginOutcome::Success);
                self.guard
                    .clear_login_backoff(&[&user.username, &user.email])
                    .await;
                Ok(pair)
            }
            // The code was spent, or the challenge claimed, by a request that raced this one;
            // or the account was locked or its password changed meanwhile.
            Err(ServiceError::Unauthorized) => Err(self
                .refused(
                    context,
                    Some(&token_hash),
                    Some((&user, streak)),
                    Refusal::WrongCode,
                )
                .await),
            Err(other) => Err(other),
        }
    }

    /// The second factor `code` stands for on `user`'s confirmed TOTP: a current code of a
    /// step later than every one accepted, or a recovery code's hash (whether it is unused is
    /// decided when it is spent). `None` when it can be neither.
    async fn factor(
        &self,
        user: &UserRecord,
        code: &str,
    ) -> Result<Option<SecondFactor>, ServiceError> {
        if let Some(code_hash) = factor::recovery_code_hash(code) {
            return Ok(Some(SecondFactor::Recovery { code_hash }));
        }
        let Some(totp) = self
            .store
            .totp(&user.id)
            .await?
            .filter(|totp| totp.confirmed)
        else {
            return Ok(None);
        };
        let secret = self.open(&user.id, &totp.sealed_secret)?;
        Ok(factor::matching_step(&secret, code, factor::unix_now())
            .filter(|step| *step > totp.last_step)
            .map(|step| SecondFactor::Totp { step }))
    }

    fn open(
        &self,
        user_id: &str,
        sealed: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
        // Logged without the value: a secret that does not open is a wrong keys file or a
        // tampered row, for the operator.
        self.sealer.open(user_id, sealed).map_err(|err| {
            tracing::error!(user_id, error = %err, "a TOTP secret did not open");
            ServiceError::internal(err)
        })
    }

    async fn caller(&self, caller: &Principal) -> Result<UserRecord, ServiceError> {
        self.store
            .find_user(&caller.user_id)
            .await?
            .ok_or(ServiceError::Unauthorized)
    }

    /// Records a refused second step (and the lockout it started), counts it against the
    /// challenge and in the stuffing signal, and returns the one answer every refusal gets.
    async fn refused(
        &self,
        context: &RequestContext,
        token_hash: Option<&str>,
        account: Option<(&UserRecord, rampart::limit::Streak)>,
        refusal: Refusal,
    ) -> ServiceError {
        self.metrics.login(LoginOutcome::MfaFailed);
        let reason = match refusal {
            Refusal::UnknownChallenge => "unknown_challenge",
            Refusal::WrongCode => "wrong_code",
        };
        let mut failed = Event::new(Kind::MfaFailed, context)
            .detail(serde_json::json!({"reason": reason, "action": "login"}));
        let mut locked = None;
        if let Some((user, streak)) = account {
            failed = failed.user(&user.id).detail(serde_json::json!({
                "reason": reason,
                "action": "login",
                "failures": streak.failures,
            }));
            let username_key = user.username.to_lowercase();
            locked = Guard::lockout_event(context, &username_key, streak, Some(&user.id));
            self.guard.login_failed(context, &username_key).await;
        }
        let (writer, token_hash) = (self.recorder.clone(), token_hash.map(str::to_owned));
        let on_record = to_completion(async move {
            let mut unit = writer.begin().await?;
            if let Some(token_hash) = &token_hash {
                unit.tx()
                    .challenge_failed(token_hash, MAX_CHALLENGE_FAILURES)
                    .await?;
            }
            unit.record(failed).await?;
            if let Some(locked) = locked {
                unit.record(locked).await?;
            }
            unit.commit().await
        })
        .await;
        match on_record {
            // A refusal that could not be recorded is answered 503, not as a wrong code.
            Err(err) => ServiceError::Store(err),
            Ok(()) => ServiceError::Unauthorized,
        }
    }
}

fn factor_name(factor: &SecondFactor) -> &'static str {
    match factor {
        SecondFactor::Totp { .. } => "totp",
        SecondFactor::Recovery { .. } => "recovery_code",
    }
}
