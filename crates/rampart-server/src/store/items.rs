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
    pub created_at: super::Timestamp,
    pub updated_at: super::Timestamp,
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

/// An owner's item by id.
pub(crate) const OWNED_ITEM: &str = concat!(
    "SELECT ",
    super::item_columns!(),
    " FROM items WHERE id = $1 AND owner_id = $2"
);
/// Whether an item exists, whoever owns it.
pub(crate) const ITEM_EXISTS: &str = "SELECT 1 FROM items WHERE id = $1";
/// A page of an owner's items older than `$2`. Two statements, not `($2 IS NULL OR id < $2)`:
/// SQLite cannot seek the index with an OR and would walk every newer row to reach a deep page;
/// each plan here seeks the (owner_id, id) index on both backends.
pub(crate) const ITEM_PAGE_AFTER: &str = concat!(
    "SELECT ",
    super::item_columns!(),
    " FROM items WHERE owner_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
);
/// The first page of an owner's items.
pub(crate) const ITEM_PAGE_FIRST: &str = concat!(
    "SELECT ",
    super::item_columns!(),
    " FROM items WHERE owner_id = $1 ORDER BY id DESC LIMIT $2"
);

/// The [`ItemStore`] writes, written once for both backends (see [`super::reads`]); expanded
/// inside `impl ItemStore for $store` where `self.pool` is the backend's sqlx pool.
macro_rules! item_writes {
    () => {
        fn create_item<'a>(
            &'a self,
            owner: &'a $crate::store::Owner,
            item: $crate::store::NewItem,
        ) -> $crate::store::StoreFuture<'a, $crate::store::ItemRecord> {
            $crate::store::bounded(async move {
                let now = $crate::store::now();
                let sql = concat!(
                    "INSERT INTO items (id, owner_id, title, body, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                    $crate::store::item_columns!(),
                    ""
                );
                let row = sqlx::query(sql)
                    .bind(&item.id)
                    .bind(owner.id())
                    .bind(item.title.into_inner())
                    .bind(item.body.into_inner())
                    .bind(&now)
                    .bind(&now)
                    .fetch_one(&self.pool)
                    .await?;
                $crate::store::rows::item_from(&row)
            })
        }

        fn update_item<'a>(
            &'a self,
            owner: &'a $crate::store::Owner,
            id: &'a str,
            changes: $crate::store::ItemChanges,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::ItemRecord>> {
            $crate::store::bounded(async move {
                // `updated_at` never goes back: the time is taken before the write waits its
                // turn, so of two updates racing on one item the one applied last can hold the
                // earlier time, and a client syncing by `updated_at` would take the version it
                // replaced for the newer one (outside review). The stored form sorts as time.
                let sql = concat!(
                    "UPDATE items
                     SET title = COALESCE($1, title), body = COALESCE($2, body),
                         updated_at = CASE WHEN updated_at > $3 THEN updated_at ELSE $3 END
                     WHERE id = $4 AND owner_id = $5 RETURNING ",
                    $crate::store::item_columns!()
                );
                let row = sqlx::query(sql)
                    .bind(changes.title.map($crate::domain::ItemTitle::into_inner))
                    .bind(changes.body.map($crate::domain::ItemBody::into_inner))
                    .bind($crate::store::now())
                    .bind(id)
                    .bind(owner.id())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map($crate::store::rows::item_from).transpose()
            })
        }

        fn delete_item<'a>(
            &'a self,
            owner: &'a $crate::store::Owner,
            id: &'a str,
        ) -> $crate::store::StoreFuture<'a, bool> {
            $crate::store::bounded(async move {
                let done = sqlx::query("DELETE FROM items WHERE id = $1 AND owner_id = $2")
                    .bind(id)
                    .bind(owner.id())
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            })
        }
    };
}
pub(crate) use item_writes;

/// The [`ItemStore`] reads through the backend's sqlx pool (PostgreSQL; SQLite reads through
/// its own connections, see `sqlite::reader`).
macro_rules! item_reads {
    () => {
        fn owned_item<'a>(
            &'a self,
            owner: &'a $crate::store::Owner,
            id: &'a str,
        ) -> $crate::store::StoreFuture<'a, Option<$crate::store::ItemRecord>> {
            $crate::store::bounded(async move {
                let row = sqlx::query($crate::store::items::OWNED_ITEM)
                    .bind(id)
                    .bind(owner.id())
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map($crate::store::rows::item_from).transpose()
            })
        }

        fn list_items<'a>(
            &'a self,
            owner: &'a $crate::store::Owner,
            before: Option<&'a str>,
            rows: usize,
        ) -> $crate::store::StoreFuture<'a, Vec<$crate::store::ItemRecord>> {
            $crate::store::bounded(async move {
                let query = match before {
                    Some(before) => sqlx::query($crate::store::items::ITEM_PAGE_AFTER)
                        .bind(owner.id())
                        .bind(before),
                    None => sqlx::query($crate::store::items::ITEM_PAGE_FIRST).bind(owner.id()),
                };
                let found = query
                    .bind($crate::store::limit(rows))
                    .fetch_all(&self.pool)
                    .await?;
                found.iter().map($crate::store::rows::item_from).collect()
            })
        }

        fn item_exists<'a>(&'a self, id: &'a str) -> $crate::store::StoreFuture<'a, bool> {
            $crate::store::bounded(async move {
                let row = sqlx::query($crate::store::items::ITEM_EXISTS)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            })
        }
    };
}
pub(crate) use item_reads;
