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
    /// Units on hand over every warehouse.
    total: i64,
    /// Of those, units held for orders not yet shipped or released.
    held: i64,
    /// What a new order can get: on hand minus held.
    available: i64,
}

#[derive(Serialize, ToSchema)]
pub struct WarehouseStock {
    warehouse_id: Id,
    warehouse_name: Option<String>,
    /// On hand.
    quantity: i64,
    held: i64,
    available: i64,
}

/// Stock of a product
///
/// Per warehouse and in total: on hand, held for orders, and available (on hand minus held,
/// what a new order can get).
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
    // Held units per warehouse from the saga's view; a warehouse it has no row for holds none.
    let holds: std::collections::HashMap<Id, (i64, i64)> =
        state.views.product_available(&product_id).into_iter().map(|r| (r.warehouse_id, (r.held, r.available))).collect();
    let warehouses: Vec<WarehouseStock> = rows
        .into_iter()
        .map(|r| {
            let (held, available) = holds.get(&r.warehouse_id).copied().unwrap_or((0, r.quantity));
            WarehouseStock {
                available,
                warehouse_id: r.warehouse_id,
                warehouse_name: r.warehouse_name,
                quantity: r.quantity,
                held,
            }
        })
        .collect();
    let held = warehouses.iter().map(|w| w.held).sum();
    let available = warehouses.iter().map(|w| w.available).sum();
    Ok(Json(ProductStock { product_id, warehouses, total, held, available }))
}
