//! The audit trail: every security event, persisted, chained and anchored.
//!
//! Defends against silent tampering and missing evidence: events are written to an append-only
//! table whose rows are each sealed to the one before with a keyed MAC ([`chain`]), and the
//! chain's head is kept outside the database ([`anchor`]), so an edited, inserted, deleted,
//! reordered or recomputed row, and the removal of the newest rows, are found by `rampart
//! audit-log verify`, which names what it found. Every event is also a structured log line.
//! Events hold ids, the client address, the request id and a small detail object, never a
//! password or a token.

pub mod anchor;
pub mod chain;
mod recorder;

pub use recorder::{Recorder, Unit};

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::store::{Store, StoreError};
use chain::ChainKey;

/// Kinds of security event (API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Register,
    LoginSucceeded,
    LoginFailed,
    LoginLocked,
    TokenRefreshed,
    RefreshReuseDetected,
    Logout,
    LogoutAll,
    SessionRevoked,
    PasswordChanged,
    PasswordChangeFailed,
    AccessDenied,
    RateLimited,
    UserLocked,
    UserUnlocked,
    RoleChanged,
    /// A correct password for an account with MFA: the login waits for its second factor.
    MfaRequired,
    MfaEnabled,
    MfaDisabled,
    /// A wrong, replayed or unusable second factor (or challenge).
    MfaFailed,
    PasswordResetRequested,
    PasswordReset,
    EmailVerified,
    /// A correct password for an address still to verify, where sign-in needs it.
    LoginUnverified,
    /// The first sealed row of a chain: anchors start at a row of this deployment's own, so
    /// no anchor file from elsewhere (sealed with the same key) fits this chain.
    ChainStarted,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::LoginLocked => "login_locked",
            Self::TokenRefreshed => "token_refreshed",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::Logout => "logout",
            Self::LogoutAll => "logout_all",
            Self::SessionRevoked => "session_revoked",
            Self::PasswordChanged => "password_changed",
            Self::PasswordChangeFailed => "password_change_failed",
            Self::AccessDenied => "access_denied",
            Self::RateLimited => "rate_limited",
            Self::UserLocked => "user_locked",
            Self::UserUnlocked => "user_unlocked",
            Self::RoleChanged => "role_changed",
            Self::MfaRequired => "mfa_required",
            Self::MfaEnabled => "mfa_enabled",
            Self::MfaDisabled => "mfa_disabled",
            Self::MfaFailed => "mfa_failed",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordReset => "password_reset",
            Self::EmailVerified => "email_verified",
            Self::LoginUnverified => "login_unverified",
            Self::ChainStarted => CHAIN_STARTED,
        }
    }
}

/// The kind of [`Kind::ChainStarted`] rows, as stored.
pub const CHAIN_STARTED: &str = "audit_chain_started";

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: Kind,
    pub user_id: Option<String>,
    pub ip: Option<IpAddr>,
    /// The server's own id for the request.
    pub request_id: Option<String>,
    /// The id the client sent, kept in the detail beside the server's (never in its place).
    pub client_request_id: Option<String>,
    /// A small JSON object of ids and reasons; never secrets.
    pub detail: serde_json::Value,
}

impl Event {
    pub fn new(kind: Kind, context: &rampart::http::RequestContext) -> Self {
        Self {
            kind,
            user_id: None,
            ip: Some(context.client_ip),
            request_id: Some(context.server_request_id().to_owned()),
            client_request_id: context.client_request_id().map(str::to_owned),
            detail: serde_json::json!({}),
        }
    }

    /// An event from the command line (no request, no address).
    pub fn command_line(kind: Kind) -> Self {
        Self {
            kind,
            user_id: None,
            ip: None,
            request_id: None,
            client_request_id: None,
            detail: serde_json::json!({"via": "command line"}),
        }
    }

    /// An event of the server's own (no request, no address).
    pub fn server(kind: Kind) -> Self {
        Self {
            detail: serde_json::json!({"via": "server"}),
            ..Self::command_line(kind)
        }
    }

    #[must_use]
    pub fn user(mut self, user_id: &str) -> Self {
        self.user_id = Some(user_id.to_owned());
        self
    }

    #[must_use]
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Admits at most one event per key (a user id, an address) per window, counting the rest, so
/// a caller repeating a denied request writes one audit row a minute, not one per request.
/// Bounded: past its capacity, keys whose window has passed are dropped, then all.
#[derive(Debug)]
pub struct EventSampler {
    window: std::time::Duration,
    keys: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
}

const SAMPLER_CAPACITY: usize = 100_000;

impl Default for EventSampler {
    fn default() -> Self {
        Self::new(std::time::Duration::from_secs(60))
    }
}

impl EventSampler {
    pub fn new(window: std::time::Duration) -> Self {
        Self {
            window,
            keys: std::sync::Mutex::default(),
        }
    }

    /// `Some(left out since the last admitted event)` when `key` may record an event now.
    pub fn admit(&self, key: &str) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((since, left_out)) = keys.get_mut(key) {
            if now.duration_since(*since) < self.window {
                *left_out += 1;
                return None;
            }
            let dropped = *left_out;
            *since = now;
            *left_out = 0;
            return Some(dropped);
        }
        if keys.len() >= SAMPLER_CAPACITY {
            keys.retain(|_, (since, _)| now.duration_since(*since) < self.window);
            if keys.len() >= SAMPLER_CAPACITY {
                keys.clear();
            }
        }
        keys.insert(key.to_owned(), (now, 0));
        Some(0)
    }
}

#[cfg(test)]
mod sampler_tests {
    use super::EventSampler;
    use std::time::Duration;

    #[test]
    fn one_event_per_key_per_window_and_the_rest_are_counted() {
        let sampler = EventSampler::new(Duration::from_millis(50));
        assert_eq!(sampler.admit("mallory"), Some(0));
        for _ in 0..5 {
            assert_eq!(sampler.admit("mallory"), None);
        }
        assert_eq!(sampler.admit("alice"), Some(0), "keys are independent");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(sampler.admit("mallory"), Some(5));
    }

    #[test]
    fn a_spray_of_keys_stays_under_the_capacity() {
        let sampler = EventSampler::new(Duration::from_secs(60));
        for i in 0..super::SAMPLER_CAPACITY + 10 {
            sampler.admit(&format!("key-{i}"));
        }
        assert!(sampler.keys.lock().unwrap().len() <= super::SAMPLER_CAPACITY);
    }
}

impl Event {
    /// The row to append; the store sets its place in the chain and its seal.
    pub fn into_row(self) -> StoredEvent {
        let mut detail = self.detail;
        if let (Some(client_id), Some(object)) = (self.client_request_id, detail.as_object_mut()) {
            object.insert("client_request_id".into(), client_id.into());
        }
        StoredEvent {
            seq: 0,
            id: crate::store::new_id(),
            at: crate::store::now().to_string(),
            kind: self.kind.as_str().to_owned(),
            user_id: self.user_id,
            ip: self.ip.map(|ip| ip.to_string()),
            request_id: self.request_id,
            detail_text: detail.to_string(),
            detail,
            // Set by the store, under its append lock.
            alg: chain::KEYED.to_owned(),
            prev_hash: String::new(),
            hash: String::new(),
        }
    }
}

/// A stored event, as `GET /v1/admin/audit` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    #[serde(skip)]
    pub seq: i64,
    pub id: String,
    pub at: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// The detail exactly as stored: what the seal covers.
    #[serde(skip)]
    pub detail_text: String,
    /// How the row is sealed: [`chain::KEYED`], or [`chain::LEGACY`] for rows from before.
    #[serde(skip)]
    pub alg: String,
    #[serde(skip)]
    pub prev_hash: String,
    #[serde(skip)]
    pub hash: String,
}

/// Writes events: a row the store seals to the newest one under its append lock (across nodes
/// too, so the chain stays linear) inside the transaction of the change it records, then, once
/// that commits, a log line and the anchor moved.
#[derive(Debug)]
pub struct AuditLog {
    key: ChainKey,
    anchor: anchor::Anchor,
}

/// An event appended in a transaction, for [`AuditLog::committed`].
#[derive(Debug)]
pub struct Recorded {
    appended: crate::store::Appended,
    kind: Kind,
    user_id: Option<String>,
    request_id: Option<String>,
}

impl AuditLog {
    /// The log for `store`, sealing with `key` and anchoring at `anchor_path`; refused when
    /// the anchor cannot be trusted (see [`anchor`]).
    pub async fn open(
        store: &dyn Store,
        key: ChainKey,
        anchor_path: PathBuf,
    ) -> Result<Self, anchor::Untrusted> {
        let anchor = anchor::Anchor::open(anchor_path, &key, store).await?;
        Ok(Self { key, anchor })
    }

    /// Appends `event` inside `tx`: it is stored if and only if the transaction commits.
    pub async fn append_in(
        &self,
        tx: &mut dyn crate::store::Tx,
        event: Event,
    ) -> Result<Recorded, StoreError> {
        let (kind, user_id, request_id) =
            (event.kind, event.user_id.clone(), event.request_id.clone());
        let appended = tx.append_audit(event.into_row(), &self.key).await?;
        Ok(Recorded {
            appended,
            kind,
            user_id,
            request_id,
        })
    }

    /// After the transaction holding `recorded` committed: one log line per event, and the
    /// anchor moved to the newest.
    pub async fn committed(&self, store: &dyn Store, recorded: &[Recorded]) {
        for event in recorded {
            // The row's place and seal ride along: log lines shipped off the host witness
            // the chain (`rampart audit-log verify --witness SEQ:SEAL`) even if the database
            // and the anchor file are both rolled back.
            tracing::info!(
                audit = event.kind.as_str(),
                user_id = event.user_id.as_deref().unwrap_or(""),
                request_id = event.request_id.as_deref().unwrap_or(""),
                seq = event.appended.seq,
                seal = %event.appended.hash,
                "security event"
            );
        }
        if let Some(newest) = recorded.iter().map(|r| &r.appended).max_by_key(|a| a.seq) {
            self.anchor.advance(&self.key, store, newest).await;
        }
    }

    /// Records an event that has no change to commit with (a refused login, a denied
    /// request): its own transaction.
    pub async fn record(&self, store: &dyn Store, event: Event) -> Result<(), StoreError> {
        let mut tx = store.begin().await?;
        let recorded = self.append_in(tx.as_mut(), event).await?;
        tx.commit().await?;
        self.committed(store, &[recorded]).await;
        Ok(())
    }
}
