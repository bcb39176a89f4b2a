//! Items: user-owned records, reachable only through their owner.
//!
//! Defends against broken object-level authorisation (OWASP API1, IDOR): every method takes an
//! [`Owner`], which only an authenticated caller can supply, and every query filters on it, so
//! no handler can read, change or delete another user's item by guessing its id.

use super::StoreFuture;

/// The user an item query is confined to. Built only from an authenticated [`rampart::Principal`], and
/// every item method of [`super::Store`] takes one, so each query is `... AND owner_id = ?` by
/// construction: there is no item method a handler could call without naming the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    pub fn of(caller: &rampart::Principal) -> Self {
        Self(caller.user_id.clone())
    }

    pub fn id(&self) -> &str {
        &self.0
    }
}

/// A stored item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRecord {
    pub id: String,
    pub owner_id: String,
    pub title: String,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A new item's content, from parsed values only.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub id: String,
    pub title: crate::domain::ItemTitle,
    pub body: crate::domain::ItemBody,
}

/// The fields a PATCH may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ItemChanges {
    pub title: Option<crate::domain::ItemTitle>,
    pub body: Option<crate::domain::ItemBody>,
}

/// Item persistence. Part of [`super::Store`].
pub trait ItemStore {
    /// Creates an item owned by `owner`.
    fn create_item<'a>(&'a self, owner: &'a Owner, item: NewItem) -> StoreFuture<'a, ItemRecord>;
    /// The item `id` if `owner` owns it; another user's item and a missing one are both `None`.
    fn owned_item<'a>(
        &'a self,
        owner: &'a Owner,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ItemRecord>>;
    /// Applies `changes` to `owner`'s item `id`; `None` when `owner` has no such item.
    fn update_item<'a>(
        &'a self,
        owner: &'a Owner,
        id: &'a str,
        changes: ItemChanges,
    ) -> StoreFuture<'a, Option<ItemRecord>>;
    /// Deletes `owner`'s item `id`; false when `owner` has no such item.
    fn delete_item<'a>(&'a self, owner: &'a Owner, id: &'a str) -> StoreFuture<'a, bool>;
    /// `owner`'s items newest first, older than the item `before` when given; at most `rows`.
    fn list_items<'a>(
        &'a self,
        owner: &'a Owner,
        before: Option<&'a str>,
        rows: usize,
    ) -> StoreFuture<'a, Vec<ItemRecord>>;
    /// Whether an item `id` exists at all, whoever owns it. Only for telling an ownership miss
    /// (recorded as `access_denied`) from a plain miss; both answer the client the same 404.
    fn item_exists<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;
}
