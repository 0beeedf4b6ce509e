//! Carts' share of a partition of `carts` (key: user id): each user's lines, units only.
//! Prices and availability are read when the cart is shown, so a cart shows today's price.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shopflow_events::types::MAX_UNITS;
use shopflow_events::{Envelope, Event, Id};

use super::{Fold, StatePart};
use crate::base::Changes;
use crate::views::CartRow;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CartsState {
    /// By (user, product): sorted, so a user's cart is a range.
    pub(crate) lines: BTreeMap<(Id, Id), CartRow>,
}

impl StatePart for CartsState {
    const SECTION: &'static str = "carts";
    const VERSION: u32 = 1;

    fn apply(&mut self, _: &Fold, envelope: &Envelope, out: &mut Changes) {
        let ts = envelope.ts;
        match &envelope.event {
            Event::CartItemAdded(e) => {
                let now = self.quantity(&e.user_id, &e.product_id);
                self.set(&e.user_id, &e.product_id, now.saturating_add(e.quantity).min(MAX_UNITS), ts, out);
            }
            Event::CartItemRemoved(e) => {
                let now = self.quantity(&e.user_id, &e.product_id);
                self.set(&e.user_id, &e.product_id, now.saturating_sub(e.quantity), ts, out);
            }
            Event::CartQuantitySet(e) => self.set(&e.user_id, &e.product_id, e.quantity, ts, out),
            Event::CartCleared(e) => {
                let products: Vec<Id> = self.user_lines(&e.user_id).map(|((_, p), _)| p.clone()).collect();
                for product in products {
                    self.set(&e.user_id, &product, 0, ts, out);
                }
            }
            _ => {}
        }
    }

    fn insertions(&self, out: &mut Changes) {
        out.carts.extend(self.lines.iter().map(|(k, v)| ((k.clone(), v.clone()), 1)));
    }
}

impl CartsState {
    fn quantity(&self, user: &Id, product: &Id) -> u32 {
        self.lines.get(&(user.clone(), product.clone())).map_or(0, |l| l.quantity)
    }

    fn user_lines<'a>(&'a self, user: &'a Id) -> impl Iterator<Item = (&'a (Id, Id), &'a CartRow)> + 'a {
        self.lines.range((user.clone(), Id::default())..).take_while(move |((u, _), _)| u == user)
    }

    fn set(&mut self, user: &Id, product: &Id, quantity: u32, ts: i64, out: &mut Changes) {
        let key = (user.clone(), product.clone());
        let old = self.lines.get(&key).cloned();
        if old.as_ref().map_or(0, |l| l.quantity) == quantity {
            return;
        }
        if let Some(old) = old {
            out.carts.push(((key.clone(), old), -1));
        }
        if quantity == 0 {
            self.lines.remove(&key);
        } else {
            let row = CartRow { user_id: user.clone(), product_id: product.clone(), quantity, updated_at: ts };
            self.lines.insert(key.clone(), row.clone());
            out.carts.push(((key, row), 1));
        }
    }
}
