//! Where the pipeline's publication goes: a `ViewSink` receives each completed epoch's upserts
//! with the progress they bring.

use std::sync::Arc;

use crate::{ProgressReport, ViewUpdate, Views};

/// Where completed epochs go. Called on the worker thread, in frontier order.
pub trait ViewSink {
    fn publish(&mut self, updates: Vec<ViewUpdate>, report: ProgressReport);
}

/// One-process mode: the serving layer reads these views directly.
pub struct LocalSink(pub Arc<Views>);

impl ViewSink for LocalSink {
    fn publish(&mut self, updates: Vec<ViewUpdate>, report: ProgressReport) {
        self.0.apply(updates);
        self.0.progress.report(report);
    }
}

