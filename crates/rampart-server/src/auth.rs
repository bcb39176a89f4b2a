//! Who is calling: bearer access tokens, or a browser's session cookie, checked against live
//! session and account state.
//!
//! Defends against tokens outliving what they stand for: a signature-valid token is refused
//! when its session was revoked, never existed or is gone from the store, or its user is
//! locked, and roles come from the store, never from token claims. The checks are in-memory
//! lookups ([`crate::access`]), so the hot path adds no database read but one per session and
//! one per user per recheck interval; a session's absolute end is enforced by never issuing a
//! token that expires after it.

use std::time::Duration;

use http::request::Parts;
use http::{header, HeaderMap};
use rampart::http::RequestContext;
use rampart::policy::{AuthFuture, Authenticator, Charged, DeniedFuture};
use rampart::{ApiError, Principal};

use std::sync::Arc;

use rampart::tokens::Tokens;

use crate::access::{AccessState, Cached, Seen, UserAccess};
use crate::audit::{Event, Kind, Recorder};
use crate::cluster::Cluster;
use crate::store::Store;

/// The token from `Authorization: Bearer <token>`, if well formed (RFC 6750 `b64token`
/// characters) and the only credential sent (two `Authorization` headers are refused,
/// whatever they hold: see [`rampart::http::sole_header`]).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    bearer_credential(headers)
        .filter(|token| rampart::tokens::is_b64token(token))
        .and_then(|token| std::str::from_utf8(token).ok())
}

/// The bytes after `Bearer ` in the only `Authorization` header, not yet checked: the
/// request path hands them to [`Tokens::verify_bytes`], which finds a token it verified before
/// by its bytes and checks the characters of any other (a check per request of ~500 bytes
/// cost twice the cache lookup).
fn bearer_credential(headers: &HeaderMap) -> Option<&[u8]> {
    let value = rampart::http::sole_header(headers, header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

/// The service's [`Authenticator`]: token verification, then this node's view of sessions
/// and users (read from the store when it has none or it is old), kept current with the
/// other nodes.
#[derive(Debug, Clone)]
pub struct Gatekeeper {
    tokens: Tokens,
    access: Arc<AccessState>,
    store: Arc<dyn Store>,
    cluster: Arc<Cluster>,
    recorder: Recorder,
}

impl Gatekeeper {
    pub fn new(
        tokens: Tokens,
        access: Arc<AccessState>,
        store: Arc<dyn Store>,
        cluster: Arc<Cluster>,
        recorder: Recorder,
    ) -> Self {
        Self {
            tokens,
            access,
            store,
            cluster,
            recorder,
        }
    }
}

/// Where deciding on a caller stands: decided, or waiting on one read of the store.
enum Verdict {
    Decided(Result<Principal, ApiError>),
    /// The token is good and its session not revoked, but the session was not confirmed live
    /// in the store within the recheck interval.
    ConfirmSession(Principal),
    /// Everything but the user's role and lock, which are unknown or older than the interval.
    LoadUser {
        principal: Principal,
        seen: Seen,
    },
    /// No bearer token, but a browser's session cookie (its value's hash): the session it
    /// holds is read from the store.
    LookupCookie(String),
}

impl Gatekeeper {
    /// What this node can decide about `headers`' bearer token from memory alone.
    fn verdict(&self, headers: &HeaderMap) -> Verdict {
        let refused = |err| Verdict::Decided(Err(err));
        let Some(token) = bearer_credential(headers) else {
            // A request with `Authorization` is judged by it alone; a browser's cookie
            // otherwise (its cross-site check is `browser::CsrfAdmission`'s, in the gate).
            if headers.contains_key(header::AUTHORIZATION) {
                return refused(ApiError::Unauthorized);
            }
            return match crate::browser::cookie(headers, crate::browser::SESSION_COOKIE) {
                Some(cookie) => Verdict::LookupCookie(crate::store::sha256_hex(cookie.as_bytes())),
                None => refused(ApiError::Unauthorized),
            };
        };
        let Ok(claims) = self.tokens.verify_bytes(token) else {
            return refused(ApiError::Unauthorized);
        };
        // Ids this server issued, or nothing: a signed claim that is not one (a NUL, a name)
        // never reaches the store, where PostgreSQL would fail on it.
        for id in [&claims.sub, &claims.sid] {
            if !crate::domain::RecordId::is_canonical(id) {
                return refused(ApiError::Unauthorized);
            }
        }
        self.for_session(&claims.sub, &claims.sid)
    }

    /// What this node can decide, from memory, about a caller holding session `sid` of user
    /// `sub` (named by a verified token, or found by a cookie).
    fn for_session(&self, sub: &str, sid: &str) -> Verdict {
        let refused = |err| Verdict::Decided(Err(err));
        // Never fail open: a node that cannot confirm other nodes' revocations refuses, and
        // asks for a poll now rather than at the next interval.
        if !self.cluster.freshness.is_current() {
            self.cluster.resync_now();
            return refused(ApiError::DependencyUnavailable {
                retry_after: Duration::from_secs(1),
                cause: "revocations not confirmed within RAMPART_REVOCATION_BOUND".into(),
            });
        }
        if self.access.is_revoked(sid) {
            return refused(ApiError::Unauthorized);
        }
        let confirmed = self.access.session_confirmed(sid, sub);
        // The role is the store's, filled in by `admit`; never the token's.
        let principal = Principal {
            user_id: sub.to_owned(),
            session_id: sid.to_owned(),
            role: rampart::Role::User,
        };
        if !confirmed {
            return Verdict::ConfirmSession(principal);
        }
        self.with_user(principal)
    }

    /// `principal` with its user's current role, unless the user is locked; a read of the
    /// store when this node's copy is unknown or old.
    fn with_user(&self, principal: Principal) -> Verdict {
        match self.access.user(&principal.user_id) {
            Cached::Fresh(user) => Verdict::Decided(admit(principal, user)),
            Cached::Stale(seen) => Verdict::LoadUser { principal, seen },
        }
    }

    /// Finishes a verdict, reading the store where memory could not decide.
    async fn decide(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let mut verdict = self.verdict(headers);
        if let Verdict::LookupCookie(cookie_hash) = &verdict {
            verdict = match self.store.session_by_cookie(cookie_hash).await {
                Ok(Some((sid, sub))) => {
                    // Read live just now: as good as a confirmation.
                    self.access.confirm_session(&sid, &sub);
                    self.for_session(&sub, &sid)
                }
                Ok(None) => Verdict::Decided(Err(ApiError::Unauthorized)),
                Err(err) => Verdict::Decided(Err(ApiError::DependencyUnavailable {
                    retry_after: Duration::from_secs(1),
                    cause: format!("session cookie lookup failed: {err}"),
                })),
            };
        }
        let verdict = match verdict {
            Verdict::ConfirmSession(principal) => {
                self.confirm_session(&principal.session_id, &principal.user_id)
                    .await?;
                self.with_user(principal)
            }
            verdict => verdict,
        };
        self.finish(verdict).await
    }

    /// Reads the user where the verdict needs it.
    async fn finish(&self, verdict: Verdict) -> Result<Principal, ApiError> {
        match verdict {
            Verdict::Decided(decided) => decided,
            Verdict::LoadUser { principal, seen } => {
                let user = self.load_user_access(&principal.user_id, seen).await?;
                admit(principal, user)
            }
            // Only `verdict` asks for a session to be confirmed or a cookie looked up, and
            // `decide` has done both.
            Verdict::ConfirmSession(_) | Verdict::LookupCookie(_) => Err(ApiError::Unauthorized),
        }
    }

    /// A caller verified earlier, as this node now sees its session and user.
    fn standing(&self, principal: Principal) -> Verdict {
        if self.access.is_revoked(&principal.session_id) {
            return Verdict::Decided(Err(ApiError::Unauthorized));
        }
        self.with_user(principal)
    }
}

/// The caller as the store last described its user: refused when locked, else with its role.
fn admit(mut principal: Principal, user: UserAccess) -> Result<Principal, ApiError> {
    stand(&mut principal, user).map(|()| principal)
}

/// [`admit`] in place.
fn stand(principal: &mut Principal, user: UserAccess) -> Result<(), ApiError> {
    if user.locked {
        return Err(ApiError::Unauthorized);
    }
    principal.role = user.role;
    Ok(())
}

impl Authenticator for Gatekeeper {
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> AuthFuture<'a> {
        Box::pin(self.decide(headers))
    }

    fn authenticate_at_once(&self, headers: &HeaderMap) -> Option<Result<Principal, ApiError>> {
        match self.verdict(headers) {
            Verdict::Decided(decided) => Some(decided),
            Verdict::ConfirmSession(_) | Verdict::LoadUser { .. } | Verdict::LookupCookie(_) => {
                None
            }
        }
    }

    /// After the request's limit check: if it (or any other) read an announcement this node has
    /// not applied yet (another node's logout, lock or role change, a moment ago), wait for it,
    /// then look at the session and the user again. A request whose check did not reach Redis
    /// (no global limit, or Redis failed and the limit let it through) reads the count itself.
    fn recheck(&self, principal: Principal, charged: Charged) -> AuthFuture<'_> {
        Box::pin(async move {
            if charged == Charged::NotAnswered {
                self.cluster.read_announcements().await;
            }
            self.cluster.catch_up_on_announcements().await?;
            self.finish(self.standing(principal)).await
        })
    }

    /// As [`Gatekeeper::standing`] decides, on the caller in place, when memory can: `None`
    /// when announcements this node has not applied may be pending (see
    /// [`Cluster::caught_up_at_once`]) or its copy of the user is old.
    fn recheck_at_once(
        &self,
        principal: &mut Principal,
        charged: Charged,
    ) -> Option<Result<(), ApiError>> {
        if !self.cluster.caught_up_at_once(charged) {
            return None;
        }
        if self.access.is_revoked(&principal.session_id) {
            return Some(Err(ApiError::Unauthorized));
        }
        match self.access.user(&principal.user_id) {
            Cached::Fresh(user) => Some(stand(principal, user)),
            Cached::Stale(_) => None,
        }
    }

    /// A user reaching for an admin route: recorded as `access_denied`.
    fn denied<'a>(&'a self, principal: &'a Principal, request: &'a Parts) -> DeniedFuture<'a> {
        Box::pin(async move {
            let Some(context) = RequestContext::of(&request.extensions) else {
                tracing::warn!(user_id = %principal.user_id, "access denied outside the hardened stack");
                return;
            };
            let event = Event::new(Kind::AccessDenied, &context)
                .user(&principal.user_id)
                .detail(serde_json::json!({
                    "method": request.method.as_str(),
                    // Bounded: the path is client-chosen and the audit table keeps it forever.
                    "path": request.uri.path().chars().take(256).collect::<String>(),
                    "required": "admin",
                }));
            self.recorder.record_denied(event);
        })
    }
}

impl Gatekeeper {
    /// Reads whether a token's session is live in the store as its user's: on its first
    /// request to this process and again once the last look is older than the recheck
    /// interval. A token whose session is not (never created, deleted, revoked by hand with any
    /// date, past its end, another user's) is refused. Nothing is remembered of the refusal: a
    /// forged token naming a real session must not end it for its owner.
    async fn confirm_session(&self, session_id: &str, user_id: &str) -> Result<(), ApiError> {
        let live = self
            .store
            .session_is_live(session_id, user_id)
            .await
            .map_err(|err| ApiError::DependencyUnavailable {
                retry_after: Duration::from_secs(1),
                cause: format!("session lookup failed: {err}"),
            })?;
        if live {
            self.access.confirm_session(session_id, user_id);
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    /// Reads a user's role and lock on their first request to this process, and again once
    /// the cached copy is older than the recheck interval.
    async fn load_user_access(&self, user_id: &str, seen: Seen) -> Result<UserAccess, ApiError> {
        let user = self
            .store
            .find_user(user_id)
            .await
            .map_err(|err| ApiError::DependencyUnavailable {
                retry_after: Duration::from_secs(1),
                cause: format!("user lookup failed: {err}"),
            })?
            .ok_or(ApiError::Unauthorized)?;
        Ok(self.access.refreshed(
            user_id,
            UserAccess {
                role: user.role,
                locked: user.locked,
            },
            seen,
        ))
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

    #[test]
    fn a_token_byte_is_exactly_a_b64token_character() {
        for b in 0..=u8::MAX {
            let allowed = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
            assert_eq!(
                rampart::tokens::is_b64token(&[b'a', b, b'z']),
                allowed,
                "byte {b:#04x}"
            );
        }
        // Past the first vector's width too.
        let mut long = b"a".repeat(100);
        long.push(0xe9);
        assert!(!rampart::tokens::is_b64token(&long));
        assert!(rampart::tokens::is_b64token(&b"Az09-._~+/=".repeat(50)));
        // A second credential, even the same one again.
        let mut twice = HeaderMap::new();
        for value in ["Bearer abc", "Bearer abc"] {
            twice.append(header::AUTHORIZATION, http::HeaderValue::from_static(value));
        }
        assert_eq!(bearer_token(&twice), None);
        // Bytes a header value may carry but a token may not, with a good scheme.
        let mut headers = HeaderMap::new();
        for value in [
            b"Bearer abc\x80def".as_slice(),
            b"Bearer abc\tdef",
            b"Bearer  abc",
        ] {
            let value = http::HeaderValue::from_bytes(value).unwrap_or_else(|e| panic!("{e}"));
            headers.insert(header::AUTHORIZATION, value);
            assert_eq!(bearer_token(&headers), None);
        }
    }
}
