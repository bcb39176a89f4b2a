//! rampart: the security layers of a hardened HTTP API, as axum and tower building blocks.
//!
//! Each module defends against one class of problem and says which in its own header:
//! [`settings`] (unsafe configuration values), [`error`] (information leaks), [`identity`] and
//! [`policy`] (forgotten access checks), [`json`] (hostile bodies), [`http`] (browser-side
//! attacks, oversized and slow requests, spoofed client addresses, untraceable requests, each
//! a layer of its own), [`keys`] (signing-key handling), [`limit`] (brute force and floods),
//! [`password`] (offline cracking, timing oracles), [`pagination`] (unbounded reads and forged
//! cursors), [`server`] (connection exhaustion) and [`telemetry`] (secrets in logs).
//!
//! Nothing here reads the environment: an app passes each layer a typed value, so adopting a
//! layer brings no configuration schema with it (the rampart server's own is in its `config`).

pub mod error;
pub mod http;
pub mod identity;
pub mod json;
pub mod keys;
pub mod limit;
pub mod metrics;
pub mod pagination;
pub mod password;
pub mod policy;
pub mod rfc3339;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod tokens;

pub use error::{ApiError, FieldError, Problem};
pub use json::Json;
pub use policy::{Access, AdminUser, Authenticator, CurrentUser, Principal, Role, SecureRouter};
