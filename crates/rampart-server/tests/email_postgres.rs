//! The behavioural suite of `email.rs`, run again on PostgreSQL: the harness picks the backend
//! from this target's name (see `common::backend`).

#[path = "email.rs"]
mod suite;
