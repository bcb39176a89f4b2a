//! Assembles the service from settings: posture, keys, store, routes, hardening, serving.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use rampart::http::{HardenedService, Hardening};
use rampart::limit::{ClientLimit, LimitObserver, Limiter};
use rampart::password::PasswordHasher;
use rampart::policy::Authenticator;
use rampart::server::{self, ServeOptions};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::abuse::AbuseControl;
use crate::access::AccessState;
use crate::cluster::Cluster;
use crate::config::{KeysSource, Settings, StoreFailure};
use crate::state::{AppState, Shared};
use crate::{docs, routes, store};

mod keys;
pub use keys::{audit_chain_key, load_keys, token_service, totp_sealer};
use keys::{cursor_key, deployment_secret};

/// Bound on one limiter call to Redis: a request never waits longer for its rate limit.
const REDIS_LIMIT_TIMEOUT: Duration = Duration::from_millis(500);

/// Production refuses to start on any failing posture item; this error names them.
#[derive(Debug, thiserror::Error)]
#[error("refusing to start in production; unsafe settings:\n{0}")]
pub struct UnsafePosture(pub String);

/// Checks the posture: an error in production when anything fails, log lines otherwise.
pub fn enforce_posture(settings: &Settings) -> Result<(), UnsafePosture> {
    let posture = crate::posture::Posture::assess(settings);
    if settings.env.is_production() && !posture.is_safe_for_production() {
        let lines: Vec<String> = posture
            .failures()
            .map(|item| format!("  {}: {}", item.setting, item.message))
            .collect();
        return Err(UnsafePosture(lines.join("\n")));
    }
    for item in posture.failures() {
        tracing::warn!(
            setting = item.setting,
            "{} (production would refuse this)",
            item.message
        );
    }
    Ok(())
}

/// Stored hashes sampled to mirror their costs in the login decoys.
const DECOY_SAMPLE: u32 = 1024;

/// Mirrors the user table's current mix of hash costs in the hasher's decoys.
pub async fn mirror_stored_costs(state: &AppState) -> anyhow::Result<()> {
    let sample = state.store.sample_password_hashes(DECOY_SAMPLE).await?;
    state.hasher.mirror_stored_costs(sample).await?;
    Ok(())
}

/// A Redis client for `url`; with `ca`, a `rediss://` server's certificate must chain to the
/// certificates in that PEM file rather than to the system's trust store.
fn redis_client(
    url: &secrecy::SecretString,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<redis::Client> {
    let client = match ca {
        None => redis::Client::open(url.expose_secret()),
        Some(path) => {
            let root_cert = std::fs::read(path)
                .with_context(|| format!("reading RAMPART_REDIS_CA_FILE {}", path.display()))?;
            redis::Client::build_with_tls(
                url.expose_secret(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
        }
    };
    client.context("RAMPART_REDIS_URL")
}

/// The application state for these settings: store opened and migrated, keys loaded.
pub async fn state(settings: Settings) -> anyhow::Result<AppState> {
    let (tokens, keys) = token_service(&settings)?;
    // Shared, not copied: the items and admin services hold it, and a handler's service is
    // cloned per request.
    let cursors = Arc::new(cursor_key(&settings, keys.as_ref())?);
    let chain_key = audit_chain_key(&settings, keys.as_ref())?;
    let sealer = totp_sealer(&settings, keys.as_ref())?;
    let csrf = crate::browser::CsrfKey::derive(deployment_secret(&settings, keys.as_ref())?);
    let store = store::open(&settings.database_url)
        .await
        .context("opening the database")?;
    let redis_client = settings
        .redis_url
        .as_ref()
        .map(|url| redis_client(url, settings.redis_ca_file.as_deref()))
        .transpose()?;
    let redis = redis_client
        .clone()
        .map(|client| {
            rampart::limit::RedisStore::new(client, &settings.redis_namespace, REDIS_LIMIT_TIMEOUT)
                .map(|store| store.with_announcements(crate::cluster::ANNOUNCEMENTS))
        })
        .transpose()
        .context("connecting to Redis")?;
    let limiter = match &redis {
        Some(redis) => Limiter::new(Arc::new(redis.clone())),
        None => Limiter::in_memory(),
    };
    let abuse = AbuseControl::new(&settings, limiter)?;
    // Read before the recent revocations are loaded: every change announced up to it is then
    // known here. Redis down at start: zero, and the first poll catches up.
    let announced = match &redis {
        Some(redis) => redis.announcements_now().await.unwrap_or(0),
        None => 0,
    };
    if let (true, KeysSource::GeneratedForDevelopment(path)) = (store.is_shared(), &settings.keys) {
        // Each node would make its own keys, and refuse every other node's tokens.
        tracing::warn!(
            keys = %path.display(),
            "a shared database with development keys generated on this node: every node needs \
             the same keys, so set RAMPART_KEYS_FILE on each to one file (`rampart keys \
             generate --out PATH`), or tokens from one node are refused by the others"
        );
    }
    let cluster = if store.is_shared() {
        let bus = redis_client.zip(redis.clone());
        Cluster::shared(
            bus,
            &settings.redis_namespace,
            settings.revocation_bound,
            announced,
        )
    } else {
        Cluster::single(settings.revocation_bound)
    };
    let hasher = PasswordHasher::for_this_machine(settings.password_hash)
        .context("preparing password hashing")?
        .with_decoy_key(deployment_secret(&settings, keys.as_ref())?);
    let access = AccessState::new(
        settings.access_ttl + Duration::from_secs(rampart::tokens::LEEWAY_SECS),
        settings.revocation_bound,
    );
    let since = store::Timestamp::from(time::OffsetDateTime::now_utc() - access.window());
    let revoked = store
        .revoked_sessions_since(since)
        .await
        .context("loading recently revoked sessions")?;
    let now = time::OffsetDateTime::now_utc();
    for session in &revoked {
        access.revoke(&session.id, session.last_used_at.age(now));
    }
    tracing::info!(
        revoked_sessions = revoked.len(),
        "loaded recently revoked sessions"
    );
    let audit =
        crate::audit::AuditLog::open(store.as_ref(), chain_key, settings.audit_anchor.clone())
            .await
            .context("opening the audit anchor")?;
    let recorder = crate::audit::Recorder::new(audit, Arc::clone(&store));
    let (access, cluster) = (Arc::new(access), Arc::new(cluster));
    let revocations = crate::cluster::Revocations::new(Arc::clone(&access), Arc::clone(&cluster));
    let metrics = crate::metrics::ServiceMetrics::default();
    let guard = crate::abuse::Guard::new(abuse, metrics.clone(), recorder.clone());
    let sessions = crate::service::sessions::Sessions::new(
        crate::service::sessions::Lifetimes::of(&settings),
        tokens.clone(),
        Arc::clone(&store),
        recorder.clone(),
        revocations.clone(),
    );
    let accounts = crate::service::accounts::Accounts::new(
        Arc::clone(&store),
        hasher.clone(),
        guard.clone(),
        metrics.clone(),
        recorder.clone(),
        sessions.clone(),
        settings.mail.require_verified_email,
    );
    let outbox = crate::mail::Outbox::start(&settings.mail)?;
    let public_origin = crate::browser::PublicOrigin::new(settings.mail.public_url.as_deref());
    let services = crate::service::Services {
        email: crate::service::email::EmailLinks::new(
            Arc::clone(&store),
            recorder.clone(),
            sessions.clone(),
            hasher.clone(),
            guard.clone(),
            outbox,
            public_origin.clone(),
        ),
        mfa: crate::service::mfa::Mfa::new(
            Arc::clone(&store),
            recorder.clone(),
            accounts.clone(),
            sessions.clone(),
            guard.clone(),
            metrics.clone(),
            sealer,
        ),
        accounts,
        items: crate::service::items::Items::new(
            Arc::clone(&store),
            Arc::clone(&cursors),
            recorder.clone(),
        ),
        admin: crate::service::admin::Admin::new(
            Arc::clone(&store),
            Arc::clone(&cursors),
            recorder.clone(),
            revocations.clone(),
            guard.clone(),
        ),
        sessions,
    };
    let state = AppState::new(Shared {
        services,
        settings,
        store,
        keys,
        tokens,
        hasher,
        access,
        cursors,
        recorder,
        guard,
        cluster,
        revocations,
        redis,
        metrics,
        public_origin,
        csrf,
        decoys_stale: Arc::new(tokio::sync::Notify::new()),
    });
    mirror_stored_costs(&state)
        .await
        .context("sampling stored password hashes")?;
    crate::cluster::start_sync(crate::cluster::Syncer {
        cluster: Arc::clone(&state.cluster),
        access: Arc::clone(&state.access),
        store: Arc::clone(&state.store),
        hasher: state.hasher.clone(),
        decoys_stale: Arc::clone(&state.decoys_stale),
    });
    tokio::spawn(remirror_stored_costs(state.clone()));
    Ok(state)
}

/// How often the decoys follow the user table: imports add costs, logins upgrade them away.
/// A cost never sampled before is followed sooner: the poll for changed users wakes this
/// (within `RAMPART_REVOCATION_BOUND`), at most once per [`REMIRROR_AT_MOST`].
const REMIRROR_EVERY: Duration = Duration::from_secs(300);
const REMIRROR_AT_MOST: Duration = Duration::from_secs(5);

async fn remirror_stored_costs(state: AppState) {
    let failures = rampart::telemetry::LogThrottle::default();
    loop {
        tokio::select! {
            () = tokio::time::sleep(REMIRROR_EVERY) => {}
            () = state.decoys_stale.notified() => {}
        }
        if let Err(err) = mirror_stored_costs(&state).await {
            if let Some(left_out) = failures.admit() {
                tracing::warn!(error = %err, left_out, "login decoys not refreshed this time");
            }
        }
        tokio::time::sleep(REMIRROR_AT_MOST).await;
    }
}

/// The complete, hardened router for these settings.
pub async fn build(settings: Settings) -> anyhow::Result<Router> {
    Ok(Router::new().fallback_service(assemble(settings, None).await?.app))
}

/// The service for these settings: what answers its requests, and its metrics when they are
/// exposed.
pub struct Assembled<A> {
    pub app: A,
    /// Every metric, for the metrics listener; `None` without `RAMPART_METRICS_BIND`.
    pub metrics: Option<prometheus_client::registry::Registry>,
    /// This server's origin, told the bound address when no public URL was configured.
    pub public_origin: crate::browser::PublicOrigin,
}

impl<A> std::fmt::Debug for Assembled<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembled").finish_non_exhaustive()
    }
}

/// Builds the service; requests are counted only when the metrics are exposed. With
/// `json_log` (the process's JSON log), access lines are written to it directly.
pub async fn assemble(
    settings: Settings,
    json_log: Option<rampart::telemetry::JsonLines>,
) -> anyhow::Result<Assembled<impl HardenedService>> {
    let mut hardening = Hardening {
        json_log,
        ..settings.hardening()
    };
    let mut registry = settings
        .metrics_bind
        .map(|_| prometheus_client::registry::Registry::with_prefix("rampart"));
    if let Some(registry) = registry.as_mut() {
        hardening = hardening.with_metrics(rampart::metrics::HttpMetrics::register(registry));
    }
    let state = state(settings).await?;
    if let Some(registry) = registry.as_mut() {
        let sampled = crate::metrics::Sampled {
            hasher: state.hasher.clone(),
            access: Arc::clone(&state.access),
            store: Arc::clone(&state.store),
            redis: state.redis.clone(),
        };
        crate::metrics::register(registry, &state.metrics, sampled);
    }
    let hardening = with_preflight_limit(hardening, &state);
    Ok(Assembled {
        public_origin: state.public_origin.clone(),
        app: service(state, hardening),
        metrics: registry,
    })
}

/// The global per-client limit, when it is on.
fn client_limit(state: &AppState) -> Option<ClientLimit> {
    let global = state.guard.control().global.as_ref()?;
    let observer: Arc<dyn LimitObserver> = Arc::new(state.guard.clone());
    let fail_closed = state.settings.limit_store_failure == StoreFailure::FailClosed;
    Some(
        ClientLimit::new(state.guard.control().limiter().clone(), global.clone())
            .observed_by(observer)
            .fail_closed(fail_closed),
    )
}

/// `hardening` with CORS preflights charged to their address under the global limit (the
/// CORS layer answers them before the routes' limit would see them).
pub fn with_preflight_limit(hardening: Hardening, state: &AppState) -> Hardening {
    Hardening {
        preflight_limit: client_limit(state),
        ..hardening
    }
}

/// The service's routes over `state`, default-deny, docs mounted when enabled, inside
/// `hardening` (each route's body received only once its gate admitted the caller).
pub fn service(state: AppState, hardening: Hardening) -> impl HardenedService {
    let mut routes = routes::routes(state.keys.is_some());
    if state.settings.docs {
        routes = docs::mount(routes);
    }
    if state.settings.account_page {
        routes = routes::account_page(routes);
    }
    if let Some(limit) = client_limit(&state) {
        routes = routes.limit_clients(limit.by_session_on(routes::SESSION_ENDING_ROUTES));
    }
    // The cross-site check first: a forged request is refused before it spends the
    // address's credential budget.
    let csrf = crate::browser::CsrfAdmission::new(
        state.csrf.clone(),
        state.public_origin.clone(),
        // Listed origins only: `*` lets any site read public answers, never act for a user.
        match &state.settings.cors.origins {
            rampart::settings::CorsOrigins::List(origins) => origins
                .iter()
                .filter_map(|origin| origin.to_str().ok().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        },
        state.recorder.clone(),
    );
    let credentials =
        crate::abuse::CredentialAdmission::new(state.guard.clone(), routes::CREDENTIAL_ROUTES);
    let routes = routes
        .admit_before_body(Arc::new(csrf))
        .admit_before_body(Arc::new(credentials));
    let authenticator: Arc<dyn Authenticator> = Arc::new(crate::auth::Gatekeeper::new(
        state.tokens.clone(),
        Arc::clone(&state.access),
        Arc::clone(&state.store),
        Arc::clone(&state.cluster),
        state.recorder.clone(),
    ));
    hardening.secured_service(routes, authenticator, state)
}

pub fn serve_options(settings: &Settings) -> ServeOptions {
    ServeOptions {
        header_read_timeout: settings.connections.header_timeout,
        write_stall_timeout: settings.http.request_timeout,
        max_connections: settings.connections.max_connections,
        max_connections_per_ip: settings.connections.max_connections_per_ip,
        per_ip_exempt: settings.trusted_proxies.clone(),
        drain_timeout: settings.connections.shutdown_timeout,
        ..ServeOptions::default()
    }
}

/// The metrics listener's connection limits: a scraper or two, not the public's traffic. Its
/// header timeout is at most `RAMPART_HEADER_TIMEOUT`'s (see [`metrics_serve_options`]).
const METRICS_SERVE_OPTIONS: ServeOptions = ServeOptions {
    header_read_timeout: Duration::from_secs(10),
    write_stall_timeout: Duration::from_secs(10),
    max_connections: 64,
    max_connections_per_ip: 16,
    per_ip_exempt: Vec::new(),
    drain_timeout: Duration::from_secs(1),
    max_head_bytes: 8 * 1024,
};

/// [`METRICS_SERVE_OPTIONS`], with a slow head cut as soon as on the public listener when
/// `RAMPART_HEADER_TIMEOUT` is shorter.
fn metrics_serve_options(settings: &Settings) -> ServeOptions {
    ServeOptions {
        header_read_timeout: METRICS_SERVE_OPTIONS
            .header_read_timeout
            .min(settings.connections.header_timeout),
        ..METRICS_SERVE_OPTIONS
    }
}

/// `rampart serve`: check posture, build, bind, announce, serve until SIGTERM, drain.
pub async fn run(
    settings: Settings,
    json_log: Option<rampart::telemetry::JsonLines>,
) -> anyhow::Result<()> {
    enforce_posture(&settings)?;
    let (options, metrics_options) = (serve_options(&settings), metrics_serve_options(&settings));
    let (bind, metrics_bind) = (settings.bind, settings.metrics_bind);
    let metrics_hardening = settings.hardening();
    let Assembled {
        app,
        metrics,
        public_origin,
    } = assemble(settings, json_log).await?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    public_origin.default_to(addr);
    // Both listeners are bound before either is announced: a supervisor waiting for
    // `listening on` must not see it from a process about to exit on a taken metrics port.
    let metrics_listener = match (metrics_bind, metrics) {
        (Some(metrics_bind), Some(registry)) => {
            let listener = TcpListener::bind(metrics_bind)
                .await
                .with_context(|| format!("binding RAMPART_METRICS_BIND {metrics_bind}"))?;
            if listener.local_addr()? == addr {
                anyhow::bail!("RAMPART_METRICS_BIND resolved to the public listener's address");
            }
            Some((listener, registry))
        }
        _ => None,
    };
    // Before the announcement: a SIGTERM right after it must drain, not kill.
    let shutdown = server::shutdown_signal();
    tracing::info!(%addr, "listening");
    println!("listening on {addr}");
    if let Some((listener, registry)) = metrics_listener {
        let metrics_addr = listener.local_addr()?;
        tracing::info!(addr = %metrics_addr, "metrics listening");
        println!("metrics on {metrics_addr}");
        let router = metrics_hardening.apply(crate::metrics::router(Arc::new(registry)));
        tokio::spawn(server::serve(
            listener,
            router,
            metrics_options,
            std::future::pending(),
        ));
    }
    server::serve(listener, app, options, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}
