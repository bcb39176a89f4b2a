//! The behavioural suite of `routes.rs`, run again on PostgreSQL: the harness picks the backend
//! from this target's name (see `common::backend`).

#[path = "routes.rs"]
mod suite;
