//! `/api/v1/warehouses`: the warehouse view and warehouse creation.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use shopflow_views::WarehouseRow;
use shopflow_events::types::WarehouseCreated;
use shopflow_events::{Event, Id};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::{IdPath, WriteJson};
use crate::idempotency::Write;
use crate::openapi::{AdminErrors, NotFound, ReadErrors, WriteErrors};
use crate::state::AppState;
use crate::token::ReadConsistency;
use crate::write::Accepted;

#[derive(serde::Serialize, ToSchema)]
pub struct WarehouseList {
    items: Vec<WarehouseRow>,
}

/// List warehouses
///
/// All of them: a handful per deployment, so no pagination.
#[utoipa::path(
    get,
    path = "/api/v1/warehouses",
    operation_id = "list_warehouses",
    tag = "stock",
    params(ReadConsistency),
    responses((status = 200, description = "Every warehouse", body = WarehouseList), ReadErrors)
)]
pub async fn list(State(state): State<AppState>, read: ReadConsistency) -> Result<Json<WarehouseList>, ApiError> {
    state.consistent(&read).await?;
    let items = state.views.warehouses.snapshot().into_iter().map(|(_, row)| row).collect();
    Ok(Json(WarehouseList { items }))
}

/// Get a warehouse
#[utoipa::path(
    get,
    path = "/api/v1/warehouses/{id}",
    operation_id = "get_warehouse",
    tag = "stock",
    params(("id" = Id, Path, description = "Warehouse id"), ReadConsistency),
    responses((status = 200, description = "The warehouse", body = WarehouseRow), ReadErrors, NotFound)
)]
pub async fn get(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    read: ReadConsistency,
) -> Result<Json<WarehouseRow>, ApiError> {
    state.consistent(&read).await?;
    state
        .views
        .warehouses
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound { entity: "warehouse", id: id.to_string() })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWarehouse {
    warehouse_id: Option<Id>,
    /// Not blank.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    name: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    location: String,
}

/// Create a warehouse
///
/// Admin only.
#[utoipa::path(
    post,
    path = "/api/v1/warehouses",
    operation_id = "create_warehouse",
    tag = "stock",
    params(Write),
    request_body = CreateWarehouse,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, AdminErrors)
)]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    WriteJson { body, write }: WriteJson<CreateWarehouse>,
) -> Result<Accepted, ApiError> {
    let warehouse_id = body.warehouse_id.unwrap_or_else(|| write.mint_id());
    let event = Event::WarehouseCreated(WarehouseCreated {
        warehouse_id: warehouse_id.clone(),
        name: body.name,
        location: body.location,
    });
    state.submit(&write, event, Some(warehouse_id.to_string())).await
}
