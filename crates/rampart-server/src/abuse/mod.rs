//! Abuse control on the credential endpoints: per-address limits, per-account limits, login
//! backoff and the credential-stuffing signal, and the audit trail of refusals.
//!
//! Every endpoint that checks a password goes through [`Guard::admit_attempt`]: a wrong
//! `current_password` behind a stolen access token counts on the account's backoff streak
//! exactly like a wrong password at the login form, so a token does not buy an unlimited
//! password oracle.
//!
//! Defends against password guessing and credential stuffing, which a per-client limit alone
//! cannot stop: guesses at one account spread over many addresses meet the per-account limit and
//! the backoff; one address trying many accounts (a leaked password list) trips the stuffing
//! signal, which makes every further login, registration or refresh from it cost five times as
//! much. Backoff and account limits are kept per submitted name, whether or not an account has
//! it, so they reveal nothing about which names exist. Refusals are audited as `rate_limited`,
//! thinned to one per client and policy a minute and sixty a minute in all, so a flood cannot
//! flood the audit table.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rampart::http::RequestContext;
use rampart::limit::report::seconds_up;
use rampart::limit::{
    BackoffPolicy, Client, ClientAddress, LimitKey, LimitObserver, Limited, Limiter, Outcome,
    Policy, Quota, QuotaReport, Streak, Subject,
};
use rampart::settings::Rate;
use rampart::ApiError;

use crate::audit::{Event, EventSampler, Kind, Recorder};
use crate::config::Settings;
use crate::metrics::ServiceMetrics;

mod credentials;

pub use credentials::{AuthQuota, CredentialAdmission, Reports};

/// Distinct names failing from one address within the window that mark it as stuffing. Above
/// the default per-address burst, so a person mistyping a few names is never caught, while a
/// list run at the full default rate is caught within three minutes.
const STUFFING_NAMES: u32 = 20;
const STUFFING_WINDOW: Duration = Duration::from_secs(60 * 60);
/// What an auth request costs from an address marked as stuffing (so `10/minute` becomes 2).
const STUFFING_COST: u32 = 5;
/// Messages one mailbox may be sent per window (reset and verification links together): a
/// person retrying gets theirs, and nobody can flood someone's inbox through this service.
const MAILBOX_MESSAGES: u32 = 5;
const MAILBOX_WINDOW: Duration = Duration::from_secs(60 * 60);
/// `rate_limited` audit rows per minute, whatever arrives.
const AUDIT_BUDGET_PER_MINUTE: u32 = 60;
/// The policy name reported while a login backoff delay runs.
pub const BACKOFF_POLICY: &str = "login-backoff";
const LOGIN_PATH: &str = "/v1/auth/login";

/// The credential-endpoint policies and the store they are counted in.
#[derive(Debug)]
pub struct AbuseControl {
    limiter: Limiter,
    /// Per client on every route (`None`: off).
    pub global: Option<Policy>,
    auth: Policy,
    login_account: Policy,
    login_ip_account: Policy,
    /// One unit per (address, name) per window: spending it means "a new name failed here".
    stuffing_name: Policy,
    stuffing: Policy,
    /// Messages (reset and verification links) to one mailbox, whoever asks.
    mailbox: Policy,
    audit_budget: Policy,
    backoff: BackoffPolicy,
    sampler: EventSampler,
    over_budget: AtomicU64,
}

fn policy(name: &'static str, rate: Rate) -> anyhow::Result<Policy> {
    Policy::new(name, Quota::from_rate(rate)).with_context(|| format!("policy name {name}"))
}

fn fixed(name: &'static str, count: u32, window: Duration) -> anyhow::Result<Policy> {
    let quota = Quota::new(count, window).with_context(|| format!("quota of {name}"))?;
    Policy::new(name, quota).with_context(|| format!("policy name {name}"))
}

impl AbuseControl {
    pub fn new(settings: &Settings, limiter: Limiter) -> anyhow::Result<Self> {
        Ok(Self {
            limiter,
            global: settings
                .limit_global
                .map(|rate| policy("global", rate))
                .transpose()?,
            auth: policy("auth", settings.limit_auth)?,
            login_account: policy("login-account", settings.limit_login_account)?,
            login_ip_account: policy("login-ip-account", settings.limit_login_ip_account)?,
            stuffing_name: fixed("stuffing-name", 1, STUFFING_WINDOW)?,
            stuffing: fixed("stuffing", STUFFING_NAMES, STUFFING_WINDOW)?,
            mailbox: fixed("mailbox", MAILBOX_MESSAGES, MAILBOX_WINDOW)?,
            audit_budget: fixed(
                "audit-rate-limited",
                AUDIT_BUDGET_PER_MINUTE,
                Duration::from_secs(60),
            )?,
            backoff: BackoffPolicy::default(),
            sampler: EventSampler::default(),
            over_budget: AtomicU64::new(0),
        })
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    fn backoff_key(name: &str) -> LimitKey {
        LimitKey::new(BACKOFF_POLICY, Subject::Name(name.to_owned()))
    }

    /// Whether `ip` is marked as stuffing: its budget of distinct failing names is spent.
    async fn is_stuffing(&self, ip: ClientAddress) -> Result<bool, ApiError> {
        let outcome = self
            .limiter
            .check(&self.stuffing, Subject::Address(ip), 0)
            .await
            .map_err(store_down)?;
        Ok(matches!(
            outcome,
            Outcome::Allowed(QuotaReport { remaining: 0, .. })
        ))
    }
}

/// Credential limits fail closed: without the store, a guess could not be counted. The cause
/// reaches the access log (folded into a line a second while it lasts).
#[allow(clippy::needless_pass_by_value)] // the shape `map_err` hands over
fn store_down(err: rampart::limit::LimitError) -> ApiError {
    ApiError::DependencyUnavailable {
        retry_after: Duration::from_secs(1),
        cause: format!("credential limits unavailable, refusing: {err}"),
    }
}

/// The credential limits as services and extractors apply them: the policies, the refusal
/// metrics and the audit trail of refusals. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    control: Arc<AbuseControl>,
    metrics: ServiceMetrics,
    recorder: Recorder,
}

impl Guard {
    pub fn new(control: AbuseControl, metrics: ServiceMetrics, recorder: Recorder) -> Self {
        Self {
            control: Arc::new(control),
            metrics,
            recorder,
        }
    }

    /// The policies and their store (the global per-client policy is mounted on the router).
    pub fn control(&self) -> &AbuseControl {
        &self.control
    }

    /// Before a password or second factor is checked for the account known by `names`
    /// (normalised; a login passes the one name submitted, a password change the account's
    /// username and email): the backoff delay of every name, the per (address, name) and
    /// per-name limits on the first, then the attempt itself, counted against every name's
    /// backoff streak in advance (see [`rampart::limit::backoff::StreakState::attempt`]). A
    /// check behind a stolen token thereby costs the same streak as a guess at the login form,
    /// whichever name the account is then logged in with. Returns the longest streak.
    pub async fn admit_attempt(
        &self,
        context: &RequestContext,
        names: &[&str],
        path: &'static str,
        reports: &mut Reports,
    ) -> Result<Streak, ApiError> {
        let abuse = &self.control;
        let keys: Vec<LimitKey> = names.iter().map(|n| AbuseControl::backoff_key(n)).collect();
        let store = abuse.limiter.store();
        // Reads first, so attempts refused by a delay do not spend the name's quota.
        for key in &keys {
            if let Some(waiting) = store.backoff(key).await.map_err(store_down)? {
                return Err(self.backoff_refusal(context, path, waiting));
            }
        }
        let address = ClientAddress::of(context.client_ip);
        if let Some(name) = names.first() {
            // The narrower limit first, so a refused pair does not spend the account's quota.
            for (policy, subject) in [
                (
                    &abuse.login_ip_account,
                    Subject::AddressAndName(address, (*name).to_owned()),
                ),
                (&abuse.login_account, Subject::Name((*name).to_owned())),
            ] {
                let outcome = abuse
                    .limiter
                    .check(policy, subject, 1)
                    .await
                    .map_err(store_down)?;
                let client = Client::Address(context.client_ip);
                let report = outcome.observed(self, client, context, path)?;
                // Only the caller's own count goes on the answer: the name's count across every
                // address rises with its owner's sign-ins too, and in a header it would tell
                // anyone when an account is in use.
                if policy.name() != abuse.login_account.name() {
                    reports.0.push(report);
                }
            }
        }
        let mut longest = Streak::default();
        for key in &keys {
            match store
                .begin_attempt(key, abuse.backoff)
                .await
                .map_err(store_down)?
            {
                Ok(streak) => {
                    if (streak.delay, streak.failures) > (longest.delay, longest.failures) {
                        longest = streak;
                    }
                }
                Err(waiting) => return Err(self.backoff_refusal(context, path, waiting)),
            }
        }
        Ok(longest)
    }

    /// [`Guard::admit_attempt`] for a login with the submitted `name`.
    pub async fn admit_login(
        &self,
        context: &RequestContext,
        name: &str,
        reports: &mut Reports,
    ) -> Result<Streak, ApiError> {
        self.admit_attempt(context, &[name], LOGIN_PATH, reports)
            .await
    }

    /// The 429 while a backoff delay runs; recorded like any refusal (sampled).
    fn backoff_refusal(
        &self,
        context: &RequestContext,
        path: &'static str,
        retry_after: Duration,
    ) -> ApiError {
        let report = Quota::new(1, Duration::from_secs(seconds_up(retry_after)))
            .and_then(|quota| Policy::new(BACKOFF_POLICY, quota))
            .map(|policy| QuotaReport {
                policy,
                remaining: 0,
                reset: retry_after,
            });
        self.limited(&Limited {
            policy: BACKOFF_POLICY,
            client: Client::Address(context.client_ip),
            context,
            path,
            retry_after,
        });
        ApiError::TooManyRequests {
            retry_after,
            quota: report.map(Box::new),
        }
    }

    /// The `login_locked` event when a failed check started or lengthened a backoff delay, to
    /// record with the failure. The name is recorded only when it is an account's: an unknown
    /// "name" is often a password typed into the wrong field.
    pub fn lockout_event(
        context: &RequestContext,
        name: &str,
        streak: Streak,
        user_id: Option<&str>,
    ) -> Option<Event> {
        let delay = streak.delay?;
        let mut detail = serde_json::json!({
            "failures": streak.failures,
            "delay_secs": delay.as_secs(),
        });
        let mut event = Event::new(Kind::LoginLocked, context);
        if let Some(user_id) = user_id {
            detail["login"] = name.chars().take(254).collect::<String>().into();
            event = event.user(user_id);
        }
        Some(event.detail(detail))
    }

    /// Before a message is sent to `mailbox` (normalised), whether or not it has an account:
    /// the per-mailbox limit, answered 429 like any limit (it says nothing about accounts,
    /// since unknown addresses are counted the same).
    pub async fn admit_message(
        &self,
        context: &RequestContext,
        mailbox: &str,
        path: &'static str,
    ) -> Result<(), ApiError> {
        let abuse = &self.control;
        let outcome = abuse
            .limiter
            .check(&abuse.mailbox, Subject::Name(mailbox.to_owned()), 1)
            .await
            .map_err(store_down)?;
        outcome
            .observed(self, Client::Address(context.client_ip), context, path)
            .map(drop)
    }

    /// After a wrong password (or unknown name, or locked account) at the login form, whose
    /// failure the streak already counts: feeds the stuffing signal of the client's address.
    pub async fn login_failed(&self, context: &RequestContext, name: &str) {
        let abuse = &self.control;
        let address = ClientAddress::of(context.client_ip);
        let new_name = abuse
            .limiter
            .check(
                &abuse.stuffing_name,
                Subject::AddressAndName(address, name.to_owned()),
                1,
            )
            .await;
        if let Ok(Outcome::Allowed(_)) = new_name {
            let marked = abuse
                .limiter
                .check(&abuse.stuffing, Subject::Address(address), 1)
                .await;
            if let Ok(Outcome::Allowed(QuotaReport { remaining: 0, .. })) = marked {
                tracing::warn!(
                    client = %context.client_ip,
                    names = STUFFING_NAMES,
                    "many accounts failing from one address: its auth limit is tightened"
                );
            }
        }
    }

    /// After a successful login, or an admin's unlock: every name the user logs in with starts
    /// a fresh streak.
    pub async fn clear_login_backoff(&self, names: &[&str]) {
        let store = self.control.limiter.store();
        for name in names {
            let key = AbuseControl::backoff_key(&name.to_lowercase());
            if let Err(err) = store.clear_backoff(&key).await {
                tracing::warn!(error = %err, "login backoff not cleared");
            }
        }
    }

    /// Writes one `rate_limited` row unless sampling leaves it out (see the module header).
    fn record_limited(&self, event: &Limited<'_>) {
        self.metrics.rate_limited(event.policy);
        let (subject, user_id) = match event.client {
            Client::User { user_id, .. } => (format!("user {user_id}"), Some(user_id)),
            Client::Session {
                user_id,
                session_id,
            } => (session_id.to_owned(), Some(user_id)),
            Client::Address(ip) => (address_text(ip), None),
        };
        let Some(suppressed) = self
            .control
            .sampler
            .admit(&format!("{}|{subject}", event.policy))
        else {
            return;
        };
        let path: String = event.path.chars().take(256).collect();
        let mut record = Event::new(Kind::RateLimited, event.context).detail(serde_json::json!({
            "policy": event.policy,
            "path": path,
            "retry_after_secs": seconds_up(event.retry_after),
            "suppressed_since_last": suppressed,
        }));
        if let Some(user_id) = user_id {
            record = record.user(user_id);
        }
        // Written off the request path: the refusal is not held up by the audit table.
        let state = self.clone();
        tokio::spawn(async move {
            let abuse = &state.control;
            let budget = abuse
                .limiter
                .check(&abuse.audit_budget, Subject::Everyone, 1)
                .await;
            if !matches!(budget, Ok(Outcome::Allowed(_))) {
                abuse.over_budget.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let over_budget = abuse.over_budget.swap(0, Ordering::Relaxed);
            if over_budget > 0 {
                if let Some(detail) = record.detail.as_object_mut() {
                    detail.insert("over_budget_since_last".into(), over_budget.into());
                }
            }
            // Sampled and off the request path by design (see the module header).
            if let Err(err) = state.recorder.write_alone(record).await {
                tracing::warn!(error = %err, "a sampled rate_limited event was not stored");
            }
        });
    }
}

impl LimitObserver for Guard {
    fn limited(&self, event: &Limited<'_>) {
        self.record_limited(event);
    }
}

fn address_text(ip: IpAddr) -> String {
    ClientAddress::of(ip).to_string()
}
