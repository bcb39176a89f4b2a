//! The behavioural suite of `audit.rs`, run again on PostgreSQL: the harness picks the backend
//! from this target's name (see `common::backend`).

#[path = "audit.rs"]
mod suite;
