//! The interaction matrix (user × product weights), purchases per user, and trending:
//! weighted interactions per product inside a sliding event-time window. The window needs no
//! timers: each weight enters at its epoch and its retraction is scheduled, as an update at a
//! future time, for the moment it leaves the window.

use differential_dataflow::VecCollection;
use differential_dataflow::lattice::Lattice;
use shopflow_events::Id;
use timely::progress::Timestamp;

use super::{left_join, BaseCollections};
use crate::views::{InteractionRow, PurchaseRow, TrendingRow};

pub struct Outputs<'scope, T: Timestamp> {
    pub interactions: VecCollection<'scope, T, InteractionRow>,
    pub purchases: VecCollection<'scope, T, PurchaseRow>,
    pub trending: VecCollection<'scope, T, TrendingRow>,
}

pub fn build<'scope, T: Timestamp + Lattice>(inputs: &BaseCollections<'scope, T>) -> Outputs<'scope, T> {
    let interactions = inputs
        .interactions
        .clone()
        .count()
        .filter(|(_, weight)| *weight > 0)
        .map(|((user_id, product_id), weight)| InteractionRow { user_id, product_id, weight: weight as i64 });
    let purchases = inputs
        .purchases
        .clone()
        .count()
        .filter(|(_, quantity)| *quantity > 0)
        .map(|((user_id, product_id), quantity)| PurchaseRow { user_id, product_id, quantity: quantity as i64 });
    let scores = inputs.trending.clone().count().filter(|(_, score)| *score > 0);
    let categories = inputs.products.clone().map(|(id, p)| (id, p.category_id));
    let trending = left_join(scores, categories).map(|(product_id, (score, category_id)): (Id, _)| TrendingRow {
        product_id,
        category_id,
        score: score as i64,
    });
    Outputs { interactions, purchases, trending }
}
