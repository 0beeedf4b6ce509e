//! The demo shop's orders: enough of them, in enough states, that every order and payment
//! endpoint answers something on first start.
//!
//! Placement is ordinary events ([`placements`]), decided by the real saga and charged by the
//! real payment worker against the test gateway, so "paid", "rejected: card_declined" and
//! "rejected: out_of_stock" are outcomes, not fixtures. What can only follow a payment (an
//! admin shipping, a customer asking for a refund) is [`follow_ups`]: `up` appends each
//! order's follow-ups once the views show it paid.
//!
//! Ids are deterministic (UUID v5 of a name), so the demo is the same on every first start and
//! a follow-up appended twice is one event.

use shopflow_events::types::{
    OrderCancelled, OrderLine, OrderPlaced, OrderStatus, OrderStatusChanged, PaymentMethodTokenized, RefundRequested,
};
use shopflow_events::{Envelope, Event, Id, Money};

/// The shoppers who order: every third demo shopper.
const ORDERING_SHOPPERS: usize = 20;
/// An order that waits for payment expires after the pipeline's hold timeout (15 min by
/// default) of log time; the expired demo order was placed this long before the demo.
const EXPIRED_AGE_MS: i64 = 2 * 60 * 60 * 1000;

/// What a demo order is meant to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Story {
    /// Paid with `tok_visa`, then left as it is.
    Paid,
    /// Paid, then shipped by an admin.
    Shipped,
    /// Paid, shipped, delivered.
    Delivered,
    /// Paid, then refunded in full.
    Refunded,
    /// Paid, then refunded in part (stays paid).
    PartlyRefunded,
    /// Paid, then cancelled by its owner before shipping (holds released, payment refunded).
    CancelledAfterPayment,
    /// `tok_chargeDeclined`: rejected with the gateway's reason.
    Declined,
    /// `tok_chargeDeclinedInsufficientFunds`.
    InsufficientFunds,
    /// More units than any warehouse has: rejected `out_of_stock:<product>`.
    OutOfStock,
    /// No payment method yet: reserved, waiting for one until the hold timeout.
    AwaitingPayment,
    /// Cancelled by its owner while waiting for payment.
    Cancelled,
    /// Placed long ago and never paid.
    Expired,
}

impl Story {
    /// The status the order settles in.
    pub fn settles_in(self) -> OrderStatus {
        match self {
            Story::Paid | Story::PartlyRefunded => OrderStatus::Paid,
            Story::Shipped => OrderStatus::Shipped,
            Story::Delivered => OrderStatus::Delivered,
            Story::Refunded => OrderStatus::Refunded,
            Story::CancelledAfterPayment | Story::Cancelled => OrderStatus::Cancelled,
            Story::Declined | Story::InsufficientFunds | Story::OutOfStock => OrderStatus::Rejected,
            Story::AwaitingPayment => OrderStatus::Reserved,
            Story::Expired => OrderStatus::Expired,
        }
    }

    fn token(self) -> &'static str {
        match self {
            Story::Declined => "tok_chargeDeclined",
            Story::InsufficientFunds => "tok_chargeDeclinedInsufficientFunds",
            Story::AwaitingPayment | Story::Cancelled | Story::Expired => "",
            _ => "tok_visa",
        }
    }
}

/// The story of the `k`th ordering shopper's order.
fn story(k: usize) -> Story {
    const STORIES: [Story; 12] = [
        Story::Paid,
        Story::Shipped,
        Story::Delivered,
        Story::Refunded,
        Story::PartlyRefunded,
        Story::CancelledAfterPayment,
        Story::Declined,
        Story::InsufficientFunds,
        Story::OutOfStock,
        Story::AwaitingPayment,
        Story::Cancelled,
        Story::Expired,
    ];
    STORIES[k % STORIES.len()]
}

/// One demo order: its id, owner and story.
#[derive(Clone, Debug)]
pub struct DemoOrder {
    pub order_id: Id,
    pub user_id: Id,
    pub story: Story,
}

/// Every demo order, for `products` demo products (none without products).
pub fn orders(products: usize) -> Vec<DemoOrder> {
    if products == 0 {
        return Vec::new();
    }
    (0..ORDERING_SHOPPERS)
        .map(|k| DemoOrder {
            order_id: Id::from(format!("demo-order-{:02}", k * 3).as_str()),
            user_id: Id::from(format!("demo-user-{:02}", k * 3).as_str()),
            story: story(k),
        })
        .collect()
}

fn demo_id(name: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, format!("shopflow:demo:{name}").as_bytes())
}

fn event(name: &str, event: Event) -> Envelope {
    Envelope { id: demo_id(name), ..Envelope::new(event) }
}

/// The demo price of product `index` (as the demo catalog sets it).
pub fn price_of(index: usize) -> Money {
    Money::new(499 + (index as i64 * 137) % 20_000, "EUR")
}

/// The placement of every demo order (and each paying shopper's saved card), with what
/// follows at once (a cancellation while waiting for payment). `product_of(k)` is the index of
/// the product the `k`th ordering shopper buys.
pub fn placements(products: usize, product_of: impl Fn(usize) -> usize) -> Vec<Envelope> {
    let mut out = Vec::new();
    for (k, order) in orders(products).into_iter().enumerate() {
        let index = product_of(k).min(products - 1);
        let token = order.story.token();
        if !token.is_empty() {
            out.push(event(
                &format!("card:{}", order.user_id),
                Event::PaymentMethodTokenized(PaymentMethodTokenized {
                    user_id: order.user_id.clone(),
                    token: token.to_owned(),
                    last4: if token == "tok_visa" { "4242" } else { "0002" }.to_owned(),
                    card_brand: "visa".to_owned(),
                    exp_month: 12,
                    exp_year: 2030,
                }),
            ));
        }
        // No demo warehouse holds more than 64 units of a product.
        let quantity = if order.story == Story::OutOfStock { 500 } else { 1 + (k % 2) as u32 };
        let mut placed = event(
            &format!("placed:{}", order.order_id),
            Event::OrderPlaced(OrderPlaced {
                order_id: order.order_id.clone(),
                user_id: order.user_id.clone(),
                lines: vec![OrderLine {
                    product_id: Id::from(format!("demo-{index:04}").as_str()),
                    quantity,
                    unit_price: price_of(index),
                }],
                address_id: Id::from("demo-address"),
                idempotency_key: format!("demo-{}", order.order_id),
                payment_token: token.to_owned(),
                from_cart: false,
            }),
        );
        if order.story == Story::Expired {
            placed.ts -= EXPIRED_AGE_MS;
        }
        out.push(placed);
        if order.story == Story::Cancelled {
            out.push(event(
                &format!("cancel:{}", order.order_id),
                Event::OrderCancelled(OrderCancelled {
                    order_id: order.order_id.clone(),
                    user_id: order.user_id.clone(),
                    reason: "changed my mind".to_owned(),
                }),
            ));
        }
    }
    out
}

/// What follows a demo order's payment: `(order, events)` for each order whose story goes on
/// after it is paid. `total` is the order's total as the views show it.
pub fn follow_ups(order: &DemoOrder, total: &Money) -> Vec<Envelope> {
    let (order_id, user_id) = (&order.order_id, &order.user_id);
    let status = |step: &str, status: OrderStatus| {
        event(
            &format!("{step}:{order_id}"),
            Event::OrderStatusChanged(OrderStatusChanged { order_id: order_id.clone(), user_id: user_id.clone(), status }),
        )
    };
    let refund = |amount: i64| {
        event(
            &format!("refund:{order_id}"),
            Event::RefundRequested(RefundRequested {
                order_id: order_id.clone(),
                user_id: user_id.clone(),
                refund_id: Id::from(format!("demo-refund-{order_id}").as_str()),
                amount: Money::new(amount, total.currency.as_str()),
                reason: "demo".to_owned(),
            }),
        )
    };
    match order.story {
        Story::Shipped => vec![status("ship", OrderStatus::Shipped)],
        Story::Delivered => vec![status("ship", OrderStatus::Shipped), status("deliver", OrderStatus::Delivered)],
        Story::Refunded => vec![refund(total.amount_minor)],
        Story::PartlyRefunded => vec![refund(total.amount_minor / 2)],
        Story::CancelledAfterPayment => vec![event(
            &format!("cancel:{order_id}"),
            Event::OrderCancelled(OrderCancelled {
                order_id: order_id.clone(),
                user_id: user_id.clone(),
                reason: "ordered twice".to_owned(),
            }),
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_a_customer_can_see_has_a_demo_order_except_pending() {
        let mut statuses: Vec<OrderStatus> = orders(10).iter().map(|o| o.story.settles_in()).collect();
        statuses.sort();
        statuses.dedup();
        // Pending lasts only until the holds are decided: nothing settles in it.
        let expected: Vec<OrderStatus> = OrderStatus::ALL.into_iter().filter(|s| *s != OrderStatus::Pending).collect();
        assert_eq!(statuses, expected);
    }

    #[test]
    fn placements_are_valid_and_the_same_on_every_start() {
        let first = placements(30, |k| k * 7);
        for envelope in &first {
            envelope.event.validate().unwrap();
        }
        let ids = |events: &[Envelope]| events.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(&first), ids(&placements(30, |k| k * 7)));
        for order in orders(30) {
            for envelope in follow_ups(&order, &Money::new(1000, "EUR")) {
                envelope.event.validate().unwrap();
            }
        }
    }
}
