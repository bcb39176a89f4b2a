//! Items: each user's own records, reachable only through their owner.
//!
//! Defends against broken object-level authorisation (OWASP API1, IDOR): every call takes the
//! caller as an [`Owner`] and every statement filters on it, so another user's item is
//! unreachable and answers exactly like a missing one. When the miss was in fact someone
//! else's item (a caller probing ids), it is recorded as `access_denied`: sampled per caller
//! and written off the request path, and both kinds of miss run the same queries, so neither
//! the answer nor its timing tells them apart. Lists are paged with a cursor bound to the
//! caller ([`rampart::pagination`]).

use rampart::http::RequestContext;
use rampart::pagination::PageQuery;

use super::ServiceError;
use crate::audit::Recorder;
use crate::audit::{Event, Kind};
use crate::store::Store;
use crate::store::{ItemChanges, ItemRecord, NewItem, Owner};
use rampart::pagination::CursorKey;
use std::sync::Arc;

/// The items service; a handler takes it as `State<Items>`.
#[derive(Debug, Clone)]
pub struct Items(Arc<ItemsParts>);

/// What the service holds, behind one `Arc`: a handler's clone of the service is one count.
#[derive(Debug)]
pub struct ItemsParts {
    store: Arc<dyn Store>,
    cursors: Arc<CursorKey>,
    recorder: Recorder,
}

/// A page of items and the cursor of the next one.
#[derive(Debug)]
pub struct ItemPage {
    pub items: Vec<ItemRecord>,
    pub next_cursor: Option<String>,
}

impl std::ops::Deref for Items {
    type Target = ItemsParts;
    fn deref(&self) -> &ItemsParts {
        &self.0
    }
}

impl Items {
    pub fn new(store: Arc<dyn Store>, cursors: Arc<CursorKey>, recorder: Recorder) -> Self {
        Self(Arc::new(ItemsParts {
            store,
            cursors,
            recorder,
        }))
    }

    /// `owner`'s items, newest first.
    pub async fn list(&self, owner: &Owner, page: &PageQuery) -> Result<ItemPage, ServiceError> {
        let scope = format!("items:{}", owner.id());
        let cursors = &self.cursors;
        let before = cursors
            .position(&scope, page)
            .map_err(ServiceError::cursor)?;
        let rows = self
            .store
            .list_items(owner, before.as_deref(), page.limit.rows() + 1)
            .await?;
        let (items, next_cursor) = cursors.page(&scope, page.limit, rows, |item| item.id.clone());
        Ok(ItemPage { items, next_cursor })
    }

    pub async fn create(&self, owner: &Owner, item: NewItem) -> Result<ItemRecord, ServiceError> {
        Ok(self.store.create_item(owner, item).await?)
    }

    pub async fn get(
        &self,
        context: &RequestContext,
        owner: &Owner,
        id: &str,
    ) -> Result<ItemRecord, ServiceError> {
        match self.store.owned_item(owner, id).await? {
            Some(item) => Ok(item),
            None => Err(self.not_found(context, owner, id).await),
        }
    }

    pub async fn update(
        &self,
        context: &RequestContext,
        owner: &Owner,
        id: &str,
        changes: ItemChanges,
    ) -> Result<ItemRecord, ServiceError> {
        if changes.title.is_none() && changes.body.is_none() {
            return Err(ServiceError::invalid("", "give title, body or both"));
        }
        match self.store.update_item(owner, id, changes).await? {
            Some(item) => Ok(item),
            None => Err(self.not_found(context, owner, id).await),
        }
    }

    pub async fn delete(
        &self,
        context: &RequestContext,
        owner: &Owner,
        id: &str,
    ) -> Result<(), ServiceError> {
        if self.store.delete_item(owner, id).await? {
            Ok(())
        } else {
            Err(self.not_found(context, owner, id).await)
        }
    }

    /// The answer to any item `owner` does not have, recording `access_denied` when it does
    /// exist (see the module header).
    async fn not_found(&self, context: &RequestContext, owner: &Owner, id: &str) -> ServiceError {
        match self.store.item_exists(id).await {
            Ok(true) => {
                let event = Event::new(Kind::AccessDenied, context)
                    .user(owner.id())
                    .detail(serde_json::json!({"resource": "item", "id": id}));
                self.recorder.record_denied(event);
            }
            Ok(false) => {}
            Err(err) => tracing::error!(error = %err, "item existence check failed"),
        }
        ServiceError::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ItemBody, ItemTitle};
    use crate::service::testing::{context, Fixture};

    fn items(fixture: &Fixture) -> Items {
        Items::new(
            Arc::clone(&fixture.store),
            Arc::new(CursorKey::derive(b"items unit tests")),
            fixture.recorder.clone(),
        )
    }

    fn new_item(title: &str) -> NewItem {
        NewItem {
            id: crate::store::new_id(),
            title: ItemTitle::try_from(title.to_owned()).unwrap_or_else(|e| panic!("{e}")),
            body: ItemBody::try_from(String::new()).unwrap_or_else(|e| panic!("{e}")),
        }
    }

    /// Of two updates racing on one item, the one applied last may have taken its time
    /// first: the item's `updated_at` must still not go back.
    #[tokio::test]
    async fn an_update_applied_after_a_later_one_does_not_move_updated_at_back() {
        let fixture = Fixture::new().await;
        let items = items(&fixture);
        let alice = fixture.user("alice").await;
        let owner = Owner::of(&alice);
        let item = items
            .create(&owner, new_item("first"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The other update's time, later than this one's will be, already applied.
        let later = "2999-01-01T00:00:00.000000Z";
        let database =
            rusqlite::Connection::open(fixture.database()).unwrap_or_else(|e| panic!("{e}"));
        database
            .execute(
                "UPDATE items SET updated_at = ?1 WHERE id = ?2",
                (later, item.id.as_str()),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let changes = ItemChanges {
            title: Some(ItemTitle::try_from("second".to_owned()).unwrap_or_else(|e| panic!("{e}"))),
            body: None,
        };
        let updated = items
            .update(&context([192, 0, 2, 1]), &owner, &item.id, changes)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(updated.title, "second");
        assert_eq!(updated.updated_at.to_string(), later);
        assert_eq!(updated.created_at, item.created_at);
    }

    #[tokio::test]
    async fn another_owners_item_is_a_plain_miss_and_the_probe_is_recorded() {
        let fixture = Fixture::new().await;
        let items = items(&fixture);
        let (alice, bob) = (fixture.user("alice").await, fixture.user("bob").await);
        let kept = items
            .create(&Owner::of(&alice), new_item("alice's plans"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let mine = items
            .get(&context([192, 0, 2, 1]), &Owner::of(&alice), &kept.id)
            .await;
        assert_eq!(
            mine.ok().map(|item| item.title),
            Some("alice's plans".into())
        );
        let probed = items
            .get(&context([192, 0, 2, 2]), &Owner::of(&bob), &kept.id)
            .await;
        assert!(matches!(probed, Err(ServiceError::NotFound)), "{probed:?}");
        let missing = items
            .get(
                &context([192, 0, 2, 2]),
                &Owner::of(&bob),
                &crate::store::new_id(),
            )
            .await;
        assert!(
            matches!(missing, Err(ServiceError::NotFound)),
            "{missing:?}"
        );

        // Only the miss that hit someone else's item is recorded, against the prober.
        let denied = fixture.events("access_denied").await;
        assert_eq!(denied.len(), 1, "{denied:?}");
        assert_eq!(denied[0].user_id.as_deref(), Some(bob.user_id.as_str()));
        assert_eq!(denied[0].detail["id"], kept.id.as_str());
    }

    #[tokio::test]
    async fn a_page_cursor_belongs_to_the_owner_it_was_given_to() {
        let fixture = Fixture::new().await;
        let items = items(&fixture);
        let (alice, bob) = (fixture.user("alice").await, fixture.user("bob").await);
        for n in 0..3 {
            items
                .create(&Owner::of(&alice), new_item(&format!("note {n}")))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let first = PageQuery::from_query("limit=2").unwrap_or_else(|e| panic!("{e:?}"));
        let page = items
            .list(&Owner::of(&alice), &first)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.items.len(), 2);
        let cursor = page.next_cursor.unwrap_or_else(|| panic!("a next page"));
        let next = PageQuery::from_query(&format!("limit=2&cursor={cursor}"))
            .unwrap_or_else(|e| panic!("{e:?}"));

        let rest = items
            .list(&Owner::of(&alice), &next)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rest.items.len(), 1);
        assert!(rest.next_cursor.is_none());
        // Bob cannot page through alice's items with her cursor, nor see any of them.
        assert!(items.list(&Owner::of(&bob), &next).await.is_err());
        let his = items
            .list(&Owner::of(&bob), &first)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(his.items.is_empty());
    }
}
