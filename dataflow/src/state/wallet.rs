//! Payment methods' share of a partition of `users` (key: user id): each user's tokenized
//! cards, as the gateway returned them (token, last four, brand, expiry; never a number).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shopflow_events::{Envelope, Event, Id};

use super::fold::{rows, upsert};
use super::{Fold, StatePart};
use crate::base::Changes;
use crate::views::{PaymentMethodRow, ViewRowType};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WalletState {
    pub(crate) methods: HashMap<(Id, Id), PaymentMethodRow>,
}

impl StatePart for WalletState {
    const SECTION: &'static str = "wallet";
    const VERSION: u32 = 1;

    fn apply(&mut self, _: &Fold, envelope: &Envelope, out: &mut Changes) {
        if let Event::PaymentMethodTokenized(e) = &envelope.event {
            let row = PaymentMethodRow {
                user_id: e.user_id.clone(),
                token: e.token.clone(),
                last4: e.last4.clone(),
                card_brand: e.card_brand.clone(),
                exp_month: e.exp_month,
                exp_year: e.exp_year,
                created_at: envelope.ts,
            };
            if !self.methods.contains_key(&row.key()) {
                upsert(&mut self.methods, row.key(), Some(row), &mut out.payment_methods);
            }
        }
    }

    fn insertions(&self, out: &mut Changes) {
        out.payment_methods.extend(rows(&self.methods));
    }
}
