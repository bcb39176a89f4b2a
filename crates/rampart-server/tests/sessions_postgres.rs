//! The behavioural suite of `sessions.rs`, run again on PostgreSQL: the harness picks the backend
//! from this target's name (see `common::backend`).

#[path = "sessions.rs"]
mod suite;
