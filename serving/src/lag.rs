//! How far behind the log the views are, attached to every read response:
//! `X-View-Frontier` (epoch ms below which the views are complete), `X-View-Lag-Ms`
//! (now − frontier) and `X-View-Lag-Records` (records in the source topics not yet reflected).
//!
//! End offsets come from a background poll of the log, never from the request path: a read
//! must not pay a broker round trip, nor fail when the broker is away.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::RwLock;
use shopflow_dataflow::views::Progress;
use shopflow_ingest::{EventLog, Position};

use crate::state::AppState;

pub const FRONTIER_HEADER: &str = "x-view-frontier";
pub const LAG_MS_HEADER: &str = "x-view-lag-ms";
pub const LAG_RECORDS_HEADER: &str = "x-view-lag-records";

/// The last known end offset of every source partition.
#[derive(Default)]
pub struct EndOffsets {
    topics: Vec<String>,
    /// Per topic, once known: end offset per partition.
    ends: RwLock<BTreeMap<String, Vec<u64>>>,
}

impl EndOffsets {
    pub fn new(topics: Vec<String>) -> Self {
        Self { topics, ends: RwLock::new(BTreeMap::new()) }
    }

    /// Asks the log for the end offsets of every source topic once. A topic that fails keeps
    /// its last known offsets; the first error is returned after trying the others.
    pub async fn refresh(&self, log: &dyn EventLog) -> Result<(), shopflow_ingest::LogError> {
        let mut first_error = None;
        for topic in &self.topics {
            match log.end_offsets(topic).await {
                Ok(ends) => {
                    let mut known = self.ends.write();
                    let slot = known.entry(topic.clone()).or_default();
                    // Never move backwards: an append we observed may be newer than the poll.
                    slot.resize(slot.len().max(ends.len()), 0);
                    for (known, polled) in slot.iter_mut().zip(ends) {
                        *known = (*known).max(polled);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Records positions we appended ourselves, so the lag includes our own writes at once.
    pub fn observe(&self, positions: &[Position]) {
        let mut known = self.ends.write();
        for p in positions {
            // Only topics already polled: a partial vector would understate the lag.
            if let Some(slot) = known.get_mut(&p.topic) {
                let index = p.partition as usize;
                if slot.len() <= index {
                    slot.resize(index + 1, 0);
                }
                slot[index] = slot[index].max(p.offset + 1);
            }
        }
    }

    /// Records in the source topics not yet reflected in the views; `None` until every source
    /// topic has been polled once.
    pub fn lag_records(&self, progress: &Progress) -> Option<u64> {
        let known = self.ends.read();
        if self.topics.iter().any(|t| !known.contains_key(t)) {
            return None;
        }
        let covered = progress.covered_offsets();
        let covered_of = |topic: &str, partition: u32| {
            covered
                .iter()
                .find(|p| p.topic == topic && p.partition == partition)
                .map_or(0, |p| p.offset)
        };
        Some(
            known
                .iter()
                .flat_map(|(topic, ends)| {
                    ends.iter().enumerate().map(move |(partition, end)| (topic, partition as u32, *end))
                })
                .map(|(topic, partition, end)| end.saturating_sub(covered_of(topic, partition)))
                .sum(),
        )
    }
}

/// Polls the log's end offsets every `interval` until the task is aborted.
pub async fn poll_end_offsets(log: Arc<dyn EventLog>, ends: Arc<EndOffsets>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticker.tick().await;
        // A hung broker must not stall the poll forever; the next tick tries again.
        let result = tokio::time::timeout(interval.max(Duration::from_secs(1)), ends.refresh(log.as_ref())).await;
        match result {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("end offset poll recovered");
                }
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "end offset poll failed, lag headers use the last known offsets");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!("end offset poll timed out, lag headers use the last known offsets");
            }
            _ => {}
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Middleware for read routes: adds the lag headers to every response, errors included
/// (a consistency timeout is exactly when a client wants to know the lag).
pub async fn view_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let frontier = state.views.progress.frontier();
    let headers = response.headers_mut();
    headers.insert(FRONTIER_HEADER, HeaderValue::from(frontier));
    // Before the first report the frontier is 0 and the lag is "since 1970": honest, and
    // unmistakable for a view that has never been complete.
    headers.insert(LAG_MS_HEADER, HeaderValue::from(now_ms().saturating_sub(frontier)));
    if let Some(records) = state.end_offsets.lag_records(&state.views.progress) {
        headers.insert(LAG_RECORDS_HEADER, HeaderValue::from(records));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopflow_dataflow::views::ProgressReport;

    #[test]
    fn lag_is_end_minus_covered_over_every_source_partition() {
        let ends = EndOffsets::new(vec!["catalog".into()]);
        let progress = Progress::default();
        assert_eq!(ends.lag_records(&progress), None, "unknown until polled");

        ends.ends.write().insert("catalog".into(), vec![10, 4]);
        assert_eq!(ends.lag_records(&progress), Some(14));

        progress.report(ProgressReport {
            worker: 0,
            peers: 1,
            frontier: 5,
            offsets: vec![Position::new("catalog", 0, 7), Position::new("catalog", 1, 4)],
        });
        assert_eq!(ends.lag_records(&progress), Some(3));

        ends.observe(&[Position::new("catalog", 1, 4), Position::new("orders", 0, 9)]);
        assert_eq!(ends.lag_records(&progress), Some(4), "own append counts, unknown topics do not");
    }
}
