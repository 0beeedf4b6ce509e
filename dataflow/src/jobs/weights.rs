//! How much each kind of interaction counts in the interaction matrix and in trending.

use serde::{Deserialize, Serialize};
use shopflow_events::{Event, Id};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InteractionWeights {
    pub view: i64,
    pub recommendation_click: i64,
    pub cart_add: i64,
    /// Per unit ordered.
    pub purchase: i64,
}

impl Default for InteractionWeights {
    fn default() -> Self {
        Self { view: 1, recommendation_click: 2, cart_add: 3, purchase: 5 }
    }
}

impl InteractionWeights {
    /// The (user, product, weight) interactions an event expresses. The one definition shared
    /// by the pipeline's interaction matrix and trending and by `shopflow train --from-log`.
    pub fn interactions<'e>(&self, event: &'e Event) -> Vec<(&'e Id, &'e Id, i64)> {
        match event {
            Event::ProductViewed(e) => vec![(&e.user_id, &e.product_id, self.view)],
            Event::RecommendationClicked(e) => vec![(&e.user_id, &e.product_id, self.recommendation_click)],
            Event::CartItemAdded(e) => vec![(&e.user_id, &e.product_id, self.cart_add)],
            Event::OrderPlaced(e) => e
                .lines
                .iter()
                .map(|line| (&e.user_id, &line.product_id, self.purchase.saturating_mul(i64::from(line.quantity))))
                .collect(),
            _ => Vec::new(),
        }
    }
}
