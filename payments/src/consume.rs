//! Reading one topic as a consumer group, as the analytics sink does: start at the group's
//! committed offsets, poll on a thread of its own ([`shopflow_ingest::spawn_channel_reader`])
//! into a bounded channel, and leave committing to the caller, after its output is durable.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use shopflow_ingest::{EventLog, Position, Record};
use tokio::sync::mpsc;

use crate::PaymentsError;

/// Chunks of records waiting between the reader thread and the consumer.
const CHANNEL_CHUNKS: usize = 4;

pub(crate) struct GroupReader {
    pub rx: mpsc::Receiver<Vec<Record>>,
    /// Next offset to read per partition, as committed when the reader started.
    pub committed: BTreeMap<u32, u64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GroupReader {
    pub async fn start(log: Arc<dyn EventLog>, group: &str, topic: &str, poll_max: usize) -> Result<Self, PaymentsError> {
        let committed: BTreeMap<u32, u64> = log
            .committed(group, topic)
            .await?
            .into_iter()
            .enumerate()
            .map(|(p, o)| (p as u32, o.unwrap_or(0)))
            .collect();
        let starts: Vec<Position> = committed.iter().map(|(p, o)| Position::new(topic, *p, *o)).collect();
        // Opening a reader may block (Kafka: a metadata round trip).
        let reader = {
            let log = log.clone();
            tokio::task::spawn_blocking(move || log.reader(&starts))
                .await
                .map_err(|e| PaymentsError::Stopped(format!("opening the reader: {e}")))??
        };
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = shopflow_ingest::spawn_channel_reader(format!("{group}-reader"), reader, tx, poll_max, stop.clone())
            .map_err(|e| PaymentsError::Stopped(format!("spawning the log reader: {e}")))?;
        Ok(Self { rx, committed, stop, thread: Some(thread) })
    }

    /// Stops the reader thread and waits for it (at most one poll).
    pub async fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblocks a reader waiting to hand over a chunk.
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for GroupReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
