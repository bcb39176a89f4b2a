//! The behavioural suite of `mfa.rs`, run again on PostgreSQL: the harness picks the backend
//! from this target's name (see `common::backend`).

#[path = "mfa.rs"]
mod suite;
