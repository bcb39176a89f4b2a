//! The rampart reference service, built on the `rampart` layers. One request goes listener ->
//! the hardening stack -> [`routes`] (extract, call a service, answer) -> [`service`] (the
//! rules) -> [`store`] (SQL written once for both backends), with [`audit`] recording every
//! change in its transaction, [`abuse`] guarding the credential endpoints and [`cluster`]
//! keeping other nodes current. [`app`] builds the parts and the services, [`state`] holds
//! them. The binary (`rampart`) is a thin wrapper over [`cli::main`].

pub mod abuse;
pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod browser;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod docs;
pub mod domain;
pub mod hash_params;
pub mod import;
pub mod mail;
pub mod metrics;
pub mod posture;
pub mod routes;
pub mod service;
pub mod state;
pub mod store;
pub mod task;
