//! Sessions: opening one at login, listing them, and ending one or all of a user's.
//!
//! Defends against stolen sessions outliving the user's reaction: every way of ending a session
//! marks it revoked in the store and in this node's revocation set ([`crate::access`]) and
//! tells the other nodes, as one step a cancelled request cannot split, so its access tokens
//! are refused on the very next request and its refresh token can no longer be used. A user can
//! only see and end their own sessions: another user's session id answers exactly like one that
//! does not exist. Refresh-token rotation is in [`super::refresh`].

use std::sync::Arc;
use std::time::Duration;

use rampart::http::RequestContext;
use rampart::tokens::Tokens;
use serde::Serialize;
use utoipa::ToSchema;

use super::ServiceError;
use crate::audit::Event;
use crate::audit::Recorder;
use crate::cluster::Revocations;
use crate::store::{
    self, EndedSession, NewSession, SecondFactor, SessionHold, SessionRecord, Store, StoreError,
    Timestamp,
};
use crate::task::to_completion;

/// The sessions service; a handler takes it as `State<Sessions>`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sessions(Arc<SessionsParts>);

/// What the service holds, behind one `Arc`: a handler's clone of the service is one count.
#[derive(Debug)]
pub struct SessionsParts {
    pub(super) lifetimes: Lifetimes,
    pub(super) tokens: Tokens,
    pub(super) store: Arc<dyn Store>,
    pub(super) recorder: Recorder,
    pub(super) revocations: Revocations,
}

/// How long sessions and refresh tokens live (from the settings).
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// A session's absolute end after its login, whatever the refreshes.
    pub session_max_age: Duration,
    /// A refresh token's life, cut to the session's end.
    pub refresh_ttl: Duration,
    /// How long a spent refresh token still gets its identical successor (a retry, two tabs).
    pub refresh_grace: Duration,
}

impl Lifetimes {
    pub fn of(settings: &crate::config::Settings) -> Self {
        Self {
            session_max_age: settings.session_max_age,
            refresh_ttl: settings.refresh_ttl,
            refresh_grace: settings.refresh_grace,
        }
    }
}

/// What a login or a refresh hands the client.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; presented once to `/v1/auth/refresh`.
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

impl TokenPair {
    pub(super) fn new(
        access: rampart::tokens::Issued,
        refresh_token: String,
        refresh_left: std::time::Duration,
    ) -> Self {
        Self {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_in.as_secs(),
            refresh_token,
            refresh_expires_in: refresh_left.as_secs(),
        }
    }
}

/// How a session is opened: who, from where, and what to store and record with it.
#[derive(Debug)]
pub struct Opening {
    pub user_id: String,
    pub user_agent: Option<String>,
    /// The stored hash the password was verified against: the session opens only if it is
    /// still the user's (no password change or lock committed since).
    pub verified_hash: String,
    /// A new hash of the password just verified (an old or imported cost), stored in its
    /// place.
    pub rehash: Option<String>,
    /// The event that records the opening (`login_succeeded`); the session id is added.
    pub event: Event,
    /// For an account with MFA: the challenge (by its token's hash) and the factor that
    /// complete the login, both spent in the transaction that opens the session, so neither
    /// opens a second one.
    pub second_factor: Option<(String, SecondFactor)>,
    /// For a browser: the session is held by a cookie, and no token is issued.
    pub browser: bool,
}

/// A session just opened, as its holder gets it.
#[derive(Debug)]
pub enum Opened {
    /// An API client's access and refresh tokens.
    Tokens(TokenPair),
    /// A browser's session cookie value, and how long it lives.
    Browser { cookie: String, max_age: Duration },
}

impl Opened {
    /// The tokens, for callers that open only API sessions.
    pub fn into_tokens(self) -> Result<TokenPair, ServiceError> {
        match self {
            Self::Tokens(pair) => Ok(pair),
            Self::Browser { .. } => Err(ServiceError::internal(
                "a browser session where tokens were asked for",
            )),
        }
    }
}

/// What the holder of a session being opened keeps, until the transaction commits.
enum Kept {
    Refresh(String),
    Cookie(String),
}

impl std::ops::Deref for Sessions {
    type Target = SessionsParts;
    fn deref(&self) -> &SessionsParts {
        &self.0
    }
}

impl Sessions {
    pub fn new(
        lifetimes: Lifetimes,
        tokens: Tokens,
        store: Arc<dyn Store>,
        recorder: Recorder,
        revocations: Revocations,
    ) -> Self {
        Self(Arc::new(SessionsParts {
            lifetimes,
            tokens,
            store,
            recorder,
            revocations,
        }))
    }

    /// Opens a session with its first refresh token, storing `rehash` and recording `event`
    /// in the same transaction; returns the first token pair. [`ServiceError::Unauthorized`]
    /// (and nothing stored) when the password or lock changed since the password was verified.
    pub async fn open(
        &self,
        context: &RequestContext,
        opening: Opening,
    ) -> Result<Opened, ServiceError> {
        let now = Timestamp::now();
        let session_max_age = self.lifetimes.session_max_age;
        let refresh_ttl = self.lifetimes.refresh_ttl.min(session_max_age);
        let session_id = store::new_id();
        // An API client gets a refresh token; a browser an opaque cookie that ends with the
        // refresh lifetime (no token reaches its scripts).
        let (held_by, expires_at, kept) = if opening.browser {
            let (cookie, hash) = super::new_opaque_token()?;
            (
                SessionHold::Cookie { hash },
                now + refresh_ttl,
                Kept::Cookie(cookie),
            )
        } else {
            let (refresh_token, refresh_hash) = super::new_opaque_token()?;
            (
                SessionHold::Refresh {
                    hash: refresh_hash,
                    expires_at: now + refresh_ttl,
                },
                now + session_max_age,
                Kept::Refresh(refresh_token),
            )
        };
        let session = NewSession {
            id: session_id.clone(),
            user_id: opening.user_id.clone(),
            user_agent: opening.user_agent,
            ip: context.client_ip.to_string(),
            expires_at,
            held_by,
        };
        let (recorder, owner, verified, rehash, second_factor) = (
            self.recorder.clone(),
            opening.user_id,
            opening.verified_hash,
            opening.rehash,
            opening.second_factor,
        );
        // The session id joins what the opener said (how the login was completed).
        let mut event = opening.event;
        match event.detail.as_object_mut() {
            Some(detail) => {
                detail.insert("session_id".into(), session_id.clone().into());
            }
            None => event = event.detail(serde_json::json!({"session_id": session_id})),
        }
        let user_id = owner.clone();
        let opened = to_completion(async move {
            let mut unit = recorder.begin().await?;
            if let Some((challenge, factor)) = &second_factor {
                if !unit.tx().claim_challenge(challenge, &owner).await?
                    || !unit.tx().spend_factor(&owner, factor).await?
                {
                    return Ok(false);
                }
            }
            let current = unit
                .tx()
                .keep_credential(&owner, &verified, rehash.as_deref())
                .await?;
            if !current {
                return Ok(false);
            }
            unit.tx().create_session(session).await?;
            unit.record(event).await?;
            unit.commit().await?;
            Ok::<bool, StoreError>(true)
        })
        .await?;
        if !opened {
            return Err(ServiceError::Unauthorized);
        }
        match kept {
            Kept::Cookie(cookie) => Ok(Opened::Browser {
                cookie,
                max_age: refresh_ttl,
            }),
            Kept::Refresh(refresh_token) => {
                let access = self
                    .tokens
                    .issue(&user_id, &session_id)
                    .map_err(ServiceError::internal)?;
                Ok(Opened::Tokens(TokenPair::new(
                    access,
                    refresh_token,
                    refresh_ttl,
                )))
            }
        }
    }

    /// Ends the caller's own session (a logout, by token or by cookie), recorded as `logout`;
    /// a session another request ended first is logged out all the same.
    pub async fn log_out(
        &self,
        context: &RequestContext,
        caller: &rampart::Principal,
    ) -> Result<(), ServiceError> {
        let event = Event::new(crate::audit::Kind::Logout, context)
            .user(&caller.user_id)
            .detail(serde_json::json!({"session_id": caller.session_id}));
        match self.end(&caller.user_id, &caller.session_id, event).await {
            Ok(_) | Err(ServiceError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// `user_id`'s live sessions, newest first.
    pub async fn list(&self, user_id: &str) -> Result<Vec<SessionRecord>, ServiceError> {
        Ok(self.store.list_sessions(user_id).await?)
    }

    /// Ends one of `user_id`'s sessions, recording `event` with it; [`ServiceError::NotFound`]
    /// (and no event) when the user has no such live session.
    pub async fn end(
        &self,
        user_id: &str,
        session_id: &str,
        event: Event,
    ) -> Result<EndedSession, ServiceError> {
        let (this, user_id, session_id) = (self.clone(), user_id.to_owned(), session_id.to_owned());
        let ended = to_completion(async move {
            let mut unit = this.recorder.begin().await?;
            let ended = unit.tx().revoke_session(&user_id, &session_id).await?;
            if ended.is_some() {
                unit.record(event).await?;
                unit.commit().await?;
            }
            this.revocations.sessions_ended(ended.as_slice()).await;
            Ok::<_, StoreError>(ended)
        })
        .await?;
        ended.ok_or(ServiceError::NotFound)
    }

    /// Ends every session of `user_id` but `keep`, recording the event `describe` makes of
    /// the sessions that ended.
    pub async fn end_all(
        &self,
        user_id: &str,
        keep: Option<&str>,
        describe: impl FnOnce(&[EndedSession]) -> Event + Send + 'static,
    ) -> Result<Vec<EndedSession>, ServiceError> {
        let (this, user_id, keep) = (self.clone(), user_id.to_owned(), keep.map(str::to_owned));
        Ok(to_completion(async move {
            let mut unit = this.recorder.begin().await?;
            let ended = unit
                .tx()
                .revoke_user_sessions(&user_id, keep.as_deref())
                .await?;
            unit.record(describe(&ended)).await?;
            unit.commit().await?;
            this.revocations.sessions_ended(&ended).await;
            Ok::<_, StoreError>(ended)
        })
        .await?)
    }
}

pub(super) fn refresh_token_hash(token: &str) -> String {
    store::sha256_hex(token.as_bytes())
}
