//! The state machine's side records (decisions, the saga's requests to other partitions, dead
//! letters) are appended as soon as they are made, not when their epoch is sealed. The next
//! step of an order (a hold asked of a product's partition, a charge asked of the payment
//! worker) is then read at once, instead of after the epoch it was made in has gone through
//! the whole dataflow: under load that wait was most of an order's latency, once per step.
//!
//! The epoch still cannot be passed before its side records are durable: `settle` waits for
//! every append still outstanding (appending again whatever failed) before the epoch's remap
//! entry is written. (Records made by the poll that seals the epoch are not started here: they
//! go in the remap entry's own append, one commit instead of two in a row.) A crash between
//! the two leaves records whose epoch was never recorded; the restarted pipeline reads those
//! offsets again, makes the same records with the same ids, and their consumers are idempotent
//! by id.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures::future::BoxFuture;
use futures::FutureExt;
use shopflow_ingest::{EventLog, LogError, OutRecord, Position};

use super::{append_durably, PipelineError};

type Append = BoxFuture<'static, Result<Vec<Position>, LogError>>;

pub(super) struct SideWriter {
    log: Arc<dyn EventLog>,
    /// Appends handed to the log and not yet answered, with their records (to retry).
    pending: Vec<(Vec<OutRecord>, Append)>,
    /// Records whose append failed: appended again, with backoff, by `settle`.
    failed: Vec<OutRecord>,
}

impl SideWriter {
    pub(super) fn new(log: Arc<dyn EventLog>) -> Self {
        Self { log, pending: Vec::new(), failed: Vec::new() }
    }

    /// Hands `records` (if any) to the log without waiting for them to be durable, and collects
    /// the answers that have come.
    pub(super) fn start(&mut self, records: Vec<OutRecord>) {
        if !records.is_empty() {
            let log = self.log.clone();
            let copy = records.clone();
            // The poll below hands the records to the log now (an async fn does nothing until
            // polled); later polls only collect the answer.
            let append: Append = async move { log.append(copy).await }.boxed();
            self.pending.push((records, append));
        }
        self.poll();
    }

    /// Collects the answers that have come; never waits.
    fn poll(&mut self) {
        let mut context = Context::from_waker(Waker::noop());
        let failed = &mut self.failed;
        self.pending.retain_mut(|(records, append)| match append.poll_unpin(&mut context) {
            Poll::Pending => true,
            Poll::Ready(Ok(_)) => false,
            Poll::Ready(Err(error)) => {
                tracing::warn!(%error, records = records.len(), "side append failed, will retry");
                failed.append(records);
                false
            }
        });
    }

    /// Waits until every record started is durable.
    pub(super) fn settle(&mut self, stop: &AtomicBool) -> Result<(), PipelineError> {
        for (mut records, append) in std::mem::take(&mut self.pending) {
            if let Err(error) = futures::executor::block_on(append) {
                tracing::warn!(%error, records = records.len(), "side append failed, retrying");
                self.failed.append(&mut records);
            }
        }
        append_durably(self.log.as_ref(), std::mem::take(&mut self.failed), stop)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use async_trait::async_trait;
    use shopflow_ingest::{EmbeddedLog, LogReader, TopicSpec};

    use super::*;

    /// The embedded log, but the first `failures` appends fail without writing anything.
    struct FailingFirst {
        log: EmbeddedLog,
        failures: AtomicUsize,
    }

    #[async_trait]
    impl EventLog for FailingFirst {
        fn backend(&self) -> &'static str {
            "failing-first"
        }
        async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
            self.log.ensure_topic(spec).await
        }
        async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
            self.log.partitions(topic).await
        }
        async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, LogError> {
            if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(LogError::Invalid("refused by the test".into()));
            }
            self.log.append(records).await
        }
        async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
            self.log.end_offsets(topic).await
        }
        fn reader(&self, from: &[Position]) -> Result<Box<dyn LogReader>, LogError> {
            self.log.reader(from)
        }
    }

    fn values(log: &dyn EventLog) -> Vec<String> {
        let mut reader = log.reader(&[Position::new("side", 0, 0)]).unwrap();
        let mut out = Vec::new();
        loop {
            let batch = reader.poll(100, Duration::from_millis(50)).unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(batch.into_iter().map(|r| String::from_utf8(r.value.unwrap()).unwrap()));
        }
    }

    #[test]
    fn every_started_record_is_in_the_log_once_settled_even_when_an_append_failed() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(FailingFirst { log: EmbeddedLog::open(dir.path()).unwrap(), failures: AtomicUsize::new(1) });
        futures::executor::block_on(log.ensure_topic(&TopicSpec::new("side", 1))).unwrap();
        let mut writer = SideWriter::new(log.clone());
        for batch in 0..5 {
            writer.start((0..3).map(|i| OutRecord::keyed("side", "k", format!("{batch}.{i}").into_bytes())).collect());
        }
        writer.settle(&AtomicBool::new(false)).unwrap();
        assert!(writer.pending.is_empty() && writer.failed.is_empty());

        let mut got = values(log.as_ref());
        got.sort();
        let mut want: Vec<String> = (0..5).flat_map(|b| (0..3).map(move |i| format!("{b}.{i}"))).collect();
        want.sort();
        assert_eq!(got, want, "each record exactly once, the refused batch included");
    }
}
