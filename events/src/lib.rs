//! The shopflow event schema: versioned envelope, every event type, its topic and partition
//! key, and validation. No I/O lives here.
//!
//! Wire format (one JSON object per Kafka record):
//! `{"v":1,"id":"<uuid>","ts":<ms>,"type":"order.placed","data":{...}}`

mod ids;
mod partition;
mod read;
mod time;
mod topic;
pub mod types;
mod validate;

pub use ids::{Id, Money, MAX_ID_LEN};
pub use partition::partition_for;
pub use time::utc_date;
pub use topic::Topic;
pub use validate::ValidationError;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use types::*;

/// The envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u16 = 1;

/// Read by hand (`read`), written by the derive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Envelope {
    /// Envelope version.
    pub v: u16,
    /// Event id; consumers deduplicate on it.
    pub id: uuid::Uuid,
    /// Event time, milliseconds since the Unix epoch.
    pub ts: i64,
    /// Set on events written under an `Idempotency-Key`: a fingerprint of the request (caller,
    /// route, body). The event id derives from the key, so a repeat lands with the same id and is
    /// dropped by the pipeline; the fingerprint tells a faithful repeat (same answer) from a
    /// different request reusing the key (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

/// Every event type, tagged by its wire name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    #[serde(rename = "product.created")]
    ProductCreated(ProductCreated),
    #[serde(rename = "product.updated")]
    ProductUpdated(ProductUpdated),
    #[serde(rename = "product.deleted")]
    ProductDeleted(ProductDeleted),
    #[serde(rename = "category.upserted")]
    CategoryUpserted(NamedEntityUpserted),
    #[serde(rename = "brand.upserted")]
    BrandUpserted(NamedEntityUpserted),
    #[serde(rename = "supplier.upserted")]
    SupplierUpserted(NamedEntityUpserted),
    #[serde(rename = "review.posted")]
    ReviewPosted(ReviewPosted),
    #[serde(rename = "search.synonyms_set")]
    SynonymsSet(SynonymsSet),

    #[serde(rename = "warehouse.created")]
    WarehouseCreated(WarehouseCreated),
    #[serde(rename = "stock.received")]
    StockReceived(StockReceived),
    #[serde(rename = "stock.adjusted")]
    StockAdjusted(StockAdjusted),

    #[serde(rename = "user.registered")]
    UserRegistered(UserRegistered),
    #[serde(rename = "user.profile_updated")]
    ProfileUpdated(ProfileUpdated),
    #[serde(rename = "user.address_added")]
    AddressAdded(AddressAdded),
    #[serde(rename = "user.role_changed")]
    RoleChanged(RoleChanged),
    #[serde(rename = "user.session_started")]
    SessionStarted(SessionStarted),
    #[serde(rename = "user.session_refreshed")]
    SessionRefreshed(SessionRefreshed),
    #[serde(rename = "user.session_revoked")]
    SessionRevoked(SessionRevoked),

    #[serde(rename = "cart.item_added")]
    CartItemAdded(CartItemChanged),
    #[serde(rename = "cart.item_removed")]
    CartItemRemoved(CartItemChanged),
    #[serde(rename = "cart.item_set")]
    CartQuantitySet(CartQuantitySet),
    #[serde(rename = "cart.cleared")]
    CartCleared(CartCleared),

    #[serde(rename = "order.placed")]
    OrderPlaced(OrderPlaced),
    #[serde(rename = "order.cancelled")]
    OrderCancelled(OrderCancelled),
    #[serde(rename = "order.status_changed")]
    OrderStatusChanged(OrderStatusChanged),
    #[serde(rename = "order.hold_decided")]
    HoldDecided(HoldDecided),
    #[serde(rename = "order.payment_deadline")]
    PaymentDeadline(PaymentDeadline),
    #[serde(rename = "order.payment_submitted")]
    PaymentSubmitted(PaymentSubmitted),
    #[serde(rename = "order.refund_requested")]
    RefundRequested(RefundRequested),
    #[serde(rename = "payment.charge_succeeded")]
    ChargeSucceeded(ChargeSucceeded),
    #[serde(rename = "payment.charge_failed")]
    ChargeFailed(ChargeFailed),
    #[serde(rename = "payment.refunded")]
    PaymentRefunded(PaymentRefunded),
    #[serde(rename = "payment.refund_failed")]
    RefundFailed(RefundFailed),

    #[serde(rename = "stock.hold_requested")]
    HoldRequested(HoldRequested),
    #[serde(rename = "stock.hold_released")]
    HoldReleased(HoldReleased),
    #[serde(rename = "stock.hold_committed")]
    HoldCommitted(HoldCommitted),

    #[serde(rename = "payment.charge_requested")]
    ChargeRequested(ChargeRequested),
    #[serde(rename = "payment.refund_approved")]
    RefundApproved(RefundApproved),

    #[serde(rename = "payment.method_tokenized")]
    PaymentMethodTokenized(PaymentMethodTokenized),

    #[serde(rename = "product.viewed")]
    ProductViewed(ProductViewed),
    #[serde(rename = "search.performed")]
    SearchPerformed(SearchPerformed),
    #[serde(rename = "recommendation.clicked")]
    RecommendationClicked(RecommendationClicked),

    #[serde(rename = "reservation.accepted")]
    ReservationAccepted(ReservationAccepted),
    #[serde(rename = "order.confirmed")]
    OrderConfirmed(OrderDecision),
    #[serde(rename = "order.rejected")]
    OrderRejected(OrderDecision),
    #[serde(rename = "order.expired")]
    OrderExpired(OrderDecision),
    #[serde(rename = "order.cancellation_accepted")]
    CancellationAccepted(OrderDecision),
    #[serde(rename = "order.shipped")]
    OrderShipped(OrderDecision),
    #[serde(rename = "order.delivered")]
    OrderDelivered(OrderDecision),
    #[serde(rename = "order.refund_completed")]
    RefundCompleted(OrderDecision),
    #[serde(rename = "stock.adjustment_rejected")]
    StockAdjustmentRejected(StockAdjustmentRejected),
}

impl Event {
    /// The topic this event type is written to.
    pub fn topic(&self) -> Topic {
        use Event::*;
        match self {
            ProductCreated(_) | ProductUpdated(_) | ProductDeleted(_) | CategoryUpserted(_)
            | BrandUpserted(_) | SupplierUpserted(_) | ReviewPosted(_) | SynonymsSet(_) => Topic::Catalog,
            WarehouseCreated(_) | StockReceived(_) | StockAdjusted(_) => Topic::Inventory,
            UserRegistered(_) | ProfileUpdated(_) | AddressAdded(_) | RoleChanged(_) | SessionStarted(_)
            | SessionRefreshed(_) | SessionRevoked(_) => {
                Topic::Users
            }
            CartItemAdded(_) | CartItemRemoved(_) | CartQuantitySet(_) | CartCleared(_) => Topic::Carts,
            OrderPlaced(_) | OrderCancelled(_) | OrderStatusChanged(_) | HoldDecided(_) | PaymentDeadline(_)
            | PaymentSubmitted(_) | RefundRequested(_) | ChargeSucceeded(_) | ChargeFailed(_)
            | PaymentRefunded(_) | RefundFailed(_) => Topic::Orders,
            HoldRequested(_) | HoldReleased(_) | HoldCommitted(_) => Topic::Inventory,
            ChargeRequested(_) | RefundApproved(_) => Topic::Payments,
            PaymentMethodTokenized(_) => Topic::Users,
            ProductViewed(_) | SearchPerformed(_) | RecommendationClicked(_) => {
                Topic::Interactions
            }
            ReservationAccepted(_) | OrderConfirmed(_) | OrderRejected(_) | OrderExpired(_)
            | CancellationAccepted(_) | OrderShipped(_) | OrderDelivered(_) | RefundCompleted(_)
            | StockAdjustmentRejected(_) => Topic::Decisions,
        }
    }

    /// The partition key: all events of one entity land in one partition, in order.
    pub fn key(&self) -> &Id {
        use Event::*;
        match self {
            ProductCreated(e) => &e.product_id,
            ProductUpdated(e) => &e.product_id,
            ProductDeleted(e) => &e.product_id,
            CategoryUpserted(e) | BrandUpserted(e) | SupplierUpserted(e) => &e.id,
            ReviewPosted(e) => &e.product_id,
            SynonymsSet(e) => &e.set_id,
            WarehouseCreated(e) => &e.warehouse_id,
            StockReceived(e) => &e.product_id,
            StockAdjusted(e) => &e.product_id,
            UserRegistered(e) => &e.user_id,
            ProfileUpdated(e) => &e.user_id,
            AddressAdded(e) => &e.user_id,
            RoleChanged(e) => &e.user_id,
            SessionStarted(e) => &e.user_id,
            SessionRefreshed(e) => &e.user_id,
            SessionRevoked(e) => &e.user_id,
            CartItemAdded(e) | CartItemRemoved(e) => &e.user_id,
            CartQuantitySet(e) => &e.user_id,
            CartCleared(e) => &e.user_id,
            OrderPlaced(e) => &e.user_id,
            OrderCancelled(e) => &e.user_id,
            OrderStatusChanged(e) => &e.user_id,
            HoldDecided(e) => &e.user_id,
            PaymentDeadline(e) => &e.user_id,
            PaymentSubmitted(e) => &e.user_id,
            RefundRequested(e) => &e.user_id,
            ChargeSucceeded(e) => &e.user_id,
            ChargeFailed(e) => &e.user_id,
            PaymentRefunded(e) => &e.user_id,
            RefundFailed(e) => &e.user_id,
            HoldRequested(e) => &e.product_id,
            HoldReleased(e) => &e.product_id,
            HoldCommitted(e) => &e.product_id,
            ChargeRequested(e) => &e.order_id,
            RefundApproved(e) => &e.order_id,
            PaymentMethodTokenized(e) => &e.user_id,
            ProductViewed(e) => &e.user_id,
            SearchPerformed(e) => &e.user_id,
            RecommendationClicked(e) => &e.user_id,
            ReservationAccepted(e) => &e.order_id,
            OrderConfirmed(e) | OrderRejected(e) | OrderExpired(e) | CancellationAccepted(e) | OrderShipped(e)
            | OrderDelivered(e) | RefundCompleted(e) => &e.order_id,
            StockAdjustmentRejected(e) => &e.product_id,
        }
    }

    /// The wire name, e.g. `order.placed`.
    pub fn type_name(&self) -> &'static str {
        use Event::*;
        match self {
            ProductCreated(_) => "product.created",
            ProductUpdated(_) => "product.updated",
            ProductDeleted(_) => "product.deleted",
            CategoryUpserted(_) => "category.upserted",
            BrandUpserted(_) => "brand.upserted",
            SupplierUpserted(_) => "supplier.upserted",
            ReviewPosted(_) => "review.posted",
            SynonymsSet(_) => "search.synonyms_set",
            WarehouseCreated(_) => "warehouse.created",
            StockReceived(_) => "stock.received",
            StockAdjusted(_) => "stock.adjusted",
            UserRegistered(_) => "user.registered",
            ProfileUpdated(_) => "user.profile_updated",
            AddressAdded(_) => "user.address_added",
            RoleChanged(_) => "user.role_changed",
            SessionStarted(_) => "user.session_started",
            SessionRefreshed(_) => "user.session_refreshed",
            SessionRevoked(_) => "user.session_revoked",
            CartItemAdded(_) => "cart.item_added",
            CartItemRemoved(_) => "cart.item_removed",
            CartQuantitySet(_) => "cart.item_set",
            CartCleared(_) => "cart.cleared",
            OrderPlaced(_) => "order.placed",
            OrderCancelled(_) => "order.cancelled",
            OrderStatusChanged(_) => "order.status_changed",
            HoldDecided(_) => "order.hold_decided",
            PaymentDeadline(_) => "order.payment_deadline",
            PaymentSubmitted(_) => "order.payment_submitted",
            RefundRequested(_) => "order.refund_requested",
            ChargeSucceeded(_) => "payment.charge_succeeded",
            ChargeFailed(_) => "payment.charge_failed",
            PaymentRefunded(_) => "payment.refunded",
            RefundFailed(_) => "payment.refund_failed",
            HoldRequested(_) => "stock.hold_requested",
            HoldReleased(_) => "stock.hold_released",
            HoldCommitted(_) => "stock.hold_committed",
            ChargeRequested(_) => "payment.charge_requested",
            RefundApproved(_) => "payment.refund_approved",
            PaymentMethodTokenized(_) => "payment.method_tokenized",
            ProductViewed(_) => "product.viewed",
            SearchPerformed(_) => "search.performed",
            RecommendationClicked(_) => "recommendation.clicked",
            ReservationAccepted(_) => "reservation.accepted",
            OrderConfirmed(_) => "order.confirmed",
            OrderRejected(_) => "order.rejected",
            OrderExpired(_) => "order.expired",
            CancellationAccepted(_) => "order.cancellation_accepted",
            OrderShipped(_) => "order.shipped",
            OrderDelivered(_) => "order.delivered",
            RefundCompleted(_) => "order.refund_completed",
            StockAdjustmentRejected(_) => "stock.adjustment_rejected",
        }
    }
}

/// Every wire type name, in declaration order.
pub const TYPE_NAMES: &[&str] = &[
    "product.created",
    "product.updated",
    "product.deleted",
    "category.upserted",
    "brand.upserted",
    "supplier.upserted",
    "review.posted",
    "search.synonyms_set",
    "warehouse.created",
    "stock.received",
    "stock.adjusted",
    "user.registered",
    "user.profile_updated",
    "user.address_added",
    "user.role_changed",
    "user.session_started",
    "user.session_refreshed",
    "user.session_revoked",
    "cart.item_added",
    "cart.item_removed",
    "cart.item_set",
    "cart.cleared",
    "order.placed",
    "order.cancelled",
    "order.status_changed",
    "order.hold_decided",
    "order.payment_deadline",
    "order.payment_submitted",
    "order.refund_requested",
    "payment.charge_succeeded",
    "payment.charge_failed",
    "payment.refunded",
    "payment.refund_failed",
    "stock.hold_requested",
    "stock.hold_released",
    "stock.hold_committed",
    "payment.charge_requested",
    "payment.refund_approved",
    "payment.method_tokenized",
    "product.viewed",
    "search.performed",
    "recommendation.clicked",
    "reservation.accepted",
    "order.confirmed",
    "order.rejected",
    "order.expired",
    "order.cancellation_accepted",
    "order.shipped",
    "order.delivered",
    "order.refund_completed",
    "stock.adjustment_rejected",
];

impl Envelope {
    /// Wraps an event with a fresh id and the current time.
    pub fn new(event: Event) -> Self {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        Self { v: ENVELOPE_VERSION, id: uuid::Uuid::now_v7(), ts, request: None, event }
    }

    /// Wraps an event written under an idempotency key: its id is derived from the caller's
    /// scope and the key ([`idempotent_event_id`]), and it carries the request's fingerprint.
    pub fn idempotent(event: Event, id: uuid::Uuid, fingerprint: String) -> Self {
        Self { id, request: Some(fingerprint), ..Self::new(event) }
    }

    pub fn topic(&self) -> Topic {
        self.event.topic()
    }

    pub fn key(&self) -> &Id {
        self.event.key()
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("envelopes always serialise")
    }

    /// [`to_json`](Self::to_json) for an envelope whose event is serialised already
    /// (`event_json`, as `serde_json::to_vec(&self.event)` writes it): the same bytes, without
    /// serialising the event again. The derive writes the fixed fields, then the flattened
    /// event's two (`type`, `data`), which are the event's own JSON without its opening brace.
    pub fn to_json_with(&self, event_json: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut json = Vec::with_capacity(event_json.len() + 72);
        write!(json, r#"{{"v":{},"id":"{}","ts":{},"#, self.v, self.id, self.ts).expect("writes to a Vec");
        if let Some(request) = &self.request {
            json.extend_from_slice(br#""request":"#);
            serde_json::to_writer(&mut json, request).expect("strings serialise");
            json.push(b',');
        }
        json.extend_from_slice(event_json.strip_prefix(b"{").expect("an event serialises as a JSON object"));
        json
    }

    /// Decodes and validates one record. The error says why, for the dead-letter topic.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if envelope.v != ENVELOPE_VERSION {
            return Err(DecodeError::UnsupportedVersion(envelope.v));
        }
        envelope.event.validate().map_err(DecodeError::Invalid)?;
        Ok(envelope)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u16),
    #[error("invalid event: {0}")]
    Invalid(ValidationError),
}

/// What the dead-letter topic holds: where the bad record came from and why it was refused.
/// The payload is kept verbatim (lossy UTF-8) so an operator can repair and replay it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub reason: String,
    pub payload: String,
}

/// The event id of a write made under `Idempotency-Key: key` by `scope` (the caller): the same
/// (scope, key) always gives the same id, on every replica, so the pipeline can drop a repeat
/// wherever and whenever it lands.
pub fn idempotent_event_id(scope: &str, key: &str) -> uuid::Uuid {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5f0c_9a1e_6b2d_4c3f_8e7a_1d2c_3b4a_5968);
    let name = [scope.as_bytes(), b"\n", key.as_bytes()].concat();
    uuid::Uuid::new_v5(&NAMESPACE, &name)
}

/// An e-mail address as accounts compare them: trimmed and lower-cased (the local part too:
/// no mail provider we serve distinguishes case, and two accounts differing only in case are
/// a support problem, not a feature).
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The user id of the account with `email`: a UUIDv5 of the normalised address. Deriving the
/// id from the unique attribute puts every registration of one e-mail in one partition of
/// `users` (the key is the user id), so "the e-mail is unique" is decided there by log order
/// alone: the first registration wins, on every replay, whichever replicas accepted them.
pub fn user_id_for_email(email: &str) -> Id {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x1b6f_44a0_93c2_4d7e_a5e1_0c9d_2f3b_7a61);
    Id::from(uuid::Uuid::new_v5(&NAMESPACE, normalize_email(email).as_bytes()).to_string().as_str())
}

/// The JSON Schema of the envelope and every event type, generated from the Rust types.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Envelope);
    serde_json::to_value(schema).expect("schemas always serialise")
}

#[cfg(test)]
mod tests;
