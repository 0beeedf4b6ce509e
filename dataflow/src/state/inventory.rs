//! Inventory's share of a partition: warehouses and stock per (product, warehouse). An
//! adjustment that would take a level below zero is refused, as a decision.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shopflow_events::types::StockAdjustmentRejected;
use shopflow_events::{Envelope, Event, Id};

use super::fold::{decision, rows, upsert};
use super::{Fold, StatePart};
use crate::base::Changes;
use crate::views::WarehouseRow;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryState {
    pub(crate) warehouses: HashMap<Id, WarehouseRow>,
    pub(crate) stock: HashMap<(Id, Id), i64>,
}

impl StatePart for InventoryState {
    const SECTION: &'static str = "inventory";
    const VERSION: u32 = 1;

    fn apply(&mut self, _: &Fold, envelope: &Envelope, out: &mut Changes) {
        match &envelope.event {
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
            _ => {}
        }
    }

    fn insertions(&self, out: &mut Changes) {
        out.warehouses.extend(rows(&self.warehouses));
        out.stock.extend(rows(&self.stock));
    }
}
