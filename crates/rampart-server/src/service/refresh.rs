//! Refresh: rotating refresh tokens with reuse detection.
//!
//! Defends against stolen refresh tokens: every use spends the token and issues a successor;
//! a spent token presented again after the grace window, or after its successor was used,
//! means two parties hold the same token, so the whole session (the token family) is revoked
//! and both are logged out. Inside the grace window (`RAMPART_REFRESH_GRACE`) a retry gets the
//! identical successor pair while that successor is unused, so two tabs or a retried request
//! do not log the user out. Concurrent refreshes of one token cannot fork the
//! family: the store spends a token with a conditional update that exactly one request wins.
//!
//! The identical successor is recoverable without storing it readable: the spent row keeps it
//! XORed with a pad derived from the spent token itself (a domain-separated SHA-256), which
//! only a holder of that token can compute. The access token is re-signed from the stored
//! `jti` and `iat`; Ed25519 and HMAC signatures are deterministic, so it is byte-identical.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rampart::http::RequestContext;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::new_opaque_token;
use super::sessions::{refresh_token_hash, Sessions, TokenPair};
use super::ServiceError;
use crate::audit::{Event, Kind};
use crate::store::{RefreshState, Rotation, StoreError, Timestamp};

impl Sessions {
    /// Trades the refresh token `presented` for a new pair; the token is spent (see the
    /// module header). [`ServiceError::Unauthorized`] for an unknown, expired, revoked or
    /// reused token, whatever the reason.
    pub async fn refresh(
        &self,
        context: &RequestContext,
        presented: &SecretString,
    ) -> Result<TokenPair, ServiceError> {
        refresh_session(self, context, presented.expose_secret()).await
    }
}

async fn refresh_session(
    sessions: &Sessions,
    context: &RequestContext,
    presented: &str,
) -> Result<TokenPair, ServiceError> {
    if presented.is_empty() || presented.len() > 128 {
        return Err(ServiceError::Unauthorized);
    }
    let hash = refresh_token_hash(presented);
    // A lost race re-reads the row once, and then finds it spent.
    for _ in 0..2 {
        let row = sessions
            .store
            .refresh_state(&hash)
            .await?
            .ok_or(ServiceError::Unauthorized)?;
        let now = Timestamp::now();
        if !row.session_live || row.session_expires_at <= now || row.expires_at <= now {
            return Err(ServiceError::Unauthorized);
        }
        match row.spent_at {
            None => {
                let event = Event::new(Kind::TokenRefreshed, context)
                    .user(&row.user_id)
                    .detail(serde_json::json!({"session_id": row.session_id}));
                if let Some(pair) = rotate(sessions, presented, &hash, &row, now, event).await? {
                    return Ok(pair);
                }
            }
            Some(spent_at) => {
                return replay(sessions, context, presented, &row, spent_at, now).await;
            }
        }
    }
    Err(ServiceError::Unauthorized)
}

/// Spends the token and issues its successor, recording `event` in the same transaction;
/// `None` (and nothing changed or recorded) when a concurrent request spent it first.
async fn rotate(
    sessions: &Sessions,
    presented: &str,
    hash: &str,
    row: &RefreshState,
    now: Timestamp,
    event: Event,
) -> Result<Option<TokenPair>, ServiceError> {
    let (successor, successor_hash) = new_opaque_token()?;
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti)
        .map_err(|_| ServiceError::internal("no randomness for a token id"))?;
    let jti = URL_SAFE_NO_PAD.encode(jti);
    let iat = now.instant().unix_timestamp();
    let session_end = row.session_expires_at;
    let successor_expires = (now + sessions.lifetimes.refresh_ttl).min(session_end);
    let rotation = Rotation {
        spent_hash: hash.to_owned(),
        session_id: row.session_id.clone(),
        successor_hash,
        successor_sealed: seal(presented, &successor)?,
        successor_jti: jti.clone(),
        successor_iat: iat,
        successor_expires_at: successor_expires,
    };
    let recorder = sessions.recorder.clone();
    let rotated = crate::task::to_completion(async move {
        let mut unit = recorder.begin().await?;
        if !unit.tx().rotate_refresh(rotation).await? {
            return Ok(false);
        }
        unit.record(event).await?;
        unit.commit().await?;
        Ok::<bool, StoreError>(true)
    })
    .await?;
    if !rotated {
        return Ok(None);
    }
    let access = sessions
        .tokens
        .issue_until(
            &row.user_id,
            &row.session_id,
            &jti,
            u64::try_from(iat).unwrap_or(0),
            unix_seconds(session_end),
        )
        .map_err(ServiceError::internal)?;
    Ok(Some(TokenPair::new(
        access,
        successor,
        now.until(successor_expires),
    )))
}

/// A spent token again: the same successor pair inside the grace window while that successor
/// is unused, else reuse.
async fn replay(
    sessions: &Sessions,
    context: &RequestContext,
    presented: &str,
    row: &RefreshState,
    spent_at: Timestamp,
    now: Timestamp,
) -> Result<TokenPair, ServiceError> {
    // A retry or a second tab inside the window gets the same pair; once that successor has
    // been used, the spent token coming back is someone else's copy, however soon.
    if spent_at >= now - sessions.lifetimes.refresh_grace && !row.successor_spent {
        if let (Some(sealed), Some(jti), Some(iat), Some(expires)) = (
            &row.successor_sealed,
            &row.successor_jti,
            row.successor_iat,
            row.successor_expires_at,
        ) {
            let successor = unseal(presented, sealed)?;
            let session_end = row.session_expires_at;
            let access = sessions
                .tokens
                .issue_until(
                    &row.user_id,
                    &row.session_id,
                    jti,
                    u64::try_from(iat).unwrap_or(0),
                    unix_seconds(session_end),
                )
                .map_err(ServiceError::internal)?;
            return Ok(TokenPair::new(access, successor, now.until(expires)));
        }
    }
    let event = Event::new(Kind::RefreshReuseDetected, context)
        .user(&row.user_id)
        .detail(serde_json::json!({"session_id": row.session_id, "action": "session_revoked"}));
    // Already ended (a concurrent reuse, a logout) is the same answer.
    match sessions.end(&row.user_id, &row.session_id, event).await {
        Ok(_) | Err(ServiceError::NotFound) => Err(ServiceError::Unauthorized),
        Err(err) => Err(err),
    }
}

fn unix_seconds(at: Timestamp) -> u64 {
    u64::try_from(at.instant().unix_timestamp()).unwrap_or(0)
}

/// The one-time pad for the successor of `presented`: only a holder of `presented` can derive it.
fn pad(presented: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"rampart refresh successor seal v1\0");
    hasher.update(presented.as_bytes());
    hasher.finalize().into()
}

fn seal(presented: &str, successor: &str) -> Result<String, ServiceError> {
    let raw: [u8; 32] = URL_SAFE_NO_PAD
        .decode(successor)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ServiceError::internal("malformed successor token"))?;
    let pad = pad(presented);
    let sealed: Vec<u8> = raw.iter().zip(pad).map(|(a, b)| a ^ b).collect();
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

fn unseal(presented: &str, sealed: &str) -> Result<String, ServiceError> {
    let sealed = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| ServiceError::internal("malformed sealed successor"))?;
    let raw: Vec<u8> = sealed
        .iter()
        .zip(pad(presented))
        .map(|(a, b)| a ^ b)
        .collect();
    Ok(URL_SAFE_NO_PAD.encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_only_with_the_spent_token() {
        let (successor, _) = new_opaque_token().unwrap();
        let sealed = seal("spent-token-A", &successor).unwrap();
        assert_ne!(sealed, successor);
        assert_eq!(unseal("spent-token-A", &sealed).unwrap(), successor);
        assert_ne!(unseal("spent-token-B", &sealed).unwrap(), successor);
    }

    use std::time::Duration;

    use crate::service::sessions::Opening;
    use crate::service::testing::{context, Fixture, PASSWORD_HASH};

    /// A fixture, its sessions service with `grace`, and the first pair of a new session.
    async fn opened(grace: Duration) -> (Fixture, Sessions, TokenPair) {
        let fixture = Fixture::new().await;
        let sessions = fixture.sessions(grace);
        let user = fixture.user("rita").await;
        let pair = sessions
            .open(
                &context([192, 0, 2, 1]),
                Opening {
                    user_id: user.user_id,
                    user_agent: None,
                    verified_hash: PASSWORD_HASH.into(),
                    rehash: None,
                    event: Event::new(Kind::LoginSucceeded, &context([192, 0, 2, 1])),
                    second_factor: None,
                    browser: false,
                },
            )
            .await
            .and_then(super::super::sessions::Opened::into_tokens)
            .unwrap_or_else(|e| panic!("{e}"));
        (fixture, sessions, pair)
    }

    async fn refresh(sessions: &Sessions, token: &str) -> Result<TokenPair, ServiceError> {
        sessions
            .refresh(
                &context([192, 0, 2, 1]),
                &SecretString::from(token.to_owned()),
            )
            .await
    }

    #[tokio::test]
    async fn each_use_spends_the_token_and_a_replay_after_the_grace_ends_the_session() {
        let (fixture, sessions, first) = opened(Duration::ZERO).await;
        let second = refresh(&sessions, &first.refresh_token)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(second.refresh_token, first.refresh_token);
        // The spent token again: two parties hold it, so the whole family is revoked...
        let replay = refresh(&sessions, &first.refresh_token).await;
        assert!(
            matches!(replay, Err(ServiceError::Unauthorized)),
            "{replay:?}"
        );
        // ...the successor included,
        let successor = refresh(&sessions, &second.refresh_token).await;
        assert!(
            matches!(successor, Err(ServiceError::Unauthorized)),
            "{successor:?}"
        );
        // and the detection is on the record.
        assert_eq!(fixture.events("refresh_reuse_detected").await.len(), 1);
    }

    #[tokio::test]
    async fn a_retry_inside_the_grace_gets_the_identical_successor_only_while_it_is_unused() {
        let (_fixture, sessions, first) = opened(Duration::from_secs(30)).await;
        let second = refresh(&sessions, &first.refresh_token)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let retried = refresh(&sessions, &first.refresh_token)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(retried.refresh_token, second.refresh_token);
        assert_eq!(retried.access_token, second.access_token);
        // Once the successor is used, the spent token is a replay even inside the grace.
        refresh(&sessions, &second.refresh_token)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let late = refresh(&sessions, &first.refresh_token).await;
        assert!(matches!(late, Err(ServiceError::Unauthorized)), "{late:?}");
    }

    #[tokio::test]
    async fn made_up_and_oversized_tokens_are_refused_alike() {
        let (_fixture, sessions, _) = opened(Duration::ZERO).await;
        for token in ["", "made-up", &"x".repeat(129)] {
            let refused = refresh(&sessions, token).await;
            assert!(
                matches!(refused, Err(ServiceError::Unauthorized)),
                "{token}"
            );
        }
    }
}
