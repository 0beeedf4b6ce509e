//! The seam between the HTTP layer and a trained recommendation model. Serving knows only this
//! trait; the binary adapts the recommender crate's model to it and swaps promoted models in
//! through a [`ModelSlot`] without a restart and without failing a request: a request holds
//! the `Arc` of the model it started with.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use shopflow_events::Id;

/// A trained model that can score products for a user and find similar products.
pub trait Recommender: Send + Sync + 'static {
    /// The model version, reported in responses.
    fn version(&self) -> String;

    /// The best `n` products for a user whose interactions (product, weight) are given,
    /// computed by folding the interactions into the model (so a brand-new user's first clicks
    /// count at once). Products for which `skip` is true are left out. Products the model does
    /// not know are ignored in `interactions`; an empty result means the model has nothing to
    /// say (the caller falls back to trending).
    fn recommend(&self, interactions: &[(Id, f64)], n: usize, skip: &dyn Fn(&Id) -> bool) -> Vec<(Id, f64)>;

    /// The `n` products most similar to `product` (precomputed), without those `skip` rejects;
    /// `None` when the model does not know the product.
    fn similar(&self, product: &Id, n: usize, skip: &dyn Fn(&Id) -> bool) -> Option<Vec<(Id, f64)>>;
}

/// The currently promoted model, swapped atomically.
#[derive(Default)]
pub struct ModelSlot {
    current: ArcSwapOption<Box<dyn Recommender>>,
}

impl ModelSlot {
    pub fn new() -> Self {
        Self::default()
    }

    /// The model to use for one whole request.
    pub fn get(&self) -> Option<Arc<Box<dyn Recommender>>> {
        self.current.load_full()
    }

    /// Makes `model` current; requests already holding the old one finish with it.
    pub fn set(&self, model: Option<Box<dyn Recommender>>) {
        self.current.store(model.map(Arc::new));
    }
}
