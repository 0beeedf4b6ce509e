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
use crate::views::WarehouseRow;

/// How many recent event ids each partition remembers for de-duplication. Duplicates come
/// from producer retries, which land close to the original.
pub const DEDUP_WINDOW: usize = 10_000;

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

/// Changes to the dataflow's base collections produced by applying records.
#[derive(Default, Debug)]
pub struct Changes {
    pub products: Vec<((Id, ProductBase), isize)>,
    pub categories: Vec<((Id, String), isize)>,
    pub brands: Vec<((Id, String), isize)>,
    pub suppliers: Vec<((Id, String), isize)>,
    pub warehouses: Vec<((Id, WarehouseRow), isize)>,
    pub stock: Vec<(((Id, Id), i64), isize)>,
    /// (user, product) with the weight added to the interaction matrix as the difference.
    pub interactions: Vec<((Id, Id), isize)>,
    /// (user, product) with units ordered (negative when an order is cancelled).
    pub purchases: Vec<((Id, Id), isize)>,
    /// Product, weight, and the event time at which the weight leaves the trending window.
    pub trending: Vec<(Id, isize, i64)>,
    /// Events the pipeline itself decides (published to `decisions`).
    pub decisions: Vec<Envelope>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
            && self.categories.is_empty()
            && self.brands.is_empty()
            && self.suppliers.is_empty()
            && self.warehouses.is_empty()
            && self.stock.is_empty()
            && self.interactions.is_empty()
            && self.purchases.is_empty()
            && self.trending.is_empty()
            && self.decisions.is_empty()
    }
}

#[derive(Default, Debug, Clone, PartialEq)]
pub struct PartitionState {
    pub next_offset: u64,
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
    Envelope { v: shopflow_events::ENVELOPE_VERSION, id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &name), ts: cause.ts, event }
}

impl PartitionState {
    /// Applies one decoded record at `offset`. Returns false if it was a duplicate.
    pub fn apply(&mut self, offset: u64, envelope: &Envelope, weights: &InteractionWeights, out: &mut Changes) -> bool {
        self.next_offset = offset + 1;
        if !self.remember(envelope.id) {
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
            Event::ProductViewed(e) => self.interact(envelope.ts, &e.user_id, &e.product_id, weights.view, out),
            Event::RecommendationClicked(e) => {
                self.interact(envelope.ts, &e.user_id, &e.product_id, weights.recommendation_click, out)
            }
            Event::CartItemAdded(e) => self.interact(envelope.ts, &e.user_id, &e.product_id, weights.cart_add, out),
            Event::OrderPlaced(e) => {
                if !self.orders.contains_key(&e.order_id) {
                    let mut lines = Vec::new();
                    for line in &e.lines {
                        let quantity = i64::from(line.quantity);
                        self.interact(envelope.ts, &e.user_id, &line.product_id, weights.purchase * quantity, out);
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
        }
    }

    pub fn from_snapshot(s: PartitionSnapshot) -> Self {
        Self {
            next_offset: s.next_offset,
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

/// The serialised state of one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    pub next_offset: u64,
    pub products: Vec<(Id, ProductBase)>,
    pub categories: Vec<(Id, String)>,
    pub brands: Vec<(Id, String)>,
    pub suppliers: Vec<(Id, String)>,
    pub warehouses: Vec<(Id, WarehouseRow)>,
    pub stock: Vec<((Id, Id), i64)>,
    #[serde(default)]
    pub interactions: Vec<((Id, Id), i64)>,
    #[serde(default)]
    pub purchases: Vec<((Id, Id), i64)>,
    #[serde(default)]
    pub orders: Vec<(Id, Vec<(Id, Id, i64)>)>,
    #[serde(default)]
    pub window: Vec<(i64, Id, i64)>,
    pub recent: Vec<uuid::Uuid>,
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
    fn snapshot_round_trips_and_reinserts_every_row() {
        let mut state = PartitionState::default();
        let mut out = Changes::default();
        state.apply(0, &env(created("p1", "a")), &W, &mut out);
        state.apply(1, &env(created("p2", "b")), &W, &mut out);
        state.apply(2, &env(Event::ProductDeleted(ProductDeleted { product_id: "p1".into() })), &W, &mut out);
        let snapshot = state.to_snapshot();
        let bytes = postcard::to_allocvec(&snapshot).unwrap();
        let restored = PartitionState::from_snapshot(postcard::from_bytes(&bytes).unwrap());
        assert_eq!(restored, state);
        let rows = restored.as_insertions().products;
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].0).0.as_str(), "p2");
    }
}
