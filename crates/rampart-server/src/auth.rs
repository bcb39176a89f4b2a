//! Who is calling: bearer access tokens checked against live session state.
//!
//! Defends against tokens outliving what they stand for: a signature-valid token is refused
//! when its session is revoked or expired, its user locked, or the session belongs to someone
//! else. Roles come from the store, never from token claims. The session lookup is cached in
//! memory for a few seconds and dropped at once when this process changes it, so the hot path
//! adds no database read.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{header, HeaderMap};
use rampart::policy::{AuthFuture, Authenticator};
use rampart::{ApiError, Principal};

use crate::state::AppState;
use crate::store::{self, SessionPrincipal};

/// How long a session lookup is trusted before it is read again. Changes made by this process
/// are applied at once (see [`SessionCache::forget_user`]); this bounds changes made elsewhere.
const SESSION_CACHE_TTL: Duration = Duration::from_secs(5);
const SESSION_CACHE_CAPACITY: usize = 100_000;

/// Recently read session state, keyed by session id. Bounded in size and age.
#[derive(Debug, Default)]
pub struct SessionCache {
    entries: Mutex<HashMap<String, (SessionPrincipal, Instant)>>,
}

impl SessionCache {
    fn get(&self, session_id: &str) -> Option<SessionPrincipal> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(session_id)
            .filter(|(_, at)| at.elapsed() < SESSION_CACHE_TTL)
            .map(|(p, _)| p.clone())
    }

    fn put(&self, session_id: &str, principal: SessionPrincipal) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= SESSION_CACHE_CAPACITY {
            entries.retain(|_, (_, at)| at.elapsed() < SESSION_CACHE_TTL);
            if entries.len() >= SESSION_CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(session_id.to_owned(), (principal, Instant::now()));
    }

    /// Drops every cached session of `user_id` (after a lock, role change or logout-all).
    pub fn forget_user(&self, user_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (p, _)| p.user_id != user_id);
    }

    /// Drops one session (after a logout).
    pub fn forget_session(&self, session_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session_id);
    }
}

/// The token from `Authorization: Bearer <token>`, if well formed.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token_chars = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.chars().all(token_chars))
        .then_some(token)
}

impl Authenticator for AppState {
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> AuthFuture<'a> {
        Box::pin(async move {
            let token = bearer_token(headers).ok_or(ApiError::Unauthorized)?;
            let claims = self
                .tokens
                .verify(token)
                .map_err(|_| ApiError::Unauthorized)?;
            let session = if let Some(session) = self.sessions.get(&claims.sid) {
                session
            } else {
                let found = self
                    .store
                    .session_principal(&claims.sid)
                    .await
                    .map_err(|err| {
                        tracing::error!(error = %err, "session lookup failed");
                        ApiError::Unavailable {
                            retry_after: Duration::from_secs(5),
                        }
                    })?;
                let session = found.ok_or(ApiError::Unauthorized)?;
                self.sessions.put(&claims.sid, session.clone());
                session
            };
            let live = !session.revoked
                && !session.user_locked
                && session.user_id == claims.sub
                && session.expires_at > store::now();
            if !live {
                return Err(ApiError::Unauthorized);
            }
            Ok(Principal {
                user_id: claims.sub.clone(),
                session_id: claims.sid.clone(),
                role: session.role,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing_is_strict() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, http::HeaderValue::from_static(v));
            h
        };
        assert_eq!(
            bearer_token(&with("Bearer abc.def-ghi_jkl")),
            Some("abc.def-ghi_jkl")
        );
        assert_eq!(bearer_token(&with("bearer abc")), Some("abc"));
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearerabc",
            "Bearer a\"b",
        ] {
            assert_eq!(bearer_token(&with(bad)), None, "{bad:?}");
        }
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
