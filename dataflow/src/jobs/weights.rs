//! How much each kind of interaction counts in the interaction matrix and in trending.

use serde::{Deserialize, Serialize};

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
