//! Administration: the audit trail, the user list, roles and locks.
//!
//! Defends against privilege changes that linger or lock everyone out: a role change or a lock
//! is written to the store with its event, then to this node's access cache and announced to
//! the others, as one step a cancelled request cannot split, so it applies to the user's very
//! next request with tokens already issued; a lock ends every session of the user. Demoting or
//! locking the last admin who is not locked is refused inside a transaction that serialises
//! role and lock changes, so two admins acting on each other at once cannot leave nobody; an
//! admin cannot lock their own account. The same transaction checks that its actor is still an
//! admin who may act, so an action admitted just before its actor was demoted or locked is
//! refused (403) rather than applied after the change was answered (outside review).

use rampart::http::RequestContext;
use rampart::pagination::PageQuery;
use rampart::{Principal, Role};

use super::ServiceError;
use crate::abuse::Guard;
use crate::access::UserAccess;
use crate::audit::Recorder;
use crate::audit::{Event, Kind, StoredEvent};
use crate::cluster::Revocations;
use crate::store::Store;
use crate::store::{RoleChange, StoreError, UserRecord};
use crate::task::to_completion;
use rampart::pagination::CursorKey;
use std::sync::Arc;

const AUDIT_SCOPE: &str = "admin:audit";
const USERS_SCOPE: &str = "admin:users";

/// The admin service; a handler takes it as `State<Admin>`. Its routes are mounted for admins
/// only ([`rampart::Access::Admin`]), and each call takes the acting admin.
#[derive(Debug, Clone)]
pub struct Admin(Arc<AdminParts>);

/// What the service holds, behind one `Arc`: a handler's clone of the service is one count.
#[derive(Debug)]
pub struct AdminParts {
    store: Arc<dyn Store>,
    cursors: Arc<CursorKey>,
    recorder: Recorder,
    revocations: Revocations,
    guard: Guard,
}

/// One page of a list and the cursor of the next.
#[derive(Debug)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub next_cursor: Option<String>,
}

impl std::ops::Deref for Admin {
    type Target = AdminParts;
    fn deref(&self) -> &AdminParts {
        &self.0
    }
}

impl Admin {
    pub fn new(
        store: Arc<dyn Store>,
        cursors: Arc<CursorKey>,
        recorder: Recorder,
        revocations: Revocations,
        guard: Guard,
    ) -> Self {
        Self(Arc::new(AdminParts {
            store,
            cursors,
            recorder,
            revocations,
            guard,
        }))
    }

    /// Security events, newest first.
    pub async fn audit(&self, page: &PageQuery) -> Result<Page<StoredEvent>, ServiceError> {
        let cursors = &self.cursors;
        let before = cursors
            .position(AUDIT_SCOPE, page)
            .map_err(ServiceError::cursor)?
            .map(|seq| seq.parse::<i64>())
            .transpose()
            .map_err(|_| {
                ServiceError::internal("a signed audit cursor holds no sequence number")
            })?;
        let events = self.store.audit_page(before, page.limit.get() + 1).await?;
        let (rows, next_cursor) =
            cursors.page(AUDIT_SCOPE, page.limit, events, |e| e.seq.to_string());
        Ok(Page { rows, next_cursor })
    }

    /// Every user, in id order (ids are time-ordered, so oldest accounts first).
    pub async fn users(&self, page: &PageQuery) -> Result<Page<UserRecord>, ServiceError> {
        let cursors = &self.cursors;
        let after = cursors
            .position(USERS_SCOPE, page)
            .map_err(ServiceError::cursor)?;
        let users = self
            .store
            .list_users(after.as_deref(), page.limit.rows() + 1)
            .await?;
        let (rows, next_cursor) = cursors.page(USERS_SCOPE, page.limit, users, |u| u.id.clone());
        Ok(Page { rows, next_cursor })
    }

    /// Gives `user_id` `role`; recorded only when it changes anything.
    pub async fn set_role(
        &self,
        context: &RequestContext,
        admin: &Principal,
        user_id: &str,
        role: Role,
    ) -> Result<UserRecord, ServiceError> {
        let shared = self.clone();
        let target = user_id;
        let (user_id, admin_id) = (user_id.to_owned(), admin.user_id.clone());
        let admin_session = admin.session_id.clone();
        let event = Event::new(Kind::RoleChanged, context).user(&user_id);
        let outcome = to_completion(async move {
            let mut unit = shared.recorder.begin().await?;
            if !unit.tx().is_acting_admin(&admin_id, &admin_session).await? {
                return Ok(None);
            }
            let outcome = unit.tx().set_role(&user_id, role).await?;
            let RoleChange::Changed { previous, user } = &outcome else {
                return Ok(Some(outcome));
            };
            if *previous != user.role {
                unit.record(event.detail(serde_json::json!({
                    "by": admin_id,
                    "from": previous,
                    "to": user.role,
                })))
                .await?;
            }
            unit.commit().await?;
            let access = UserAccess {
                role: user.role,
                locked: user.locked,
            };
            shared.revocations.user_changed(&user.id, access).await;
            Ok::<_, StoreError>(Some(outcome))
        })
        .await?;
        let Some(outcome) = outcome else {
            return Err(self.no_longer_admin(context, admin, "set_role", target));
        };
        match outcome {
            RoleChange::Changed { user, .. } => Ok(user),
            RoleChange::NotFound => Err(ServiceError::NotFound),
            RoleChange::LastAdmin => Err(ServiceError::Refused(
                "This is the only admin; make another user admin first.",
            )),
        }
    }

    /// Locks `user_id` (login refused, every session ended) or unlocks them (their login
    /// backoff ends too).
    pub async fn set_lock(
        &self,
        context: &RequestContext,
        admin: &Principal,
        user_id: &str,
        locked: bool,
    ) -> Result<(), ServiceError> {
        if locked && user_id == admin.user_id {
            return Err(ServiceError::Refused(
                "An admin cannot lock their own account; another admin can.",
            ));
        }
        let state = self;
        let user = state
            .store
            .find_user(user_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let (shared, id, role) = (self.clone(), user_id.to_owned(), user.role);
        let kind = if locked {
            Kind::UserLocked
        } else {
            Kind::UserUnlocked
        };
        let event = Event::new(kind, context).user(user_id);
        let (admin_id, admin_session) = (admin.user_id.clone(), admin.session_id.clone());
        let applied = to_completion(async move {
            let mut unit = shared.recorder.begin().await?;
            if !unit.tx().is_acting_admin(&admin_id, &admin_session).await? {
                return Ok(None);
            }
            if !unit.tx().set_locked(&id, locked).await? {
                return Ok(Some(false));
            }
            let ended = if locked {
                unit.tx().revoke_user_sessions(&id, None).await?
            } else {
                Vec::new()
            };
            unit.record(
                event.detail(serde_json::json!({"by": admin_id, "sessions_ended": ended.len()})),
            )
            .await?;
            unit.commit().await?;
            shared.revocations.sessions_ended(&ended).await;
            let access = UserAccess { role, locked };
            shared.revocations.user_changed(&id, access).await;
            Ok::<_, StoreError>(Some(true))
        })
        .await?;
        let Some(applied) = applied else {
            let action = if locked { "lock" } else { "unlock" };
            return Err(self.no_longer_admin(context, admin, action, user_id));
        };
        if !applied {
            return Err(ServiceError::Refused(
                "This is the last admin who can act; locking them would leave nobody to unlock anyone.",
            ));
        }
        if !locked {
            state
                .guard
                .clear_login_backoff(&[&user.username, &user.email])
                .await;
        }
        Ok(())
    }
}

impl Admin {
    /// The answer to an admin action whose actor stopped being an admin who may act (demoted
    /// or locked) between the gate admitting the request and its transaction: the 403 the
    /// next request gets, recorded as the gate records its own (`access_denied`, sampled).
    fn no_longer_admin(
        &self,
        context: &RequestContext,
        actor: &Principal,
        action: &str,
        target: &str,
    ) -> ServiceError {
        let event = Event::new(Kind::AccessDenied, context)
            .user(&actor.user_id)
            .detail(serde_json::json!({
                "action": action,
                "target": target,
                "required": "admin",
            }));
        self.recorder.record_denied(event);
        ServiceError::Answer(rampart::ApiError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{context, Fixture};

    fn refused_as_no_longer_admin<T>(result: &Result<T, ServiceError>) -> bool {
        matches!(
            result,
            Err(ServiceError::Answer(rampart::ApiError::Forbidden))
        )
    }

    /// The gate admitted each of these callers as an admin; by the time their action runs,
    /// another admin has demoted or locked them, or the session they act through has ended
    /// (a logout). Their action changes nothing.
    #[tokio::test]
    async fn an_admin_demoted_locked_or_logged_out_after_admission_acts_no_more() {
        let fixture = Fixture::new().await;
        let admin = fixture.admin();
        let request = context([192, 0, 2, 1]);
        let root = fixture.admin_user("root").await;
        let (demoted, locked, logged_out) = (
            fixture.admin_user("demoted").await,
            fixture.admin_user("locked").await,
            fixture.admin_user("logged-out").await,
        );
        let target = fixture.user("target").await;
        // The session the request came with ends (a logout) after the request was admitted.
        let mut tx = fixture
            .store
            .begin()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let ended = tx
            .revoke_session(&logged_out.user_id, &logged_out.session_id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(ended.is_some());
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        admin
            .set_role(&request, &root, &demoted.user_id, Role::User)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        admin
            .set_lock(&request, &root, &locked.user_id, true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        for actor in [&demoted, &locked, &logged_out] {
            let lock = admin.set_lock(&request, actor, &target.user_id, true).await;
            assert!(refused_as_no_longer_admin(&lock), "{lock:?}");
            let promote = admin
                .set_role(&request, actor, &target.user_id, Role::Admin)
                .await;
            assert!(refused_as_no_longer_admin(&promote), "{promote:?}");
        }
        // Each refusal is on the audit trail under its actor (the first of each is sampled in).
        let denied = fixture.events("access_denied").await;
        for actor in [&demoted, &locked, &logged_out] {
            assert!(
                denied
                    .iter()
                    .any(|event| event.user_id.as_deref() == Some(actor.user_id.as_str())),
                "{denied:?}"
            );
        }
        let target = fixture.store.find_user(&target.user_id).await;
        let target = target
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("target gone"));
        assert_eq!((target.role, target.locked), (Role::User, false));
        // Root, still an admin, still acts.
        assert!(admin
            .set_lock(&request, &root, &target.id, true)
            .await
            .is_ok());
    }
}
