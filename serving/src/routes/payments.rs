//! `/api/v1/payments` (seed 004's Payment Service): payment methods (cards tokenized through
//! the [`CardVault`](crate::vault::CardVault)), paying a reserved order, an order's payment and
//! refunds. Charges and refunds themselves are the payment worker's; these routes publish what
//! the customer asked and read what the views say.
//!
//! A card number is read into a [`Card`] and goes to the vault, nowhere else: not into the
//! event (token and last four digits only), not into a log line, not into an error message
//! (a malformed body gets a fixed message, never serde's, which quotes values), and not into
//! the idempotency fingerprint (computed over the last four digits and the expiry only).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use shopflow_events::types::{PaymentMethodTokenized, PaymentSubmitted, RefundRequested};
use shopflow_events::{Event, Id, Money};
use shopflow_views::PaymentRow;
use utoipa::ToSchema;

use super::orders::{invalid, payment_token, refused, visible_order};
use crate::auth::User;
use crate::error::{ApiError, OrderAction};
use crate::extract::WriteJson;
use crate::idempotency::{self, KeyedRequest, Known, Write};
use crate::openapi::{Conflict, NotFound, ReadErrors, UserErrors, WriteErrors};
use crate::state::AppState;
use crate::token::ReadConsistency;
use crate::vault::{Card, VaultError};
use crate::write::Accepted;

/// The body of `POST /payments/methods`, as documented. Read by [`CardBody`], never by serde
/// into a type that could print it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewCard {
    /// The card number (12 to 19 digits; spaces and dashes are ignored). Sent to the vault
    /// only; never stored, logged or returned.
    #[schema(write_only, format = Password, example = "4242424242424242")]
    number: String,
    #[schema(minimum = 1, maximum = 12)]
    exp_month: u8,
    #[schema(minimum = 2000, maximum = 2200)]
    exp_year: u16,
    #[schema(write_only, format = Password, example = "123")]
    cvc: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCard {
    number: String,
    exp_month: u8,
    exp_year: u16,
    cvc: String,
}

/// A card body and what makes its write idempotent.
pub struct CardBody {
    card: Card,
    write: Write,
}

const CARD_SHAPE: &str =
    "expected {\"number\": string, \"exp_month\": 1-12, \"exp_year\": integer, \"cvc\": string} and nothing else";

impl FromRequest<AppState> for CardBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let keyed = KeyedRequest::from_parts(&mut parts, state).await?;
        let json = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(';').next().is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
        });
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.config.max_body_bytes;
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::MalformedJson("the body could not be read".into())
            }
        })?;
        // Neither message quotes the input: serde's data errors do ("invalid type: integer
        // `4242...`"), so they are replaced; syntax errors give a position only.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson(format!("invalid JSON at line {} column {}", e.line(), e.column())))?;
        let raw: RawCard = serde_json::from_value(value).map_err(|_| ApiError::InvalidBody(CARD_SHAPE.into()))?;
        let card = check_card(raw)?;
        let write = match keyed {
            // What a repeat is compared on: the visible part of the card, never the number.
            Some(keyed) => keyed.finish(Some(&serde_json::json!({
                "last4": card.last4(),
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
            }))),
            None => Write::default(),
        };
        Ok(Self { card, write })
    }
}

/// Digits only, Luhn, a month, an expiry not past, a CVC of 3 or 4 digits. Messages never
/// hold the input.
fn check_card(raw: RawCard) -> Result<Card, ApiError> {
    let number: String = raw.number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) || !luhn(&number) {
        return Err(invalid("number", "is not a valid card number"));
    }
    if !(1..=12).contains(&raw.exp_month) {
        return Err(invalid("exp_month", "must be 1 to 12"));
    }
    let today = shopflow_views::utc_day(crate::lag::now_ms() as i64);
    let (year, month) = (today.as_str()[0..4].parse::<u16>().unwrap_or(0), today.as_str()[5..7].parse::<u8>().unwrap_or(0));
    if (raw.exp_year, raw.exp_month) < (year, month) {
        return Err(invalid("exp_year", "the card has expired"));
    }
    if !(3..=4).contains(&raw.cvc.len()) || !raw.cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("cvc", "must be 3 or 4 digits"));
    }
    Ok(Card { number, exp_month: raw.exp_month, exp_year: raw.exp_year, cvc: raw.cvc })
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Add a payment method
///
/// The card is tokenized by the payment gateway's vault; only the token, the last four
/// digits, the brand and the expiry are kept (`payment.method_tokenized`). The answer's `id`
/// is the event id; the token is in `GET /payments/methods` (pass the consistency token).
/// `503 payments_unavailable` when no vault is configured.
#[utoipa::path(
    post,
    path = "/api/v1/payments/methods",
    operation_id = "add_payment_method",
    tag = "payments",
    params(Write),
    request_body = NewCard,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, UserErrors)
)]
pub async fn add_method(State(state): State<AppState>, User(caller): User, body: CardBody) -> Result<Accepted, ApiError> {
    let CardBody { card, write } = body;
    let vault = state.vault.clone().ok_or(ApiError::PaymentsUnavailable)?;
    // A repeat is answered before the vault is asked again.
    if let Some(keyed) = write.keyed() {
        match idempotency::known(&state, keyed, &keyed.event_id.to_string()) {
            Known::Answer(answer) => return Ok(answer),
            Known::Reused => return Err(ApiError::IdempotencyKeyReused),
            Known::Unknown => {}
        }
    }
    let tokenized = vault.tokenize(&caller.user_id, &card).await.map_err(|e| match e {
        VaultError::Refused(reason) => ApiError::CardRefused(reason),
        VaultError::Unavailable(reason) => {
            tracing::warn!(reason = %reason, "card vault unavailable");
            ApiError::PaymentsUnavailable
        }
    })?;
    drop(card);
    let event = Event::PaymentMethodTokenized(PaymentMethodTokenized {
        user_id: caller.user_id,
        token: tokenized.token,
        last4: tokenized.last4,
        card_brand: tokenized.brand,
        exp_month: tokenized.exp_month,
        exp_year: tokenized.exp_year,
    });
    state.submit(&write, event, None).await
}

#[derive(Serialize, ToSchema)]
pub struct PaymentMethod {
    /// Pass as `payment_method` to `POST /orders` or `/payments/process`.
    pub token: String,
    pub last4: String,
    pub card_brand: String,
    pub exp_month: u8,
    pub exp_year: u16,
    pub created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentMethods {
    pub items: Vec<PaymentMethod>,
}

/// The caller's payment methods
#[utoipa::path(
    get,
    path = "/api/v1/payments/methods",
    operation_id = "list_payment_methods",
    tag = "payments",
    params(ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "Tokenized cards, oldest first", body = PaymentMethods), ReadErrors, UserErrors)
)]
pub async fn methods(State(state): State<AppState>, User(caller): User, read: ReadConsistency) -> Result<Json<PaymentMethods>, ApiError> {
    state.consistent(&read).await?;
    let mut rows = state.views.user_payment_methods(&caller.user_id);
    rows.sort_by(|a, b| (a.created_at, &a.token).cmp(&(b.created_at, &b.token)));
    let items = rows
        .into_iter()
        .map(|row| PaymentMethod {
            token: row.token,
            last4: row.last4,
            card_brand: row.card_brand,
            exp_month: row.exp_month,
            exp_year: row.exp_year,
            created_at: row.created_at,
        })
        .collect();
    Ok(Json(PaymentMethods { items }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessPayment {
    order_id: Id,
    /// A token of the order owner's payment methods (or, in test mode, a gateway test token).
    payment_method: String,
}

/// Pay an order
///
/// Gives an order placed without a payment method its method; the pipeline then asks the
/// payment worker for the charge. `409 not_payable` when the order already has one or is
/// past reserved.
#[utoipa::path(
    post,
    path = "/api/v1/payments/process",
    operation_id = "process_payment",
    tag = "payments",
    params(Write, ReadConsistency),
    request_body = ProcessPayment,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, NotFound, Conflict, UserErrors)
)]
pub async fn process(
    State(state): State<AppState>,
    User(caller): User,
    read: ReadConsistency,
    WriteJson { body, write }: WriteJson<ProcessPayment>,
) -> Result<Accepted, ApiError> {
    state.consistent(&read).await?;
    let order = visible_order(&state, &caller, &body.order_id)?;
    let awaiting = matches!(order.status, shopflow_events::types::OrderStatus::Pending | shopflow_events::types::OrderStatus::Reserved);
    if !awaiting || !order.payment_token.is_empty() {
        return Err(refused(&order, OrderAction::Paid));
    }
    let token = payment_token(&state, &order.user_id, Some(&body.payment_method), "payment_method")?;
    let event = Event::PaymentSubmitted(PaymentSubmitted { order_id: order.order_id.clone(), user_id: order.user_id, token });
    state.submit(&write, event, Some(order.order_id.to_string())).await
}

/// The payment of an order
///
/// Its charge (amount, captured, authorization) and refunds. Owner or admin; `404` until a
/// charge was requested.
#[utoipa::path(
    get,
    path = "/api/v1/payments/{orderId}",
    operation_id = "get_payment",
    tag = "payments",
    params(("orderId" = Id, Path, description = "Order id"), ReadConsistency),
    security(("bearer" = [])),
    responses((status = 200, description = "The payment", body = PaymentRow), ReadErrors, NotFound, UserErrors)
)]
pub async fn of_order(
    State(state): State<AppState>,
    User(caller): User,
    crate::extract::IdPath(order_id): crate::extract::IdPath,
    read: ReadConsistency,
) -> Result<Json<PaymentRow>, ApiError> {
    state.consistent(&read).await?;
    visible_order(&state, &caller, &order_id)?;
    state
        .views
        .payments
        .get(&order_id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound { entity: "payment", id: order_id.to_string() })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    order_id: Id,
    /// In the order's currency; absent: everything not yet refunded.
    amount: Option<Money>,
    #[serde(default)]
    #[schema(max_length = 500)]
    reason: String,
}

/// Refund a payment
///
/// Owner or admin. At most what was captured minus what is refunded or being refunded
/// (`422` on `amount` beyond it; `409 not_refundable` when nothing is left). The refund id
/// is derived from the `Idempotency-Key` (so a repeat is the same refund), else it is the
/// event id; it is the answer's `id`.
#[utoipa::path(
    post,
    path = "/api/v1/payments/refund",
    operation_id = "refund_payment",
    tag = "payments",
    params(Write, ReadConsistency),
    request_body = RefundRequest,
    security(("bearer" = [])),
    responses(Accepted, WriteErrors, NotFound, Conflict, UserErrors)
)]
pub async fn refund(
    State(state): State<AppState>,
    User(caller): User,
    read: ReadConsistency,
    WriteJson { body, write }: WriteJson<RefundRequest>,
) -> Result<Accepted, ApiError> {
    state.consistent(&read).await?;
    let order = visible_order(&state, &caller, &body.order_id)?;
    let left = refundable(&order, state.views.payments.get(&order.order_id).as_ref());
    if left <= 0 {
        return Err(refused(&order, OrderAction::Refunded));
    }
    let currency = &order.total.currency;
    let amount = match body.amount {
        None => left,
        Some(money) if &money.currency != currency => return Err(invalid("amount", &format!("must be in {currency}"))),
        Some(money) if money.amount_minor <= 0 => return Err(invalid("amount", "must be greater than zero")),
        Some(money) if money.amount_minor > left => {
            return Err(invalid("amount", &format!("is more than the {left} (minor units) left to refund")));
        }
        Some(money) => money.amount_minor,
    };
    let refund = |refund_id: Id| {
        Event::RefundRequested(RefundRequested {
            order_id: order.order_id.clone(),
            user_id: order.user_id.clone(),
            refund_id,
            amount: Money::new(amount, currency),
            reason: body.reason.clone(),
        })
    };
    match write.keyed() {
        Some(_) => {
            let refund_id = write.mint_id();
            state.submit(&write, refund(refund_id.clone()), Some(refund_id.to_string())).await
        }
        None => {
            let event_id = uuid::Uuid::now_v7();
            let refund_id = Id::from(event_id.to_string().as_str());
            state.publish_as(refund(refund_id.clone()), event_id, Some(refund_id.to_string())).await
        }
    }
}

/// Captured minus refunded minus refunds still pending, in minor units.
fn refundable(order: &shopflow_views::OrderRow, payment: Option<&PaymentRow>) -> i64 {
    match payment {
        Some(payment) => {
            let pending: i64 = payment.refunds.iter().filter(|r| r.status == "pending").map(|r| r.amount.amount_minor).sum();
            payment.captured_minor - payment.refunded_minor - pending
        }
        None => order.paid_minor - order.refunded_minor,
    }
}
