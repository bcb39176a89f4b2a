//! notes: a small API of its own (private notes behind API keys) that adopts rampart's layers,
//! the way a team adds them to an axum service it already has. Nothing here comes from the
//! rampart server: no database, no accounts, no `RAMPART_*` settings.
//!
//! What it takes from rampart, and what each defends against:
//! - [`SecureRouter`]: every route declares who may call it; anything else is 401 to anonymous
//!   callers, and an admin route is 403 to everyone else (forgotten auth checks).
//! - [`SecureRouter::limit_clients`]: each caller (each key, or each address for anonymous and
//!   forged requests) gets its own request budget, answered 429 with `RateLimit` headers
//!   (floods, brute force of keys).
//! - [`rampart::Json`]: bodies must be JSON objects of the declared shape, no unknown fields,
//!   bounded nesting (mass assignment, parser abuse).
//! - [`Hardening`]: security headers, request ids, problem+json for every error, the client
//!   address through trusted proxies only, body limits, load shedding, the request timeout, the
//!   access log (see `rampart::http`); each is also a layer of its own.
//! - [`ApiError`]: one error type, rendered as RFC 9457 problem+json that leaks no internals.
//!
//! Its own rules: a note belongs to the key that wrote it, and another key gets 404 for it (the
//! same answer as for a note that does not exist, so ids reveal nothing); each owner holds at
//! most [`MAX_NOTES_PER_OWNER`] notes, so no client grows the server's memory without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use rampart::http::Hardening;
use rampart::limit::{ClientLimit, Limiter, Policy, Quota};
use rampart::policy::{AuthFuture, Charged};
use rampart::{
    AdminUser, ApiError, Authenticator, CurrentUser, Json, Principal, Role, SecureRouter,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Notes one owner may hold.
pub const MAX_NOTES_PER_OWNER: usize = 100;
const MAX_TITLE: usize = 200;
const MAX_BODY: usize = 10_000;

/// One API key: its owner, role, and the SHA-256 of the key (the key itself is never kept).
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub owner: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

impl ApiKey {
    /// Parses `owner:role:sha256-hex` (what `NOTES_API_KEYS` lists, comma-separated).
    pub fn parse(entry: &str) -> Result<Self, String> {
        let mut parts = entry.trim().splitn(3, ':');
        let (Some(owner), Some(role), Some(digest)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected owner:role:sha256-hex".into());
        };
        if owner.is_empty()
            || !owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("the owner must be letters, digits and dashes".into());
        }
        let role = match role {
            "user" => Role::User,
            "admin" => Role::Admin,
            other => return Err(format!("unknown role `{other}` (user or admin)")),
        };
        let sha256 = decode_hex(digest).ok_or("the digest must be 64 hex digits")?;
        Ok(Self {
            owner: owner.to_owned(),
            role,
            sha256,
        })
    }
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 || !bytes.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The app's configuration: its keys, the per-caller budget, and the hardening stack's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub keys: Vec<ApiKey>,
    /// Requests per minute for one caller.
    pub requests_per_minute: u32,
    pub hardening: Hardening,
}

/// Looks keys up by their SHA-256: finding a match means finding a preimage, so the lookup's
/// timing tells an attacker nothing, and a leaked configuration holds no usable key.
struct ApiKeys(HashMap<[u8; 32], Principal>);

impl ApiKeys {
    fn find(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            // The scheme is case-insensitive (RFC 9110 section 11.1).
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key)
            .and_then(|key| {
                self.0
                    .get(&<[u8; 32]>::from(Sha256::digest(key.as_bytes())))
            })
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

/// The key table is in memory, so the gate decides at once and never waits.
impl Authenticator for ApiKeys {
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> AuthFuture<'a> {
        Box::pin(std::future::ready(self.find(headers)))
    }

    fn authenticate_at_once(&self, headers: &HeaderMap) -> Option<Result<Principal, ApiError>> {
        Some(self.find(headers))
    }

    fn recheck_at_once(&self, _: &mut Principal, _: Charged) -> Option<Result<(), ApiError>> {
        Some(Ok(()))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub id: String,
    pub title: String,
    pub body: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNote {
    title: String,
    #[serde(default)]
    body: String,
}

#[derive(Debug, Serialize)]
struct Stats {
    owners: usize,
    notes: usize,
}

/// Notes by owner, in memory.
#[derive(Clone, Default)]
struct Notes(Arc<Mutex<HashMap<String, Vec<Note>>>>);

impl Notes {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Vec<Note>>) -> T) -> T {
        // A panic while holding the lock leaves whole notes behind: nothing is half-written.
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The whole app: routes with their policies, the per-caller limit, then the hardening stack.
pub fn app(config: Config) -> Result<Router, String> {
    let keys = config
        .keys
        .iter()
        .map(|key| {
            let principal = Principal {
                user_id: key.owner.clone(),
                session_id: key.owner.clone(),
                role: key.role,
            };
            (key.sha256, principal)
        })
        .collect();
    let quota = Quota::new(
        config.requests_per_minute,
        std::time::Duration::from_secs(60),
    )
    .ok_or("requests_per_minute must be at least 1")?;
    let policy = Policy::new("notes", quota).ok_or("invalid policy name")?;
    let routes = SecureRouter::new()
        .public(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .authenticated("/v1/notes", get(list).post(create))
        .authenticated("/v1/notes/{id}", get(read).delete(remove))
        .admin("/v1/admin/stats", get(stats))
        .limit_clients(ClientLimit::new(Limiter::in_memory(), policy));
    // The whole stack, in the order that keeps it whole: a body is received only once the
    // caller passed its route's rate limit and policy.
    let authenticator = Arc::new(ApiKeys(keys)); // its own `impl Authenticator`
    Ok(config
        .hardening
        .apply_secured(routes, authenticator, Notes::default()))
}

async fn list(State(notes): State<Notes>, CurrentUser(caller): CurrentUser) -> Json<Vec<Note>> {
    Json(notes.with(|all| all.get(&caller.user_id).cloned().unwrap_or_default()))
}

async fn create(
    State(notes): State<Notes>,
    CurrentUser(caller): CurrentUser,
    Json(new): Json<NewNote>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    if new.title.trim().is_empty() || new.title.chars().count() > MAX_TITLE {
        return Err(ApiError::invalid(
            "title",
            format!("must be 1 to {MAX_TITLE} characters"),
        ));
    }
    if new.body.chars().count() > MAX_BODY {
        return Err(ApiError::invalid(
            "body",
            format!("must be at most {MAX_BODY} characters"),
        ));
    }
    let note = Note {
        id: uuid::Uuid::now_v7().to_string(),
        title: new.title,
        body: new.body,
    };
    notes.with(|all| {
        let mine = all.entry(caller.user_id).or_default();
        if mine.len() >= MAX_NOTES_PER_OWNER {
            return Err(ApiError::Conflict(
                format!("A key holds at most {MAX_NOTES_PER_OWNER} notes; delete one first.")
                    .into(),
            ));
        }
        mine.push(note.clone());
        Ok((StatusCode::CREATED, Json(note)))
    })
}

async fn read(
    State(notes): State<Notes>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Note>, ApiError> {
    notes
        .with(|all| {
            all.get(&caller.user_id)
                .and_then(|mine| mine.iter().find(|note| note.id == id).cloned())
        })
        .map(Json)
        .ok_or(ApiError::NotFound)
}

async fn remove(
    State(notes): State<Notes>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    notes.with(|all| {
        let mine = all.get_mut(&caller.user_id).ok_or(ApiError::NotFound)?;
        let before = mine.len();
        mine.retain(|note| note.id != id);
        if mine.len() == before {
            return Err(ApiError::NotFound);
        }
        Ok(StatusCode::NO_CONTENT)
    })
}

async fn stats(State(notes): State<Notes>, AdminUser(_): AdminUser) -> Json<Stats> {
    Json(notes.with(|all| Stats {
        owners: all.values().filter(|mine| !mine.is_empty()).count(),
        notes: all.values().map(Vec::len).sum(),
    }))
}
