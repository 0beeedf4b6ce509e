//! Events the server records on its own, off the request path (a `search.performed` for every
//! search): handed to one background task that appends whatever has queued up in one call.
//!
//! Appending each search as it came was one log transaction per search: at 1,600 searches/s
//! the log's writer took an eighth of the machine. Batching needs no timer: while one append
//! is in flight the next searches queue, and the next append takes them all, so an idle
//! server appends at once and a busy one in fewer, larger batches.
//!
//! Best effort by design, like the request path it replaces: a search never waits for or
//! fails with the log. When the queue is full (the log is slow or gone) new events are dropped
//! and counted (`recorded_events_dropped_total`), not buffered without bound.

use std::sync::Arc;

use shopflow_events::{Envelope, Event};
use shopflow_ingest::{EventLog, OutRecord};
use tokio::sync::mpsc;

/// Events dropped because the queue was full, or could not be appended.
pub const DROPPED_TOTAL: &str = "recorded_events_dropped_total";
/// Events queued at most; about a second of searches at full speed.
pub const QUEUE: usize = 4_096;
/// Events appended in one call at most.
pub const MAX_BATCH: usize = 512;

/// The sending side; cheap to clone. The task ends when every clone is dropped, after
/// appending what was queued.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Envelope>,
}

impl Recorder {
    /// Starts the task on the current tokio runtime.
    pub fn spawn(log: Arc<dyn EventLog>) -> Self {
        let (queue, events) = mpsc::channel(QUEUE);
        tokio::spawn(run(log, events));
        Self { queue }
    }

    /// Queues `event` for the log, or drops it (counted) if the queue is full.
    pub fn record(&self, event: Event) {
        if let Err(e) = event.validate() {
            tracing::debug!(error = %e, "recorded event is not valid; dropped");
            metrics::counter!(DROPPED_TOTAL).increment(1);
            return;
        }
        if self.queue.try_send(Envelope::new(event)).is_err() {
            metrics::counter!(DROPPED_TOTAL).increment(1);
        }
    }
}

async fn run(log: Arc<dyn EventLog>, mut events: mpsc::Receiver<Envelope>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while events.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let records: Vec<OutRecord> =
            batch.drain(..).map(|e| OutRecord::of(&e)).collect();
        let count = records.len();
        if let Err(e) = log.append(records).await {
            tracing::debug!(error = %e, events = count, "recorded events not appended");
            metrics::counter!(DROPPED_TOTAL).increment(count as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shopflow_events::types::SearchPerformed;
    use shopflow_events::{Id, Topic};
    use shopflow_ingest::{EmbeddedLog, Position, TopicSpec};

    use super::*;

    fn search(query: &str) -> Event {
        Event::SearchPerformed(SearchPerformed { user_id: Id::from("u1"), query: query.into(), results: 3 })
    }

    /// A recorder on a fresh embedded log with one `interactions` partition.
    async fn recorder(dir: &std::path::Path) -> (Arc<dyn EventLog>, Recorder) {
        let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(dir).unwrap());
        log.ensure_topic(&TopicSpec::new(Topic::Interactions.name(), 1)).await.unwrap();
        let recorder = Recorder::spawn(log.clone());
        (log, recorder)
    }

    /// The queries of the first `n` searches in the log, in log order (fewer if they never
    /// come: the read is bounded, so a lost event fails a comparison instead of hanging).
    async fn searches_in(log: &Arc<dyn EventLog>, n: usize) -> Vec<String> {
        let mut reader = log.reader(&[Position { topic: Topic::Interactions.name().into(), partition: 0, offset: 0 }]).unwrap();
        tokio::task::spawn_blocking(move || {
            let mut queries = Vec::new();
            for _ in 0..200 {
                for record in reader.poll(1_000, Duration::from_millis(50)).unwrap() {
                    match Envelope::decode(record.value.as_deref().unwrap()).unwrap().event {
                        Event::SearchPerformed(e) => queries.push(e.query),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                if queries.len() >= n {
                    break;
                }
            }
            queries.truncate(n);
            queries
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_recorded_event_reaches_the_log_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (log, recorder) = recorder(dir.path()).await;
        let n = 2_000;
        for i in 0..n {
            recorder.record(search(&format!("q{i}")));
        }
        drop(recorder); // the task appends what is queued, then ends
        assert_eq!(searches_in(&log, n).await, (0..n).map(|i| format!("q{i}")).collect::<Vec<_>>());
        assert_eq!(log.end_offsets(Topic::Interactions.name()).await.unwrap(), [n as u64], "nothing appended twice");
    }

    #[tokio::test]
    async fn an_invalid_event_is_dropped_not_appended() {
        let dir = tempfile::tempdir().unwrap();
        let (log, recorder) = recorder(dir.path()).await;
        recorder.record(search("kettle"));
        recorder.record(search(&"x".repeat(10_000)));
        recorder.record(search("lamp"));
        drop(recorder);
        assert_eq!(searches_in(&log, 2).await, ["kettle", "lamp"]);
    }
}
