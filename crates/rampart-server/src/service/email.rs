//! Links sent by mail: a forgotten password's reset, and proof that a user reads mail at their
//! address.
//!
//! Defends against account takeover through the recovery path and against address enumeration.
//! `forgot` answers 202 whatever the address, after the same work on the request path (the
//! per-address and per-mailbox limits, then handing the address to a background task), so
//! neither the answer nor its timing says whether an account exists. A link's token is 256
//! random bits stored only as a SHA-256; it is spent by the request that uses it (one
//! statement, so two racing uses cannot both succeed); a reset link lives 30 minutes and dies
//! when a newer one is sent or the password changes. A reset ends every session and sets the
//! new password in one transaction with its audit row. Links are built on the configured
//! public URL, never on a request's `Host` header, so a forged host cannot send a victim's
//! token elsewhere. Unknown, used, expired and malformed tokens all get the same 400.

use std::sync::Arc;
use std::time::Duration;

use rampart::http::RequestContext;
use rampart::password::PasswordHasher;
use rampart::{ApiError, Principal};
use secrecy::SecretString;
use tokio::sync::Semaphore;

use super::accounts::parse_password;
use super::sessions::Sessions;
use super::ServiceError;
use crate::abuse::Guard;
use crate::audit::{Event, Kind, Recorder};
use crate::browser::PublicOrigin;
use crate::domain::Email;
use crate::mail::{Message, Outbox};
use crate::store::{
    EmailTokenRecord, LinkPurpose, NewEmailToken, Store, StoreError, Timestamp, UserRecord,
};
use crate::task::to_completion;

/// How long a reset link works.
pub const RESET_TTL: Duration = Duration::from_secs(30 * 60);
/// How long a verification link works.
pub const VERIFY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Forgot-password requests looked up at once in the background; past it, a request is still
/// answered 202 and its message is not sent (logged), so a flood cannot queue work without end.
const LOOKUPS_IN_FLIGHT: usize = 64;
const FORGOT_PATH: &str = "/v1/auth/password/forgot";
const RESEND_PATH: &str = "/v1/auth/email/verify/resend";

/// The problem type of every unusable link token.
pub const INVALID_TOKEN: &str = "urn:rampart:problem:invalid-token";

/// The mailed-links service; a handler takes it as `State<EmailLinks>`.
#[derive(Debug, Clone)]
pub struct EmailLinks(Arc<EmailParts>);

#[derive(Debug)]
pub struct EmailParts {
    store: Arc<dyn Store>,
    recorder: Recorder,
    sessions: Sessions,
    hasher: PasswordHasher,
    guard: Guard,
    /// `None`: mail is off; the routes that send answer 503.
    outbox: Option<Outbox>,
    /// The base of links (the configured public URL, or the bound address in development).
    public_url: PublicOrigin,
    lookups: Arc<Semaphore>,
}

impl std::ops::Deref for EmailLinks {
    type Target = EmailParts;
    fn deref(&self) -> &EmailParts {
        &self.0
    }
}

impl EmailLinks {
    pub fn new(
        store: Arc<dyn Store>,
        recorder: Recorder,
        sessions: Sessions,
        hasher: PasswordHasher,
        guard: Guard,
        outbox: Option<Outbox>,
        public_url: PublicOrigin,
    ) -> Self {
        Self(Arc::new(EmailParts {
            store,
            recorder,
            sessions,
            hasher,
            guard,
            outbox,
            public_url,
            lookups: Arc::new(Semaphore::new(LOOKUPS_IN_FLIGHT)),
        }))
    }

    fn outbox(&self) -> Result<&Outbox, ServiceError> {
        self.outbox.as_ref().ok_or(ServiceError::MailOff)
    }

    /// Asks for a reset link for `email`. Answers the same whether or not it has an account;
    /// the lookup and the message happen in the background.
    pub async fn forgot(&self, context: &RequestContext, email: &str) -> Result<(), ServiceError> {
        self.outbox()?;
        // Something that is not an address cannot have an account: the same answer.
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let mailbox = email.key();
        self.guard
            .admit_message(context, &mailbox, FORGOT_PATH)
            .await
            .map_err(ServiceError::Limited)?;
        let Ok(permit) = Arc::clone(&self.lookups).try_acquire_owned() else {
            tracing::warn!("too many password resets at once; one was not sent");
            return Ok(());
        };
        let (links, context) = (self.clone(), context.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(err) = links.send_reset(&context, &mailbox).await {
                tracing::warn!(error = %err, "a password reset link was not sent");
            }
        });
        Ok(())
    }

    async fn send_reset(
        &self,
        context: &RequestContext,
        mailbox: &str,
    ) -> Result<(), ServiceError> {
        let Some(user) = self.store.find_user_by_login(mailbox).await? else {
            return Ok(());
        };
        // The login key matches usernames too: only an account whose address this is.
        if user.email.to_ascii_lowercase() != mailbox || user.locked {
            return Ok(());
        }
        let event = Event::new(Kind::PasswordResetRequested, context).user(&user.id);
        let token = self
            .issue(&user, LinkPurpose::Reset, RESET_TTL, Some(event))
            .await?;
        let link = self.link("/account/reset", &token);
        self.outbox()?.send(Message {
            to: user.email.clone(),
            subject: "Reset your password".into(),
            text: format!(
                "Someone asked to reset the password of {username}.\n\n\
                 To choose a new password, open this link within 30 minutes:\n\n{link}\n\n\
                 If it was not you, ignore this message: your password stays as it is.\n",
                username = user.username,
            ),
        });
        Ok(())
    }

    /// Sends `user` a link proving they read mail at their address (at registration, and when
    /// they ask again), charged to the mailbox's limit under `path`. Nothing is sent for an
    /// address already verified.
    pub async fn send_verification(
        &self,
        context: &RequestContext,
        user: &UserRecord,
        path: &'static str,
    ) -> Result<(), ServiceError> {
        let outbox = self.outbox()?;
        if user.email_verified {
            return Ok(());
        }
        // Every message to the mailbox counts, the one sent at registration too.
        self.guard
            .admit_message(context, &user.email.to_ascii_lowercase(), path)
            .await
            .map_err(ServiceError::Limited)?;
        // Not an audit event of its own: registration and `email_verified` record the account's
        // side of it, and a resend is limited per mailbox.
        let token = self
            .issue(user, LinkPurpose::Verify, VERIFY_TTL, None)
            .await?;
        let link = self.link("/account/verify-email", &token);
        outbox.send(Message {
            to: user.email.clone(),
            subject: "Confirm your email address".into(),
            text: format!(
                "Confirm that {email} is the address of {username} by opening this link within \
                 24 hours:\n\n{link}\n\nIf you did not sign up, ignore this message.\n",
                email = user.email,
                username = user.username,
            ),
        });
        Ok(())
    }

    /// The caller asks for a new verification link.
    pub async fn resend(
        &self,
        context: &RequestContext,
        caller: &Principal,
    ) -> Result<(), ServiceError> {
        self.outbox()?;
        let user = self
            .store
            .find_user(&caller.user_id)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        self.send_verification(context, &user, RESEND_PATH).await
    }

    /// Sets a new password with a reset link's token: every session ends. A new password the
    /// policy refuses (422) leaves the token unspent.
    pub async fn reset(
        &self,
        context: &RequestContext,
        token: &str,
        new_password: SecretString,
    ) -> Result<(), ServiceError> {
        let token_hash = super::opaque_token_hash(token).ok_or_else(invalid_token)?;
        let link = self
            .store
            .email_token(&token_hash, LinkPurpose::Reset)
            .await?
            .ok_or_else(invalid_token)?;
        // A lock ends pending links; one issued in the same instant is refused here too.
        let user = self
            .store
            .find_user(&link.user_id)
            .await?
            .filter(|user| !user.locked)
            .ok_or_else(invalid_token)?;
        let password = parse_password(
            new_password,
            Some(user.username.clone()),
            Some(user.email.clone()),
        )
        .await?
        .map_err(|m| ServiceError::invalid("new_password", &m))?;
        let hash = self.hasher.hash(password.into_secret()).await?;
        let (recorder, user_id) = (self.recorder.clone(), user.id.clone());
        let event = Event::new(Kind::PasswordReset, context).user(&user.id);
        let verified = Event::new(Kind::EmailVerified, context).user(&user.id);
        let ended = to_completion(async move {
            let mut unit = recorder.begin().await?;
            let Some(spent) = unit
                .tx()
                .spend_email_token(&token_hash, LinkPurpose::Reset)
                .await?
            else {
                return Ok(None);
            };
            if spent.user_id != user_id {
                return Ok(None);
            }
            unit.tx().set_password_hash(&user_id, &hash).await?;
            let ended = unit.tx().revoke_user_sessions(&user_id, None).await?;
            unit.record(event.detail(serde_json::json!({"sessions_ended": ended.len()})))
                .await?;
            // Reading the link proved the mailbox too.
            if unit
                .tx()
                .mark_email_verified(&user_id, &spent.email)
                .await?
                == Some(true)
            {
                unit.record(verified.detail(serde_json::json!({"by": "password_reset"})))
                    .await?;
            }
            unit.commit().await?;
            Ok::<_, StoreError>(Some(ended))
        })
        .await?
        .ok_or_else(invalid_token)?;
        self.sessions.revocations.sessions_ended(&ended).await;
        // As for a password change: with a second factor, the streak of wrong codes stays.
        if !user.mfa {
            self.guard
                .clear_login_backoff(&[&user.username, &user.email])
                .await;
        }
        Ok(())
    }

    /// Marks the address a verification link was sent to as verified.
    pub async fn verify(&self, context: &RequestContext, token: &str) -> Result<(), ServiceError> {
        let token_hash = super::opaque_token_hash(token).ok_or_else(invalid_token)?;
        let recorder = self.recorder.clone();
        let context = context.clone();
        to_completion(async move {
            let mut unit = recorder.begin().await?;
            let Some(EmailTokenRecord { user_id, email }) = unit
                .tx()
                .spend_email_token(&token_hash, LinkPurpose::Verify)
                .await?
            else {
                return Ok(false);
            };
            match unit.tx().mark_email_verified(&user_id, &email).await? {
                // The address changed since the link was sent.
                None => return Ok(false),
                Some(true) => {
                    unit.record(Event::new(Kind::EmailVerified, &context).user(&user_id))
                        .await?;
                }
                // Verified already (by another link, or a reset): spent, nothing to record.
                Some(false) => {}
            }
            unit.commit().await?;
            Ok::<bool, StoreError>(true)
        })
        .await?
        .then_some(())
        .ok_or_else(invalid_token)
    }

    /// Stores a new token of `purpose` for `user` (ending their older ones), with `event` when
    /// given; returns the token for the link.
    async fn issue(
        &self,
        user: &UserRecord,
        purpose: LinkPurpose,
        ttl: Duration,
        event: Option<Event>,
    ) -> Result<String, ServiceError> {
        let (token, token_hash) = super::new_opaque_token()?;
        let new = NewEmailToken {
            token_hash,
            user_id: user.id.clone(),
            purpose,
            email: user.email.clone(),
            expires_at: Timestamp::now() + ttl,
        };
        let recorder = self.recorder.clone();
        to_completion(async move {
            let mut unit = recorder.begin().await?;
            unit.tx().issue_email_token(new).await?;
            if let Some(event) = event {
                unit.record(event).await?;
            }
            unit.commit().await
        })
        .await?;
        Ok(token)
    }

    fn link(&self, path: &str, token: &str) -> String {
        let base = self.public_url.url().unwrap_or("http://localhost");
        format!("{base}{path}?token={token}")
    }
}

fn invalid_token() -> ServiceError {
    ServiceError::Answer(ApiError::Specific {
        status: axum::http::StatusCode::BAD_REQUEST,
        kind: INVALID_TOKEN,
        detail: "This link is unknown, used or expired; ask for a new one.".into(),
    })
}
