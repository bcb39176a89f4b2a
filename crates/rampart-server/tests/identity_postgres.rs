//! The behavioural suite of `identity.rs`, run again on PostgreSQL: the harness picks the backend
//! from this target's name (see `common::backend`).

#[path = "identity.rs"]
mod suite;
