//! `/api/v1/products`: the catalog view (reads) and product events (writes).

use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use shopflow_views::ProductRow;
use shopflow_events::types::{ProductCreated, ProductDeleted, ProductUpdated};
use shopflow_events::{Event, Id, Money};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::{ApiQuery, IdPath, WriteJson};
use crate::idempotency::Write;
use crate::openapi::{AdminErrors, BodylessWriteErrors, NotFound, ReadErrors, WriteErrors};
use crate::state::AppState;
use crate::token::ReadConsistency;
use crate::write::Accepted;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Products per page.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only products of this category.
    #[param(value_type = Option<Id>)]
    category: Option<String>,
    /// Only products of this brand.
    #[param(value_type = Option<Id>)]
    brand: Option<String>,
}

/// One page of a list; `next_cursor` is absent on the last page.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The cursor is the last returned product id, base64url so that clients treat it as opaque
/// (we may change what is inside without breaking them).
pub fn encode_cursor(id: &Id) -> String {
    URL_SAFE_NO_PAD.encode(id.as_str())
}

pub fn decode_cursor(cursor: &str) -> Result<Id, ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ApiError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| ApiError::InvalidCursor)?;
    Id::new(text).map_err(|_| ApiError::InvalidCursor)
}

pub(crate) fn query_id(value: Option<String>, name: &str) -> Result<Option<Id>, ApiError> {
    value
        .map(|v| Id::new(v).map_err(|e| ApiError::InvalidQuery(format!("{name}: {}", e.message))))
        .transpose()
}

/// List products
///
/// The catalog view, ordered by product id, paginated by an opaque cursor.
#[utoipa::path(
    get,
    path = "/api/v1/products",
    operation_id = "list_products",
    tag = "catalog",
    params(ListQuery, ReadConsistency),
    responses((status = 200, description = "A page of products", body = Page<ProductRow>), ReadErrors)
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
    read: ReadConsistency,
) -> Result<Json<Page<ProductRow>>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let category = query_id(query.category, "category")?;
    let brand = query_id(query.brand, "brand")?;
    state.consistent(&read).await?;

    // One row more than asked tells whether another page exists, so the last page has no
    // cursor and clients never fetch an empty page.
    let mut items = state.views.products.page(after.as_ref(), limit as usize + 1, |row| {
        category.as_ref().is_none_or(|c| &row.category_id == c) && brand.as_ref().is_none_or(|b| &row.brand_id == b)
    });
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|row| encode_cursor(&row.product_id))
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

/// Get a product
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}",
    operation_id = "get_product",
    tag = "catalog",
    params(("id" = Id, Path, description = "Product id"), ReadConsistency),
    responses((status = 200, description = "The product", body = ProductRow), ReadErrors, NotFound)
)]
pub async fn get(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    read: ReadConsistency,
) -> Result<Json<ProductRow>, ApiError> {
    state.consistent(&read).await?;
    state
        .views
        .products
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound { entity: "product", id: id.to_string() })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// Optional client-chosen id (an imported SKU); otherwise the server mints one (a UUIDv7,
    /// or under an `Idempotency-Key` the key's event id, so every repeat names one product).
    product_id: Option<Id>,
    /// Not blank.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    description: String,
    /// `amount_minor` must not be negative.
    price: Money,
    #[serde(default)]
    #[schema(max_length = 64)]
    sku: String,
    category_id: Id,
    brand_id: Id,
    supplier_id: Id,
}

/// Create a product
///
/// Admin only. Answers once the event is in the log; the product is readable once the views
/// pass the returned token.
#[utoipa::path(
    post,
    path = "/api/v1/products",
    operation_id = "create_product",
    tag = "catalog",
    params(Write),
    request_body = CreateProduct,
    security(("bearer" = [])),
    responses(
        Accepted,
        WriteErrors,
        AdminErrors,
    )
)]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    WriteJson { body, write }: WriteJson<CreateProduct>,
) -> Result<Accepted, ApiError> {
    let product_id = body.product_id.unwrap_or_else(|| write.mint_id());
    let event = Event::ProductCreated(ProductCreated {
        product_id: product_id.clone(),
        name: body.name,
        description: body.description,
        price: body.price,
        sku: body.sku,
        category_id: body.category_id,
        brand_id: body.brand_id,
        supplier_id: body.supplier_id,
    });
    state.submit(&write, event, Some(product_id.to_string())).await
}

/// A partial update: absent (or null) fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    /// Not blank.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: Option<String>,
    #[schema(max_length = 5000)]
    description: Option<String>,
    /// `amount_minor` must not be negative.
    price: Option<Money>,
    #[schema(max_length = 64)]
    sku: Option<String>,
    category_id: Option<Id>,
    brand_id: Option<Id>,
    supplier_id: Option<Id>,
}

/// Update a product
///
/// Admin only. A partial update: absent (or null) fields keep their value; at least one
/// must be given. An update of an unknown product is accepted and ignored by the pipeline.
#[utoipa::path(
    patch,
    path = "/api/v1/products/{id}",
    operation_id = "update_product",
    tag = "catalog",
    params(("id" = Id, Path, description = "Product id"), Write),
    request_body = UpdateProduct,
    security(("bearer" = [])),
    responses(
        Accepted,
        WriteErrors,
        AdminErrors,
    )
)]
pub async fn update(
    State(state): State<AppState>,
    _: Admin,
    IdPath(product_id): IdPath,
    WriteJson { body, write }: WriteJson<UpdateProduct>,
) -> Result<Accepted, ApiError> {
    let update = ProductUpdated {
        product_id: product_id.clone(),
        name: body.name,
        description: body.description,
        price: body.price,
        sku: body.sku,
        category_id: body.category_id,
        brand_id: body.brand_id,
        supplier_id: body.supplier_id,
    };
    if update == (ProductUpdated { product_id: product_id.clone(), ..Default::default() }) {
        // An empty patch would be a no-op event in the log forever; refuse it instead.
        return Err(ApiError::Validation { field: String::new(), message: "at least one field must be given".into() });
    }
    // Existence is not checked against the view: it may lag behind a create the client just
    // made. An update of an unknown product is ignored by the pipeline.
    state.submit(&write, Event::ProductUpdated(update), Some(product_id.to_string())).await
}

/// Delete a product
///
/// Admin only.
#[utoipa::path(
    delete,
    path = "/api/v1/products/{id}",
    operation_id = "delete_product",
    tag = "catalog",
    params(("id" = Id, Path, description = "Product id"), Write),
    security(("bearer" = [])),
    responses(
        Accepted,
        BodylessWriteErrors,
        AdminErrors,
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    _: Admin,
    IdPath(product_id): IdPath,
    write: Write,
) -> Result<Accepted, ApiError> {
    let event = Event::ProductDeleted(ProductDeleted { product_id: product_id.clone() });
    state.submit(&write, event, Some(product_id.to_string())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Id::new("0190-abc_def:1").unwrap();
        assert_eq!(decode_cursor(&encode_cursor(&id)).unwrap(), id);
        assert!(matches!(decode_cursor("!!!"), Err(ApiError::InvalidCursor)));
        // Valid base64 of something that is not an id.
        assert!(matches!(decode_cursor(&URL_SAFE_NO_PAD.encode("a b")), Err(ApiError::InvalidCursor)));
    }
}
