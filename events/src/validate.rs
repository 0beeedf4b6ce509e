//! Validation of event payloads: what the type system cannot say about a value.

use std::fmt;

use crate::types::{OrderStatus, MAX_UNITS};
use crate::{Event, Id};

/// Why an event was refused: the field and the rule it broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    pub(crate) fn at(mut self, field: &str) -> Self {
        self.field = if self.field.is_empty() { field.to_owned() } else { format!("{field}.{}", self.field) };
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

type Result = std::result::Result<(), ValidationError>;

fn text(value: &str, field: &'static str, max: usize, required: bool) -> Result {
    if required && value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(ValidationError::new(field, format!("must be at most {max} characters")));
    }
    Ok(())
}

fn positive(quantity: u32, field: &'static str) -> Result {
    if quantity == 0 {
        return Err(ValidationError::new(field, "must be greater than zero"));
    }
    Ok(())
}

fn at_most(quantity: u32, field: &'static str) -> Result {
    if quantity > MAX_UNITS {
        return Err(ValidationError::new(field, format!("must be at most {MAX_UNITS}")));
    }
    Ok(())
}

fn holds(holds: &[crate::types::Hold]) -> Result {
    for hold in holds {
        ids(&[(&hold.product_id, "holds.product_id"), (&hold.warehouse_id, "holds.warehouse_id")])?;
        positive(hold.quantity, "holds.quantity")?;
    }
    Ok(())
}

fn ids(pairs: &[(&Id, &'static str)]) -> Result {
    pairs.iter().try_for_each(|(id, field)| id.check(field))
}

fn email(value: &str) -> Result {
    let ok = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !value.chars().any(char::is_whitespace);
    if ok { Ok(()) } else { Err(ValidationError::new("email", "must be an e-mail address")) }
}

/// A token's digest: the log never holds a token, only this.
fn sha256_hex(value: &str, field: &'static str) -> Result {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(ValidationError::new(field, "must be a hex SHA-256 digest"))
    }
}

/// A card token or gateway token: opaque, but never something that looks like a card number.
fn token(value: &str, field: &'static str) -> Result {
    text(value, field, 128, true)?;
    let digits = value.chars().filter(char::is_ascii_digit).count();
    if digits >= 12 && value.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '-') {
        return Err(ValidationError::new(field, "must be a token, never a card number"));
    }
    Ok(())
}

impl Event {
    /// Checks every rule a well-formed event of this type obeys.
    pub fn validate(&self) -> Result {
        use Event::*;
        match self {
            ProductCreated(e) => {
                ids(&[(&e.product_id, "product_id"), (&e.category_id, "category_id"), (&e.brand_id, "brand_id"), (&e.supplier_id, "supplier_id")])?;
                text(&e.name, "name", 200, true)?;
                text(&e.description, "description", 5_000, false)?;
                text(&e.sku, "sku", 64, false)?;
                e.price.check_non_negative("price")
            }
            ProductUpdated(e) => {
                e.product_id.check("product_id")?;
                if let Some(name) = &e.name { text(name, "name", 200, true)?; }
                if let Some(d) = &e.description { text(d, "description", 5_000, false)?; }
                if let Some(sku) = &e.sku { text(sku, "sku", 64, false)?; }
                if let Some(price) = &e.price { price.check_non_negative("price")?; }
                for (id, field) in [(&e.category_id, "category_id"), (&e.brand_id, "brand_id"), (&e.supplier_id, "supplier_id")] {
                    if let Some(id) = id { id.check(field)?; }
                }
                Ok(())
            }
            ProductDeleted(e) => e.product_id.check("product_id"),
            CategoryUpserted(e) | BrandUpserted(e) | SupplierUpserted(e) => {
                e.id.check("id")?;
                text(&e.name, "name", 200, true)
            }
            SynonymsSet(e) => {
                e.set_id.check("set_id")?;
                if e.groups.len() > 10_000 {
                    return Err(ValidationError::new("groups", "at most 10000 groups"));
                }
                for group in &e.groups {
                    if group.len() < 2 || group.len() > 32 {
                        return Err(ValidationError::new("groups", "each group has 2 to 32 words"));
                    }
                    for word in group {
                        text(word, "groups", 100, true)?;
                    }
                }
                Ok(())
            }
            ReviewPosted(e) => {
                ids(&[(&e.review_id, "review_id"), (&e.product_id, "product_id"), (&e.user_id, "user_id")])?;
                if !(1..=5).contains(&e.rating) {
                    return Err(ValidationError::new("rating", "must be 1 to 5"));
                }
                text(&e.text, "text", 5_000, false)
            }
            WarehouseCreated(e) => {
                e.warehouse_id.check("warehouse_id")?;
                text(&e.name, "name", 200, true)?;
                text(&e.location, "location", 200, false)
            }
            StockReceived(e) => {
                ids(&[(&e.product_id, "product_id"), (&e.warehouse_id, "warehouse_id")])?;
                positive(e.quantity, "quantity")
            }
            StockAdjusted(e) => {
                ids(&[(&e.product_id, "product_id"), (&e.warehouse_id, "warehouse_id")])?;
                if e.delta == 0 || e.delta.unsigned_abs() > u32::MAX as u64 {
                    return Err(ValidationError::new("delta", "must be non-zero and within ±4294967295"));
                }
                text(&e.reason, "reason", 200, false)
            }
            UserRegistered(e) => {
                e.user_id.check("user_id")?;
                email(&e.email)?;
                text(&e.name, "name", 200, false)?;
                text(&e.phone, "phone", 32, false)?;
                if !e.password_hash.starts_with("$argon2id$") {
                    return Err(ValidationError::new("password_hash", "must be an argon2id PHC string"));
                }
                Ok(())
            }
            ProfileUpdated(e) => {
                e.user_id.check("user_id")?;
                if let Some(n) = &e.name { text(n, "name", 200, false)?; }
                if let Some(p) = &e.phone { text(p, "phone", 32, false)?; }
                Ok(())
            }
            AddressAdded(e) => {
                ids(&[(&e.address_id, "address_id"), (&e.user_id, "user_id")])?;
                text(&e.street, "street", 200, true)?;
                text(&e.city, "city", 100, true)?;
                text(&e.state, "state", 100, false)?;
                text(&e.country, "country", 100, true)?;
                text(&e.zip, "zip", 20, false)
            }
            RoleChanged(e) => e.user_id.check("user_id"),
            SessionStarted(e) => {
                ids(&[(&e.user_id, "user_id"), (&e.session_id, "session_id")])?;
                sha256_hex(&e.refresh_hash, "refresh_hash")?;
                text(&e.client_ip, "client_ip", 64, false)
            }
            SessionRefreshed(e) => {
                ids(&[(&e.user_id, "user_id"), (&e.session_id, "session_id")])?;
                sha256_hex(&e.presented_hash, "presented_hash")?;
                sha256_hex(&e.refresh_hash, "refresh_hash")?;
                text(&e.client_ip, "client_ip", 64, false)
            }
            SessionRevoked(e) => {
                ids(&[(&e.user_id, "user_id"), (&e.session_id, "session_id")])?;
                text(&e.reason, "reason", 64, false)
            }
            CartItemAdded(e) | CartItemRemoved(e) => {
                ids(&[(&e.user_id, "user_id"), (&e.product_id, "product_id")])?;
                positive(e.quantity, "quantity")?;
                at_most(e.quantity, "quantity")
            }
            CartQuantitySet(e) => {
                ids(&[(&e.user_id, "user_id"), (&e.product_id, "product_id")])?;
                at_most(e.quantity, "quantity")
            }
            CartCleared(e) => e.user_id.check("user_id"),
            OrderPlaced(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id"), (&e.address_id, "address_id")])?;
                if e.lines.is_empty() || e.lines.len() > 100 {
                    return Err(ValidationError::new("lines", "must hold 1 to 100 lines"));
                }
                let currency = &e.lines[0].unit_price.currency;
                let mut per_product = std::collections::BTreeMap::<&Id, u64>::new();
                for line in &e.lines {
                    line.product_id.check("lines.product_id")?;
                    positive(line.quantity, "lines.quantity")?;
                    line.unit_price.check_non_negative("lines.unit_price")?;
                    if &line.unit_price.currency != currency {
                        return Err(ValidationError::new("lines.unit_price", "every line of an order must be in one currency"));
                    }
                    *per_product.entry(&line.product_id).or_default() += u64::from(line.quantity);
                }
                if per_product.values().any(|units| *units > u64::from(MAX_UNITS)) {
                    return Err(ValidationError::new("lines.quantity", format!("must be at most {MAX_UNITS} units of one product")));
                }
                text(&e.idempotency_key, "idempotency_key", 255, true)?;
                if !e.payment_token.is_empty() {
                    token(&e.payment_token, "payment_token")?;
                }
                Ok(())
            }
            OrderCancelled(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id")])?;
                text(&e.reason, "reason", 500, false)
            }
            OrderStatusChanged(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id")])?;
                match e.status {
                    OrderStatus::Shipped | OrderStatus::Delivered => Ok(()),
                    _ => Err(ValidationError::new("status", "an admin may set only shipped or delivered")),
                }
            }
            HoldDecided(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id"), (&e.product_id, "product_id")])?;
                holds(&e.holds)
            }
            PaymentDeadline(e) => ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id")]),
            PaymentSubmitted(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id")])?;
                token(&e.token, "token")
            }
            RefundRequested(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id"), (&e.refund_id, "refund_id")])?;
                e.amount.check_positive("amount")?;
                text(&e.reason, "reason", 500, false)
            }
            ChargeSucceeded(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id"), (&e.payment_id, "payment_id")])?;
                e.amount.check_non_negative("amount")?;
                text(&e.authorization_code, "authorization_code", 64, false)
            }
            ChargeFailed(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id")])?;
                text(&e.reason, "reason", 500, true)
            }
            PaymentRefunded(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id"), (&e.refund_id, "refund_id"), (&e.payment_id, "payment_id")])?;
                e.amount.check_non_negative("amount")
            }
            RefundFailed(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id"), (&e.refund_id, "refund_id")])?;
                text(&e.reason, "reason", 500, true)
            }
            HoldRequested(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id"), (&e.product_id, "product_id")])?;
                positive(e.quantity, "quantity")?;
                at_most(e.quantity, "quantity")
            }
            HoldReleased(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.product_id, "product_id")])?;
                text(&e.reason, "reason", 200, false)
            }
            HoldCommitted(e) => ids(&[(&e.order_id, "order_id"), (&e.product_id, "product_id")]),
            ChargeRequested(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id")])?;
                e.amount.check_non_negative("amount")?;
                token(&e.token, "token")
            }
            RefundApproved(e) => {
                ids(&[(&e.order_id, "order_id"), (&e.user_id, "user_id"), (&e.refund_id, "refund_id"), (&e.payment_id, "payment_id")])?;
                e.amount.check_positive("amount")
            }
            PaymentMethodTokenized(e) => {
                e.user_id.check("user_id")?;
                token(&e.token, "token")?;
                if e.last4.len() != 4 || !e.last4.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ValidationError::new("last4", "must be exactly four digits"));
                }
                if e.exp_month > 12 {
                    return Err(ValidationError::new("exp_month", "must be 1 to 12"));
                }
                text(&e.card_brand, "card_brand", 32, false)
            }
            ProductViewed(e) => ids(&[(&e.user_id, "user_id"), (&e.product_id, "product_id")]),
            SearchPerformed(e) => {
                e.user_id.check("user_id")?;
                text(&e.query, "query", 500, true)
            }
            RecommendationClicked(e) => ids(&[(&e.user_id, "user_id"), (&e.product_id, "product_id")]),
            ReservationAccepted(e) => {
                e.order_id.check("order_id")?;
                holds(&e.holds)
            }
            OrderConfirmed(e) | OrderRejected(e) | OrderExpired(e) | CancellationAccepted(e) | OrderShipped(e)
            | OrderDelivered(e) | RefundCompleted(e) => e.order_id.check("order_id"),
            StockAdjustmentRejected(e) => ids(&[(&e.product_id, "product_id"), (&e.warehouse_id, "warehouse_id")]),
        }
    }
}
