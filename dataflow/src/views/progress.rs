//! Which log offsets the views reflect. Workers (or, in a replica, the frontier markers of
//! the changelogs) report "my output for every epoch below F is applied, and my source
//! partitions were read up to these offsets by then". The views are complete below the least
//! F over all workers; the offsets each worker read by that F are what a consistency token is
//! checked against.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use shopflow_ingest::Position;
use tokio::sync::watch;

/// One worker's statement of progress; also the frontier marker in the changelog topics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressReport {
    pub worker: usize,
    pub peers: usize,
    /// Every epoch below this one is applied.
    pub frontier: u64,
    /// Next offset of each source partition this worker owns, as of `frontier`.
    pub offsets: Vec<Position>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WaitError {
    #[error("the views did not reach the requested offsets within {0:?}")]
    Timeout(Duration),
}

#[derive(Default)]
struct State {
    peers: usize,
    history: HashMap<usize, VecDeque<(u64, Vec<Position>)>>,
    frontier: u64,
    covered: HashMap<(String, u32), u64>,
}

pub struct Progress {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Self { state: Mutex::new(State::default()), changed: watch::channel(0).0 }
    }
}

impl Progress {
    pub fn report(&self, report: ProgressReport) {
        let advanced = {
            let mut state = self.state.lock();
            if state.peers != report.peers {
                // A new cluster shape: earlier reports belong to a run that is gone.
                state.peers = report.peers;
                state.history.clear();
            }
            let history = state.history.entry(report.worker).or_default();
            if history.back().is_some_and(|(f, _)| *f >= report.frontier) {
                return;
            }
            history.push_back((report.frontier, report.offsets));
            state.recompute()
        };
        if advanced {
            self.changed.send_modify(|v| *v += 1);
        }
    }

    /// A receiver that changes whenever the frontier or a covered offset advances.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The epoch (milliseconds since the Unix epoch) below which every view is complete.
    pub fn frontier(&self) -> u64 {
        self.state.lock().frontier
    }

    /// Next offset not yet reflected in the views, for one partition.
    pub fn covered(&self, topic: &str, partition: u32) -> u64 {
        self.state.lock().covered.get(&(topic.to_owned(), partition)).copied().unwrap_or(0)
    }

    /// Every partition's next unreflected offset.
    pub fn covered_offsets(&self) -> Vec<Position> {
        let state = self.state.lock();
        let mut out: Vec<Position> =
            state.covered.iter().map(|((t, p), o)| Position::new(t.clone(), *p, *o)).collect();
        out.sort();
        out
    }

    /// True when every record at or before each position is reflected in the views.
    pub fn has_passed(&self, positions: &[Position]) -> bool {
        let state = self.state.lock();
        positions.iter().all(|p| {
            state.covered.get(&(p.topic.clone(), p.partition)).is_some_and(|next| *next > p.offset)
        })
    }

    /// Waits until the views reflect every position, or the timeout passes.
    pub async fn wait_for(&self, positions: &[Position], timeout: Duration) -> Result<(), WaitError> {
        let mut changed = self.changed.subscribe();
        let wait = async {
            loop {
                if self.has_passed(positions) {
                    return;
                }
                if changed.changed().await.is_err() {
                    // The sender lives as long as `self`; this cannot end while we borrow it.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| WaitError::Timeout(timeout))
    }
}

impl State {
    /// Recomputes the global frontier and covered offsets; true if anything advanced.
    fn recompute(&mut self) -> bool {
        if self.peers == 0 || self.history.len() < self.peers {
            return false;
        }
        let Some(frontier) = self.history.values().filter_map(|h| h.back().map(|(f, _)| *f)).min() else {
            return false;
        };
        let mut advanced = frontier > self.frontier;
        self.frontier = self.frontier.max(frontier);
        for history in self.history.values_mut() {
            // The latest report at or below the global frontier is what this worker's
            // partitions are known to be covered by; older reports are no longer needed.
            while history.len() > 1 && history[1].0 <= frontier {
                history.pop_front();
            }
            let Some((f, offsets)) = history.front() else { continue };
            if *f > frontier {
                continue;
            }
            for position in offsets {
                let next = self.covered.entry((position.topic.clone(), position.partition)).or_insert(0);
                if position.offset > *next {
                    *next = position.offset;
                    advanced = true;
                }
            }
        }
        advanced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(worker: usize, frontier: u64, offsets: &[(u32, u64)]) -> ProgressReport {
        ProgressReport {
            worker,
            peers: 2,
            frontier,
            offsets: offsets.iter().map(|(p, o)| Position::new("catalog", *p, *o)).collect(),
        }
    }

    #[test]
    fn views_are_complete_only_below_the_least_worker_frontier() {
        let progress = Progress::default();
        progress.report(report(0, 10, &[(0, 5)]));
        assert_eq!(progress.frontier(), 0, "worker 1 has not reported yet");
        assert!(!progress.has_passed(&[Position::new("catalog", 0, 4)]));

        progress.report(report(1, 8, &[(1, 3)]));
        assert_eq!(progress.frontier(), 8);
        // Worker 0's only report is at 10 > 8, so partition 0 is not known covered at 8.
        assert!(!progress.has_passed(&[Position::new("catalog", 0, 4)]));
        assert!(progress.has_passed(&[Position::new("catalog", 1, 2)]));
        assert!(!progress.has_passed(&[Position::new("catalog", 1, 3)]));

        progress.report(report(1, 12, &[(1, 9)]));
        assert_eq!(progress.frontier(), 10);
        assert!(progress.has_passed(&[Position::new("catalog", 0, 4)]));
        assert!(!progress.has_passed(&[Position::new("catalog", 1, 8)]), "worker 1 at 12 is ahead of the frontier");
    }

    #[tokio::test]
    async fn wait_for_returns_once_reported_and_times_out_otherwise() {
        let progress = std::sync::Arc::new(Progress::default());
        let target = [Position::new("catalog", 0, 7)];
        let timeout = progress.wait_for(&target, Duration::from_millis(20)).await;
        assert_eq!(timeout, Err(WaitError::Timeout(Duration::from_millis(20))));

        let waiter = {
            let progress = progress.clone();
            tokio::spawn(async move { progress.wait_for(&target, Duration::from_secs(10)).await })
        };
        progress.report(report(0, 5, &[(0, 8)]));
        progress.report(report(1, 5, &[(1, 1)]));
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
