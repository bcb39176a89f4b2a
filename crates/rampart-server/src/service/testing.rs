//! What the services' unit tests run on: a migrated SQLite store in a temporary directory (the
//! store refuses an in-memory SQLite, whose connections would not share one database), a
//! recorder sealing its audit chain there, accounts written straight into the store, and a
//! request context as the HTTP stack would make one. A service is tested here by its rules,
//! without HTTP; the black-box suite in `tests/` covers the routes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use rampart::http::RequestContext;
use rampart::{Principal, Role};
use secrecy::SecretString;

use crate::access::AccessState;
use crate::audit::chain::ChainKey;
use crate::audit::{AuditLog, Recorder, StoredEvent};
use crate::cluster::{Cluster, Revocations};
use crate::service::sessions::{Lifetimes, Sessions};
use crate::store::{NewUser, Store};

/// A store and a recorder that live as long as the fixture (its directory goes with it).
pub(crate) struct Fixture {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) recorder: Recorder,
    dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
        let url = format!("sqlite://{}", dir.path().join("rampart.db").display());
        let store = crate::store::open(&SecretString::from(url))
            .await
            .unwrap_or_else(|e| panic!("opening the store: {e}"));
        let log = AuditLog::open(
            store.as_ref(),
            ChainKey::derive(b"service unit tests"),
            dir.path().join("audit-anchor"),
        )
        .await
        .unwrap_or_else(|e| panic!("opening the audit log: {e}"));
        let recorder = Recorder::new(log, Arc::clone(&store));
        Self {
            store,
            recorder,
            dir,
        }
    }

    /// The SQLite file the store keeps, for a test that must set a row as no service would.
    pub(crate) fn database(&self) -> std::path::PathBuf {
        self.dir.path().join("rampart.db")
    }

    /// An account named `name`, as its verified caller.
    pub(crate) async fn user(&self, name: &str) -> Principal {
        let id = crate::store::new_id();
        let mut tx = self
            .store
            .begin()
            .await
            .unwrap_or_else(|e| panic!("begin: {e}"));
        tx.create_user(NewUser {
            id: id.clone(),
            email: format!("{name}@example.com"),
            email_key: format!("{name}@example.com"),
            username: name.to_owned(),
            username_key: name.to_owned(),
            password_hash: PASSWORD_HASH.into(),
            role: Role::User,
        })
        .await
        .unwrap_or_else(|e| panic!("creating {name}: {e}"));
        // Signed in, as a caller the gate admitted is: a session of theirs that is live.
        let session_id = crate::store::new_id();
        tx.create_session(crate::store::NewSession {
            id: session_id.clone(),
            user_id: id.clone(),
            user_agent: None,
            ip: "192.0.2.1".into(),
            expires_at: crate::store::now() + Duration::from_secs(24 * 3600),
            held_by: crate::store::SessionHold::Cookie {
                hash: format!("cookie of {name}"),
            },
        })
        .await
        .unwrap_or_else(|e| panic!("signing {name} in: {e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("commit: {e}"));
        Principal {
            user_id: id,
            session_id,
            role: Role::User,
        }
    }

    /// The audit rows of `kind`, newest first, waiting up to two seconds for one to appear
    /// (sampled events are written off the request path).
    pub(crate) async fn events(&self, kind: &str) -> Vec<StoredEvent> {
        for _ in 0..100 {
            let rows = self.matching(kind).await;
            if !rows.is_empty() {
                return rows;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Vec::new()
    }

    async fn matching(&self, kind: &str) -> Vec<StoredEvent> {
        let rows = self
            .store
            .audit_page(None, 100)
            .await
            .unwrap_or_else(|e| panic!("reading the audit log: {e}"));
        rows.into_iter().filter(|row| row.kind == kind).collect()
    }
}

/// The stored password hash of every account the fixture makes (sessions open only while it is
/// still the account's).
pub(crate) const PASSWORD_HASH: &str = "not used by these tests";

impl Fixture {
    /// The sessions service on this store: fresh Ed25519 keys, one node, 15-minute access
    /// tokens, and a refresh grace of `grace`.
    pub(crate) fn sessions(&self, grace: std::time::Duration) -> Sessions {
        let keys = rampart::keys::KeySet::generate().unwrap_or_else(|e| panic!("keys: {e}"));
        let policy = rampart::tokens::TokenPolicy {
            issuer: "rampart".into(),
            audience: "rampart".into(),
            ttl: Duration::from_secs(15 * 60),
        };
        let tokens =
            rampart::tokens::Tokens::eddsa(&keys, policy).unwrap_or_else(|e| panic!("tokens: {e}"));
        let bound = Duration::from_secs(5);
        let revocations = Revocations::new(
            Arc::new(AccessState::new(Duration::from_secs(16 * 60), bound)),
            Arc::new(Cluster::single(bound)),
        );
        let lifetimes = Lifetimes {
            session_max_age: Duration::from_secs(30 * 86_400),
            refresh_ttl: Duration::from_secs(7 * 86_400),
            refresh_grace: grace,
        };
        Sessions::new(
            lifetimes,
            tokens,
            Arc::clone(&self.store),
            self.recorder.clone(),
            revocations,
        )
    }
}

impl Fixture {
    /// The admin service on this store: one node, limits as shipped, kept in process.
    pub(crate) fn admin(&self) -> crate::service::admin::Admin {
        let settings = crate::config::Settings::from_map(
            [(
                "RAMPART_AUDIT_ANCHOR".to_owned(),
                self.dir.path().join("audit-anchor").display().to_string(),
            )]
            .into(),
        )
        .unwrap_or_else(|e| panic!("settings: {e}"));
        let control =
            crate::abuse::AbuseControl::new(&settings, rampart::limit::Limiter::in_memory())
                .unwrap_or_else(|e| panic!("limits: {e}"));
        let guard = crate::abuse::Guard::new(
            control,
            crate::metrics::ServiceMetrics::default(),
            self.recorder.clone(),
        );
        let bound = Duration::from_secs(5);
        let revocations = Revocations::new(
            Arc::new(AccessState::new(Duration::from_secs(16 * 60), bound)),
            Arc::new(Cluster::single(bound)),
        );
        crate::service::admin::Admin::new(
            Arc::clone(&self.store),
            Arc::new(rampart::pagination::CursorKey::derive(b"admin unit tests")),
            self.recorder.clone(),
            revocations,
            guard,
        )
    }

    /// An account named `name` made admin in the store, as its verified caller.
    pub(crate) async fn admin_user(&self, name: &str) -> Principal {
        let principal = self.user(name).await;
        let mut tx = self
            .store
            .begin()
            .await
            .unwrap_or_else(|e| panic!("begin: {e}"));
        tx.set_role(&principal.user_id, Role::Admin)
            .await
            .unwrap_or_else(|e| panic!("making {name} admin: {e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("commit: {e}"));
        Principal {
            role: Role::Admin,
            ..principal
        }
    }
}

/// A request from `ip`, as the HTTP stack would describe it.
pub(crate) fn context(ip: [u8; 4]) -> RequestContext {
    RequestContext {
        request_id: HeaderValue::from_static("unit-test-request"),
        server_request_id: HeaderValue::from_static("unit-test-request"),
        client_ip: IpAddr::from(ip),
    }
}
