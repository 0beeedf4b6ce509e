//! The ClickHouse sink, laid out as Vector lays out a sink: [`config`](crate::config) (the
//! settings), this module (the sink: read, batch, send, commit), [`service`] (talks to
//! ClickHouse), [`request_builder`] (records to rows), and `tests/sink.rs` (integration tests
//! against the chDB engine behind its HTTP adapter).
//!
//! **Exactly once.** Every row carries the log position it came from (`log_topic`,
//! `log_partition`, `log_offset`). The sink commits the group's offsets on the log only after
//! ClickHouse acknowledged every table of a batch. On start it reads from the committed
//! offsets and first asks each table which positions at or beyond them it already holds (the
//! batches a crashed sink had sent but not committed, bounded by what was in flight), and
//! leaves those rows out, table by table. After an insert whose outcome is unknown it asks the
//! same question for that batch before retrying. One `INSERT` is one block and is atomic, so
//! a table holds all of an event's rows or none of them.
//!
//! Why not the alternatives the issue names: `insert_deduplication_token` (with
//! `non_replicated_deduplication_window` on a plain MergeTree) only helps when a retry resends
//! the *same* block, but a restarted sink cuts its batches differently (time and size limits),
//! and the window is a count of recent blocks, not a guarantee; `ReplacingMergeTree` removes
//! duplicates only when parts happen to merge, so `SELECT count()` without `FINAL` would
//! overcount in between. Positions stored with the rows answer exactly, on any ClickHouse,
//! and cost three columns.
//!
//! What is *not* deduplicated: the same event appended twice to the log (a producer retry
//! gives it a second offset). Those are two records and land twice in `events`; analysts
//! can tell them apart by `id`.
//!
//! **Back-pressure.** A reader thread polls the log into a bounded channel; while ClickHouse
//! is down the sink retries the batch in hand with backoff and stops taking from the channel,
//! so the reader blocks once `max_pending_records` are waiting. Memory stays bounded.
//!
//! Dead letters (records that do not decode or validate) are appended to `dlq` before their
//! batch is committed: at least once (a crash in between repeats them).

mod redact;
pub use redact::holds_secrets;
pub mod request_builder;
pub mod service;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shopflow_events::Topic;
use shopflow_ingest::{EventLog, Position, Record};
use tokio::sync::{mpsc, watch};

use crate::{AnalyticsError, AnalyticsSettings};
use request_builder::{Present, RequestBuilder, RowBatch};
use service::ClickHouseService;

/// The topics the sink delivers: every event topic but the dead letters themselves.
pub fn source_topics() -> impl Iterator<Item = Topic> {
    Topic::ALL.into_iter().filter(|t| *t != Topic::Dlq)
}

/// What the sink has delivered so far (published after every acknowledged batch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Records acknowledged by ClickHouse and committed (this run).
    pub records: u64,
    /// Rows inserted over every table (this run).
    pub rows: u64,
    pub batches: u64,
    pub dead_letters: u64,
    /// Next offset to read per partition, as committed.
    pub committed: BTreeMap<(Topic, u32), u64>,
}

/// One acknowledged batch, for benchmarks: when it was acknowledged and the append times of
/// its records.
#[derive(Clone, Debug)]
pub struct Acked {
    pub at_ms: i64,
    pub appended_ms: Vec<i64>,
    pub rows: usize,
}

pub struct ClickHouseSink {
    log: Arc<dyn EventLog>,
    service: ClickHouseService,
    settings: AnalyticsSettings,
    progress: watch::Sender<Progress>,
    acked: Option<mpsc::UnboundedSender<Acked>>,
}

impl ClickHouseSink {
    pub fn new(log: Arc<dyn EventLog>, service: ClickHouseService, settings: AnalyticsSettings) -> Self {
        Self { log, service, settings, progress: watch::channel(Progress::default()).0, acked: None }
    }

    /// Progress after each acknowledged batch.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Every acknowledged batch's append times (for the lag benchmark).
    pub fn with_acks(mut self, acked: mpsc::UnboundedSender<Acked>) -> Self {
        self.acked = Some(acked);
        self
    }

    /// Runs until `shutdown` turns true; then sends what it holds (one attempt per table),
    /// commits, and returns. ClickHouse being down is not an error: it is waited out.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<Progress, AnalyticsError> {
        let group = self.settings.group.clone();
        let mut committed = BTreeMap::new();
        let mut starts = Vec::new();
        for topic in source_topics() {
            let offsets = self.log.committed(&group, topic.name()).await?;
            for (partition, offset) in offsets.into_iter().enumerate() {
                let offset = offset.unwrap_or(0);
                committed.insert((topic, partition as u32), offset);
                starts.push(Position::new(topic.name(), partition as u32, offset));
            }
        }
        let mut present = self
            .retry("read what clickhouse already holds", &mut shutdown, |s| {
                let (s, committed) = (s.clone(), committed.clone());
                async move { s.present(&committed).await }
            })
            .await?
            .unwrap_or_default();
        tracing::info!(group = %group, partitions = starts.len(), already_present = present.len(), "analytics sink starting");
        if self.settings.email_hash_key == AnalyticsSettings::default().email_hash_key {
            tracing::warn!("analytics.email_hash_key is the development default; set one per deployment");
        }

        let (tx, mut rx) = mpsc::channel::<Vec<Record>>((self.settings.max_pending_records / self.settings.poll_max.max(1)).max(1));
        let stop_reader = Arc::new(AtomicBool::new(false));
        let reader = spawn_reader(self.log.clone(), starts, tx, self.settings.poll_max, stop_reader.clone())?;

        let builder = RequestBuilder::new(self.settings.email_hash_key.clone());
        let mut progress = Progress { committed: committed.clone(), ..Progress::default() };
        let mut batch = RowBatch::default();
        let mut batch_started = Instant::now();
        let wait = self.settings.batch_max_wait();
        let outcome = loop {
            let deadline = batch_started + wait;
            let full = batch.rows >= self.settings.batch_max_rows || batch.bytes >= self.settings.batch_max_bytes;
            if full || (!batch.is_empty() && Instant::now() >= deadline) {
                if let Err(e) = self.flush(&mut batch, &mut present, &mut progress, &mut shutdown).await {
                    break Err(e);
                }
                continue;
            }
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(records) => {
                        if batch.is_empty() {
                            batch_started = Instant::now();
                        }
                        for record in &records {
                            builder.add(&mut batch, record, &present);
                        }
                    }
                    None => break Err(AnalyticsError::Stopped("the log reader ended".into())),
                },
                _ = tokio::time::sleep_until(deadline.into()), if !batch.is_empty() => {}
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break Ok(());
                    }
                }
            }
        };
        stop_reader.store(true, Ordering::Relaxed);
        drop(rx);
        let _ = tokio::task::spawn_blocking(move || reader.join()).await;
        outcome?;
        if !batch.is_empty() {
            self.flush(&mut batch, &mut present, &mut progress, &mut shutdown).await?;
        }
        tracing::info!(records = progress.records, rows = progress.rows, "analytics sink stopped");
        Ok(progress)
    }

    /// Sends a batch until ClickHouse acknowledged every table, then dead letters, then commits.
    async fn flush(
        &self,
        batch: &mut RowBatch,
        present: &mut Present,
        progress: &mut Progress,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), AnalyticsError> {
        let started = Instant::now();
        let rows = batch.rows;
        let mut backoff = Duration::from_millis(self.settings.retry_initial_ms);
        let mut failures = 0u32;
        loop {
            let attempt = async {
                if failures > 0 {
                    self.service.drop_present(batch).await?;
                }
                self.service.insert(batch).await
            };
            match attempt.await {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    failures += 1;
                    metrics::counter!("analytics_sink_retries_total").increment(1);
                    tracing::warn!(error = %e, failures, backoff_ms = backoff.as_millis() as u64, "clickhouse insert failed; retrying");
                    if *shutdown.borrow() && failures > 3 {
                        return Err(AnalyticsError::Stopped(format!("shutting down with an unacknowledged batch: {e}")));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(self.settings.retry_max_ms));
                }
                Err(e) => return Err(e),
            }
        }
        let letters = std::mem::take(&mut batch.dead_letters);
        let dead = letters.len() as u64;
        if !letters.is_empty() {
            let log = self.log.clone();
            self.retry("append dead letters", shutdown, move |_| {
                let (log, letters) = (log.clone(), letters.clone());
                async move { log.append(letters).await.map_err(AnalyticsError::from) }
            })
            .await?;
        }
        let next: Vec<Position> = batch.next.iter().map(|((t, p), o)| Position::new(t.name(), *p, *o)).collect();
        let group = self.settings.group.clone();
        let log = self.log.clone();
        // A failed commit is not retried forever: the next batch's commit covers this one, and
        // a restart in between only re-reads positions ClickHouse is asked about.
        if let Err(e) = log.commit(&group, &next).await {
            tracing::warn!(error = %e, "committing the sink's offsets failed; the next batch commits them");
        } else {
            progress.committed.extend(batch.next.iter().map(|(k, v)| (*k, *v)));
            present.prune(&progress.committed);
        }
        let now = now_ms();
        progress.records += batch.records as u64;
        progress.rows += rows as u64;
        progress.batches += 1;
        progress.dead_letters += dead;
        for appended in &batch.appended_ms {
            metrics::histogram!("analytics_sink_lag_seconds").record((now - appended).max(0) as f64 / 1000.0);
        }
        metrics::histogram!("analytics_sink_batch_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("analytics_sink_records_total").increment(batch.records as u64);
        if let Some(acked) = &self.acked {
            let _ = acked.send(Acked { at_ms: now, appended_ms: std::mem::take(&mut batch.appended_ms), rows });
        }
        tracing::debug!(records = batch.records, rows, ms = started.elapsed().as_millis() as u64, "batch acknowledged");
        self.progress.send_replace(progress.clone());
        *batch = RowBatch::default();
        Ok(())
    }

    /// Runs `f` until it succeeds, backing off on transient errors; `None` if shut down first.
    async fn retry<T, F, Fut>(&self, what: &str, shutdown: &mut watch::Receiver<bool>, f: F) -> Result<Option<T>, AnalyticsError>
    where
        F: Fn(&ClickHouseService) -> Fut,
        Fut: std::future::Future<Output = Result<T, AnalyticsError>>,
    {
        let mut backoff = Duration::from_millis(self.settings.retry_initial_ms);
        loop {
            match f(&self.service).await {
                Ok(v) => return Ok(Some(v)),
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, what, "retrying");
                    if *shutdown.borrow() {
                        return Ok(None);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(self.settings.retry_max_ms));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The reader runs on its own thread (a `LogReader` blocks) and hands chunks over a bounded
/// channel: when the sink stops taking them, reading stops.
fn spawn_reader(
    log: Arc<dyn EventLog>,
    starts: Vec<Position>,
    tx: mpsc::Sender<Vec<Record>>,
    poll_max: usize,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, AnalyticsError> {
    let reader = log.reader(&starts)?;
    shopflow_ingest::spawn_channel_reader("analytics-reader".into(), reader, tx, poll_max, stop)
        .map_err(|e| AnalyticsError::Stopped(format!("spawn the log reader: {e}")))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
