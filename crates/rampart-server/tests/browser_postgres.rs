//! The behavioural suite of `browser.rs`, run again on PostgreSQL: the harness picks the
//! backend from this target's name (see `common::backend`).

#[path = "browser.rs"]
mod suite;
