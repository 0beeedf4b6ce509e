//! Which log offsets the views reflect. Workers (or, in a replica, the frontier markers of
//! the changelogs) report "my output for every epoch below F is applied, and my source
//! partitions were read up to these offsets by then". The views are complete below the least
//! F over all workers; the offsets each worker read by that F are what a consistency token is
//! checked against.
//!
//! A reader waiting for positions ([`Progress::wait_for`]) is registered under the one
//! partition and offset it still needs, and is woken only when a report moves that partition's
//! covered offset past it: a progress tick that does not concern a waiter costs it nothing, so
//! many waiters on a busy log do not each re-check every tick.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use shopflow_ingest::Position;
use tokio::sync::{oneshot, watch};

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

type PartitionKey = (String, u32);

#[derive(Default)]
struct State {
    peers: usize,
    history: HashMap<usize, VecDeque<(u64, Vec<Position>)>>,
    frontier: u64,
    covered: HashMap<PartitionKey, u64>,
    waiters: Waiters,
}

/// Readers waiting for a partition to pass an offset. Under the same lock as `covered`, so a
/// reader checks and registers in one step and cannot miss the report that passes it.
#[derive(Default)]
struct Waiters {
    next_id: u64,
    /// Per partition: (offset that must be passed, waiter id) → the waiter's wake-up. Entries
    /// leave when they fire or when their waiter is dropped (timeout, client gone), so the
    /// map holds exactly the waits in flight.
    by_partition: HashMap<PartitionKey, BTreeMap<(u64, u64), oneshot::Sender<()>>>,
}

pub struct Progress {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    /// Waiters woken so far (tests check that a report wakes only the waiters it concerns).
    #[cfg(test)]
    wakeups: std::sync::atomic::AtomicUsize,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: watch::channel(0).0,
            #[cfg(test)]
            wakeups: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl Progress {
    pub fn report(&self, report: ProgressReport) {
        let (advanced, due) = {
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
            let mut moved = Vec::new();
            let advanced = state.recompute(&mut moved);
            (advanced, state.due_waiters(&moved))
        };
        // Woken outside the lock: a woken reader's first step is to take it.
        #[cfg(test)]
        self.wakeups.fetch_add(due.len(), std::sync::atomic::Ordering::SeqCst);
        for waiter in due {
            let _ = waiter.send(());
        }
        if advanced {
            self.changed.send_modify(|v| *v += 1);
        }
    }

    /// Forgets what `workers` reported: they belong to a run that is gone, and until each
    /// reports again the frontier stays where it is (what is covered stays covered).
    pub fn forget(&self, workers: impl IntoIterator<Item = usize>) {
        let mut state = self.state.lock();
        for worker in workers {
            state.history.remove(&worker);
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
        positions.iter().all(|p| state.passed(p))
    }

    /// Waits until the views reflect every position, or the timeout passes.
    ///
    /// The wait is registered under the first position not yet passed and woken only when a
    /// report passes it (then under the next one, if any). Dropping the future (a timeout, a
    /// client that went away) removes the registration.
    pub async fn wait_for(&self, positions: &[Position], timeout: Duration) -> Result<(), WaitError> {
        let wait = async {
            while let Some(mut registration) = self.register(positions) {
                // Awaited by reference: the registration (and its clean-up on drop) lives until
                // the wake-up or until this future is dropped. An error would mean the sender
                // went away unsent; either way the loop checks again.
                let _ = (&mut registration.receiver).await;
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| WaitError::Timeout(timeout))
    }

    /// Waits currently registered (every partition); 0 when no read is waiting.
    pub fn registered_waiters(&self) -> usize {
        self.state.lock().waiters.by_partition.values().map(BTreeMap::len).sum()
    }

    /// Registers a wake-up for the first position not yet passed; `None` if all are passed.
    /// Checking and registering under one lock means no report can slip in between.
    fn register(&self, positions: &[Position]) -> Option<Registration<'_>> {
        let mut state = self.state.lock();
        let needed = positions.iter().find(|p| !state.passed(p))?;
        let key = (needed.topic.clone(), needed.partition);
        let waiters = &mut state.waiters;
        let slot = (needed.offset, waiters.next_id);
        waiters.next_id += 1;
        let (sender, receiver) = oneshot::channel();
        waiters.by_partition.entry(key.clone()).or_default().insert(slot, sender);
        Some(Registration { progress: self, key, slot, receiver })
    }
}

/// One registered wake-up; removes its entry when dropped, fired or not.
struct Registration<'a> {
    progress: &'a Progress,
    key: PartitionKey,
    slot: (u64, u64),
    receiver: oneshot::Receiver<()>,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut state = self.progress.state.lock();
        if let Some(waiting) = state.waiters.by_partition.get_mut(&self.key) {
            waiting.remove(&self.slot);
            if waiting.is_empty() {
                state.waiters.by_partition.remove(&self.key);
            }
        }
    }
}

impl State {
    fn passed(&self, position: &Position) -> bool {
        self.covered.get(&(position.topic.clone(), position.partition)).is_some_and(|next| *next > position.offset)
    }

    /// Takes the wake-ups of every waiter on the `moved` partitions whose offset is now passed.
    fn due_waiters(&mut self, moved: &[PartitionKey]) -> Vec<oneshot::Sender<()>> {
        let mut due = Vec::new();
        for key in moved {
            let Some(next) = self.covered.get(key).copied() else { continue };
            let Some(waiting) = self.waiters.by_partition.get_mut(key) else { continue };
            // Everything below (next, 0) waits for an offset < next, i.e. one now covered.
            let still_waiting = waiting.split_off(&(next, 0));
            due.extend(std::mem::replace(waiting, still_waiting).into_values());
            if waiting.is_empty() {
                self.waiters.by_partition.remove(key);
            }
        }
        due
    }

    /// Recomputes the global frontier and covered offsets; true if anything advanced. The
    /// partitions whose covered offset moved are pushed to `moved`.
    fn recompute(&mut self, moved: &mut Vec<PartitionKey>) -> bool {
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
                    moved.push((position.topic.clone(), position.partition));
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

    /// Worker 0 of a one-worker cluster reporting catalog offsets.
    fn only_worker(frontier: u64, offsets: &[(u32, u64)]) -> ProgressReport {
        ProgressReport { peers: 1, ..report(0, frontier, offsets) }
    }

    fn wakeups(progress: &Progress) -> usize {
        progress.wakeups.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Polls a future once with the test task's own context: `Pending` or its output.
    async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx))).await
    }

    #[tokio::test]
    async fn a_waiter_is_woken_only_by_the_report_that_passes_its_offset() {
        let progress = Progress::default();
        let target = [Position::new("catalog", 0, 100)];
        let mut wait = Box::pin(progress.wait_for(&target, Duration::from_secs(30)));
        assert!(poll_once(&mut wait).await.is_pending());
        assert_eq!(progress.registered_waiters(), 1);

        progress.report(only_worker(1, &[(0, 50)]));
        progress.report(only_worker(2, &[(0, 50), (1, 500)]));
        // Next offset 100 means offset 100 itself is not reflected yet.
        progress.report(only_worker(3, &[(0, 100), (1, 600)]));
        assert_eq!(progress.covered("catalog", 0), 100);
        assert_eq!(wakeups(&progress), 0, "reports below the target must not wake the waiter");
        assert!(poll_once(&mut wait).await.is_pending());

        progress.report(only_worker(4, &[(0, 101), (1, 600)]));
        assert_eq!(wakeups(&progress), 1);
        assert_eq!(poll_once(&mut wait).await, std::task::Poll::Ready(Ok(())));
        assert_eq!(progress.registered_waiters(), 0);
    }

    #[tokio::test]
    async fn a_report_wakes_exactly_the_waiters_whose_offsets_it_passes() {
        let progress = Progress::default();
        let targets: Vec<[Position; 1]> = [(0, 10), (0, 20), (0, 30), (1, 5)]
            .iter()
            .map(|(partition, offset)| [Position::new("catalog", *partition, *offset)])
            .collect();
        let mut waits: Vec<_> =
            targets.iter().map(|t| Box::pin(progress.wait_for(t, Duration::from_secs(30)))).collect();
        for wait in &mut waits {
            assert!(poll_once(wait).await.is_pending());
        }
        assert_eq!(progress.registered_waiters(), 4);

        progress.report(only_worker(1, &[(0, 21)]));
        assert_eq!(wakeups(&progress), 2, "offsets 10 and 20 of partition 0");
        assert_eq!(progress.registered_waiters(), 2);
        let mut outcomes = Vec::new();
        for wait in &mut waits {
            outcomes.push(poll_once(wait).await.is_ready());
        }
        assert_eq!(outcomes, [true, true, false, false]);
    }

    #[tokio::test]
    async fn a_wait_for_several_positions_is_woken_once_per_position_it_needed() {
        let progress = Progress::default();
        let target = [Position::new("catalog", 0, 10), Position::new("catalog", 1, 3)];
        let mut wait = Box::pin(progress.wait_for(&target, Duration::from_secs(30)));
        assert!(poll_once(&mut wait).await.is_pending());

        // Registered under the first position it needs; the second passing wakes nobody.
        progress.report(only_worker(1, &[(1, 4)]));
        assert_eq!(wakeups(&progress), 0);
        progress.report(only_worker(2, &[(0, 11), (1, 4)]));
        assert_eq!(wakeups(&progress), 1);
        assert_eq!(poll_once(&mut wait).await, std::task::Poll::Ready(Ok(())));
    }

    #[tokio::test]
    async fn dropped_and_timed_out_waits_leave_nothing_registered() {
        let progress = Progress::default();
        let target = [Position::new("catalog", 2, 7)];
        let mut wait = Box::pin(progress.wait_for(&target, Duration::from_secs(30)));
        assert!(poll_once(&mut wait).await.is_pending());
        assert_eq!(progress.registered_waiters(), 1);
        drop(wait);
        assert_eq!(progress.registered_waiters(), 0, "a dropped wait deregisters");

        let timed_out = progress.wait_for(&target, Duration::from_millis(1)).await;
        assert_eq!(timed_out, Err(WaitError::Timeout(Duration::from_millis(1))));
        assert_eq!(progress.registered_waiters(), 0, "a timed-out wait deregisters");

        // A wait already satisfied never registers.
        progress.report(only_worker(1, &[(2, 8)]));
        assert_eq!(progress.wait_for(&target, Duration::from_secs(30)).await, Ok(()));
        assert_eq!((progress.registered_waiters(), wakeups(&progress)), (0, 0));
    }
}
