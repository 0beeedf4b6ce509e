//! How far behind the log the views are, attached to every read response:
//! `X-View-Frontier` (epoch ms below which the views are complete), `X-View-Lag-Ms`
//! (now − frontier) and `X-View-Lag-Records` (records in the source topics not yet reflected).
//!
//! End offsets come from a background poll of the log, never from the request path: a read
//! must not pay a broker round trip, nor fail when the broker is away.
//!
//! Also readiness ([`Readiness`]): whether the views have caught up with the log as it was
//! when the server started (`/readyz`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use shopflow_views::Progress;
use shopflow_ingest::{EventLog, Position};
use tokio::sync::watch;

use crate::state::AppState;

pub const FRONTIER_HEADER: &str = "x-view-frontier";
pub const LAG_MS_HEADER: &str = "x-view-lag-ms";
pub const LAG_RECORDS_HEADER: &str = "x-view-lag-records";

/// The last known end offset of every source partition.
pub struct EndOffsets {
    topics: Vec<String>,
    /// Per topic, once known: end offset per partition.
    ends: RwLock<BTreeMap<String, Vec<u64>>>,
    /// Bumped after every poll that learnt something (readiness waits on it).
    polled: watch::Sender<u64>,
}

impl Default for EndOffsets {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl EndOffsets {
    pub fn new(topics: Vec<String>) -> Self {
        Self { topics, ends: RwLock::new(BTreeMap::new()), polled: watch::channel(0).0 }
    }

    /// A receiver that changes after every poll that got an answer for at least one topic.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.polled.subscribe()
    }

    /// How many partitions `topic` has, as far as polls (and our own appends) have seen;
    /// `None` until the topic was polled once.
    pub fn partitions(&self, topic: &str) -> Option<u32> {
        self.ends.read().get(topic).map(|ends| ends.len() as u32)
    }

    /// The end offsets of every source topic, once every one has been polled.
    fn snapshot(&self) -> Option<BTreeMap<String, Vec<u64>>> {
        let known = self.ends.read();
        self.topics.iter().map(|t| known.get(t).map(|ends| (t.clone(), ends.clone()))).collect()
    }

    /// Asks the log for the end offsets of every source topic once. A topic that fails keeps
    /// its last known offsets; the first error is returned after trying the others.
    pub async fn refresh(&self, log: &dyn EventLog) -> Result<(), shopflow_ingest::LogError> {
        let mut first_error = None;
        let mut answered = false;
        for topic in &self.topics {
            match log.end_offsets(topic).await {
                Ok(ends) => {
                    answered = true;
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
        if answered {
            self.polled.send_modify(|n| *n += 1);
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
        Some(behind(&known, progress).values().sum())
    }
}

/// Per topic, the records below `ends` (end offsets per partition) not yet reflected in the
/// views. `Progress` only knows partitions some worker has reported: an unknown one counts as
/// covered up to 0.
fn behind(ends: &BTreeMap<String, Vec<u64>>, progress: &Progress) -> BTreeMap<String, u64> {
    let covered: BTreeMap<(String, u32), u64> =
        progress.covered_offsets().into_iter().map(|p| ((p.topic, p.partition), p.offset)).collect();
    ends.iter()
        .map(|(topic, ends)| {
            let records = ends
                .iter()
                .enumerate()
                .map(|(partition, end)| end.saturating_sub(covered.get(&(topic.clone(), partition as u32)).copied().unwrap_or(0)))
                .sum();
            (topic.clone(), records)
        })
        .collect()
}

/// Whether the views have caught up with the log since the server started: ready once the
/// views cover the end offsets every source partition had at start (the first complete poll),
/// and every worker has reported at least once (so an empty log is ready after one report).
/// Latches: once ready, a live system that lags a little behind new writes stays ready.
pub struct Readiness {
    /// End offsets per source topic at start; taken at the first check after every source
    /// topic has been polled (in `Application::build`, right after the first poll).
    targets: Mutex<Option<BTreeMap<String, Vec<u64>>>>,
    ready: watch::Sender<bool>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self { targets: Mutex::new(None), ready: watch::channel(false).0 }
    }
}

/// Why the server is not ready: the body of `503 not_ready` on `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    pub reason: NotReadyReason,
    /// How far behind the log as of start the views are; `None` while that is unknown.
    pub behind: Option<Behind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotReadyReason {
    /// No end offset poll of every source topic has succeeded yet.
    LogUnknown,
    /// Not every worker has reported progress yet.
    NoProgress,
    /// Records written before the start are not reflected in the views yet.
    CatchingUp,
    /// The views have caught up; the search index is still being synced with them.
    SearchIndexing,
}

/// Records of the log as of start not yet reflected in the views.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Behind {
    /// Over every source topic.
    pub records: u64,
    /// Per source topic.
    pub topics: BTreeMap<String, u64>,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            NotReadyReason::LogUnknown => f.write_str("not ready: the end offsets of the log are not known yet")?,
            NotReadyReason::NoProgress => f.write_str("not ready: the views have not reported progress yet")?,
            NotReadyReason::CatchingUp => f.write_str("not ready: the views are catching up with the log")?,
            NotReadyReason::SearchIndexing => f.write_str("not ready: the search index is being synced with the views")?,
        }
        if let Some(behind) = &self.behind {
            write!(f, "; {} records behind the log as of start", behind.records)?;
            let topics: Vec<String> =
                behind.topics.iter().filter(|(_, n)| **n > 0).map(|(t, n)| format!("{t} {n}")).collect();
            if !topics.is_empty() {
                write!(f, " ({})", topics.join(", "))?;
            }
        }
        Ok(())
    }
}

impl Readiness {
    /// Watches readiness; turns `true` once and stays there.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Checks whether the views have caught up and then whether `derived` (what is built from
    /// the views, the search index) is ready too, and latches ready when both are. Cheap (a
    /// few lock acquisitions): `/readyz` calls it per request, the readiness task per change.
    pub fn check(&self, progress: &Progress, ends: &EndOffsets, derived: impl FnOnce() -> Result<(), NotReady>) -> Result<(), NotReady> {
        if self.is_ready() {
            return Ok(());
        }
        let targets = {
            let mut targets = self.targets.lock();
            if targets.is_none() {
                *targets = ends.snapshot();
            }
            targets.clone()
        };
        let Some(targets) = targets else {
            return Err(NotReady { reason: NotReadyReason::LogUnknown, behind: None });
        };
        let topics = behind(&targets, progress);
        let behind = Behind { records: topics.values().sum(), topics };
        // A frontier above 0 means every worker has reported at least once.
        let reason = if progress.frontier() == 0 {
            NotReadyReason::NoProgress
        } else if behind.records > 0 {
            NotReadyReason::CatchingUp
        } else {
            derived()?;
            self.ready.send_replace(true);
            return Ok(());
        };
        Err(NotReady { reason, behind: Some(behind) })
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
    use shopflow_views::ProgressReport;

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

    fn report(frontier: u64, offsets: &[(&str, u32, u64)]) -> ProgressReport {
        ProgressReport {
            worker: 0,
            peers: 1,
            frontier,
            offsets: offsets.iter().map(|(t, p, o)| Position::new(*t, *p, *o)).collect(),
        }
    }

    #[test]
    fn ready_once_the_views_cover_the_end_offsets_at_start_and_then_for_good() {
        let ends = EndOffsets::new(vec!["catalog".into(), "inventory".into()]);
        let progress = Progress::default();
        let readiness = Readiness::default();
        let reason = |r: Result<(), NotReady>| r.unwrap_err().reason;
        assert_eq!(reason(readiness.check(&progress, &ends, || Ok(()))), NotReadyReason::LogUnknown);

        ends.ends.write().insert("catalog".into(), vec![3, 0]);
        assert_eq!(reason(readiness.check(&progress, &ends, || Ok(()))), NotReadyReason::LogUnknown, "inventory not polled");
        ends.ends.write().insert("inventory".into(), vec![0, 2]);
        let not_ready = readiness.check(&progress, &ends, || Ok(())).unwrap_err();
        assert_eq!(not_ready.reason, NotReadyReason::NoProgress);
        assert_eq!(
            not_ready.behind,
            Some(Behind { records: 5, topics: [("catalog".into(), 3), ("inventory".into(), 2)].into() })
        );

        // Writes after the start do not move the target.
        ends.observe(&[Position::new("catalog", 1, 40)]);
        progress.report(report(1, &[("catalog", 0, 3)]));
        let not_ready = readiness.check(&progress, &ends, || Ok(())).unwrap_err();
        assert_eq!(not_ready.reason, NotReadyReason::CatchingUp);
        assert_eq!(not_ready.behind.map(|b| b.records), Some(2), "inventory:1 was never reported");
        assert!(!*readiness.subscribe().borrow());

        progress.report(report(2, &[("catalog", 0, 3), ("inventory", 1, 2)]));
        assert_eq!(readiness.check(&progress, &ends, || Ok(())), Ok(()));
        assert!(*readiness.subscribe().borrow());
        assert_eq!(ends.lag_records(&progress), Some(41), "a live log still lags...");
        assert_eq!(readiness.check(&progress, &ends, || Ok(())), Ok(()), "...but readiness has latched");
    }

    #[test]
    fn an_empty_log_is_ready_after_the_first_report() {
        let ends = EndOffsets::new(vec!["catalog".into()]);
        ends.ends.write().insert("catalog".into(), vec![0, 0]);
        let progress = Progress::default();
        let readiness = Readiness::default();
        assert_eq!(readiness.check(&progress, &ends, || Ok(())).unwrap_err().reason, NotReadyReason::NoProgress);
        progress.report(report(1, &[]));
        assert_eq!(readiness.check(&progress, &ends, || Ok(())), Ok(()));
    }

    #[test]
    fn caught_up_views_wait_for_what_is_derived_from_them() {
        let ends = EndOffsets::new(vec!["catalog".into()]);
        ends.ends.write().insert("catalog".into(), vec![0]);
        let progress = Progress::default();
        progress.report(report(1, &[]));
        let readiness = Readiness::default();
        let indexing = || Err(NotReady { reason: NotReadyReason::SearchIndexing, behind: None });
        assert_eq!(readiness.check(&progress, &ends, indexing).unwrap_err().reason, NotReadyReason::SearchIndexing);
        assert!(!*readiness.subscribe().borrow());
        assert_eq!(readiness.check(&progress, &ends, || Ok(())), Ok(()));
        assert_eq!(readiness.check(&progress, &ends, indexing), Ok(()), "latched");
    }

    #[test]
    fn partitions_are_known_once_polled() {
        let ends = EndOffsets::new(vec!["catalog".into()]);
        assert_eq!(ends.partitions("catalog"), None);
        ends.ends.write().insert("catalog".into(), vec![0; 4]);
        assert_eq!(ends.partitions("catalog"), Some(4));
    }
}
