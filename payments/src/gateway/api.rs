//! The gateway's wire types, shared by the server and [`super::client::GatewayClient`].

use serde::{Deserialize, Serialize};

pub use super::cards::CardNumber;

/// `POST /v1/tokens`. The number goes to the gateway and nowhere else.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeRequest {
    pub number: CardNumber,
    pub exp_month: u8,
    pub exp_year: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvc: Option<String>,
}

/// A tokenized card: what may be stored and shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub token: String,
    pub last4: String,
    pub brand: String,
    pub exp_month: u8,
    pub exp_year: u16,
}

/// `POST /v1/charges`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// The same key always gets the first answer; the payment worker uses the order id.
    pub idempotency_key: String,
    pub token: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// A successful charge (`200`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub payment_id: String,
    pub status: String,
    pub authorization_code: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// `POST /v1/refunds`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// The same key always gets the first answer; the payment worker uses the refund id.
    pub idempotency_key: String,
    pub payment_id: String,
    pub amount_minor: i64,
}

/// A refund made (`200`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub refund_id: String,
    pub payment_id: String,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
}

/// Every error answer: `{"error":{"code":"card_declined","message":"..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// The header a replayed (idempotent) answer carries, as Stripe's does.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
