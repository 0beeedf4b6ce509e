//! What every handler shares.

use std::sync::Arc;

use shopflow_dataflow::views::Views;
use shopflow_ingest::EventLog;
use tokio::sync::watch;

use crate::config::ServingConfig;
use crate::lag::EndOffsets;
use crate::recommender::ModelSlot;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Where writes go.
    pub log: Arc<dyn EventLog>,
    /// What reads answer from.
    pub views: Arc<Views>,
    pub config: Arc<ServingConfig>,
    /// Last known end offsets of the source topics (for the lag headers).
    pub end_offsets: Arc<EndOffsets>,
    /// The promoted recommendation model, if any. Shared with whoever promotes models (the
    /// binary's model watcher), so a promotion or rollback is seen by the next request.
    pub models: Arc<ModelSlot>,
    /// Reads currently waiting for a consistency token (also the gauge
    /// `serving_consistency_waits_in_flight`); observable so tests and operators can see waits.
    waiting_reads: Arc<watch::Sender<usize>>,
}

impl AppState {
    pub fn new(config: ServingConfig, log: Arc<dyn EventLog>, views: Arc<Views>) -> Self {
        let end_offsets = Arc::new(EndOffsets::new(config.source_topics.clone()));
        let waiting_reads = Arc::new(watch::channel(0).0);
        // Empty until a model is promoted: the recommendation routes answer from trending.
        let models = Arc::new(ModelSlot::new());
        Self { log, views, config: Arc::new(config), end_offsets, models, waiting_reads }
    }

    /// Watches the number of reads waiting for a consistency token right now.
    pub fn waiting_reads(&self) -> watch::Receiver<usize> {
        self.waiting_reads.subscribe()
    }

    /// Counts one waiting read until the guard drops (also when the client goes away).
    pub(crate) fn wait_guard(&self) -> WaitGuard {
        self.waiting_reads.send_modify(|n| *n += 1);
        metrics::gauge!(WAITS_GAUGE).increment(1.0);
        WaitGuard(self.waiting_reads.clone())
    }
}

const WAITS_GAUGE: &str = "serving_consistency_waits_in_flight";

pub(crate) struct WaitGuard(Arc<watch::Sender<usize>>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
        metrics::gauge!(WAITS_GAUGE).decrement(1.0);
    }
}
