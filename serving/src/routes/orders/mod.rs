//! `/api/v1/orders` (seed 004's Order Service): placement (`place.rs`), an order, a user's
//! orders, cancel, the admin's status changes and the latest orders (seed 003 query 3).
//!
//! The saga in the pipeline decides every order; these routes only ask. A refusal here (409)
//! is what the view already says (writes that check the view take a consistency token, so a
//! client can name the write the check must see, such as its order's placement); whatever passes is published and decided by the pipeline
//! in log order, which may still refuse it (a cancel racing a shipment).

mod place;

pub use place::*;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use shopflow_events::types::{OrderCancelled, OrderStatus, OrderStatusChanged};
use shopflow_events::{Event, Id, Money};
use shopflow_views::{OrderRow, UserOrderRow};
use utoipa::{IntoParams, ToSchema};

use super::cart::reachable_user;
use super::products::Page;
use crate::auth::{Admin, Caller, User};
use crate::error::{ApiError, OrderAction};
use crate::extract::{ApiQuery, IdPath, WriteJson};
use crate::idempotency::Write;
use crate::openapi::{AdminErrors, BodylessWriteErrors, Conflict, NotFound, ReadErrors, UserErrors, WriteErrors};
use crate::state::AppState;
use crate::token::ReadConsistency;
use crate::write::Accepted;

/// The order if the caller may see it: its owner's or, for admins, any. Another user's order
/// is `404` exactly like an id that does not exist, so ids cannot be probed.
pub(crate) fn visible_order(state: &AppState, caller: &Caller, order_id: &Id) -> Result<OrderRow, ApiError> {
    state
        .views
        .orders
        .get(order_id)
        .filter(|row| caller.may_access(&row.user_id))
        .ok_or_else(|| ApiError::NotFound { entity: "order", id: order_id.to_string() })
}

/// Get an order
///
/// The whole row: lines at their captured prices, holds, payment amounts and status history.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    operation_id = "get_order",
    params(("id" = Id, Path, description = "Order id"), ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "The order", body = OrderRow), ReadErrors, NotFound, UserErrors)
)]
pub async fn get(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(order_id): IdPath,
    read: ReadConsistency,
) -> Result<Json<OrderRow>, ApiError> {
    state.consistent(&read).await?;
    Ok(Json(visible_order(&state, &caller, &order_id)?))
}

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserOrdersQuery {
    /// Orders per page.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Newest first means (placed_at, order_id) descending; the cursor is the last one returned.
fn encode_cursor(row: &UserOrderRow) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}/{}", row.placed_at, row.order_id))
}

fn decode_cursor(cursor: &str) -> Result<(i64, Id), ApiError> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ApiError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| ApiError::InvalidCursor)?;
    let (placed_at, order_id) = text.split_once('/').ok_or(ApiError::InvalidCursor)?;
    let placed_at = placed_at.parse().map_err(|_| ApiError::InvalidCursor)?;
    Ok((placed_at, Id::new(order_id).map_err(|_| ApiError::InvalidCursor)?))
}

/// A user's orders
///
/// Newest first, paginated by an opaque cursor. A customer's own only (another user's are
/// `404`); admins see anyone's.
#[utoipa::path(
    get,
    path = "/api/v1/orders/user/{userId}",
    operation_id = "list_user_orders",
    tag = "orders",
    params(("userId" = Id, Path, description = "User id"), UserOrdersQuery, ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "A page of orders, newest first", body = Page<UserOrderRow>), ReadErrors, NotFound, UserErrors)
)]
pub async fn of_user(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(user_id): IdPath,
    ApiQuery(query): ApiQuery<UserOrdersQuery>,
    read: ReadConsistency,
) -> Result<Json<Page<UserOrderRow>>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    state.consistent(&read).await?;
    reachable_user(&caller, &user_id)?;
    let rows = state.views.user_order_list(&user_id);
    let mut items: Vec<UserOrderRow> = rows
        .into_iter()
        .filter(|row| after.as_ref().is_none_or(|(placed_at, id)| (row.placed_at, &row.order_id) < (*placed_at, id)))
        .take(limit as usize + 1)
        .collect();
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(Page { items, next_cursor }))
}

/// Cancel an order
///
/// Before shipping: its holds are released and, if it was paid, the payment is refunded.
/// `409 not_cancellable` when the view already says shipped, delivered or decided otherwise.
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/cancel",
    operation_id = "cancel_order",
    tag = "orders",
    params(("id" = Id, Path, description = "Order id"), Write, ReadConsistency),
    security(("bearer" = [])),
    responses(Accepted, BodylessWriteErrors, NotFound, Conflict, UserErrors)
)]
pub async fn cancel(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(order_id): IdPath,
    read: ReadConsistency,
    write: Write,
) -> Result<Accepted, ApiError> {
    state.consistent(&read).await?;
    let row = visible_order(&state, &caller, &order_id)?;
    if !row.status.cancellable() {
        return Err(refused(&row, OrderAction::Cancelled));
    }
    let reason = if caller.user_id == row.user_id { "customer" } else { "admin" };
    let event = Event::OrderCancelled(OrderCancelled { order_id: order_id.clone(), user_id: row.user_id, reason: reason.into() });
    state.submit(&write, event, Some(order_id.to_string())).await
}

pub(crate) fn refused(row: &OrderRow, action: OrderAction) -> ApiError {
    ApiError::OrderState { order_id: row.order_id.to_string(), status: row.status.as_str(), action }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    /// `shipped` (from `paid`) or `delivered` (from `shipped`); the saga decides the others.
    status: OrderStatus,
}

/// Update an order's status
///
/// Admin only: `shipped` (a paid order) or `delivered` (a shipped one). Another target
/// status is `422`; a transition the current status does not allow is `409`.
#[utoipa::path(
    put,
    path = "/api/v1/orders/{id}/status",
    operation_id = "set_order_status",
    tag = "orders",
    params(("id" = Id, Path, description = "Order id"), Write, ReadConsistency),
    request_body = StatusUpdate,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, NotFound, Conflict, AdminErrors)
)]
pub async fn set_status(
    State(state): State<AppState>,
    Admin(caller): Admin,
    IdPath(order_id): IdPath,
    read: ReadConsistency,
    WriteJson { body, write }: WriteJson<StatusUpdate>,
) -> Result<Accepted, ApiError> {
    state.consistent(&read).await?;
    let from = match body.status {
        OrderStatus::Shipped => OrderStatus::Paid,
        OrderStatus::Delivered => OrderStatus::Shipped,
        _ => {
            return Err(ApiError::Validation { field: "status".into(), message: "must be shipped or delivered".into() });
        }
    };
    let row = visible_order(&state, &caller, &order_id)?;
    if row.status != from {
        return Err(refused(&row, OrderAction::Moved(body.status.as_str())));
    }
    let event = Event::OrderStatusChanged(OrderStatusChanged { order_id: order_id.clone(), user_id: row.user_id, status: body.status });
    state.submit(&write, event, Some(order_id.to_string())).await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LatestQuery {
    /// How many orders (the view keeps the latest 100).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// One of the latest orders with its lines joined with the catalog and the user (seed 003
/// query 3, one entry per order instead of one row per line).
#[derive(Serialize, ToSchema)]
pub struct LatestOrder {
    pub order_id: Id,
    pub placed_at: i64,
    pub status: OrderStatus,
    pub user_id: Id,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
    pub lines: Vec<LatestOrderLine>,
    /// Sum of the lines at their captured prices.
    pub total: Money,
}

#[derive(Serialize, ToSchema)]
pub struct LatestOrderLine {
    pub product_id: Id,
    pub product_name: Option<String>,
    pub brand_name: Option<String>,
    pub category_name: Option<String>,
    pub supplier_name: Option<String>,
    pub quantity: u32,
    pub unit_price: Money,
}

#[derive(Serialize, ToSchema)]
pub struct LatestOrders {
    pub items: Vec<LatestOrder>,
}

/// The latest orders
///
/// Admin only. Newest first, each with its lines joined with product, brand, category,
/// supplier and user.
#[utoipa::path(
    get,
    path = "/api/v1/orders/latest",
    operation_id = "latest_orders",
    tag = "orders",
    params(LatestQuery, ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "The latest orders, newest first", body = LatestOrders), ReadErrors, AdminErrors)
)]
pub async fn latest(
    State(state): State<AppState>,
    _: Admin,
    ApiQuery(query): ApiQuery<LatestQuery>,
    read: ReadConsistency,
) -> Result<Json<LatestOrders>, ApiError> {
    let limit = query.limit.unwrap_or(MAX_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    state.consistent(&read).await?;
    // Rows are keyed (order, product): one order's lines are adjacent.
    let mut orders: BTreeMap<Id, LatestOrder> = BTreeMap::new();
    for (_, row) in state.views.latest_orders.snapshot() {
        let order = orders.entry(row.order_id.clone()).or_insert_with(|| LatestOrder {
            order_id: row.order_id.clone(),
            placed_at: row.placed_at,
            status: row.status,
            user_id: row.user_id.clone(),
            user_name: row.user_name.clone(),
            user_email: row.user_email.clone(),
            lines: Vec::new(),
            total: Money::new(0, &row.unit_price.currency),
        });
        order.total.amount_minor =
            order.total.amount_minor.saturating_add(row.unit_price.amount_minor.saturating_mul(i64::from(row.quantity)));
        order.lines.push(LatestOrderLine {
            product_id: row.product_id,
            product_name: row.product_name,
            brand_name: row.brand_name,
            category_name: row.category_name,
            supplier_name: row.supplier_name,
            quantity: row.quantity,
            unit_price: row.unit_price,
        });
    }
    let mut items: Vec<LatestOrder> = orders.into_values().collect();
    items.sort_by(|a, b| b.placed_at.cmp(&a.placed_at).then_with(|| b.order_id.cmp(&a.order_id)));
    items.truncate(limit as usize);
    Ok(Json(LatestOrders { items }))
}
