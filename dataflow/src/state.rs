//! The per-partition state machine in front of the dataflow. Every entity lives in exactly one
//! partition (its key's), so applying that partition's records in offset order is a
//! deterministic upsert: it turns "product updated" into "retract old row, insert new row",
//! refuses stock adjustments that would go negative, and drops events already applied
//! (the same event id seen again, e.g. a producer retry).

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use shopflow_events::types::StockAdjustmentRejected;
use shopflow_events::{Envelope, Event, Id, Money};

use crate::jobs::weights::InteractionWeights;
use crate::views::{RequestRow, WarehouseRow};

/// How many recent event ids each partition remembers for de-duplication. Duplicates come
/// from producer retries, which land close to the original.
pub const DEDUP_WINDOW: usize = 10_000;

/// How long, in event time, a partition remembers the writes made under an idempotency key:
/// a repeat within this time is dropped wherever it lands (clients are promised 24 h).
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 60 * 60 * 1_000;

/// Length of the trending window in event time.
pub const TRENDING_WINDOW_MS: i64 = 60 * 60 * 1_000;

/// A product's own columns, before the catalog job joins in names and stock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductBase {
    pub name: String,
    pub description: String,
    pub price: Money,
    pub sku: String,
    pub category_id: Id,
    pub brand_id: Id,
    pub supplier_id: Id,
}

pub use crate::base::Changes;

#[derive(Default, Debug, Clone, PartialEq)]
pub struct PartitionState {
    /// The source partition this state belongs to (where requests' first records landed).
    origin: (String, u32),
    pub next_offset: u64,
    /// The `_remap` offset from which entries may describe records beyond this state.
    pub remap_next: u64,
    /// Latest event time applied: the clock of event-time expiry, a function of the log.
    latest_ts: i64,
    /// Writes under an idempotency key, by event id, for `IDEMPOTENCY_RETENTION_MS`.
    requests: HashMap<uuid::Uuid, RequestRow>,
    /// The same, in arrival order, for expiry.
    request_order: VecDeque<(i64, uuid::Uuid)>,
    products: HashMap<Id, ProductBase>,
    categories: HashMap<Id, String>,
    brands: HashMap<Id, String>,
    suppliers: HashMap<Id, String>,
    warehouses: HashMap<Id, WarehouseRow>,
    stock: HashMap<(Id, Id), i64>,
    /// This partition's share of the interaction matrix and of the purchases.
    interactions: HashMap<(Id, Id), i64>,
    purchases: HashMap<(Id, Id), i64>,
    /// Open orders' lines, so a cancellation can take its purchases back.
    orders: HashMap<Id, Vec<(Id, Id, i64)>>,
    /// Interactions still inside the trending window: (event time, product, weight).
    window: VecDeque<(i64, Id, i64)>,
    recent: VecDeque<uuid::Uuid>,
    recent_set: HashSet<uuid::Uuid>,
}

fn upsert<K: Clone + Eq + std::hash::Hash, V: Clone + PartialEq>(
    map: &mut HashMap<K, V>,
    key: K,
    value: Option<V>,
    out: &mut Vec<((K, V), isize)>,
) {
    let old = match &value {
        Some(v) => map.insert(key.clone(), v.clone()),
        None => map.remove(&key),
    };
    if old == value {
        return;
    }
    if let Some(old) = old {
        out.push(((key.clone(), old), -1));
    }
    if let Some(new) = value {
        out.push(((key, new), 1));
    }
}

/// Adds `delta` to a summed quantity, emitting the change as a difference.
fn add(map: &mut HashMap<(Id, Id), i64>, key: (Id, Id), delta: i64, out: &mut Vec<((Id, Id), isize)>) {
    if delta == 0 {
        return;
    }
    let total = map.entry(key.clone()).or_insert(0);
    *total += delta;
    if *total == 0 {
        map.remove(&key);
    }
    out.push((key, delta as isize));
}

/// A decision about `cause`. Its id and time derive from the cause, so replaying the log
/// publishes the same decision again (which consumers drop by id), never a second one.
fn decision(cause: &Envelope, event: Event) -> Envelope {
    let name = [cause.id.as_bytes().as_slice(), event.type_name().as_bytes()].concat();
    Envelope { v: shopflow_events::ENVELOPE_VERSION, id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &name), ts: cause.ts, request: None, event }
}

impl PartitionState {
    /// An empty state for one source partition.
    pub fn new(topic: &str, partition: u32) -> Self {
        Self { origin: (topic.to_owned(), partition), ..Self::default() }
    }

    /// Applies one decoded record at `offset`. Returns false if it was a duplicate.
    pub fn apply(&mut self, offset: u64, envelope: &Envelope, weights: &InteractionWeights, out: &mut Changes) -> bool {
        self.next_offset = offset + 1;
        self.latest_ts = self.latest_ts.max(envelope.ts);
        self.forget_requests(out);
        let fresh = match &envelope.request {
            Some(fingerprint) => self.remember_request(offset, envelope, fingerprint, out),
            None => self.remember(envelope.id),
        };
        if !fresh {
            return false;
        }
        match &envelope.event {
            Event::ProductCreated(e) => {
                let base = ProductBase {
                    name: e.name.clone(),
                    description: e.description.clone(),
                    price: e.price.clone(),
                    sku: e.sku.clone(),
                    category_id: e.category_id.clone(),
                    brand_id: e.brand_id.clone(),
                    supplier_id: e.supplier_id.clone(),
                };
                upsert(&mut self.products, e.product_id.clone(), Some(base), &mut out.products);
            }
            Event::ProductUpdated(e) => {
                // An update of a product that does not exist (deleted, or never created) has
                // nothing to update; creating it from a partial record would invent columns.
                if let Some(current) = self.products.get(&e.product_id) {
                    let mut next = current.clone();
                    if let Some(v) = &e.name { next.name = v.clone(); }
                    if let Some(v) = &e.description { next.description = v.clone(); }
                    if let Some(v) = &e.price { next.price = v.clone(); }
                    if let Some(v) = &e.sku { next.sku = v.clone(); }
                    if let Some(v) = &e.category_id { next.category_id = v.clone(); }
                    if let Some(v) = &e.brand_id { next.brand_id = v.clone(); }
                    if let Some(v) = &e.supplier_id { next.supplier_id = v.clone(); }
                    upsert(&mut self.products, e.product_id.clone(), Some(next), &mut out.products);
                }
            }
            Event::ProductDeleted(e) => upsert(&mut self.products, e.product_id.clone(), None, &mut out.products),
            Event::CategoryUpserted(e) => upsert(&mut self.categories, e.id.clone(), Some(e.name.clone()), &mut out.categories),
            Event::BrandUpserted(e) => upsert(&mut self.brands, e.id.clone(), Some(e.name.clone()), &mut out.brands),
            Event::SupplierUpserted(e) => upsert(&mut self.suppliers, e.id.clone(), Some(e.name.clone()), &mut out.suppliers),
            Event::WarehouseCreated(e) => {
                let row = WarehouseRow { warehouse_id: e.warehouse_id.clone(), name: e.name.clone(), location: e.location.clone() };
                upsert(&mut self.warehouses, e.warehouse_id.clone(), Some(row), &mut out.warehouses);
            }
            Event::StockReceived(e) => {
                let key = (e.product_id.clone(), e.warehouse_id.clone());
                let level = self.stock.get(&key).copied().unwrap_or(0) + i64::from(e.quantity);
                upsert(&mut self.stock, key, Some(level), &mut out.stock);
            }
            Event::StockAdjusted(e) => {
                let key = (e.product_id.clone(), e.warehouse_id.clone());
                let available = self.stock.get(&key).copied().unwrap_or(0);
                let level = available + e.delta;
                if level < 0 {
                    out.decisions.push(decision(envelope, Event::StockAdjustmentRejected(StockAdjustmentRejected {
                        event_id: envelope.id,
                        product_id: e.product_id.clone(),
                        warehouse_id: e.warehouse_id.clone(),
                        delta: e.delta,
                        available,
                    })));
                } else {
                    let value = if level == 0 { None } else { Some(level) };
                    upsert(&mut self.stock, key, value, &mut out.stock);
                }
            }
            Event::ProductViewed(_) | Event::RecommendationClicked(_) | Event::CartItemAdded(_) => {
                for (user, product, weight) in weights.interactions(&envelope.event) {
                    self.interact(envelope.ts, user, product, weight, out);
                }
            }
            Event::OrderPlaced(e) => {
                if !self.orders.contains_key(&e.order_id) {
                    for (user, product, weight) in weights.interactions(&envelope.event) {
                        self.interact(envelope.ts, user, product, weight, out);
                    }
                    let mut lines = Vec::new();
                    for line in &e.lines {
                        let quantity = i64::from(line.quantity);
                        add(&mut self.purchases, (e.user_id.clone(), line.product_id.clone()), quantity, &mut out.purchases);
                        lines.push((e.user_id.clone(), line.product_id.clone(), quantity));
                    }
                    self.orders.insert(e.order_id.clone(), lines);
                }
            }
            Event::OrderCancelled(e) => {
                for (user, product, quantity) in self.orders.remove(&e.order_id).unwrap_or_default() {
                    add(&mut self.purchases, (user, product), -quantity, &mut out.purchases);
                }
            }
            // Other events feed jobs that later issues add; they are consumed and skipped.
            _ => {}
        }
        true
    }

    fn interact(&mut self, ts: i64, user: &Id, product: &Id, weight: i64, out: &mut Changes) {
        add(&mut self.interactions, (user.clone(), product.clone()), weight, &mut out.interactions);
        self.window.push_back((ts, product.clone(), weight));
        out.trending.push((product.clone(), weight as isize, ts + TRENDING_WINDOW_MS));
    }

    /// Records the first write under an idempotency key; false for a repeat, whatever its body
    /// (the first one wins; the serving layer refuses a different body with the first's row).
    fn remember_request(&mut self, offset: u64, envelope: &Envelope, fingerprint: &str, out: &mut Changes) -> bool {
        if self.requests.contains_key(&envelope.id) {
            return false;
        }
        let row = RequestRow {
            event_id: envelope.id,
            fingerprint: fingerprint.to_owned(),
            topic: self.origin.0.clone(),
            partition: self.origin.1,
            offset,
            ts: envelope.ts,
        };
        self.requests.insert(envelope.id, row.clone());
        self.request_order.push_back((envelope.ts, envelope.id));
        out.requests.push(((envelope.id, row), 1));
        true
    }

    /// Forgets the requests older than the retention, measured on the log's own clock.
    fn forget_requests(&mut self, out: &mut Changes) {
        let horizon = self.latest_ts.saturating_sub(IDEMPOTENCY_RETENTION_MS);
        while self.request_order.front().is_some_and(|(ts, _)| *ts < horizon) {
            let Some((_, id)) = self.request_order.pop_front() else { break };
            if let Some(row) = self.requests.remove(&id) {
                out.requests.push(((id, row), -1));
            }
        }
    }

    /// Forgets interactions that left the trending window before `now` (event time).
    pub fn prune_window(&mut self, now: i64) {
        self.window.retain(|(ts, _, _)| ts + TRENDING_WINDOW_MS > now);
    }

    fn remember(&mut self, id: uuid::Uuid) -> bool {
        if !self.recent_set.insert(id) {
            return false;
        }
        self.recent.push_back(id);
        if self.recent.len() > DEDUP_WINDOW {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        true
    }

    /// Every current row as insertions: how a restored partition re-enters the dataflow.
    pub fn as_insertions(&self) -> Changes {
        fn rows<K: Clone, V: Clone>(map: &HashMap<K, V>) -> Vec<((K, V), isize)> {
            map.iter().map(|(k, v)| ((k.clone(), v.clone()), 1)).collect()
        }
        Changes {
            products: rows(&self.products),
            categories: rows(&self.categories),
            brands: rows(&self.brands),
            suppliers: rows(&self.suppliers),
            warehouses: rows(&self.warehouses),
            stock: rows(&self.stock),
            interactions: self.interactions.iter().map(|(k, w)| (k.clone(), *w as isize)).collect(),
            purchases: self.purchases.iter().map(|(k, q)| (k.clone(), *q as isize)).collect(),
            trending: self.window.iter().map(|(ts, p, w)| (p.clone(), *w as isize, ts + TRENDING_WINDOW_MS)).collect(),
            requests: self.requests.iter().map(|(id, row)| ((*id, row.clone()), 1)).collect(),
            decisions: Vec::new(),
        }
    }

    pub fn to_snapshot(&self) -> PartitionSnapshot {
        // Unsorted: taking a snapshot stalls the worker, and nothing needs equal bytes.
        fn sorted<K: Clone, V: Clone>(map: &HashMap<K, V>) -> Vec<(K, V)> {
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        PartitionSnapshot {
            next_offset: self.next_offset,
            remap_next: self.remap_next,
            latest_ts: self.latest_ts,
            products: sorted(&self.products),
            categories: sorted(&self.categories),
            brands: sorted(&self.brands),
            suppliers: sorted(&self.suppliers),
            warehouses: sorted(&self.warehouses),
            stock: sorted(&self.stock),
            interactions: sorted(&self.interactions),
            purchases: sorted(&self.purchases),
            orders: sorted(&self.orders),
            window: self.window.iter().cloned().collect(),
            recent: self.recent.iter().copied().collect(),
            // In arrival order, so expiry continues where it stopped.
            requests: self.request_order.iter().filter_map(|(_, id)| self.requests.get(id).cloned()).collect(),
        }
    }

    pub fn from_snapshot(topic: &str, partition: u32, s: PartitionSnapshot) -> Self {
        Self {
            origin: (topic.to_owned(), partition),
            next_offset: s.next_offset,
            remap_next: s.remap_next,
            latest_ts: s.latest_ts,
            request_order: s.requests.iter().map(|r| (r.ts, r.event_id)).collect(),
            requests: s.requests.into_iter().map(|r| (r.event_id, r)).collect(),
            products: s.products.into_iter().collect(),
            categories: s.categories.into_iter().collect(),
            brands: s.brands.into_iter().collect(),
            suppliers: s.suppliers.into_iter().collect(),
            warehouses: s.warehouses.into_iter().collect(),
            stock: s.stock.into_iter().collect(),
            interactions: s.interactions.into_iter().collect(),
            purchases: s.purchases.into_iter().collect(),
            orders: s.orders.into_iter().collect(),
            window: s.window.into_iter().collect(),
            recent_set: s.recent.iter().copied().collect(),
            recent: s.recent.into_iter().collect(),
        }
    }
}

/// The serialised state of one partition (snapshot format 2; `crate::snapshot` reads older
/// formats and migrates them). postcard is not self-describing: a new field is a new format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    pub next_offset: u64,
    pub remap_next: u64,
    pub latest_ts: i64,
    pub products: Vec<(Id, ProductBase)>,
    pub categories: Vec<(Id, String)>,
    pub brands: Vec<(Id, String)>,
    pub suppliers: Vec<(Id, String)>,
    pub warehouses: Vec<(Id, WarehouseRow)>,
    pub stock: Vec<((Id, Id), i64)>,
    pub interactions: Vec<((Id, Id), i64)>,
    pub purchases: Vec<((Id, Id), i64)>,
    pub orders: Vec<(Id, Vec<(Id, Id, i64)>)>,
    pub window: Vec<(i64, Id, i64)>,
    pub recent: Vec<uuid::Uuid>,
    pub requests: Vec<RequestRow>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopflow_events::types::*;

    const W: InteractionWeights = InteractionWeights { view: 1, recommendation_click: 2, cart_add: 3, purchase: 5 };

    fn env(event: Event) -> Envelope {
        Envelope::new(event)
    }

    fn created(id: &str, name: &str) -> Event {
        Event::ProductCreated(ProductCreated {
            product_id: id.into(),
            name: name.into(),
            description: String::new(),
            price: Money::new(100, "EUR"),
            sku: String::new(),
            category_id: "c".into(),
            brand_id: "b".into(),
            supplier_id: "s".into(),
        })
    }

    #[test]
    fn update_retracts_the_old_row_and_inserts_the_new() {
        let mut state = PartitionState::default();
        let mut out = Changes::default();
        state.apply(0, &env(created("p", "old")), &W, &mut out);
        let update = Event::ProductUpdated(ProductUpdated { product_id: "p".into(), name: Some("new".into()), ..Default::default() });
        state.apply(1, &env(update), &W, &mut out);
        let names: Vec<(String, isize)> = out.products.iter().map(|((_, p), d)| (p.name.clone(), *d)).collect();
        assert_eq!(names, vec![("old".into(), 1), ("old".into(), -1), ("new".into(), 1)]);
        assert_eq!(state.next_offset, 2);
    }

    #[test]
    fn a_duplicate_event_id_is_applied_once() {
        let mut state = PartitionState::default();
        let mut out = Changes::default();
        let receipt = env(Event::StockReceived(StockReceived { product_id: "p".into(), warehouse_id: "w".into(), quantity: 5 }));
        assert!(state.apply(0, &receipt, &W, &mut out));
        assert!(!state.apply(1, &receipt, &W, &mut out));
        assert_eq!(out.stock, vec![((("p".into(), "w".into()), 5), 1)]);
    }

    #[test]
    fn an_adjustment_below_zero_is_rejected_as_a_decision_replayed_under_the_same_id() {
        let receipt = env(Event::StockReceived(StockReceived { product_id: "p".into(), warehouse_id: "w".into(), quantity: 2 }));
        let adjustment = env(Event::StockAdjusted(StockAdjusted { product_id: "p".into(), warehouse_id: "w".into(), delta: -3, reason: "count".into() }));
        let run = || {
            let mut state = PartitionState::default();
            let mut out = Changes::default();
            state.apply(0, &receipt, &W, &mut out);
            state.apply(1, &adjustment, &W, &mut out);
            out
        };
        let (first, replay) = (run(), run());
        assert_eq!(first.stock.len(), 1, "the level stays at 2");
        assert!(matches!(&first.decisions[0].event, Event::StockAdjustmentRejected(r) if r.available == 2 && r.delta == -3));
        assert_eq!(first.decisions, replay.decisions);
    }

    #[test]
    fn interactions_weigh_by_kind_and_a_cancelled_order_takes_its_purchases_back() {
        let mut state = PartitionState::default();
        let mut out = Changes::default();
        let user = Id::from("u");
        let viewed = env(Event::ProductViewed(ProductViewed { user_id: user.clone(), product_id: "p".into() }));
        let placed = env(Event::OrderPlaced(OrderPlaced {
            order_id: "o".into(),
            user_id: user.clone(),
            lines: vec![OrderLine { product_id: "p".into(), quantity: 2, unit_price: Money::new(100, "EUR") }],
            address_id: "a".into(),
            idempotency_key: "k".into(),
            payment_token: "tok_visa".into(),
        }));
        let cancelled = env(Event::OrderCancelled(OrderCancelled { order_id: "o".into(), user_id: user.clone(), reason: String::new() }));
        state.apply(0, &viewed, &W, &mut out);
        state.apply(1, &placed, &W, &mut out);
        state.apply(2, &cancelled, &W, &mut out);
        let key = (user.clone(), Id::from("p"));
        assert_eq!(out.interactions, vec![(key.clone(), 1), (key.clone(), 10)], "a view, then 2 units at weight 5");
        assert_eq!(out.purchases, vec![(key.clone(), 2), (key.clone(), -2)]);
        assert_eq!(out.trending[1], (Id::from("p"), 10, placed.ts + TRENDING_WINDOW_MS));
        let restored = state.as_insertions();
        assert_eq!(restored.interactions, vec![(key, 11)]);
        assert!(restored.purchases.is_empty());
    }

    #[test]
    fn a_keyed_write_is_applied_once_for_a_day_of_event_time_then_forgotten() {
        let mut state = PartitionState::new("inventory", 2);
        let mut out = Changes::default();
        let id = shopflow_events::idempotent_event_id("admin", "receipt-1");
        let receipt = |quantity| Event::StockReceived(StockReceived { product_id: "p".into(), warehouse_id: "w".into(), quantity });
        let first = Envelope::idempotent(receipt(5), id, "fp-5".into());
        assert!(state.apply(0, &first, &W, &mut out));
        // A repeat, and a different body under the same key: both dropped, the first wins.
        assert!(!state.apply(1, &Envelope { ts: first.ts + 1_000, ..first.clone() }, &W, &mut out));
        assert!(!state.apply(2, &Envelope::idempotent(receipt(9), id, "fp-9".into()), &W, &mut out));
        assert_eq!(out.stock, vec![((("p".into(), "w".into()), 5), 1)]);
        assert_eq!(out.requests.len(), 1);
        let ((_, row), _) = &out.requests[0];
        assert_eq!((row.topic.as_str(), row.partition, row.offset, row.fingerprint.as_str()), ("inventory", 2, 0, "fp-5"));

        // Event time, not wall-clock time, expires it: a later unrelated event moves the clock.
        let later = Envelope { ts: first.ts + IDEMPOTENCY_RETENTION_MS + 1, ..env(receipt(1)) };
        let mut out = Changes::default();
        state.apply(3, &later, &W, &mut out);
        assert_eq!(out.requests.len(), 1);
        assert_eq!(out.requests[0].1, -1, "the key's row is retracted");
    }

    #[test]
    fn snapshot_round_trips_and_reinserts_every_row() {
        let mut state = PartitionState::default();
        let mut out = Changes::default();
        state.apply(0, &env(created("p1", "a")), &W, &mut out);
        state.apply(1, &env(created("p2", "b")), &W, &mut out);
        state.apply(2, &env(Event::ProductDeleted(ProductDeleted { product_id: "p1".into() })), &W, &mut out);
        let snapshot = state.to_snapshot();
        let bytes = postcard::to_allocvec(&snapshot).unwrap();
        let restored = PartitionState::from_snapshot("", 0, postcard::from_bytes(&bytes).unwrap());
        assert_eq!(restored, state);
        let rows = restored.as_insertions().products;
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].0).0.as_str(), "p2");
    }
}
