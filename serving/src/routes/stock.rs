//! Stock movements (`/api/v1/stock/receipts`, `/adjustments`) and the per-product stock read
//! (`/api/v1/products/{id}/stock`).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use shopflow_views::StockRow;
use shopflow_events::types::{StockAdjusted, StockReceived};
use shopflow_events::{Event, Id};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::{IdPath, WriteJson};
use crate::idempotency::Write;
use crate::openapi::{AdminErrors, NotFound, ReadErrors, WriteErrors};
use crate::state::AppState;
use crate::token::ReadConsistency;
use crate::write::Accepted;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    product_id: Id,
    warehouse_id: Id,
    #[schema(minimum = 1)]
    quantity: u32,
}

/// Receive stock
///
/// Admin only. Units arriving at a warehouse.
#[utoipa::path(
    post,
    path = "/api/v1/stock/receipts",
    tag = "stock",
    params(Write),
    request_body = Receipt,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, AdminErrors)
)]
pub async fn receive(
    State(state): State<AppState>,
    _: Admin,
    WriteJson { body, write }: WriteJson<Receipt>,
) -> Result<Accepted, ApiError> {
    let event = Event::StockReceived(StockReceived {
        product_id: body.product_id,
        warehouse_id: body.warehouse_id,
        quantity: body.quantity,
    });
    state.submit(&write, event, None).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjustment {
    product_id: Id,
    warehouse_id: Id,
    /// Units added (positive) or removed (negative); never 0.
    #[schema(minimum = -4294967295i64, maximum = 4294967295i64)]
    delta: i64,
    #[serde(default)]
    #[schema(max_length = 200)]
    reason: String,
}

/// Adjust stock
///
/// Admin only. A correction (positive or negative) of one warehouse's level. Accepted here
/// does not mean applied: an adjustment below zero is rejected by the pipeline (recorded in
/// `decisions`), because only the log order can say what the level is.
#[utoipa::path(
    post,
    path = "/api/v1/stock/adjustments",
    tag = "stock",
    params(Write),
    request_body = Adjustment,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, AdminErrors)
)]
pub async fn adjust(
    State(state): State<AppState>,
    _: Admin,
    WriteJson { body, write }: WriteJson<Adjustment>,
) -> Result<Accepted, ApiError> {
    let event = Event::StockAdjusted(StockAdjusted {
        product_id: body.product_id,
        warehouse_id: body.warehouse_id,
        delta: body.delta,
        reason: body.reason,
    });
    state.submit(&write, event, None).await
}

#[derive(Serialize, ToSchema)]
pub struct ProductStock {
    product_id: Id,
    warehouses: Vec<WarehouseStock>,
    total: i64,
}

#[derive(Serialize, ToSchema)]
pub struct WarehouseStock {
    warehouse_id: Id,
    warehouse_name: Option<String>,
    quantity: i64,
}

/// Stock of a product
///
/// Per warehouse and in total.
#[utoipa::path(
    get,
    path = "/api/v1/products/{id}/stock",
    tag = "stock",
    params(("id" = Id, Path, description = "Product id"), ReadConsistency),
    responses((status = 200, description = "The product's stock", body = ProductStock), ReadErrors, NotFound)
)]
pub async fn of_product(
    State(state): State<AppState>,
    IdPath(product_id): IdPath,
    read: ReadConsistency,
) -> Result<Json<ProductStock>, ApiError> {
    state.consistent(&read).await?;
    // Ids are `[A-Za-z0-9_.:-]`, so "" sorts before and "~" after every warehouse id.
    let rows: Vec<StockRow> = state
        .views
        .stock
        .range((product_id.clone(), Id::from(""))..=(product_id.clone(), Id::from("~")));
    if rows.is_empty() && state.views.products.get(&product_id).is_none() {
        return Err(ApiError::NotFound { entity: "product", id: product_id.to_string() });
    }
    let total = rows.iter().map(|r| r.quantity).sum();
    let warehouses = rows
        .into_iter()
        .map(|r| WarehouseStock { warehouse_id: r.warehouse_id, warehouse_name: r.warehouse_name, quantity: r.quantity })
        .collect();
    Ok(Json(ProductStock { product_id, warehouses, total }))
}
