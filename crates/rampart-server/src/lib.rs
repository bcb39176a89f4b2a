//! The rampart reference service: routes, stores, docs and the CLI, built on the `rampart`
//! layers. The binary (`rampart`) is a thin wrapper over [`cli::main`].

pub mod abuse;
pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod docs;
pub mod domain;
pub mod hash_params;
pub mod import;
pub mod metrics;
pub mod posture;
pub mod routes;
pub mod service;
pub mod state;
pub mod store;
pub mod task;
