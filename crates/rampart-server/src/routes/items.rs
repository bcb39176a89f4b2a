//! `/v1/items`: each user's own records (the rules are in [`crate::service::items`]).
//!
//! Defends against mass assignment and over-exposure: requests are parsed into separate create
//! and update types that reject unknown fields, so `id`, `owner_id`, timestamps or `role` in a
//! body are a 422 and never applied; responses are built from their own type, never by
//! serialising a row. Every call names the caller as the [`Owner`], so another user's item
//! answers exactly like a missing one.

use axum::extract::State;
use axum::http::StatusCode;
use rampart::http::RequestContext;
use rampart::pagination::PageQuery;
use rampart::{ApiError, CurrentUser, Json};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::domain::{ItemBody, ItemTitle, RecordId};
use crate::service::items::Items;
use crate::store::{ItemChanges, ItemRecord, NewItem, Owner, Timestamp};

/// An item as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResponse {
    pub id: String,
    pub owner_id: String,
    pub title: String,
    pub body: String,
    /// RFC 3339, UTC.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// RFC 3339, UTC.
    #[schema(value_type = String)]
    pub updated_at: Timestamp,
}

impl From<ItemRecord> for ItemResponse {
    fn from(item: ItemRecord) -> Self {
        Self {
            id: item.id,
            owner_id: item.owner_id,
            title: item.title,
            body: item.body,
            created_at: item.created_at,
            updated_at: item.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ItemPage {
    pub items: Vec<ItemResponse>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A new item. Only these fields exist; anything else is a 422.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateItem {
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub title: ItemTitle,
    #[schema(value_type = String, max_length = 10000)]
    pub body: ItemBody,
}

/// Changes to an item: either field or both; `null` is not a value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateItem {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub title: Option<ItemTitle>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 10000)]
    pub body: Option<ItemBody>,
}

/// A field that, when present, must hold a value: `"title": null` is refused rather than read
/// as "leave unchanged", so a client bug cannot pass for an intended no-op.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The caller's items, newest first.
#[utoipa::path(get, path = "/v1/items", tag = "items",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of the caller's items", body = ItemPage),
        (status = 422, description = "Bad limit or cursor, or an unknown parameter", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(items): State<Items>,
    CurrentUser(caller): CurrentUser,
    page: PageQuery,
) -> Result<Json<ItemPage>, ApiError> {
    let page = items.list(&Owner::of(&caller), &page).await?;
    Ok(Json(ItemPage {
        items: page.items.into_iter().map(ItemResponse::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Create an item owned by the caller.
#[utoipa::path(post, path = "/v1/items", tag = "items", request_body = CreateItem, responses(
    (status = 201, description = "Created", body = ItemResponse),
    (status = 422, description = "A field is out of bounds or not writable", body = rampart::Problem, content_type = "application/problem+json"),
))]
pub async fn create(
    State(items): State<Items>,
    CurrentUser(caller): CurrentUser,
    Json(new): Json<CreateItem>,
) -> Result<(StatusCode, Json<ItemResponse>), ApiError> {
    let new = NewItem {
        id: crate::store::new_id(),
        title: new.title,
        body: new.body,
    };
    let item = items.create(&Owner::of(&caller), new).await?;
    Ok((StatusCode::CREATED, Json(item.into())))
}

/// One of the caller's items.
#[utoipa::path(get, path = "/v1/items/{id}", tag = "items",
    params(("id" = String, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item", body = ItemResponse),
        (status = 404, description = "No such item of the caller's", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(items): State<Items>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
    id: RecordId,
) -> Result<Json<ItemResponse>, ApiError> {
    let item = items
        .get(&context, &Owner::of(&caller), id.as_str())
        .await?;
    Ok(Json(item.into()))
}

/// Change the title or body of one of the caller's items.
#[utoipa::path(patch, path = "/v1/items/{id}", tag = "items", request_body = UpdateItem,
    params(("id" = String, Path, description = "Item id")),
    responses(
        (status = 200, description = "The changed item", body = ItemResponse),
        (status = 404, description = "No such item of the caller's", body = rampart::Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is out of bounds or not writable", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(items): State<Items>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
    id: RecordId,
    Json(changes): Json<UpdateItem>,
) -> Result<Json<ItemResponse>, ApiError> {
    let changes = ItemChanges {
        title: changes.title,
        body: changes.body,
    };
    let item = items
        .update(&context, &Owner::of(&caller), id.as_str(), changes)
        .await?;
    Ok(Json(item.into()))
}

/// Delete one of the caller's items.
#[utoipa::path(delete, path = "/v1/items/{id}", tag = "items",
    params(("id" = String, Path, description = "Item id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such item of the caller's", body = rampart::Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(items): State<Items>,
    context: RequestContext,
    CurrentUser(caller): CurrentUser,
    id: RecordId,
) -> Result<StatusCode, ApiError> {
    items
        .delete(&context, &Owner::of(&caller), id.as_str())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
