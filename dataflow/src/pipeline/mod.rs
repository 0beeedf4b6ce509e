//! The pipeline: timely workers that each own a share of the source partitions. Each worker
//! is four stages (`worker`): the source reads its partitions (`source`), the state machine
//! folds records per partition (`machine`), the dataflow runs the jobs, and the publisher
//! hands completed epochs to the views and changelogs (`crate::publish`).
//!
//! Epochs are milliseconds since the Unix epoch, strictly increasing per worker. Before a
//! worker lets the frontier pass an epoch that read records, it makes the epoch's remap entry
//! (which offsets the epoch covers) durable in the `_remap` topic, after the epoch's dead
//! letters and decisions (appended as they are made, `side`); only then can the epoch's
//! output be published (`crate::remap`).

mod machine;
mod side;
mod source;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shopflow_ingest::{EventLog, OutRecord, Position};
use timely::{CommunicationConfig, WorkerConfig};

use crate::jobs::Epoch;
use crate::publish;
use crate::views::Views;

pub use crate::remap::{RemapEntry, REMAP_TOPIC};

pub use crate::views::SOURCE_TOPICS;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct PipelineConfig {
    /// Worker threads in this process.
    pub workers: usize,
    /// This process's index in the cluster.
    pub process: usize,
    /// `host:port` of every process of the cluster; empty for a single process.
    pub addresses: Vec<String>,
    /// Where snapshots are written.
    pub data_dir: PathBuf,
    pub snapshot_interval_ms: u64,
    /// How often an idle worker still seals an epoch, so the frontier keeps moving (time
    /// windows retire, deadlines are checked, markers flow). Records read by a worker of the
    /// same process do not wait for it: the others seal at once (`Shared::data_epoch`). In a
    /// cluster, workers of other processes do, so a clustered pipeline wants it short.
    pub idle_tick_ms: u64,
    /// Most records read into one epoch.
    pub max_batch: usize,
    /// Most epochs a worker lets into the dataflow at once before sealing records into
    /// another. While that many are in flight, records read join the open epoch (up to
    /// `max_batch`, then reading waits): under load epochs grow rather than multiply, because
    /// every epoch costs every operator a frontier step whatever it carries. 1 measured best
    /// on 2 cores (docs/benchmarks/2026-12-07-commerce-session7.md).
    pub epochs_in_flight: usize,
    /// Export views to changelog topics (scale-out mode).
    pub export_changelogs: bool,
    /// Partition count of the changelog topics.
    pub changelog_partitions: u32,
    /// Least time between two rounds of frontier markers while views change.
    pub marker_interval_ms: u64,
    /// Least time between two rounds of frontier markers while idle (lag headers keep moving).
    pub heartbeat_interval_ms: u64,
    /// Write a snapshot when stopping (off only to test recovery without one).
    pub snapshot_on_stop: bool,
    /// Weights of the interaction kinds in the interaction matrix and trending.
    pub weights: crate::jobs::weights::InteractionWeights,
    /// How long (log time) an unpaid order keeps its stock held before it expires.
    pub hold_timeout_ms: i64,
    /// How often the pipeline looks for unpaid orders whose deadline the wall clock has
    /// passed, to write their `order.payment_deadline` (so a quiet partition's orders expire).
    pub deadline_check_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            process: 0,
            addresses: Vec::new(),
            data_dir: PathBuf::from("data/pipeline"),
            snapshot_interval_ms: 10_000,
            idle_tick_ms: 10,
            max_batch: 20_000,
            epochs_in_flight: 1,
            export_changelogs: false,
            changelog_partitions: 4,
            marker_interval_ms: 100,
            heartbeat_interval_ms: 1_000,
            snapshot_on_stop: true,
            weights: Default::default(),
            hold_timeout_ms: crate::state::DEFAULT_HOLD_TIMEOUT_MS,
            deadline_check_ms: 250,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("event log: {0}")]
    Log(#[from] shopflow_ingest::LogError),
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error("timely: {0}")]
    Timely(String),
    #[error("pipeline worker failed: {0}")]
    Worker(String),
}

/// A running pipeline; dropping it does not stop it, `stop` does.
pub struct PipelineHandle {
    stop: Arc<AtomicBool>,
    guards: Option<timely::communication::WorkerGuards<Result<(), String>>>,
    finished: crossbeam_channel::Receiver<()>,
    local_workers: usize,
    clustered: bool,
}

impl PipelineHandle {
    /// Asks every worker to finish its epoch, write a final snapshot and exit; waits for them.
    pub fn stop(mut self) -> Result<(), PipelineError> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits until this process's workers exit (after `stop_flag` was raised elsewhere).
    pub fn join(&mut self) -> Result<(), PipelineError> {
        for _ in 0..self.local_workers {
            if self.finished.recv().is_err() {
                break;
            }
        }
        let Some(guards) = self.guards.take() else { return Ok(()) };
        if self.clustered {
            // Joining would also join the network threads, which run until every peer process
            // has exited: one process stopping alone would wait forever. The workers are done
            // and their snapshots written; the sockets close when the process exits.
            std::mem::forget(guards);
            return Ok(());
        }
        for result in guards.join() {
            result.map_err(PipelineError::Timely)?.map_err(PipelineError::Worker)?;
        }
        Ok(())
    }
}

/// Ensures the pipeline's own topics exist: the remap, dead letters, decisions and, when
/// exporting, the changelogs.
pub async fn ensure_topics(log: &dyn EventLog, config: &PipelineConfig) -> Result<(), PipelineError> {
    use shopflow_ingest::TopicSpec;
    log.ensure_topic(&TopicSpec::new(REMAP_TOPIC, 1)).await?;
    // The topics the pipeline writes besides its sources: dead letters, decisions for people,
    // and the payment worker's queue (the saga's requests). Partitioned like `orders`.
    let partitions = log.partitions(shopflow_events::Topic::Orders.name()).await.unwrap_or(1).max(1);
    for topic in [shopflow_events::Topic::Dlq, shopflow_events::Topic::Decisions, shopflow_events::Topic::Payments] {
        if log.partitions(topic.name()).await.is_err() {
            log.ensure_topic(&TopicSpec::new(topic.name(), partitions)).await?;
        }
    }
    if config.export_changelogs {
        for view in publish::VIEW_NAMES {
            log.ensure_topic(&TopicSpec::new(publish::changelog_topic(view), config.changelog_partitions).compacted())
                .await?;
        }
    }
    Ok(())
}

/// Starts the workers of this process. `views` receives the output directly (one-process
/// mode); with `export_changelogs` the output also goes to the changelog topics.
pub fn start(
    config: PipelineConfig,
    log: Arc<dyn EventLog>,
    views: Option<Arc<Views>>,
) -> Result<PipelineHandle, PipelineError> {
    futures::executor::block_on(ensure_topics(log.as_ref(), &config))?;
    let mut partitions = Vec::new();
    for topic in SOURCE_TOPICS {
        let count = futures::executor::block_on(log.partitions(topic.name()))?;
        partitions.extend((0..count).map(|p| (topic.name().to_owned(), p)));
    }
    let communication = if config.addresses.len() > 1 {
        CommunicationConfig::Cluster {
            threads: config.workers,
            process: config.process,
            addresses: config.addresses.clone(),
            report: false,
            zerocopy: false,
        }
    } else if config.workers > 1 {
        CommunicationConfig::Process(config.workers)
    } else {
        CommunicationConfig::Thread
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (done, finished) = crossbeam_channel::unbounded();
    let local_workers = config.workers.max(1);
    let clustered = config.addresses.len() > 1;
    let shared = Arc::new(Shared { config, log, views, partitions, stop: stop.clone(), data_epoch: AtomicU64::new(0) });
    let guards = timely::execute(
        timely::Config { communication, worker: WorkerConfig::default() },
        move |worker| {
            let result = worker::run(worker, &shared).map_err(|error| {
                tracing::error!(%error, worker = worker.index(), "pipeline worker failed");
                shared.stop.store(true, Ordering::SeqCst);
                error.to_string()
            });
            let _ = done.send(());
            result
        },
    )
    .map_err(PipelineError::Timely)?;
    Ok(PipelineHandle { stop, guards: Some(guards), finished, local_workers, clustered })
}

pub(crate) struct Shared {
    config: PipelineConfig,
    log: Arc<dyn EventLog>,
    views: Option<Arc<Views>>,
    partitions: Vec<(String, u32)>,
    stop: Arc<AtomicBool>,
    /// The newest epoch a worker of this process sealed with records in it. The frontier
    /// passes an epoch only once every worker has sealed it, so an idle worker seals as soon
    /// as it sees this reach its open epoch, instead of holding the others' records back
    /// until its idle tick (workers in other processes still wait for theirs).
    data_epoch: AtomicU64,
}

fn now_ms() -> Epoch {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Epoch)
        .unwrap_or_default()
}

/// Appends until acknowledged: the epoch must not be exposed before its remap is durable,
/// and the log being briefly unavailable is no reason to lose the pipeline.
fn append_durably(log: &dyn EventLog, records: Vec<OutRecord>, stop: &AtomicBool) -> Result<Vec<Position>, PipelineError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let mut attempt = 0u32;
    loop {
        match futures::executor::block_on(log.append(records.clone())) {
            Ok(positions) => return Ok(positions),
            Err(error) if attempt < 100 && !stop.load(Ordering::Relaxed) => {
                attempt += 1;
                tracing::warn!(%error, attempt, "remap append failed, retrying");
                std::thread::sleep(Duration::from_millis(20 * u64::from(attempt.min(25))));
            }
            Err(error) => return Err(error.into()),
        }
    }
}
