//! The plain-Rust recomputation the pipeline is held to: the log read back partition by
//! partition in offset order, folded with ordinary maps and loops (no timely, no differential,
//! no incremental retractions), then the views computed from the final state.
//!
//! Partitions are independent here as they are in the pipeline: a product's holds are decided
//! by its partition of `inventory` alone, an order's life by its partition of `orders` alone.
//! The pipeline's own messages between them are in the log; the model reads them like any
//! record, and decides holds itself, so every answer the pipeline wrote can be checked.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use shopflow_dataflow::views::{
    utc_day, CartRow, LatestOrderRow, OrderHold, OrderRow, PaymentRow, RefundEntry, RevenueRow, StatusChange,
    StockAvailableRow, TopSellerRow, UserOrderRow,
};
use shopflow_events::types::*;
use shopflow_events::{Envelope, Event, Id, Money};

pub const HOUR: i64 = 60 * 60 * 1_000;
pub const DAY: i64 = 24 * HOUR;

#[derive(Default)]
pub struct Model {
    pub hold_timeout_ms: i64,
    /// (product, warehouse) → (on hand, held).
    pub levels: BTreeMap<(Id, Id), (i64, i64)>,
    /// (order, product) → (state, allocations).
    holds: HashMap<(Id, Id), (&'static str, Vec<Hold>)>,
    /// The model's answer to each hold request.
    pub answers: HashMap<(Id, Id), (bool, Vec<Hold>)>,
    pub orders: BTreeMap<Id, OrderRow>,
    pub payments: BTreeMap<Id, PaymentRow>,
    /// Paid orders counted as sold, with their payment time.
    counted: BTreeMap<Id, i64>,
    revenue: BTreeMap<(Id, Id, Id), i64>,
    pub carts: BTreeMap<(Id, Id), CartRow>,
    pub categories: HashMap<Id, Id>,
    pub products: HashMap<Id, (String, Id)>,
    /// Violations of "held ≤ on hand" seen after any record.
    pub oversold: Vec<String>,
}

impl Model {
    pub fn new(hold_timeout_ms: i64) -> Self {
        Self { hold_timeout_ms, ..Self::default() }
    }

    /// Folds one partition's records, in offset order (bad records are skipped, as the
    /// pipeline dead-letters them; a repeated event id is applied once).
    pub fn partition(&mut self, records: &[Vec<u8>]) {
        let mut seen = HashSet::new();
        let mut deadlines: BTreeSet<(i64, Id)> = BTreeSet::new();
        for bytes in records {
            let Ok(envelope) = Envelope::decode(bytes) else { continue };
            if !seen.insert(envelope.id) {
                continue;
            }
            self.expire(&envelope, &mut deadlines);
            self.apply(&envelope, &mut deadlines);
            for ((p, w), (on_hand, held)) in &self.levels {
                if *held > *on_hand || *held < 0 {
                    self.oversold.push(format!("{p}/{w}: {held} held of {on_hand}"));
                }
            }
        }
    }

    fn expire(&mut self, e: &Envelope, deadlines: &mut BTreeSet<(i64, Id)>) {
        while let Some((deadline, id)) = deadlines.first().cloned() {
            if deadline > e.ts {
                break;
            }
            deadlines.pop_first();
            let status = self.orders[&id].status;
            if matches!(status, OrderStatus::Pending | OrderStatus::Reserved) {
                let reason = if status == OrderStatus::Pending { "hold_timeout" } else { "payment_timeout" };
                self.end(&id, OrderStatus::Expired, reason, e.ts, deadlines);
            }
        }
    }

    fn apply(&mut self, e: &Envelope, deadlines: &mut BTreeSet<(i64, Id)>) {
        let ts = e.ts;
        match &e.event {
            Event::ProductCreated(p) => {
                self.products.insert(p.product_id.clone(), (p.name.clone(), p.category_id.clone()));
                self.categories.insert(p.product_id.clone(), p.category_id.clone());
            }
            Event::StockReceived(s) => self.level(&s.product_id, &s.warehouse_id).0 += i64::from(s.quantity),
            Event::StockAdjusted(s) => {
                let level = self.level(&s.product_id, &s.warehouse_id);
                if level.0 + s.delta >= level.1 {
                    level.0 += s.delta;
                }
            }
            Event::HoldRequested(h) => {
                let key = (h.order_id.clone(), h.product_id.clone());
                if self.holds.contains_key(&key) {
                    return;
                }
                let mut free: Vec<(Id, i64)> = self
                    .levels
                    .iter()
                    .filter(|((p, _), (on, held))| p == &h.product_id && on - held > 0)
                    .map(|((_, w), (on, held))| (w.clone(), on - held))
                    .collect();
                let total: i64 = free.iter().map(|(_, a)| a).sum();
                let wanted = i64::from(h.quantity);
                let mut allocations = Vec::new();
                if wanted <= total {
                    // Fullest first (smaller id on ties); one warehouse if the fullest covers it.
                    free.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    let mut left = wanted;
                    for (w, available) in free {
                        if left == 0 {
                            break;
                        }
                        let take = available.min(left);
                        allocations.push(Hold { product_id: h.product_id.clone(), warehouse_id: w.clone(), quantity: take as u32 });
                        self.level(&h.product_id, &w).1 += take;
                        left -= take;
                    }
                }
                let granted = wanted <= total;
                self.answers.insert(key.clone(), (granted, allocations.clone()));
                self.holds.insert(key, (if granted { "held" } else { "refused" }, allocations));
            }
            Event::HoldReleased(h) => self.settle(&h.order_id, &h.product_id, false),
            Event::HoldCommitted(h) => self.settle(&h.order_id, &h.product_id, true),
            Event::CartItemAdded(c) => {
                let now = self.cart_units(&c.user_id, &c.product_id);
                self.set_cart(&c.user_id, &c.product_id, (now + c.quantity).min(MAX_UNITS), ts);
            }
            Event::CartItemRemoved(c) => {
                let now = self.cart_units(&c.user_id, &c.product_id);
                self.set_cart(&c.user_id, &c.product_id, now.saturating_sub(c.quantity), ts);
            }
            Event::CartQuantitySet(c) => self.set_cart(&c.user_id, &c.product_id, c.quantity, ts),
            Event::CartCleared(c) => {
                let lines: Vec<Id> = self.carts.keys().filter(|(u, _)| u == &c.user_id).map(|(_, p)| p.clone()).collect();
                for p in lines {
                    self.set_cart(&c.user_id, &p, 0, ts);
                }
            }
            Event::OrderPlaced(o) => {
                if self.orders.contains_key(&o.order_id) {
                    return;
                }
                let total = o.lines.iter().map(|l| i64::from(l.quantity) * l.unit_price.amount_minor).sum();
                let mut sums: BTreeMap<Id, u32> = BTreeMap::new();
                for l in &o.lines {
                    *sums.entry(l.product_id.clone()).or_default() += l.quantity;
                }
                let deadline = ts + self.hold_timeout_ms;
                deadlines.insert((deadline, o.order_id.clone()));
                self.orders.insert(o.order_id.clone(), OrderRow {
                    order_id: o.order_id.clone(),
                    user_id: o.user_id.clone(),
                    status: OrderStatus::Pending,
                    reason: String::new(),
                    lines: o.lines.clone(),
                    total: Money::new(total, &o.lines[0].unit_price.currency),
                    address_id: o.address_id.clone(),
                    payment_token: o.payment_token.clone(),
                    holds: sums
                        .into_iter()
                        .map(|(product_id, quantity)| OrderHold { product_id, quantity, state: "requested".into(), warehouses: vec![] })
                        .collect(),
                    history: vec![StatusChange { status: OrderStatus::Pending, at: ts, reason: String::new() }],
                    placed_at: ts,
                    updated_at: ts,
                    expires_at: Some(deadline),
                    paid_minor: 0,
                    refunded_minor: 0,
                });
            }
            Event::HoldDecided(d) => {
                let Some(order) = self.orders.get_mut(&d.order_id) else { return };
                let Some(hold) = order.holds.iter_mut().find(|h| h.product_id == d.product_id && h.state == "requested") else { return };
                if !d.granted {
                    hold.state = "refused".into();
                    if order.status == OrderStatus::Pending {
                        let reason = format!("out_of_stock:{}", d.product_id);
                        self.end(&d.order_id, OrderStatus::Rejected, &reason, ts, deadlines);
                    }
                    return;
                }
                hold.state = "held".into();
                hold.warehouses = d.holds.clone();
                if order.status != OrderStatus::Pending {
                    hold.state = "released".into();
                } else if order.holds.iter().all(|h| h.state == "held") {
                    step(order, OrderStatus::Reserved, ts, "");
                    if !order.payment_token.is_empty() {
                        let row = new_payment(order, ts);
                        self.payments.insert(d.order_id.clone(), row);
                    }
                }
            }
            Event::PaymentSubmitted(p) => {
                let Some(order) = self.orders.get_mut(&p.order_id) else { return };
                if order.user_id != p.user_id || !order.payment_token.is_empty() || self.payments.contains_key(&p.order_id) {
                    return;
                }
                order.payment_token = p.token.clone();
                order.updated_at = ts;
                if order.status == OrderStatus::Reserved {
                    let row = new_payment(order, ts);
                    self.payments.insert(p.order_id.clone(), row);
                }
            }
            Event::ChargeSucceeded(c) => {
                let Some(order) = self.orders.get(&c.order_id).cloned() else { return };
                let mut pay = self.payments.get(&c.order_id).cloned().unwrap_or_else(|| new_payment(&order, ts));
                if pay.status != "pending" {
                    return;
                }
                pay.payment_id = Some(c.payment_id.clone());
                pay.status = "succeeded".into();
                pay.captured_minor = c.amount.amount_minor;
                pay.authorization_code = c.authorization_code.clone();
                pay.updated_at = ts;
                let order = self.orders.get_mut(&c.order_id).unwrap();
                order.paid_minor = c.amount.amount_minor;
                if order.status == OrderStatus::Reserved {
                    step(order, OrderStatus::Paid, ts, "");
                    deadlines.remove(&(order.expires_at.unwrap(), order.order_id.clone()));
                    order.expires_at = None;
                    self.counted.insert(c.order_id.clone(), ts);
                    let (order, total) = (order.clone(), order.total.amount_minor);
                    self.revenue(&order, ts, total);
                } else {
                    order.updated_at = ts;
                    let amount = c.amount.amount_minor;
                    refund(&mut pay, derived("auto-refund", &c.order_id), "order_not_payable", amount, ts);
                }
                self.payments.insert(c.order_id.clone(), pay);
            }
            Event::ChargeFailed(c) => {
                let Some(pay) = self.payments.get_mut(&c.order_id) else {
                    if let Some(order) = self.orders.get(&c.order_id).cloned() {
                        let mut pay = new_payment(&order, ts);
                        pay.status = "failed".into();
                        pay.failure_reason = c.reason.clone();
                        self.payments.insert(c.order_id.clone(), pay);
                        if order.status == OrderStatus::Reserved {
                            self.end(&c.order_id, OrderStatus::Rejected, &c.reason, ts, deadlines);
                        }
                    }
                    return;
                };
                if pay.status != "pending" {
                    return;
                }
                pay.status = "failed".into();
                pay.failure_reason = c.reason.clone();
                pay.updated_at = ts;
                if self.orders[&c.order_id].status == OrderStatus::Reserved {
                    self.end(&c.order_id, OrderStatus::Rejected, &c.reason, ts, deadlines);
                }
            }
            Event::OrderCancelled(c) => {
                let Some(order) = self.orders.get(&c.order_id) else { return };
                if order.user_id != c.user_id || !matches!(order.status, OrderStatus::Pending | OrderStatus::Reserved | OrderStatus::Paid) {
                    return;
                }
                let was_paid = order.status == OrderStatus::Paid;
                let reason = if c.reason.is_empty() { "cancelled".to_owned() } else { c.reason.clone() };
                self.end(&c.order_id, OrderStatus::Cancelled, &reason, ts, deadlines);
                if was_paid {
                    self.counted.remove(&c.order_id);
                    if let Some(pay) = self.payments.get_mut(&c.order_id) {
                        let left = left_to_refund(pay);
                        if left > 0 {
                            refund(pay, derived("cancel-refund", &c.order_id), "order_cancelled", left, ts);
                        }
                    }
                }
            }
            Event::OrderStatusChanged(s) => {
                let Some(order) = self.orders.get_mut(&s.order_id) else { return };
                match (order.status, s.status) {
                    (OrderStatus::Paid, OrderStatus::Shipped) => {
                        step(order, OrderStatus::Shipped, ts, "");
                        for h in order.holds.iter_mut().filter(|h| h.state == "held") {
                            h.state = "committed".into();
                        }
                    }
                    (OrderStatus::Shipped, OrderStatus::Delivered) => step(order, OrderStatus::Delivered, ts, ""),
                    _ => {}
                }
            }
            Event::RefundRequested(r) => {
                let Some(order) = self.orders.get(&r.order_id) else { return };
                let Some(pay) = self.payments.get_mut(&r.order_id) else { return };
                if order.user_id != r.user_id || pay.refunds.iter().any(|x| x.refund_id == r.refund_id) {
                    return;
                }
                let left = left_to_refund(pay);
                if r.amount.currency != pay.amount.currency || r.amount.amount_minor > left {
                    pay.refunds.push(RefundEntry {
                        refund_id: r.refund_id.clone(),
                        amount: r.amount.clone(),
                        status: "refused".into(),
                        reason: format!("exceeds_refundable:{left}"),
                        at: ts,
                    });
                } else {
                    let reason = if r.reason.is_empty() { "requested" } else { r.reason.as_str() };
                    pay.refunds.push(RefundEntry {
                        refund_id: r.refund_id.clone(),
                        amount: r.amount.clone(),
                        status: "pending".into(),
                        reason: reason.into(),
                        at: ts,
                    });
                }
                pay.updated_at = ts;
            }
            Event::PaymentRefunded(r) => {
                let Some(pay) = self.payments.get_mut(&r.order_id) else { return };
                let Some(entry) = pay.refunds.iter_mut().find(|x| x.refund_id == r.refund_id && x.status == "pending") else { return };
                entry.status = "completed".into();
                entry.at = ts;
                let amount = entry.amount.amount_minor;
                pay.refunded_minor += amount;
                pay.status = if pay.refunded_minor >= pay.captured_minor { "refunded" } else { "partially_refunded" }.into();
                pay.updated_at = ts;
                let full = pay.refunded_minor >= pay.captured_minor;
                let order = self.orders.get_mut(&r.order_id).unwrap();
                order.refunded_minor += amount;
                order.updated_at = ts;
                let was_paid = order.history.iter().any(|h| h.status == OrderStatus::Paid);
                if full && matches!(order.status, OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Delivered) {
                    step(order, OrderStatus::Refunded, ts, "");
                    self.counted.remove(&r.order_id);
                }
                if was_paid {
                    let order = self.orders[&r.order_id].clone();
                    self.revenue(&order, ts, -amount);
                }
            }
            Event::RefundFailed(r) => {
                let Some(pay) = self.payments.get_mut(&r.order_id) else { return };
                if let Some(entry) = pay.refunds.iter_mut().find(|x| x.refund_id == r.refund_id && x.status == "pending") {
                    entry.status = "failed".into();
                    entry.reason = r.reason.clone();
                    entry.at = ts;
                    pay.updated_at = ts;
                }
            }
            _ => {}
        }
    }

    fn level(&mut self, p: &Id, w: &Id) -> &mut (i64, i64) {
        self.levels.entry((p.clone(), w.clone())).or_default()
    }

    fn settle(&mut self, order: &Id, product: &Id, shipped: bool) {
        let key = (order.clone(), product.clone());
        match self.holds.get_mut(&key) {
            Some((state, allocations)) if *state == "held" => {
                *state = if shipped { "committed" } else { "released" };
                for a in allocations.clone() {
                    let level = self.levels.get_mut(&(a.product_id.clone(), a.warehouse_id.clone())).unwrap();
                    level.1 -= i64::from(a.quantity);
                    if shipped {
                        level.0 -= i64::from(a.quantity);
                    }
                }
            }
            Some(_) => {}
            None => {
                self.holds.insert(key, (if shipped { "committed" } else { "released" }, vec![]));
            }
        }
    }

    fn cart_units(&self, u: &Id, p: &Id) -> u32 {
        self.carts.get(&(u.clone(), p.clone())).map_or(0, |c| c.quantity)
    }

    fn set_cart(&mut self, u: &Id, p: &Id, quantity: u32, ts: i64) {
        if self.cart_units(u, p) == quantity {
            return;
        }
        if quantity == 0 {
            self.carts.remove(&(u.clone(), p.clone()));
        } else {
            self.carts.insert((u.clone(), p.clone()), CartRow { user_id: u.clone(), product_id: p.clone(), quantity, updated_at: ts });
        }
    }

    /// Ends an order that did not ship: held lines are released.
    fn end(&mut self, id: &Id, status: OrderStatus, reason: &str, ts: i64, deadlines: &mut BTreeSet<(i64, Id)>) {
        let order = self.orders.get_mut(id).unwrap();
        step(order, status, ts, reason);
        order.reason = reason.to_owned();
        if let Some(deadline) = order.expires_at.take() {
            deadlines.remove(&(deadline, id.clone()));
        }
        for h in order.holds.iter_mut().filter(|h| h.state == "held") {
            h.state = "released".into();
        }
    }

    fn revenue(&mut self, order: &OrderRow, ts: i64, amount: i64) {
        let total = order.total.amount_minor;
        let mut given = 0;
        for (i, l) in order.lines.iter().enumerate() {
            let line = i64::from(l.quantity) * l.unit_price.amount_minor;
            let share = if i + 1 == order.lines.len() { amount - given } else if total > 0 { ((i128::from(amount) * i128::from(line)) / i128::from(total)) as i64 } else { 0 };
            given += share;
            let category = self.categories.get(&l.product_id).cloned().unwrap_or_else(|| Id::from("-"));
            *self.revenue.entry((utc_day(ts), category, Id::from(order.total.currency.as_str()))).or_default() += share;
        }
    }

    // ---------- the views ----------

    pub fn stock_available(&self) -> Vec<StockAvailableRow> {
        self.levels
            .iter()
            .filter(|(_, l)| **l != (0, 0))
            .map(|((p, w), (on_hand, held))| StockAvailableRow {
                product_id: p.clone(),
                warehouse_id: w.clone(),
                on_hand: *on_hand,
                held: *held,
                available: on_hand - held,
            })
            .collect()
    }

    /// Units sold per product, of sales paid after `since` (event time).
    pub fn top_sellers(&self, since: i64) -> Vec<TopSellerRow> {
        let mut units: BTreeMap<Id, i64> = BTreeMap::new();
        for (order, paid_at) in &self.counted {
            if *paid_at > since {
                for l in &self.orders[order].lines {
                    *units.entry(l.product_id.clone()).or_default() += i64::from(l.quantity);
                }
            }
        }
        units
            .into_iter()
            .map(|(p, u)| TopSellerRow { category_id: self.categories.get(&p).cloned(), product_id: p, units: u })
            .collect()
    }

    pub fn revenue_rows(&self) -> Vec<RevenueRow> {
        self.revenue
            .iter()
            .filter(|(_, amount)| **amount != 0)
            .map(|((day, category, currency), amount)| RevenueRow {
                day: day.clone(),
                category_id: (category.as_str() != "-").then(|| category.clone()),
                currency: currency.to_string(),
                amount_minor: *amount,
            })
            .collect()
    }

    pub fn user_orders(&self) -> Vec<UserOrderRow> {
        self.orders
            .values()
            .map(|o| UserOrderRow {
                user_id: o.user_id.clone(),
                order_id: o.order_id.clone(),
                status: o.status,
                total: o.total.clone(),
                placed_at: o.placed_at,
                updated_at: o.updated_at,
            })
            .collect()
    }

    pub fn latest_orders(&self, kept: usize) -> Vec<LatestOrderRow> {
        let mut newest: Vec<&OrderRow> = self.orders.values().collect();
        newest.sort_by(|a, b| b.placed_at.cmp(&a.placed_at).then(a.order_id.cmp(&b.order_id)));
        newest
            .into_iter()
            .take(kept)
            .flat_map(|o| {
                let mut per_product: BTreeMap<Id, OrderLine> = BTreeMap::new();
                for l in &o.lines {
                    per_product.entry(l.product_id.clone()).and_modify(|x| x.quantity += l.quantity).or_insert_with(|| l.clone());
                }
                per_product.into_values().map(move |l| LatestOrderRow {
                    order_id: o.order_id.clone(),
                    product_id: l.product_id.clone(),
                    placed_at: o.placed_at,
                    status: o.status,
                    quantity: l.quantity,
                    unit_price: l.unit_price.clone(),
                    user_id: o.user_id.clone(),
                    user_name: None,
                    user_email: None,
                    product_name: self.products.get(&l.product_id).map(|(n, _)| n.clone()),
                    brand_name: None,
                    category_name: None,
                    supplier_name: None,
                })
            })
            .collect()
    }
}

fn step(order: &mut OrderRow, status: OrderStatus, at: i64, reason: &str) {
    order.status = status;
    order.updated_at = at;
    order.history.push(StatusChange { status, at, reason: reason.into() });
}

fn new_payment(order: &OrderRow, ts: i64) -> PaymentRow {
    PaymentRow {
        order_id: order.order_id.clone(),
        user_id: order.user_id.clone(),
        payment_id: None,
        status: "pending".into(),
        amount: order.total.clone(),
        captured_minor: 0,
        refunded_minor: 0,
        failure_reason: String::new(),
        authorization_code: String::new(),
        refunds: vec![],
        updated_at: ts,
    }
}

fn left_to_refund(pay: &PaymentRow) -> i64 {
    pay.captured_minor - pay.refunded_minor - pay.refunds.iter().filter(|r| r.status == "pending").map(|r| r.amount.amount_minor).sum::<i64>()
}

/// The id of a refund the saga starts itself: derived from the order, by contract.
fn derived(kind: &str, order: &Id) -> Id {
    let name = format!("{kind}\n{order}");
    Id::from(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string().as_str())
}

fn refund(pay: &mut PaymentRow, refund_id: Id, reason: &str, amount: i64, ts: i64) {
    pay.refunds.push(RefundEntry {
        refund_id,
        amount: Money::new(amount, &pay.amount.currency),
        status: "pending".into(),
        reason: reason.into(),
        at: ts,
    });
}
