//! `POST /api/v1/orders`: placement. The order id is the keyed event id, so one
//! `Idempotency-Key` is one order however often (and through however many replicas) the
//! request is repeated: every repeat is the same event, which the pipeline keeps once.
//!
//! What is checked here is what the views know now (the catalog, the caller's addresses and
//! payment methods): prices are captured from the catalog at placement. Whether the stock
//! holds is the pipeline's to decide, in log order; `?wait=` waits (bounded) for it.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use shopflow_events::types::{OrderLine, OrderPlaced, OrderStatus, MAX_UNITS};
use shopflow_events::{Event, Id};
use shopflow_views::OrderRow;
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Caller, User};
use crate::error::ApiError;
use crate::extract::{ApiQuery, WriteJson};
use crate::idempotency::{self, Write};
use crate::openapi::{UserErrors, WriteErrors};
use crate::routes::cart::catalog_product;
use crate::state::AppState;
use crate::token::{ReadConsistency, TOKEN_HEADER};

/// The payment gateway's fixed test tokens, accepted as payment methods in test mode.
pub const TEST_PAYMENT_TOKENS: [&str; 6] = [
    "tok_visa",
    "tok_mastercard",
    "tok_chargeDeclined",
    "tok_chargeDeclinedInsufficientFunds",
    "tok_transient",
    "tok_chargeDeclinedExpiredCard",
];

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    /// What to order; or leave empty and set `from_cart`.
    #[serde(default)]
    lines: Vec<NewOrderLine>,
    /// Order the caller's cart (which the pipeline then clears).
    #[serde(default)]
    from_cart: bool,
    /// One of the caller's addresses; absent: their default address.
    address_id: Option<Id>,
    /// A token of one of the caller's payment methods (or, in test mode, a gateway test
    /// token). Absent: the order waits, reserved, for `POST /payments/process`.
    payment_method: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderLine {
    product_id: Id,
    #[schema(minimum = 1, maximum = 10000)]
    quantity: u32,
}

/// How long `POST /orders` waits before answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WaitFor {
    /// Until the stock decided: `reserved` or `rejected`.
    Reservation,
    /// Until the order is decided: paid, rejected, expired, cancelled... (not pending, and not
    /// reserved waiting for its payment).
    Decision,
}

impl WaitFor {
    fn reached(self, status: OrderStatus) -> bool {
        match self {
            WaitFor::Reservation => status != OrderStatus::Pending,
            WaitFor::Decision => !matches!(status, OrderStatus::Pending | OrderStatus::Reserved),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlaceQuery {
    /// Answer once the order got this far (bounded by the server; `201` then), else at once
    /// (`202`).
    wait: Option<WaitFor>,
}

/// `202`: the order is in the log.
#[derive(Serialize, ToSchema)]
pub struct OrderAccepted {
    pub order_id: Id,
    pub event_id: String,
    pub consistency_token: String,
    /// What the view says now (`pending` until the pipeline decided).
    pub status: OrderStatus,
}

/// `201`: the order got as far as `?wait=` asked (or past pending when the bound passed).
#[derive(Serialize, ToSchema)]
pub struct OrderDecided {
    pub order_id: Id,
    pub status: OrderStatus,
    /// Why it was rejected, cancelled or expired (`out_of_stock:<product>`, `card_declined`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub consistency_token: String,
}

/// Place an order
///
/// Needs an `Idempotency-Key` (`400 idempotency_key_required` without): the order id is
/// derived from it, so a repeated request is the same order. Prices are the catalog's at
/// placement. Answers `202` at once, or with `?wait=reservation|decision` waits (bounded) for
/// the pipeline's decision and answers `201` with the status (`202` if still pending when the
/// bound passed). Pass the consistency token of a write the order depends on (a product, an
/// address, a payment method) to have it checked against a view that has it.
#[utoipa::path(
    post,
    path = "/api/v1/orders",
    operation_id = "place_order",
    tag = "orders",
    params(PlaceQuery, Write, ReadConsistency),
    request_body = PlaceOrder,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Decided (with `?wait=`)", body = OrderDecided),
        (status = 202, description = "Accepted: the order is in the log", body = OrderAccepted,
            headers(("x-consistency-token" = String, description = "The consistency token (as in the body)"))),
        WriteErrors,
        UserErrors
    )
)]
pub async fn place(
    State(state): State<AppState>,
    User(caller): User,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<PlaceQuery>,
    read: ReadConsistency,
    WriteJson { body, write }: WriteJson<PlaceOrder>,
) -> Result<Response, ApiError> {
    let Some(key) = idempotency::parse_key(&headers)? else { return Err(ApiError::IdempotencyKeyRequired) };
    state.consistent(&read).await?;
    let order_id = write.mint_id();
    let event = OrderPlaced {
        lines: priced_lines(&state, &caller, &body)?,
        address_id: address(&state, &caller, body.address_id)?,
        payment_token: payment_token(&state, &caller.user_id, body.payment_method.as_deref(), "payment_method")?,
        order_id: order_id.clone(),
        user_id: caller.user_id.clone(),
        idempotency_key: key,
        from_cart: body.from_cart,
    };
    let accepted = state.submit(&write, Event::OrderPlaced(event), Some(order_id.to_string())).await?;
    let row = match query.wait {
        Some(wait) => until(&state, &order_id, wait, state.config.commerce.order_wait_max).await,
        None => state.views.orders.get(&order_id),
    };
    let status = row.as_ref().map_or(OrderStatus::Pending, |row| row.status);
    let token = HeaderValue::from_str(&accepted.consistency_token).map_err(|_| ApiError::Internal)?;
    let mut response = match (query.wait, row) {
        (Some(_), Some(row)) if row.status != OrderStatus::Pending => {
            let decided = OrderDecided {
                order_id,
                status: row.status,
                reason: row.reason,
                consistency_token: accepted.consistency_token,
            };
            (StatusCode::CREATED, Json(decided)).into_response()
        }
        _ => {
            let answer = OrderAccepted {
                order_id,
                event_id: accepted.event_id,
                consistency_token: accepted.consistency_token,
                status,
            };
            (StatusCode::ACCEPTED, Json(answer)).into_response()
        }
    };
    response.headers_mut().insert(TOKEN_HEADER, token);
    Ok(response)
}

/// The lines to order at today's catalog prices: the body's, or the caller's cart.
fn priced_lines(state: &AppState, caller: &Caller, body: &PlaceOrder) -> Result<Vec<OrderLine>, ApiError> {
    let wanted: Vec<(Id, u32)> = match (body.from_cart, body.lines.is_empty()) {
        (true, true) => state.views.user_cart(&caller.user_id).into_iter().map(|row| (row.product_id, row.quantity)).collect(),
        (false, false) => body.lines.iter().map(|line| (line.product_id.clone(), line.quantity)).collect(),
        (true, false) => return Err(invalid("lines", "give lines or from_cart, not both")),
        (false, true) => return Err(invalid("lines", "give at least one line, or from_cart")),
    };
    if wanted.is_empty() {
        return Err(invalid("from_cart", "the cart is empty"));
    }
    let mut currency: Option<String> = None;
    wanted
        .into_iter()
        .enumerate()
        .map(|(i, (product_id, quantity))| {
            if !(1..=MAX_UNITS).contains(&quantity) {
                return Err(invalid(&format!("lines[{i}].quantity"), &format!("must be 1 to {MAX_UNITS}")));
            }
            let product = catalog_product(state, &product_id, &format!("lines[{i}].product_id"))?;
            match &currency {
                Some(c) if c != &product.price.currency => {
                    return Err(invalid(&format!("lines[{i}].product_id"), "every line of an order must be in one currency"));
                }
                Some(_) => {}
                None => currency = Some(product.price.currency.clone()),
            }
            Ok(OrderLine { product_id, quantity, unit_price: product.price })
        })
        .collect()
}

/// The address to ship to: one of the caller's, or their default one.
fn address(state: &AppState, caller: &Caller, address_id: Option<Id>) -> Result<Id, ApiError> {
    match address_id {
        Some(id) => match state.views.addresses.get(&(caller.user_id.clone(), id.clone())) {
            Some(_) => Ok(id),
            None => Err(invalid("address_id", "is not one of your addresses")),
        },
        None => state
            .views
            .addresses
            .range((caller.user_id.clone(), Id::default())..=(caller.user_id.clone(), Id::from("~")))
            .into_iter()
            .find(|row| row.is_default)
            .map(|row| row.address_id)
            .ok_or_else(|| invalid("address_id", "is required (you have no default address)")),
    }
}

/// A payment method `user` may pay with: one of theirs or, in test mode, a gateway test
/// token. `None`: no payment method (empty token).
pub(crate) fn payment_token(state: &AppState, user: &Id, token: Option<&str>, field: &str) -> Result<String, ApiError> {
    let Some(token) = token else { return Ok(String::new()) };
    let test_token = state.config.commerce.payment_test_mode && TEST_PAYMENT_TOKENS.contains(&token);
    let own = state.views.user_payment_methods(user).iter().any(|method| method.token == token);
    if test_token || own {
        Ok(token.to_owned())
    } else {
        // The token is not echoed: a mistyped card number must not come back in an answer.
        Err(invalid(field, "is not one of your payment methods"))
    }
}

/// `422 validation_failed` on `field`.
pub(crate) fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Validation { field: field.to_owned(), message: message.to_owned() }
}

/// The order once it got as far as `wait` asks, or as it is when `bound` passed (`None`: not
/// in the view yet). Woken by the views' order changes, never by polling.
async fn until(state: &AppState, order_id: &Id, wait: WaitFor, bound: Duration) -> Option<OrderRow> {
    // Subscribed before the first look, so a change between the two is not missed.
    let mut changes = state.live.order_changes();
    let deadline = tokio::time::Instant::now() + bound;
    // One of the waits `max_consistency_waiters` bounds; none left: answer with what there is.
    let Some(_waiting) = state.wait_guard() else { return state.views.orders.get(order_id) };
    loop {
        let row = state.views.orders.get(order_id);
        if row.as_ref().is_some_and(|row| wait.reached(row.status)) {
            return row;
        }
        loop {
            tokio::select! {
                changed = changes.recv() => match changed {
                    Ok(ids) if !ids.contains(order_id) => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return state.views.orders.get(order_id),
                },
                _ = tokio::time::sleep_until(deadline) => return state.views.orders.get(order_id),
            }
        }
    }
}
