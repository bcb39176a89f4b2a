//! The one cloneable application state. No globals: everything a handler needs is reached from
//! here, and backends sit behind `Arc<dyn Trait>` so tests and deployments can swap them.

use std::sync::Arc;

use rampart::keys::KeySet;
use rampart::Settings;

use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeySet>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("env", &self.settings.env)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}
