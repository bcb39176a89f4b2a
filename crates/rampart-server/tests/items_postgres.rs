//! The behavioural suite of `items.rs`, run again on PostgreSQL: the harness picks the backend
//! from this target's name (see `common::backend`).

#[path = "items.rs"]
mod suite;
