//! The adapter from [`ServingModel`] to serving's [`Recommender`] seam (feature `serving`):
//! the one place that knows both sides, shared by the binary's model watcher and the
//! benchmarks.

use shopflow_events::Id;
use shopflow_serving::Recommender;

use crate::ServingModel;

/// Serves a [`ServingModel`] through serving's product-id based trait.
pub struct ModelAdapter {
    model: ServingModel,
}

impl ModelAdapter {
    pub fn new(model: ServingModel) -> Self {
        Self { model }
    }
}

impl Recommender for ModelAdapter {
    fn version(&self) -> String {
        format!("v{:06}", self.model.version())
    }

    fn recommend(&self, interactions: &[(Id, f64)], n: usize, skip: &dyn Fn(&Id) -> bool) -> Vec<(Id, f64)> {
        let by_str: Vec<(&str, f64)> = interactions.iter().map(|(id, w)| (id.as_str(), *w)).collect();
        // Ids in the model came from validated events (or a training file), so the unchecked
        // conversion back is sound; `skip` is only asked about the best candidates.
        self.model
            .recommend(&by_str, n, |p| skip(&Id::from(p)))
            .into_iter()
            .map(|(p, s)| (Id::from(p.as_str()), s))
            .collect()
    }

    fn similar(&self, product: &Id, n: usize, skip: &dyn Fn(&Id) -> bool) -> Option<Vec<(Id, f64)>> {
        self.model
            .similar(product.as_str(), n, |p| skip(&Id::from(p)))
            .map(|list| list.into_iter().map(|(p, s)| (Id::from(p.as_str()), s)).collect())
    }
}

