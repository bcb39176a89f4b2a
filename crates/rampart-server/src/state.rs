//! The one cloneable application state. No globals: everything a handler needs is reached from
//! here, and backends sit behind `Arc<dyn Trait>` so tests and deployments can swap them.

use std::sync::Arc;

use rampart::keys::KeySet;
use rampart::Settings;

use crate::store::Store;

/// Cloned into every handler call, so it is one `Arc`.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub keys: KeySet,
}

impl AppState {
    pub fn new(settings: Settings, store: Arc<dyn Store>, keys: KeySet) -> Self {
        Self(Arc::new(Shared {
            settings,
            store,
            keys,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("env", &self.settings.env)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}
