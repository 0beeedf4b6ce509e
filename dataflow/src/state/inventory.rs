//! Inventory's share of a partition of `inventory` (key: product id): warehouses, stock on
//! hand per (product, warehouse), and the holds orders have on it.
//!
//! **No interleaving of orders can oversell.** Every hold request for a product lands in this
//! one partition and is decided here, in offset order, against what is available then: on
//! hand minus held, over all the product's warehouses. A request is granted whole or refused;
//! an adjustment may not take units that are held. The decision is a function of the log
//! alone, so a replay decides alike.
//!
//! **Allocation across warehouses.** The one warehouse that can ship the whole request and
//! has the most available units (one parcel, and the fullest stock drains first, like
//! Saleor's "prioritize high stock"); if none can, a split over the fullest first. Ties go to
//! the smaller warehouse id, so the allocation is deterministic.
//!
//! Holds are remembered by (order, product), so a repeated request, release or commit changes
//! nothing. Settled holds (released, committed, refused) are forgotten after
//! [`SETTLED_RETENTION_MS`] of log time; a request older than that is stale and ignored (it
//! can only be a replayed copy of one decided long ago).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use shopflow_events::types::{Hold, HoldDecided, HoldRequested, StockAdjustmentRejected};
use shopflow_events::{Envelope, Event, Id};

use super::fold::{decision, rows, upsert};
use super::{Fold, StatePart};
use crate::base::Changes;
use crate::views::WarehouseRow;

/// How long (log time) a settled hold is remembered.
pub const SETTLED_RETENTION_MS: i64 = 24 * 60 * 60 * 1_000;

/// Units of one product in one warehouse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub on_hand: i64,
    pub held: i64,
}

impl Level {
    fn available(self) -> i64 {
        self.on_hand - self.held
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldState {
    Held,
    Refused,
    Released,
    Committed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldEntry {
    pub state: HoldState,
    pub allocations: Vec<(Id, i64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryState {
    pub(crate) warehouses: HashMap<Id, WarehouseRow>,
    /// Per product, per warehouse (sorted).
    pub(crate) levels: HashMap<Id, BTreeMap<Id, Level>>,
    /// By (order, product).
    pub(crate) holds: HashMap<(Id, Id), HoldEntry>,
    /// Settled holds in the order they settled, for forgetting them.
    settled: VecDeque<(i64, (Id, Id))>,
    /// The latest event time seen: the clock of forgetting.
    clock: i64,
}

impl StatePart for InventoryState {
    const SECTION: &'static str = "inventory";
    const VERSION: u32 = 2;

    fn apply(&mut self, _: &Fold, envelope: &Envelope, out: &mut Changes) {
        self.clock = self.clock.max(envelope.ts);
        self.forget_settled();
        match &envelope.event {
            Event::WarehouseCreated(e) => {
                let row = WarehouseRow { warehouse_id: e.warehouse_id.clone(), name: e.name.clone(), location: e.location.clone() };
                upsert(&mut self.warehouses, e.warehouse_id.clone(), Some(row), &mut out.warehouses);
            }
            Event::StockReceived(e) => {
                self.change(&e.product_id, &e.warehouse_id, i64::from(e.quantity), 0, out);
            }
            Event::StockAdjusted(e) => {
                let level = self.level(&e.product_id, &e.warehouse_id);
                if level.on_hand + e.delta < level.held {
                    out.decisions.push(decision(envelope, Event::StockAdjustmentRejected(StockAdjustmentRejected {
                        event_id: envelope.id,
                        product_id: e.product_id.clone(),
                        warehouse_id: e.warehouse_id.clone(),
                        delta: e.delta,
                        available: level.available(),
                    })));
                } else {
                    self.change(&e.product_id, &e.warehouse_id, e.delta, 0, out);
                }
            }
            Event::HoldRequested(e) => self.request(envelope, e, out),
            Event::HoldReleased(e) => self.settle(&e.order_id, &e.product_id, HoldState::Released, out),
            Event::HoldCommitted(e) => self.settle(&e.order_id, &e.product_id, HoldState::Committed, out),
            _ => {}
        }
    }

    fn insertions(&self, out: &mut Changes) {
        out.warehouses.extend(rows(&self.warehouses));
        for (product, warehouses) in &self.levels {
            for (warehouse, level) in warehouses {
                let key = (product.clone(), warehouse.clone());
                if level.on_hand != 0 {
                    out.stock.push(((key.clone(), level.on_hand), 1));
                }
                out.stock_levels.push(((key, (level.on_hand, level.held)), 1));
            }
        }
    }
}

impl InventoryState {
    /// The state of on-hand levels alone (older snapshot formats had nothing else).
    pub(crate) fn from_stock(warehouses: HashMap<Id, WarehouseRow>, stock: Vec<((Id, Id), i64)>) -> Self {
        let mut levels: HashMap<Id, BTreeMap<Id, Level>> = HashMap::new();
        for ((product, warehouse), on_hand) in stock {
            levels.entry(product).or_default().insert(warehouse, Level { on_hand, held: 0 });
        }
        Self { warehouses, levels, ..Self::default() }
    }

    fn level(&self, product: &Id, warehouse: &Id) -> Level {
        self.levels.get(product).and_then(|w| w.get(warehouse)).copied().unwrap_or_default()
    }

    /// Changes one level by `on_hand` and `held` units, emitting both views' differences.
    fn change(&mut self, product: &Id, warehouse: &Id, on_hand: i64, held: i64, out: &mut Changes) {
        let old = self.level(product, warehouse);
        let new = Level { on_hand: old.on_hand + on_hand, held: old.held + held };
        let key = (product.clone(), warehouse.clone());
        if old.on_hand != new.on_hand {
            if old.on_hand != 0 {
                out.stock.push(((key.clone(), old.on_hand), -1));
            }
            if new.on_hand != 0 {
                out.stock.push(((key.clone(), new.on_hand), 1));
            }
        }
        if old != Level::default() {
            out.stock_levels.push(((key.clone(), (old.on_hand, old.held)), -1));
        }
        let warehouses = self.levels.entry(product.clone()).or_default();
        if new == Level::default() {
            warehouses.remove(warehouse);
            if warehouses.is_empty() {
                self.levels.remove(product);
            }
        } else {
            warehouses.insert(warehouse.clone(), new);
            out.stock_levels.push(((key, (new.on_hand, new.held)), 1));
        }
    }

    fn request(&mut self, cause: &Envelope, e: &HoldRequested, out: &mut Changes) {
        let key = (e.order_id.clone(), e.product_id.clone());
        if self.holds.contains_key(&key) || cause.ts < self.clock - SETTLED_RETENTION_MS {
            return; // answered already, or a stale copy of a request answered long ago
        }
        let levels: Vec<(Id, i64)> = self
            .levels
            .get(&e.product_id)
            .map(|w| w.iter().map(|(id, l)| (id.clone(), l.available())).filter(|(_, a)| *a > 0).collect())
            .unwrap_or_default();
        let available: i64 = levels.iter().map(|(_, a)| a).sum();
        let wanted = i64::from(e.quantity);
        let granted = wanted <= available;
        let allocations = if granted { allocate(levels, wanted) } else { Vec::new() };
        for (warehouse, units) in &allocations {
            self.change(&e.product_id, warehouse, 0, *units, out);
        }
        let state = if granted { HoldState::Held } else { HoldState::Refused };
        if !granted {
            self.settled.push_back((self.clock, key.clone()));
        }
        let holds = allocations
            .iter()
            .map(|(warehouse, units)| Hold { product_id: e.product_id.clone(), warehouse_id: warehouse.clone(), quantity: *units as u32 })
            .collect();
        self.holds.insert(key, HoldEntry { state, allocations });
        out.decisions.push(decision(cause, Event::HoldDecided(HoldDecided {
            order_id: e.order_id.clone(),
            user_id: e.user_id.clone(),
            product_id: e.product_id.clone(),
            granted,
            holds,
            available,
        })));
    }

    /// Releases (back to available) or commits (out of the stock: shipped) a held hold.
    fn settle(&mut self, order: &Id, product: &Id, to: HoldState, out: &mut Changes) {
        let key = (order.clone(), product.clone());
        let entry = self.holds.entry(key.clone()).or_insert(HoldEntry { state: to, allocations: Vec::new() });
        if entry.state != HoldState::Held {
            // Unknown (then remembered as settled, so a late request changes nothing) or settled.
            if entry.allocations.is_empty() && entry.state == to {
                self.settled.push_back((self.clock, key));
            }
            return;
        }
        entry.state = to;
        let allocations = entry.allocations.clone();
        let shipped = if to == HoldState::Committed { -1 } else { 0 };
        for (warehouse, units) in allocations {
            self.change(product, &warehouse, shipped * units, -units, out);
        }
        self.settled.push_back((self.clock, key));
    }

    fn forget_settled(&mut self) {
        let horizon = self.clock - SETTLED_RETENTION_MS;
        while self.settled.front().is_some_and(|(ts, _)| *ts < horizon) {
            if let Some((_, key)) = self.settled.pop_front() {
                if self.holds.get(&key).is_some_and(|h| h.state != HoldState::Held) {
                    self.holds.remove(&key);
                }
            }
        }
    }
}

/// Where `wanted` units come from, given (warehouse, available) in warehouse id order:
/// the fullest warehouse that can ship them all, else a split over the fullest first.
fn allocate(mut levels: Vec<(Id, i64)>, wanted: i64) -> Vec<(Id, i64)> {
    levels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if let Some((warehouse, _)) = levels.first().filter(|(_, a)| *a >= wanted) {
        return vec![(warehouse.clone(), wanted)];
    }
    let mut left = wanted;
    let mut out = Vec::new();
    for (warehouse, available) in levels {
        if left == 0 {
            break;
        }
        let take = available.min(left);
        out.push((warehouse, take));
        left -= take;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[(&str, i64)]) -> Vec<(Id, i64)> {
        v.iter().map(|(w, a)| (Id::from(*w), *a)).collect()
    }

    #[test]
    fn one_parcel_from_the_fullest_warehouse_that_covers_the_line_else_a_split_fullest_first() {
        assert_eq!(allocate(ids(&[("a", 5), ("b", 9), ("c", 9)]), 4), ids(&[("b", 4)]), "ties go to the smaller id");
        assert_eq!(allocate(ids(&[("a", 5), ("b", 3), ("c", 4)]), 8), ids(&[("a", 5), ("c", 3)]));
    }
}
