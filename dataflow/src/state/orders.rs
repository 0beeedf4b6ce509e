//! Orders' share of a partition of `orders` (key: the order's user): the coordinator of the
//! order saga. Everything that changes an order is written to this partition, so an order's
//! life is a fold of it in offset order, the same on every replay:
//!
//! ```text
//! order.placed ──▶ stock.hold_requested per product (to the product's partition of `inventory`)
//!     ◀── order.hold_decided per product
//!   all held ──▶ reserved ──▶ payment.charge_requested (to `payments`, the worker's queue)
//!   one refused ──▶ rejected `out_of_stock:<product>`, the granted holds released
//!     ◀── payment.charge_succeeded ──▶ paid (order.confirmed)
//!     ◀── payment.charge_failed    ──▶ rejected with the gateway's code, holds released
//!   no payment by the deadline (log time) ──▶ expired, holds released
//! order.cancelled before shipping ──▶ cancelled, holds released, a refund if paid
//! order.status_changed shipped ──▶ stock.hold_committed (the units leave the stock)
//! order.refund_requested ──▶ payment.refund_approved, bounded by what is left to refund
//! ```
//!
//! Every step is idempotent by business key: an order id is placed once, a (order, product)
//! hold is answered once, a payment succeeds once, a refund id is refunded once. A grant that
//! arrives after the order was decided (rejected by another line, expired, cancelled) is
//! released at once: all lines or none.
//!
//! **Expiry is log time.** Before any record of this partition is folded, every unpaid order
//! whose deadline is at or before the record's time expires. The pipeline writes an
//! `order.payment_deadline` record when the wall clock passes a deadline, so a quiet
//! partition moves too, but the decision is by that record's time, so a replay decides alike.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use shopflow_events::types::*;
use shopflow_events::{Envelope, Event, Id, Money};

use super::fold::{add_to, decision, derived_id, rows, upsert};
use super::{Fold, StatePart};
use crate::base::Changes;
use crate::views::{utc_day, OrderHold, OrderRow, PaymentRow, RefundEntry, StatusChange};

/// Unpaid orders expire this long after placement (log time), unless configured otherwise.
pub const DEFAULT_HOLD_TIMEOUT_MS: i64 = 15 * 60 * 1_000;
/// The sliding windows of the windowed top sellers.
pub const HOUR_MS: i64 = 60 * 60 * 1_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// How many of its newest orders each partition offers to the latest-orders view: the newest
/// 100 overall are among the union of every partition's newest 100.
pub const LATEST_KEPT: usize = 100;

pub const HOLD_REQUESTED: &str = "requested";
pub const HOLD_HELD: &str = "held";
pub const HOLD_REFUSED: &str = "refused";
pub const HOLD_RELEASED: &str = "released";
pub const HOLD_COMMITTED: &str = "committed";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrdersState {
    pub(crate) orders: HashMap<Id, OrderRow>,
    pub(crate) payments: HashMap<Id, PaymentRow>,
    /// Unpaid orders by deadline.
    pub(crate) deadlines: BTreeSet<(i64, Id)>,
    /// This partition's newest orders, and their rows as offered to the latest-orders view.
    newest: BTreeSet<(i64, Id)>,
    recent: HashMap<Id, OrderRow>,
    /// Paid orders whose units count as sold, with the time of the payment (the windows
    /// slide from it).
    counted: HashMap<Id, i64>,
    /// Net revenue per (product, UTC day, currency), minor units.
    revenue: HashMap<(Id, Id, Id), i64>,
}

impl StatePart for OrdersState {
    const SECTION: &'static str = "orders";
    const VERSION: u32 = 1;

    fn apply(&mut self, fold: &Fold, envelope: &Envelope, out: &mut Changes) {
        self.expire_due(envelope, out);
        match &envelope.event {
            Event::OrderPlaced(e) => self.place(fold, envelope, e, out),
            Event::HoldDecided(e) => self.hold_decided(envelope, e, out),
            Event::ChargeSucceeded(e) => self.charge_succeeded(envelope, e, out),
            Event::ChargeFailed(e) => self.charge_failed(envelope, e, out),
            Event::PaymentSubmitted(e) => self.payment_submitted(envelope, e, out),
            Event::OrderCancelled(e) => self.cancel(envelope, e, out),
            Event::OrderStatusChanged(e) => self.status_changed(envelope, e, out),
            Event::RefundRequested(e) => self.refund_requested(envelope, e, out),
            Event::PaymentRefunded(e) => self.refunded(envelope, e, out),
            Event::RefundFailed(e) => self.refund_failed(envelope, e, out),
            // Its time has done its work in `expire_due`.
            Event::PaymentDeadline(_) => {}
            _ => {}
        }
    }

    fn insertions(&self, out: &mut Changes) {
        out.orders.extend(rows(&self.orders));
        out.payments.extend(rows(&self.payments));
        out.recent_orders.extend(rows(&self.recent));
        for (order, paid_at) in &self.counted {
            if let Some(row) = self.orders.get(order) {
                sale(row, *paid_at, 1, out);
            }
        }
        out.revenue.extend(self.revenue.iter().map(|(k, v)| (k.clone(), *v as isize)));
    }
}

impl OrdersState {
    /// The unpaid orders whose deadline has passed by `now` (wall clock): what the pipeline
    /// announces with `order.payment_deadline`.
    pub(crate) fn due(&self, now: i64) -> impl Iterator<Item = (i64, &OrderRow)> + '_ {
        self.deadlines
            .iter()
            .take_while(move |(deadline, _)| *deadline <= now)
            .filter_map(|(deadline, id)| self.orders.get(id).map(|row| (*deadline, row)))
    }

    fn place(&mut self, fold: &Fold, cause: &Envelope, e: &OrderPlaced, out: &mut Changes) {
        if self.orders.contains_key(&e.order_id) {
            return; // placed already: the first placement stands
        }
        let ts = cause.ts;
        let currency = e.lines[0].unit_price.currency.clone();
        let total = e.lines.iter().map(|l| i64::from(l.quantity) * l.unit_price.amount_minor).sum();
        // One hold per product, on the sum of its lines (sorted: requests in a fixed order).
        let mut per_product: BTreeMap<&Id, u32> = BTreeMap::new();
        for line in &e.lines {
            *per_product.entry(&line.product_id).or_default() += line.quantity;
        }
        let holds = per_product
            .iter()
            .map(|(product, quantity)| OrderHold {
                product_id: (*product).clone(),
                quantity: *quantity,
                state: HOLD_REQUESTED.into(),
                warehouses: Vec::new(),
            })
            .collect();
        let deadline = ts + fold.hold_timeout_ms;
        let row = OrderRow {
            order_id: e.order_id.clone(),
            user_id: e.user_id.clone(),
            status: OrderStatus::Pending,
            reason: String::new(),
            lines: e.lines.clone(),
            total: Money::new(total, &currency),
            address_id: e.address_id.clone(),
            payment_token: e.payment_token.clone(),
            holds,
            history: vec![StatusChange { status: OrderStatus::Pending, at: ts, reason: String::new() }],
            placed_at: ts,
            updated_at: ts,
            expires_at: Some(deadline),
            paid_minor: 0,
            refunded_minor: 0,
        };
        for (product, quantity) in per_product {
            out.decisions.push(decision(cause, Event::HoldRequested(HoldRequested {
                order_id: e.order_id.clone(),
                user_id: e.user_id.clone(),
                product_id: product.clone(),
                quantity,
            })));
        }
        if e.from_cart {
            out.decisions.push(decision(cause, Event::CartCleared(CartCleared { user_id: e.user_id.clone() })));
        }
        self.deadlines.insert((deadline, e.order_id.clone()));
        self.newest.insert((ts, e.order_id.clone()));
        if self.newest.len() > LATEST_KEPT {
            if let Some((_, oldest)) = self.newest.pop_first() {
                upsert(&mut self.recent, oldest, None, &mut out.recent_orders);
            }
        }
        self.save(row, out);
    }

    fn hold_decided(&mut self, cause: &Envelope, e: &HoldDecided, out: &mut Changes) {
        let Some(mut row) = self.orders.get(&e.order_id).cloned() else { return };
        let Some(hold) = row.holds.iter_mut().find(|h| h.product_id == e.product_id) else { return };
        if hold.state != HOLD_REQUESTED {
            return; // answered already
        }
        if !e.granted {
            hold.state = HOLD_REFUSED.into();
            if row.status == OrderStatus::Pending {
                let reason = format!("out_of_stock:{}", e.product_id);
                self.close(&mut row, OrderStatus::Rejected, &reason, cause, out);
                out.decisions.push(decision(cause, outcome(Event::OrderRejected, &row, &reason, None)));
            }
            self.save(row, out);
            return;
        }
        hold.state = HOLD_HELD.into();
        hold.warehouses = e.holds.clone();
        if row.status != OrderStatus::Pending {
            // Decided before this grant arrived: all lines or none.
            let reason = format!("order_{}", row.status.as_str());
            release(&mut row.holds, &e.order_id, Some(&e.product_id), &reason, cause, out);
        } else if row.holds.iter().all(|h| h.state == HOLD_HELD) {
            transition(&mut row, OrderStatus::Reserved, cause.ts, "");
            let holds = row.holds.iter().flat_map(|h| h.warehouses.clone()).collect();
            out.decisions.push(decision(cause, Event::ReservationAccepted(ReservationAccepted {
                order_id: row.order_id.clone(),
                user_id: row.user_id.clone(),
                holds,
            })));
            if !row.payment_token.is_empty() {
                self.request_charge(&row, cause, out);
            }
        }
        self.save(row, out);
    }

    fn request_charge(&mut self, row: &OrderRow, cause: &Envelope, out: &mut Changes) {
        let payment = pending_payment(row, cause.ts);
        upsert(&mut self.payments, row.order_id.clone(), Some(payment), &mut out.payments);
        out.decisions.push(decision(cause, Event::ChargeRequested(ChargeRequested {
            order_id: row.order_id.clone(),
            user_id: row.user_id.clone(),
            amount: row.total.clone(),
            token: row.payment_token.clone(),
        })));
    }

    fn payment_submitted(&mut self, cause: &Envelope, e: &PaymentSubmitted, out: &mut Changes) {
        let Some(mut row) = self.orders.get(&e.order_id).cloned() else { return };
        if row.user_id != e.user_id || !row.payment_token.is_empty() || self.payments.contains_key(&e.order_id) {
            return;
        }
        row.payment_token = e.token.clone();
        row.updated_at = cause.ts;
        if row.status == OrderStatus::Reserved {
            self.request_charge(&row, cause, out);
        }
        self.save(row, out);
    }

    fn charge_succeeded(&mut self, cause: &Envelope, e: &ChargeSucceeded, out: &mut Changes) {
        let Some(mut row) = self.orders.get(&e.order_id).cloned() else { return };
        let mut payment = self.payment_of(&row, cause.ts);
        if payment.captured_minor > 0 || payment.status == "succeeded" {
            return; // an outcome repeated
        }
        payment.payment_id = Some(e.payment_id.clone());
        payment.status = "succeeded".into();
        payment.captured_minor = e.amount.amount_minor;
        payment.authorization_code = e.authorization_code.clone();
        payment.updated_at = cause.ts;
        row.paid_minor = e.amount.amount_minor;
        if row.status == OrderStatus::Reserved {
            transition(&mut row, OrderStatus::Paid, cause.ts, "");
            self.deadlines.remove(&(row.expires_at.unwrap_or_default(), row.order_id.clone()));
            row.expires_at = None;
            self.counted.insert(row.order_id.clone(), cause.ts);
            sale(&row, cause.ts, 1, out);
            self.add_revenue(&row, cause.ts, 1, row.total.amount_minor, out);
            out.decisions.push(decision(cause, outcome(Event::OrderConfirmed, &row, "", Some(e.amount.clone()))));
        } else {
            // Paid after the order was decided (expired, cancelled, rejected): give it back.
            let refund_id = derived_id(&["auto-refund", e.order_id.as_str()]);
            row.updated_at = cause.ts;
            approve_refund(&mut payment, &row, refund_id, e.amount.amount_minor, "order_not_payable", cause, out);
        }
        upsert(&mut self.payments, row.order_id.clone(), Some(payment), &mut out.payments);
        self.save(row, out);
    }

    fn charge_failed(&mut self, cause: &Envelope, e: &ChargeFailed, out: &mut Changes) {
        let Some(mut row) = self.orders.get(&e.order_id).cloned() else { return };
        let mut payment = self.payment_of(&row, cause.ts);
        if payment.status != "pending" {
            return;
        }
        payment.status = "failed".into();
        payment.failure_reason = e.reason.clone();
        payment.updated_at = cause.ts;
        upsert(&mut self.payments, row.order_id.clone(), Some(payment), &mut out.payments);
        if row.status == OrderStatus::Reserved {
            self.close(&mut row, OrderStatus::Rejected, &e.reason, cause, out);
            out.decisions.push(decision(cause, outcome(Event::OrderRejected, &row, &e.reason, None)));
            self.save(row, out);
        }
    }

    fn cancel(&mut self, cause: &Envelope, e: &OrderCancelled, out: &mut Changes) {
        let Some(mut row) = self.orders.get(&e.order_id).cloned() else { return };
        if row.user_id != e.user_id || !row.status.cancellable() {
            return;
        }
        let was_paid = row.status == OrderStatus::Paid;
        let reason = if e.reason.is_empty() { "cancelled".to_owned() } else { e.reason.clone() };
        self.close(&mut row, OrderStatus::Cancelled, &reason, cause, out);
        if was_paid {
            self.uncount(&row, out);
            if let Some(mut payment) = self.payments.get(&row.order_id).cloned() {
                let left = refundable(&payment);
                if left > 0 {
                    let refund_id = derived_id(&["cancel-refund", e.order_id.as_str()]);
                    approve_refund(&mut payment, &row, refund_id, left, "order_cancelled", cause, out);
                    upsert(&mut self.payments, row.order_id.clone(), Some(payment), &mut out.payments);
                }
            }
        }
        out.decisions.push(decision(cause, outcome(Event::CancellationAccepted, &row, &reason, None)));
        self.save(row, out);
    }

    fn status_changed(&mut self, cause: &Envelope, e: &OrderStatusChanged, out: &mut Changes) {
        let Some(mut row) = self.orders.get(&e.order_id).cloned() else { return };
        match (row.status, e.status) {
            (OrderStatus::Paid, OrderStatus::Shipped) => {
                transition(&mut row, OrderStatus::Shipped, cause.ts, "");
                for hold in row.holds.iter_mut().filter(|h| h.state == HOLD_HELD) {
                    hold.state = HOLD_COMMITTED.into();
                    out.decisions.push(decision(cause, Event::HoldCommitted(HoldCommitted {
                        order_id: row.order_id.clone(),
                        product_id: hold.product_id.clone(),
                    })));
                }
                out.decisions.push(decision(cause, outcome(Event::OrderShipped, &row, "", None)));
            }
            (OrderStatus::Shipped, OrderStatus::Delivered) => {
                transition(&mut row, OrderStatus::Delivered, cause.ts, "");
                out.decisions.push(decision(cause, outcome(Event::OrderDelivered, &row, "", None)));
            }
            _ => return, // not a transition an admin may make from here
        }
        self.save(row, out);
    }

    fn refund_requested(&mut self, cause: &Envelope, e: &RefundRequested, out: &mut Changes) {
        let Some(row) = self.orders.get(&e.order_id).cloned() else { return };
        let Some(mut payment) = self.payments.get(&e.order_id).cloned() else { return };
        if row.user_id != e.user_id || payment.refunds.iter().any(|r| r.refund_id == e.refund_id) {
            return;
        }
        let left = refundable(&payment);
        if e.amount.currency != payment.amount.currency || e.amount.amount_minor > left {
            payment.refunds.push(RefundEntry {
                refund_id: e.refund_id.clone(),
                amount: e.amount.clone(),
                status: "refused".into(),
                reason: format!("exceeds_refundable:{left}"),
                at: cause.ts,
            });
        } else {
            let reason = if e.reason.is_empty() { "requested" } else { e.reason.as_str() };
            approve_refund(&mut payment, &row, e.refund_id.clone(), e.amount.amount_minor, reason, cause, out);
        }
        payment.updated_at = cause.ts;
        upsert(&mut self.payments, row.order_id.clone(), Some(payment), &mut out.payments);
    }

    fn refunded(&mut self, cause: &Envelope, e: &PaymentRefunded, out: &mut Changes) {
        let Some(mut row) = self.orders.get(&e.order_id).cloned() else { return };
        let Some(mut payment) = self.payments.get(&e.order_id).cloned() else { return };
        let Some(refund) = payment.refunds.iter_mut().find(|r| r.refund_id == e.refund_id) else { return };
        if refund.status != "pending" {
            return;
        }
        refund.status = "completed".into();
        refund.at = cause.ts;
        let amount = refund.amount.amount_minor;
        payment.refunded_minor += amount;
        payment.status = if payment.refunded_minor >= payment.captured_minor { "refunded" } else { "partially_refunded" }.into();
        payment.updated_at = cause.ts;
        row.refunded_minor += amount;
        row.updated_at = cause.ts;
        // Revenue counted at payment gives the refund back, on the refund's day.
        if row.history.iter().any(|h| h.status == OrderStatus::Paid) {
            self.add_revenue(&row, cause.ts, -1, amount, out);
        }
        let full = payment.refunded_minor >= payment.captured_minor;
        if full && matches!(row.status, OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Delivered) {
            self.uncount(&row, out);
            transition(&mut row, OrderStatus::Refunded, cause.ts, "");
        }
        out.decisions.push(decision(cause, outcome(Event::RefundCompleted, &row, "", Some(Money::new(amount, &payment.amount.currency)))));
        upsert(&mut self.payments, row.order_id.clone(), Some(payment), &mut out.payments);
        self.save(row, out);
    }

    fn refund_failed(&mut self, cause: &Envelope, e: &RefundFailed, out: &mut Changes) {
        let Some(mut payment) = self.payments.get(&e.order_id).cloned() else { return };
        let Some(refund) = payment.refunds.iter_mut().find(|r| r.refund_id == e.refund_id) else { return };
        if refund.status != "pending" {
            return;
        }
        refund.status = "failed".into();
        refund.reason = e.reason.clone();
        refund.at = cause.ts;
        payment.updated_at = cause.ts;
        upsert(&mut self.payments, e.order_id.clone(), Some(payment), &mut out.payments);
    }

    /// Expires every unpaid order whose deadline is at or before `cause`'s time.
    fn expire_due(&mut self, cause: &Envelope, out: &mut Changes) {
        while let Some((deadline, id)) = self.deadlines.first().cloned() {
            if deadline > cause.ts {
                break;
            }
            self.deadlines.pop_first();
            let Some(mut row) = self.orders.get(&id).cloned() else { continue };
            if !row.status.open() {
                continue;
            }
            let reason = if row.status == OrderStatus::Pending { "hold_timeout" } else { "payment_timeout" };
            self.close(&mut row, OrderStatus::Expired, reason, cause, out);
            out.decisions.push(decision(cause, outcome(Event::OrderExpired, &row, reason, None)));
            self.save(row, out);
        }
    }

    /// Ends an order that did not ship: its held units go back, its deadline goes.
    fn close(&mut self, row: &mut OrderRow, status: OrderStatus, reason: &str, cause: &Envelope, out: &mut Changes) {
        transition(row, status, cause.ts, reason);
        row.reason = reason.to_owned();
        if let Some(deadline) = row.expires_at.take() {
            self.deadlines.remove(&(deadline, row.order_id.clone()));
        }
        let why = format!("order_{}", status.as_str());
        release(&mut row.holds, &row.order_id, None, &why, cause, out);
    }

    fn uncount(&mut self, row: &OrderRow, out: &mut Changes) {
        if let Some(paid_at) = self.counted.remove(&row.order_id) {
            sale(row, paid_at, -1, out);
        }
    }

    /// Adds `sign × amount` of revenue, shared over the order's lines in proportion to their
    /// totals (the remainder of the rounding to the last line), on the UTC day of `at`.
    fn add_revenue(&mut self, row: &OrderRow, at: i64, sign: i64, amount: i64, out: &mut Changes) {
        let total = row.total.amount_minor;
        let day = utc_day(at);
        let currency = Id::from(row.total.currency.as_str());
        let mut given = 0;
        for (i, line) in row.lines.iter().enumerate() {
            let line_total = i64::from(line.quantity) * line.unit_price.amount_minor;
            let share = if i + 1 == row.lines.len() {
                amount - given
            } else if total > 0 {
                ((i128::from(amount) * i128::from(line_total)) / i128::from(total)) as i64
            } else {
                0
            };
            given += share;
            let key = (line.product_id.clone(), day.clone(), currency.clone());
            add_to(&mut self.revenue, key, sign * share, &mut out.revenue);
        }
    }

    fn payment_of(&self, row: &OrderRow, ts: i64) -> PaymentRow {
        self.payments.get(&row.order_id).cloned().unwrap_or_else(|| pending_payment(row, ts))
    }

    /// Stores the order's row (and its entry among the newest, if it is one).
    fn save(&mut self, row: OrderRow, out: &mut Changes) {
        if self.newest.contains(&(row.placed_at, row.order_id.clone())) {
            upsert(&mut self.recent, row.order_id.clone(), Some(row.clone()), &mut out.recent_orders);
        }
        upsert(&mut self.orders, row.order_id.clone(), Some(row), &mut out.orders);
    }
}

/// An order's payment as it stands once its charge is requested (or an outcome arrives for
/// one the saga has no row of).
fn pending_payment(row: &OrderRow, ts: i64) -> PaymentRow {
    PaymentRow {
        order_id: row.order_id.clone(),
        user_id: row.user_id.clone(),
        payment_id: None,
        status: "pending".into(),
        amount: row.total.clone(),
        captured_minor: 0,
        refunded_minor: 0,
        failure_reason: String::new(),
        authorization_code: String::new(),
        refunds: Vec::new(),
        updated_at: ts,
    }
}

fn transition(row: &mut OrderRow, status: OrderStatus, at: i64, reason: &str) {
    row.status = status;
    row.updated_at = at;
    row.history.push(StatusChange { status, at, reason: reason.to_owned() });
}

/// Releases the order's held holds (only `product`'s, when given).
fn release(holds: &mut [OrderHold], order: &Id, product: Option<&Id>, reason: &str, cause: &Envelope, out: &mut Changes) {
    for hold in holds.iter_mut().filter(|h| h.state == HOLD_HELD && product.is_none_or(|p| &h.product_id == p)) {
        hold.state = HOLD_RELEASED.into();
        out.decisions.push(decision(cause, Event::HoldReleased(HoldReleased {
            order_id: order.clone(),
            product_id: hold.product_id.clone(),
            reason: reason.to_owned(),
        })));
    }
}

/// What can still be refunded: captured, minus refunded and pending refunds.
fn refundable(payment: &PaymentRow) -> i64 {
    let pending: i64 = payment.refunds.iter().filter(|r| r.status == "pending").map(|r| r.amount.amount_minor).sum();
    payment.captured_minor - payment.refunded_minor - pending
}

fn approve_refund(payment: &mut PaymentRow, row: &OrderRow, refund_id: Id, amount: i64, reason: &str, cause: &Envelope, out: &mut Changes) {
    let money = Money::new(amount, &payment.amount.currency);
    payment.refunds.push(RefundEntry { refund_id: refund_id.clone(), amount: money.clone(), status: "pending".into(), reason: reason.to_owned(), at: cause.ts });
    out.decisions.push(decision(cause, Event::RefundApproved(RefundApproved {
        order_id: row.order_id.clone(),
        user_id: row.user_id.clone(),
        refund_id,
        payment_id: payment.payment_id.clone().unwrap_or_else(|| Id::from("unknown")),
        amount: money,
    })));
}

/// The units of a paid order as sold (`sign` 1) or taken back (-1), all time and in the
/// windows sliding from the payment's time.
fn sale(row: &OrderRow, paid_at: i64, sign: isize, out: &mut Changes) {
    for line in &row.lines {
        let units = sign * line.quantity as isize;
        out.sold.push((line.product_id.clone(), units));
        out.sold_hour.push((line.product_id.clone(), paid_at + HOUR_MS, units));
        out.sold_day.push((line.product_id.clone(), paid_at + DAY_MS, units));
    }
}

fn outcome(make: fn(OrderDecision) -> Event, row: &OrderRow, reason: &str, amount: Option<Money>) -> Event {
    make(OrderDecision { order_id: row.order_id.clone(), user_id: row.user_id.clone(), reason: reason.to_owned(), amount })
}
