//! `/api/v1/cart`: the signed-in user's cart (seed 004's Order Service: cart). The cart view
//! holds units only; a cart is shown priced from the catalog view (today's price) and
//! annotated with what the stock can give now, so it never shows a stale price.
//! `GET /api/v1/users/{id}/cart` is the same read for its owner or an admin.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use shopflow_events::types::{CartCleared, CartItemChanged, CartQuantitySet, MAX_UNITS};
use shopflow_events::{Event, Id, Money};
use shopflow_views::ProductRow;
use utoipa::ToSchema;

use crate::auth::{Caller, User};
use crate::error::ApiError;
use crate::extract::{IdPath, WriteJson};
use crate::idempotency::Write;
use crate::openapi::{BodylessWriteErrors, NotFound, ReadErrors, UserErrors, WriteErrors};
use crate::state::AppState;
use crate::token::ReadConsistency;
use crate::write::Accepted;

/// A catalog product a write names: 422 on `field` when the catalog view does not have it.
pub(crate) fn catalog_product(state: &AppState, product_id: &Id, field: &str) -> Result<ProductRow, ApiError> {
    state.views.products.get(product_id).ok_or_else(|| ApiError::Validation {
        field: field.to_owned(),
        message: format!("no product {product_id} in the catalog"),
    })
}

/// Units of `product_id` a new order can get now: on hand minus held, all warehouses.
pub(crate) fn available(state: &AppState, product_id: &Id) -> i64 {
    state.views.product_available(product_id).iter().map(|row| row.available).sum()
}

fn check_quantity(quantity: u32, field: &str, allow_zero: bool) -> Result<(), ApiError> {
    let least = u32::from(!allow_zero);
    if quantity < least || quantity > MAX_UNITS {
        return Err(ApiError::Validation { field: field.to_owned(), message: format!("must be {least} to {MAX_UNITS}") });
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddToCart {
    product_id: Id,
    /// Units to add.
    #[schema(minimum = 1, maximum = 10000)]
    quantity: u32,
}

/// Add to the cart
///
/// Adds units of a catalog product to the caller's cart (a product not in the catalog is
/// `422` on `product_id`; pass the consistency token of a product you just created).
#[utoipa::path(
    post,
    path = "/api/v1/cart/add",
    operation_id = "add_to_cart",
    tag = "cart",
    params(Write, ReadConsistency),
    request_body = AddToCart,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, UserErrors)
)]
pub async fn add(
    State(state): State<AppState>,
    User(caller): User,
    read: ReadConsistency,
    WriteJson { body, write }: WriteJson<AddToCart>,
) -> Result<Accepted, ApiError> {
    check_quantity(body.quantity, "quantity", false)?;
    state.consistent(&read).await?;
    catalog_product(&state, &body.product_id, "product_id")?;
    let event = Event::CartItemAdded(CartItemChanged {
        user_id: caller.user_id.clone(),
        product_id: body.product_id.clone(),
        quantity: body.quantity,
    });
    state.submit(&write, event, Some(body.product_id.to_string())).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// The line's new quantity; 0 removes it.
    #[schema(minimum = 0, maximum = 10000)]
    quantity: u32,
}

/// Set a cart line's quantity
///
/// 0 removes the line (also for a product no longer in the catalog).
#[utoipa::path(
    put,
    path = "/api/v1/cart/items/{productId}",
    operation_id = "set_cart_item",
    tag = "cart",
    params(("productId" = Id, Path, description = "Product id"), Write, ReadConsistency),
    request_body = SetQuantity,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, UserErrors)
)]
pub async fn set_item(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(product_id): IdPath,
    read: ReadConsistency,
    WriteJson { body, write }: WriteJson<SetQuantity>,
) -> Result<Accepted, ApiError> {
    check_quantity(body.quantity, "quantity", true)?;
    if body.quantity > 0 {
        state.consistent(&read).await?;
        catalog_product(&state, &product_id, "productId")?;
    }
    let event = Event::CartQuantitySet(CartQuantitySet {
        user_id: caller.user_id.clone(),
        product_id: product_id.clone(),
        quantity: body.quantity,
    });
    state.submit(&write, event, Some(product_id.to_string())).await
}

/// Remove a cart line
#[utoipa::path(
    delete,
    path = "/api/v1/cart/items/{productId}",
    operation_id = "remove_cart_item",
    tag = "cart",
    params(("productId" = Id, Path, description = "Product id"), Write),
    security(("bearer" = [])),
    responses(Accepted, BodylessWriteErrors, UserErrors)
)]
pub async fn remove_item(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(product_id): IdPath,
    write: Write,
) -> Result<Accepted, ApiError> {
    // "Set to 0" rather than "remove n units": removing a line is the same event whatever
    // the line held when the request was sent.
    let event = Event::CartQuantitySet(CartQuantitySet {
        user_id: caller.user_id.clone(),
        product_id: product_id.clone(),
        quantity: 0,
    });
    state.submit(&write, event, Some(product_id.to_string())).await
}

/// Empty the cart
#[utoipa::path(
    delete,
    path = "/api/v1/cart",
    operation_id = "clear_cart",
    tag = "cart",
    params(Write),
    security(("bearer" = [])),
    responses(Accepted, BodylessWriteErrors, UserErrors)
)]
pub async fn clear(State(state): State<AppState>, User(caller): User, write: Write) -> Result<Accepted, ApiError> {
    let user = caller.user_id.to_string();
    state.submit(&write, Event::CartCleared(CartCleared { user_id: caller.user_id }), Some(user)).await
}

/// A cart as shown: lines at today's price, with what the stock can give.
#[derive(Serialize, ToSchema)]
pub struct CartView {
    pub user_id: Id,
    pub lines: Vec<CartLine>,
    /// Units over every line.
    pub units: u64,
    /// Sum of the priced lines, one entry per currency (one, in practice).
    pub totals: Vec<Money>,
}

#[derive(Serialize, ToSchema)]
pub struct CartLine {
    pub product_id: Id,
    pub quantity: u32,
    /// `None` when the product left the catalog: the line cannot be ordered (remove it).
    pub name: Option<String>,
    /// Today's catalog price of one unit.
    pub unit_price: Option<Money>,
    pub line_total: Option<Money>,
    /// Units a new order could get now (on hand minus held, all warehouses).
    pub available: i64,
    /// Whether `available` covers `quantity` (an order placed now would hold it, unless
    /// someone else's order comes first).
    pub in_stock: bool,
    pub updated_at: i64,
}

pub(crate) fn cart_view(state: &AppState, user: &Id) -> CartView {
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    let mut units = 0u64;
    let lines = state
        .views
        .user_cart(user)
        .into_iter()
        .map(|row| {
            units += u64::from(row.quantity);
            let product = state.views.products.get(&row.product_id);
            let available = available(state, &row.product_id);
            let line_total = product.as_ref().map(|p| {
                let amount = p.price.amount_minor.saturating_mul(i64::from(row.quantity));
                let total = totals.entry(p.price.currency.clone()).or_default();
                *total = total.saturating_add(amount);
                Money::new(amount, &p.price.currency)
            });
            CartLine {
                in_stock: product.is_some() && available >= i64::from(row.quantity),
                name: product.as_ref().map(|p| p.name.clone()),
                unit_price: product.map(|p| p.price),
                line_total,
                available,
                product_id: row.product_id,
                quantity: row.quantity,
                updated_at: row.updated_at,
            }
        })
        .collect();
    let totals = totals.into_iter().map(|(currency, amount)| Money::new(amount, &currency)).collect();
    CartView { user_id: user.clone(), lines, units, totals }
}

/// The caller's cart
#[utoipa::path(
    get,
    path = "/api/v1/cart",
    tag = "cart",
    operation_id = "get_cart",
    params(ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "The cart, priced and annotated", body = CartView), ReadErrors, UserErrors)
)]
pub async fn get(State(state): State<AppState>, User(caller): User, read: ReadConsistency) -> Result<Json<CartView>, ApiError> {
    state.consistent(&read).await?;
    Ok(Json(cart_view(&state, &caller.user_id)))
}

/// A user's cart
///
/// Its owner's or, for admins, anyone's (another user's is `404`, as an unknown id).
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}/cart",
    operation_id = "get_user_cart",
    tag = "cart",
    params(("id" = Id, Path, description = "User id"), ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "The cart, priced and annotated", body = CartView), ReadErrors, NotFound, UserErrors)
)]
pub async fn of_user(
    State(state): State<AppState>,
    User(caller): User,
    IdPath(id): IdPath,
    read: ReadConsistency,
) -> Result<Json<CartView>, ApiError> {
    state.consistent(&read).await?;
    reachable_user(&caller, &id)?;
    Ok(Json(cart_view(&state, &id)))
}

/// Refuses (404, as an unknown id) a user the caller may not reach: a customer reaches
/// themselves, an admin everyone (an id without an account has an empty cart and no orders).
pub(crate) fn reachable_user(caller: &Caller, id: &Id) -> Result<(), ApiError> {
    if caller.may_access(id) {
        Ok(())
    } else {
        Err(ApiError::NotFound { entity: "user", id: id.to_string() })
    }
}
