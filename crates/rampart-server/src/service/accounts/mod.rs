//! Accounts: creating them, logging in (for an account with a second factor, up to its
//! challenge, see [`super::mfa`]; where required, only with a verified address), and the
//! caller's own password ([`password`]).
//!
//! Defends against credential attacks at the edge of identity. Every input is parsed into a
//! domain type before use ([`crate::domain`]), and registration, the `users create` command
//! and the importer all create accounts here, so none skips the policy or the audit row. A
//! login does the same work and answers the same for an unknown name, a wrong password and a
//! locked account (an unknown name is verified against a decoy of some account's cost); every
//! check of a password, at the login form or behind a token, counts against the account's
//! login backoff before the hash is verified ([`crate::abuse`]), so neither is a free oracle;
//! and a saturated hashing pool sheds the attempt (503) before it counts or reads the store.

use rampart::http::RequestContext;
use rampart::password::{HashError, Verified};
use rampart::{ApiError, FieldError, Role};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use super::sessions::{Opened, Opening, Sessions};
use super::ServiceError;
use crate::abuse::{Guard, Reports};
use crate::audit::Recorder;
use crate::audit::{Event, Kind};
use crate::domain::{Email, Username};
use crate::metrics::LoginOutcome;
use crate::metrics::ServiceMetrics;
use crate::store::Store;
use crate::store::{self, sha256_hex, NewChallenge, NewUser, StoreError, Timestamp, UserRecord};
use crate::task::to_completion;

mod password;
pub(crate) use password::{parse_password, PasswordCheck};
use rampart::password::PasswordHasher;
use std::sync::Arc;

/// The accounts service; a handler takes it as `State<Accounts>`.
#[derive(Debug, Clone)]
pub struct Accounts(Arc<AccountsParts>);

/// What the service holds, behind one `Arc`: a handler's clone of the service is one count.
#[derive(Debug)]
pub struct AccountsParts {
    store: Arc<dyn Store>,
    hasher: PasswordHasher,
    guard: Guard,
    metrics: ServiceMetrics,
    recorder: Recorder,
    sessions: Sessions,
    /// `RAMPART_REQUIRE_VERIFIED_EMAIL`: a correct password for an unverified address is 403.
    require_verified_email: bool,
}

/// A registration as submitted, before any of it is trusted.
#[derive(Debug)]
pub struct Registration {
    pub email: String,
    pub username: String,
    pub password: SecretString,
}

/// A login as submitted: `name` is a username or an email.
#[derive(Debug)]
pub struct Login {
    pub name: String,
    pub password: SecretString,
    pub user_agent: Option<String>,
    /// From a browser: the session is held by a cookie (`/v1/browser/login`).
    pub browser: bool,
}

/// An account to create from values already parsed, with the hash of its password.
#[derive(Debug)]
pub struct NewAccount<'a> {
    pub email: &'a Email,
    pub username: &'a Username,
    pub password_hash: String,
    pub role: Role,
    /// The operator vouches for the address (`rampart user create`): it starts verified, so
    /// `RAMPART_REQUIRE_VERIFIED_EMAIL` does not lock out an account made from the command line.
    pub vouched: bool,
}

/// The problem type of a sign-in refused until the address is verified.
pub const EMAIL_UNVERIFIED: &str = "urn:rampart:problem:email-unverified";
const UNVERIFIED_DETAIL: &str =
    "Confirm your email address first: open the link sent to it, or ask for a new one.";

/// How long a login's second step may take.
pub const CHALLENGE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// What a correct password gets: a session, or for an account with MFA the second step.
#[derive(Debug)]
pub enum LoginAnswer {
    Opened(Opened),
    MfaRequired(MfaChallenge),
}

/// The second step of a login: send `mfa_token` with a code to `/v1/auth/mfa/verify` within
/// `expires_in` seconds. The token is opaque, single use and bound to the account.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaChallenge {
    /// Always true.
    pub mfa_required: bool,
    pub mfa_token: String,
    pub expires_in: u64,
}

impl std::ops::Deref for Accounts {
    type Target = AccountsParts;
    fn deref(&self) -> &AccountsParts {
        &self.0
    }
}

impl Accounts {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: PasswordHasher,
        guard: Guard,
        metrics: ServiceMetrics,
        recorder: Recorder,
        sessions: Sessions,
        require_verified_email: bool,
    ) -> Self {
        Self(Arc::new(AccountsParts {
            store,
            hasher,
            guard,
            metrics,
            recorder,
            sessions,
            require_verified_email,
        }))
    }

    /// The account `user_id`; [`ServiceError::Unauthorized`] when it is gone (a token's
    /// subject whose account was deleted).
    pub async fn get(&self, user_id: &str) -> Result<UserRecord, ServiceError> {
        self.store
            .find_user(user_id)
            .await?
            .ok_or(ServiceError::Unauthorized)
    }

    /// Parses a registration (every field's errors together), hashes the password and
    /// creates the account with its `register` event.
    pub async fn register(
        &self,
        context: &RequestContext,
        registration: Registration,
    ) -> Result<UserRecord, ServiceError> {
        let mut errors = Vec::new();
        let email = Email::parse(&registration.email)
            .map_err(|m| errors.push(FieldError::new("email", m)))
            .ok();
        let username = Username::parse(&registration.username)
            .map_err(|m| errors.push(FieldError::new("username", m)))
            .ok();
        let (user_hint, email_hint) = (
            username.as_ref().map(|u| u.as_str().to_owned()),
            email.as_ref().map(|e| e.as_str().to_owned()),
        );
        let password = parse_password(registration.password, user_hint, email_hint)
            .await?
            .map_err(|m| errors.push(FieldError::new("password", m)))
            .ok();
        let (Some(email), Some(username), Some(password)) = (email, username, password) else {
            return Err(ServiceError::Invalid(errors));
        };
        let password_hash = self.hasher.hash(password.into_secret()).await?;
        let account = NewAccount {
            email: &email,
            username: &username,
            password_hash,
            role: Role::User,
            vouched: false,
        };
        self.create(account, Event::new(Kind::Register, context))
            .await
    }

    /// Stores a new account and `event` for it, together; [`ServiceError::Taken`] when the
    /// email or username is registered already.
    pub async fn create(
        &self,
        account: NewAccount<'_>,
        event: Event,
    ) -> Result<UserRecord, ServiceError> {
        let new = NewUser {
            id: store::new_id(),
            email: account.email.as_str().to_owned(),
            email_key: account.email.key(),
            username: account.username.as_str().to_owned(),
            username_key: account.username.key(),
            password_hash: account.password_hash,
            role: account.role,
        };
        let vouched = account.vouched;
        let state = self.clone();
        to_completion(async move {
            let mut unit = state.recorder.begin().await?;
            let mut user = unit.tx().create_user(new).await?;
            if vouched {
                user.email_verified = unit
                    .tx()
                    .mark_email_verified(&user.id, &user.email)
                    .await?
                    .is_some();
            }
            unit.record(event.user(&user.id)).await?;
            unit.commit().await?;
            Ok::<_, StoreError>(user)
        })
        .await
        .map_err(|err| match err {
            StoreError::Conflict(taken) => ServiceError::Taken(taken),
            other => ServiceError::Store(other),
        })
    }

    /// Logs in and opens a session; every outcome is counted in the login metrics.
    /// `reports` collects the limits checked on the way, for the answer's headers.
    pub async fn log_in(
        &self,
        context: &RequestContext,
        login: Login,
        reports: &mut Reports,
    ) -> Result<LoginAnswer, ServiceError> {
        let result = self.attempt_login(context, login, reports).await;
        let outcome = match &result {
            Ok(LoginAnswer::Opened(_)) => Some(LoginOutcome::Success),
            Ok(LoginAnswer::MfaRequired(_)) => Some(LoginOutcome::MfaRequired),
            // Counted where the reason is known.
            Err(ServiceError::Unauthorized) => None,
            Err(ServiceError::Limited(refusal)) if refusal.status().as_u16() == 429 => {
                Some(LoginOutcome::Throttled)
            }
            Err(ServiceError::Limited(_) | ServiceError::Hashing(HashError::Busy)) => {
                Some(LoginOutcome::Unavailable)
            }
            Err(ServiceError::Store(err)) if err.is_busy() => Some(LoginOutcome::Unavailable),
            Err(ServiceError::Answer(_)) => Some(LoginOutcome::Unverified),
            Err(_) => Some(LoginOutcome::Invalid),
        };
        if let Some(outcome) = outcome {
            self.metrics.login(outcome);
        }
        result
    }

    async fn attempt_login(
        &self,
        context: &RequestContext,
        login: Login,
        reports: &mut Reports,
    ) -> Result<LoginAnswer, ServiceError> {
        let state = self;
        let login_key = login.name.trim().to_lowercase();
        // Limits and backoff count the name as submitted (bounded), account or not.
        let name: String = login_key.chars().take(254).collect();
        // Shed a login that could not be hashed before anything else is done for it: before
        // the store is read, and before the attempt counts against the name's backoff, so a
        // flood that fills the pool cannot turn an owner's retries into a lockout.
        if state.hasher.is_saturated() {
            return Err(HashError::Busy.into());
        }
        let streak = state
            .guard
            .admit_login(context, &name, reports)
            .await
            .map_err(ServiceError::Limited)?;
        let user = if login_key.is_empty() || login_key.len() > 254 || login_key.contains('\0') {
            None
        } else {
            state.store.find_user_by_login(&login_key).await?
        };
        // Kept for a rehash after a successful verification; zeroised when dropped.
        let password_copy = SecretString::from(login.password.expose_secret().to_owned());
        // A name with no account takes the time of some account's hash (`password::decoys`).
        let verified = match &user {
            Some(user) => {
                state
                    .hasher
                    .verify(login.password, Some(&user.password_hash))
                    .await
            }
            None => state.hasher.verify_unknown(login.password, &name).await,
        }?;
        let (user, needs_rehash) = match (user, verified) {
            (Some(user), Verified::Valid { needs_rehash }) if !user.locked => (user, needs_rehash),
            (user, verified) => {
                let outcome = match (&user, verified) {
                    (None, _) => LoginOutcome::UnknownUser,
                    (Some(u), Verified::Valid { .. }) if u.locked => LoginOutcome::Locked,
                    _ => LoginOutcome::WrongPassword,
                };
                state.metrics.login(outcome);
                let reason = match outcome {
                    LoginOutcome::UnknownUser => "unknown_user",
                    LoginOutcome::Locked => "locked",
                    _ => "wrong_password",
                };
                state.guard.login_failed(context, &name).await;
                // The submitted name only when it is an account's (see `lockout_event`).
                let user_id = user.as_ref().map(|u| u.id.as_str());
                let mut failed = Event::new(Kind::LoginFailed, context)
                    .detail(serde_json::json!({"reason": reason}));
                if let Some(user_id) = user_id {
                    failed = failed
                        .user(user_id)
                        .detail(serde_json::json!({"login": name, "reason": reason}));
                }
                let locked = Guard::lockout_event(context, &name, streak, user_id);
                // On record before the refusal is answered: a guess that could not be recorded
                // is answered 503, not as a wrong password.
                state
                    .recorder
                    .record(std::iter::once(failed).chain(locked).collect())
                    .await?;
                return Err(ServiceError::Unauthorized);
            }
        };
        // Upgrade old or imported hashes now that the password is known to be right.
        let rehash = if needs_rehash {
            match state.hasher.hash(password_copy).await {
                Ok(hash) => Some(hash),
                Err(err) => {
                    tracing::warn!(error = %err, "password rehash skipped");
                    None
                }
            }
        } else {
            None
        };
        if self.require_verified_email && !user.email_verified {
            // Only a correct password learns this; the attempt stays counted, as below.
            state
                .recorder
                .record(vec![
                    Event::new(Kind::LoginUnverified, context).user(&user.id)
                ])
                .await?;
            return Err(ServiceError::Answer(ApiError::Specific {
                status: axum::http::StatusCode::FORBIDDEN,
                kind: EMAIL_UNVERIFIED,
                detail: UNVERIFIED_DETAIL.into(),
            }));
        }
        if user.mfa {
            // The attempt stays counted in the name's streak until the code completes it: a
            // stolen password alone runs into the backoff like a guessed one.
            return self
                .challenge(context, &user, rehash)
                .await
                .map(LoginAnswer::MfaRequired);
        }
        let opening = Opening {
            user_id: user.id.clone(),
            user_agent: login.user_agent,
            verified_hash: user.password_hash.clone(),
            rehash,
            event: Event::new(Kind::LoginSucceeded, context).user(&user.id),
            second_factor: None,
            browser: login.browser,
        };
        let pair = state.sessions.open(context, opening).await?;
        state
            .guard
            .clear_login_backoff(&[&name, &user.username, &user.email])
            .await;
        Ok(LoginAnswer::Opened(pair))
    }

    /// Opens the second step of `user`'s login, whose password was just verified (and is
    /// replaced by `rehash` when given): a single-use token bound to the user and to the
    /// password hash it was verified against, valid for [`CHALLENGE_TTL`].
    async fn challenge(
        &self,
        context: &RequestContext,
        user: &UserRecord,
        rehash: Option<String>,
    ) -> Result<MfaChallenge, ServiceError> {
        let (token, token_hash) = super::new_opaque_token()?;
        let credential = sha256_hex(rehash.as_deref().unwrap_or(&user.password_hash).as_bytes());
        let challenge = NewChallenge {
            token_hash,
            user_id: user.id.clone(),
            credential,
            expires_at: Timestamp::now() + CHALLENGE_TTL,
        };
        let (recorder, user_id, verified) = (
            self.recorder.clone(),
            user.id.clone(),
            user.password_hash.clone(),
        );
        let event = Event::new(Kind::MfaRequired, context).user(&user.id);
        let opened = to_completion(async move {
            let mut unit = recorder.begin().await?;
            // As for a session: only on the hash just verified, and not for a locked account.
            if !unit
                .tx()
                .keep_credential(&user_id, &verified, rehash.as_deref())
                .await?
            {
                return Ok(false);
            }
            unit.tx().create_challenge(challenge).await?;
            unit.record(event).await?;
            unit.commit().await?;
            Ok::<bool, StoreError>(true)
        })
        .await?;
        if !opened {
            return Err(ServiceError::Unauthorized);
        }
        Ok(MfaChallenge {
            mfa_required: true,
            mfa_token: token,
            expires_in: CHALLENGE_TTL.as_secs(),
        })
    }
}
