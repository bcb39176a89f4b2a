//! Items in PostgreSQL. Every statement names the owner; see [`crate::store::items`].

use super::PostgresStore;
use crate::store::bounded;
use crate::store::rows::item_from;
use crate::store::{ItemChanges, ItemRecord, ItemStore, NewItem, Owner, StoreFuture};

const ITEM_COLUMNS: &str = "id, owner_id, title, body, created_at, updated_at";

/// LIMIT takes a BIGINT; page sizes are at most a few hundred.
pub(super) fn limit(rows: usize) -> i64 {
    i64::try_from(rows).unwrap_or(i64::MAX)
}

impl ItemStore for PostgresStore {
    fn create_item<'a>(&'a self, owner: &'a Owner, item: NewItem) -> StoreFuture<'a, ItemRecord> {
        bounded(async move {
            let now = crate::store::now();
            let sql = format!(
                "INSERT INTO items (id, owner_id, title, body, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {ITEM_COLUMNS}"
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
            let sql = format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1 AND owner_id = $2");
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
                "UPDATE items SET title = COALESCE($1, title), body = COALESCE($2, body), updated_at = $3
                 WHERE id = $4 AND owner_id = $5 RETURNING {ITEM_COLUMNS}"
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
            let done = sqlx::query("DELETE FROM items WHERE id = $1 AND owner_id = $2")
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
            // Two statements, so each plan seeks the (owner_id, id) index directly.
            let seek = format!(
                "SELECT {ITEM_COLUMNS} FROM items WHERE owner_id = $1 AND id < $2
                 ORDER BY id DESC LIMIT $3"
            );
            let first = format!(
                "SELECT {ITEM_COLUMNS} FROM items WHERE owner_id = $1 ORDER BY id DESC LIMIT $2"
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
            let row = sqlx::query("SELECT 1 FROM items WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            Ok(row.is_some())
        })
    }
}
