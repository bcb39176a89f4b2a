//! Items in SQLite. Every statement names the owner; see [`crate::store::items`].

use super::SqliteStore;
use crate::store::bounded;
use crate::store::rows::item_from;
use crate::store::{ItemChanges, ItemRecord, ItemStore, NewItem, Owner, StoreFuture};

const ITEM_COLUMNS: &str = "id, owner_id, title, body, created_at, updated_at";

/// SQLite's LIMIT takes an i64; page sizes are at most a few hundred.
pub(super) fn limit(rows: usize) -> i64 {
    i64::try_from(rows).unwrap_or(i64::MAX)
}

impl ItemStore for SqliteStore {
    fn create_item<'a>(&'a self, owner: &'a Owner, item: NewItem) -> StoreFuture<'a, ItemRecord> {
        bounded(async move {
            let now = crate::store::now();
            let sql = format!(
                "INSERT INTO items (id, owner_id, title, body, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING {ITEM_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(&item.id)
                .bind(owner.id())
                .bind(item.title.into_inner())
                .bind(item.body.into_inner())
                .bind(&now)
                .bind(&now)
                .fetch_one(&self.pool)
                .await?;
            item_from(&row)
        })
    }

    fn owned_item<'a>(
        &'a self,
        owner: &'a Owner,
        id: &'a str,
    ) -> StoreFuture<'a, Option<ItemRecord>> {
        bounded(async move {
            let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = ? AND owner_id = ?");
            let row = sqlx::query(&sql)
                .bind(id)
                .bind(owner.id())
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(item_from).transpose()
        })
    }

    fn update_item<'a>(
        &'a self,
        owner: &'a Owner,
        id: &'a str,
        changes: ItemChanges,
    ) -> StoreFuture<'a, Option<ItemRecord>> {
        bounded(async move {
            let sql = format!(
                "UPDATE items SET title = COALESCE(?, title), body = COALESCE(?, body), updated_at = ?
                 WHERE id = ? AND owner_id = ? RETURNING {ITEM_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(changes.title.map(crate::domain::ItemTitle::into_inner))
                .bind(changes.body.map(crate::domain::ItemBody::into_inner))
                .bind(crate::store::now())
                .bind(id)
                .bind(owner.id())
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(item_from).transpose()
        })
    }

    fn delete_item<'a>(&'a self, owner: &'a Owner, id: &'a str) -> StoreFuture<'a, bool> {
        bounded(async move {
            let done = sqlx::query("DELETE FROM items WHERE id = ? AND owner_id = ?")
                .bind(id)
                .bind(owner.id())
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn list_items<'a>(
        &'a self,
        owner: &'a Owner,
        before: Option<&'a str>,
        rows: usize,
    ) -> StoreFuture<'a, Vec<ItemRecord>> {
        bounded(async move {
            // Two statements, not `(? IS NULL OR id < ?)`: SQLite cannot seek the index with an
            // OR, and would walk every newer row to reach a deep page.
            let seek = format!(
                "SELECT {ITEM_COLUMNS} FROM items WHERE owner_id = ? AND id < ?
                 ORDER BY id DESC LIMIT ?"
            );
            let first = format!(
                "SELECT {ITEM_COLUMNS} FROM items WHERE owner_id = ? ORDER BY id DESC LIMIT ?"
            );
            let query = match before {
                Some(before) => sqlx::query(&seek).bind(owner.id()).bind(before),
                None => sqlx::query(&first).bind(owner.id()),
            };
            let found = query.bind(limit(rows)).fetch_all(&self.pool).await?;
            found.iter().map(item_from).collect()
        })
    }

    fn item_exists<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        bounded(async move {
            let row = sqlx::query("SELECT 1 FROM items WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.is_some())
        })
    }
}
