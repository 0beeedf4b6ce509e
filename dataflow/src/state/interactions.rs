//! Shoppers' share of a partition: their row of the interaction matrix, their purchases (open
//! orders' lines, so a cancellation takes them back) and the interactions still inside the
//! trending window.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use shopflow_events::{Envelope, Event, Id};

use super::fold::add;
use super::{Fold, StatePart};
use crate::base::Changes;

/// Length of the trending window in event time.
pub const TRENDING_WINDOW_MS: i64 = 60 * 60 * 1_000;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InteractionState {
    pub(crate) interactions: HashMap<(Id, Id), i64>,
    pub(crate) purchases: HashMap<(Id, Id), i64>,
    /// Open orders' lines: (user, product, units).
    pub(crate) orders: HashMap<Id, Vec<(Id, Id, i64)>>,
    /// Interactions still inside the trending window: (event time, product, weight).
    pub(crate) window: VecDeque<(i64, Id, i64)>,
}

impl StatePart for InteractionState {
    const SECTION: &'static str = "interactions";
    const VERSION: u32 = 1;

    fn apply(&mut self, fold: &Fold, envelope: &Envelope, out: &mut Changes) {
        match &envelope.event {
            Event::ProductViewed(_) | Event::RecommendationClicked(_) | Event::CartItemAdded(_) => {
                for (user, product, weight) in fold.weights.interactions(&envelope.event) {
                    self.interact(envelope.ts, user, product, weight, out);
                }
            }
            // A repeat of a placed order (its id again) adds nothing.
            Event::OrderPlaced(e) if !self.orders.contains_key(&e.order_id) => {
                for (user, product, weight) in fold.weights.interactions(&envelope.event) {
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
            Event::OrderCancelled(e) => {
                for (user, product, quantity) in self.orders.remove(&e.order_id).unwrap_or_default() {
                    add(&mut self.purchases, (user, product), -quantity, &mut out.purchases);
                }
            }
            _ => {}
        }
    }

    fn insertions(&self, out: &mut Changes) {
        out.interactions.extend(self.interactions.iter().map(|(k, w)| (k.clone(), *w as isize)));
        out.purchases.extend(self.purchases.iter().map(|(k, q)| (k.clone(), *q as isize)));
        out.trending.extend(self.window.iter().map(|(ts, p, w)| (p.clone(), ts + TRENDING_WINDOW_MS, *w as isize)));
    }
}

impl InteractionState {
    fn interact(&mut self, ts: i64, user: &Id, product: &Id, weight: i64, out: &mut Changes) {
        add(&mut self.interactions, (user.clone(), product.clone()), weight, &mut out.interactions);
        self.window.push_back((ts, product.clone(), weight));
        out.trending.push((product.clone(), ts + TRENDING_WINDOW_MS, weight as isize));
    }

    /// Forgets interactions that left the trending window before `now` (event time).
    pub(crate) fn prune_window(&mut self, now: i64) {
        self.window.retain(|(ts, _, _)| ts + TRENDING_WINDOW_MS > now);
    }
}
