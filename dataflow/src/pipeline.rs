//! The pipeline: timely workers that each own a share of the source partitions, read them,
//! run the per-partition state machine, feed the jobs, and publish completed epochs.
//!
//! Epochs are milliseconds since the Unix epoch, strictly increasing per worker. Before a
//! worker lets the frontier pass an epoch that read records, it makes the epoch's remap entry
//! (which offsets the epoch covers) durable in the `_remap` topic, together with the epoch's
//! dead letters and decisions; only then can the epoch's output be published.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shopflow_events::{DeadLetter, Envelope, Topic};
use shopflow_ingest::{EventLog, LogReader, OutRecord, Position, Record};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;
use timely::{CommunicationConfig, WorkerConfig};

use crate::base::{Changes, Inputs};
use crate::jobs::{self, Epoch};
use crate::reclock::{Replay, ReplaySource};
use crate::publish::{self, ChangelogSink, LocalSink, RemapHistory, ViewRow, ViewSink};
use crate::snapshot::SnapshotStore;
use crate::state::PartitionState;
use crate::views::{ProgressReport, ViewUpdate, Views};

/// The topic the remap (epoch → offsets) is made durable in.
pub const REMAP_TOPIC: &str = "_remap";

/// The source topics the current jobs read.
pub const SOURCE_TOPICS: [Topic; 5] = [Topic::Catalog, Topic::Inventory, Topic::Interactions, Topic::Carts, Topic::Orders];

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
    /// How often an idle worker still seals an epoch, so the frontier keeps moving.
    pub idle_tick_ms: u64,
    /// Most records read into one epoch.
    pub max_batch: usize,
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
            export_changelogs: false,
            changelog_partitions: 4,
            marker_interval_ms: 100,
            heartbeat_interval_ms: 1_000,
            snapshot_on_stop: true,
            weights: Default::default(),
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

/// One epoch's remap entry, as written to the `_remap` topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemapEntry {
    pub worker: usize,
    pub peers: usize,
    pub epoch: Epoch,
    /// Next offset of each partition the worker owns, after this epoch.
    pub offsets: Vec<Position>,
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
    let shared = Arc::new(Shared { config, log, views, partitions, stop: stop.clone() });
    let guards = timely::execute(
        timely::Config { communication, worker: WorkerConfig::default() },
        move |worker| {
            let result = run_worker(worker, &shared).map_err(|error| {
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

struct Shared {
    config: PipelineConfig,
    log: Arc<dyn EventLog>,
    views: Option<Arc<Views>>,
    partitions: Vec<(String, u32)>,
    stop: Arc<AtomicBool>,
}

/// Fans one publication out to several sinks.
struct Fanout(Vec<Box<dyn ViewSink>>);

impl ViewSink for Fanout {
    fn publish(&mut self, updates: Vec<ViewUpdate>, report: ProgressReport) {
        if let Some((last, rest)) = self.0.split_last_mut() {
            for sink in rest {
                sink.publish(updates.clone(), report.clone());
            }
            last.publish(updates, report);
        }
    }
}

fn now_ms() -> Epoch {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Epoch)
        .unwrap_or_default()
}

fn run_worker(worker: &mut Worker, shared: &Shared) -> Result<(), PipelineError> {
    let index = worker.index();
    let peers = worker.peers();
    let remap = Rc::new(RefCell::new(RemapHistory::default()));
    let mut inputs = Inputs::new();

    let mut sinks: Vec<Box<dyn ViewSink>> = Vec::new();
    if let Some(views) = &shared.views {
        sinks.push(Box::new(LocalSink(views.clone())));
    }
    if shared.config.export_changelogs {
        let sink = ChangelogSink::new(shared.log.clone(), shared.config.changelog_partitions)
            .with_marker_interval(Duration::from_millis(shared.config.marker_interval_ms))
            .with_heartbeat_interval(Duration::from_millis(shared.config.heartbeat_interval_ms));
        sinks.push(Box::new(sink));
    }
    let sink: Box<dyn ViewSink> = Box::new(Fanout(sinks));

    let probe: ProbeHandle<Epoch> = worker.dataflow::<Epoch, _, _>(|scope| {
        let base = inputs.collections(scope.clone());
        let products = jobs::catalog::build(&base).map(|row| ViewRow::Product(Box::new(row)));
        let stock = jobs::stock::build(&base).map(ViewRow::Stock);
        let warehouses = base.warehouses.clone().map(|(_, w)| ViewRow::Warehouse(w));
        let matrix = jobs::interactions::build(&base);
        let (probe, all) = products
            .concat(stock)
            .concat(warehouses)
            .concat(matrix.interactions.map(ViewRow::Interaction))
            .concat(matrix.purchases.map(ViewRow::Purchase))
            .concat(matrix.trending.map(ViewRow::Trending))
            .concat(jobs::top_sellers::build(&base).map(ViewRow::TopSeller))
            .concat(base.requests.clone().map(|(_, row)| ViewRow::Request(row)))
            .probe();
        publish::build(all.inner, index, peers, remap.clone(), sink);
        probe
    });

    // This worker's partitions: every (topic, partition) pair, dealt round-robin.
    let owned: Vec<(String, u32)> =
        shared.partitions.iter().enumerate().filter(|(i, _)| i % peers == index).map(|(_, tp)| tp.clone()).collect();
    let snapshots = SnapshotStore::new(shared.config.data_dir.join("snapshots"));
    let mut states: BTreeMap<(String, u32), PartitionState> = BTreeMap::new();
    for (topic, partition) in &owned {
        let state = snapshots.load(topic, *partition)?.unwrap_or_else(|| PartitionState::new(topic, *partition));
        states.insert((topic.clone(), *partition), state);
    }
    let restored = next_offsets(&states);
    // Remap entries written before a partition's snapshot describe records already in it: the
    // replay reads the remap only from the earliest point a restored partition still needs.
    let remap_from = states.values().map(|s| s.remap_next).min().unwrap_or(0);
    let mut replay = if owned.is_empty() {
        None
    } else {
        Some(ReplaySource::new(Replay::load(shared.log.as_ref(), &restored, remap_from)?, &restored))
    }
    .filter(|r| !r.is_done());
    // The restored state enters in an epoch of its own, just before the first epoch that reads
    // records (replayed epochs lie in the past: before the first of them).
    let first: Epoch = replay.as_ref().and_then(ReplaySource::current).unwrap_or_else(now_ms);
    let restored_at = first - 1;
    inputs.advance_to(restored_at);
    for state in states.values() {
        inputs.insert(&mut state.as_insertions());
    }
    let mut epoch = first;
    inputs.advance_to(epoch);
    if let Some(r) = &replay {
        tracing::info!(worker = index, partitions = ?r.partitions(), "replaying recorded epochs");
    }
    let positions = |states: &BTreeMap<(String, u32), PartitionState>| -> Vec<Position> {
        states.iter().map(|((t, p), s)| Position::new(t.clone(), *p, s.next_offset)).collect()
    };
    tracing::info!(worker = index, peers, partitions = owned.len(), "pipeline worker started");
    remap.borrow_mut().push(restored_at, positions(&states));
    // The restored epoch is published alone before anything is read: consolidated together
    // with later epochs, a restored row deleted right after the restart would cancel out, and
    // its tombstone would never reach the changelogs, which still hold the row from before.
    while probe.less_equal(&restored_at) && !shared.stop.load(Ordering::Relaxed) {
        worker.step_or_park(Some(Duration::from_millis(1)));
    }

    // The live reader starts where replay ends; during replay the replay source reads.
    let mut reader: Option<Box<dyn LogReader>> =
        if owned.is_empty() || replay.is_some() { None } else { Some(shared.log.reader(&positions(&states))?) };
    let mut changes = Changes::default();
    let mut side: Vec<OutRecord> = Vec::new();
    let mut in_flight: VecDeque<Epoch> = VecDeque::new();
    let mut last_seal = Instant::now();
    let mut last_snapshot = Instant::now();
    let mut epoch_read = false;
    let mut snapshot_writer: Option<std::thread::JoinHandle<Result<(), PipelineError>>> = None;

    while !shared.stop.load(Ordering::Relaxed) {
        // Bound the epochs in flight, so a slow dataflow slows reading instead of queueing.
        while in_flight.front().is_some_and(|e| !probe.less_equal(e)) {
            in_flight.pop_front();
        }
        let busy = !in_flight.is_empty();
        let wait = if busy { Duration::ZERO } else { Duration::from_millis(1) };
        let records: Vec<Record> = match (replay.as_mut(), reader.as_mut()) {
            _ if in_flight.len() >= 8 => {
                worker.step_or_park(Some(Duration::from_millis(1)));
                Vec::new()
            }
            (Some(replay), _) => replay.poll(shared.log.as_ref(), shared.config.max_batch, wait)?,
            (None, Some(reader)) => reader.poll(shared.config.max_batch, wait)?,
            (None, None) => {
                worker.step_or_park(Some(Duration::from_millis(1)));
                Vec::new()
            }
        };
        epoch_read |= !records.is_empty();
        for record in &records {
            apply_record(record, &mut states, &shared.config.weights, &mut changes, &mut side);
        }
        inputs.insert(&mut changes);
        for decision in changes.decisions.drain(..) {
            side.push(OutRecord::keyed(decision.topic().name(), decision.key().as_str(), decision.to_json()));
        }

        let seal = match &replay {
            Some(r) => r.epoch_complete(),
            None => epoch_read || last_seal.elapsed() >= Duration::from_millis(shared.config.idle_tick_ms),
        };
        if seal {
            let offsets = positions(&states);
            if epoch_read {
                let entry = RemapEntry { worker: index, peers, epoch, offsets: offsets.clone() };
                side.push(OutRecord {
                    topic: REMAP_TOPIC.to_owned(),
                    partition: Some(0),
                    key: index.to_string().into_bytes(),
                    value: Some(serde_json::to_vec(&entry).expect("remap entries serialise")),
                });
                let written = append_durably(shared.log.as_ref(), std::mem::take(&mut side), &shared.stop)?;
                // During replay the earlier run's entries for epochs still to come lie below
                // this one: the snapshot may only skip them once they are replayed.
                if let Some(entry) = written.last().filter(|_| replay.is_none()) {
                    for state in states.values_mut() {
                        state.remap_next = entry.offset + 1;
                    }
                }
                remap.borrow_mut().push(epoch, offsets);
            }
            in_flight.push_back(epoch);
            epoch_read = false;
            let recorded = replay.as_mut().and_then(|r| {
                r.seal();
                r.current()
            });
            if replay.as_ref().is_some_and(ReplaySource::is_done) {
                // Anything read ahead of the last recorded epoch is read again by the live
                // reader, from where the state stands.
                replay = None;
                reader = Some(shared.log.reader(&positions(&states))?);
                tracing::info!(worker = index, "replay of recorded epochs done");
            }
            epoch = recorded.unwrap_or((epoch + 1).max(now_ms()));
            inputs.advance_to(epoch);
            last_seal = Instant::now();
            let writer_idle = snapshot_writer.as_ref().is_none_or(|w| w.is_finished());
            if writer_idle && last_snapshot.elapsed() >= Duration::from_millis(shared.config.snapshot_interval_ms) {
                if let Some(previous) = snapshot_writer.take() {
                    previous.join().map_err(|_| PipelineError::Worker("snapshot writer panicked".into()))??;
                }
                // Taking the snapshot is a copy; encoding and fsync happen off the worker so
                // the dataflow keeps moving.
                let taken = take_snapshots(&mut states);
                let store = snapshots.clone();
                snapshot_writer = Some(std::thread::spawn(move || write_snapshots(&store, &taken)));
                last_snapshot = Instant::now();
            }
        }
        worker.step();
    }
    if let Some(previous) = snapshot_writer.take() {
        previous.join().map_err(|_| PipelineError::Worker("snapshot writer panicked".into()))??;
    }
    if shared.config.snapshot_on_stop {
        write_snapshots(&snapshots, &take_snapshots(&mut states))?;
    }
    // Close the inputs and let the dataflow drain briefly; in a cluster the other processes
    // may be stopping later or not at all, so after a grace period the dataflow is dropped
    // locally rather than waiting for them. Nothing is lost: the snapshot is written, and
    // output is idempotent upserts.
    drop(inputs);
    let grace = Instant::now();
    while !probe.done() && grace.elapsed() < Duration::from_secs(2) {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
    tracing::info!(worker = index, "pipeline worker stopped");
    Ok(())
}

fn next_offsets(states: &BTreeMap<(String, u32), PartitionState>) -> BTreeMap<(String, u32), u64> {
    states.iter().map(|(k, s)| (k.clone(), s.next_offset)).collect()
}

fn apply_record(
    record: &Record,
    states: &mut BTreeMap<(String, u32), PartitionState>,
    weights: &crate::jobs::weights::InteractionWeights,
    changes: &mut Changes,
    side: &mut Vec<OutRecord>,
) {
    let Some(state) = states.get_mut(&(record.topic.to_string(), record.partition)) else {
        debug_assert!(false, "read a partition this worker does not own");
        return;
    };
    if record.offset < state.next_offset {
        return;
    }
    let decoded = match &record.value {
        Some(bytes) => Envelope::decode(bytes).map_err(|e| e.to_string()),
        None => Err("empty record (tombstone) on an event topic".to_owned()),
    };
    match decoded {
        Ok(envelope) if envelope.topic().name() == &*record.topic => {
            state.apply(record.offset, &envelope, weights, changes);
        }
        outcome => {
            state.next_offset = record.offset + 1;
            let reason = match outcome {
                Ok(envelope) => format!("{} belongs on topic {}", envelope.event.type_name(), envelope.topic()),
                Err(reason) => reason,
            };
            tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, %reason, "event dead-lettered");
            let letter = DeadLetter {
                topic: record.topic.to_string(),
                partition: record.partition,
                offset: record.offset,
                reason,
                payload: String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into_owned(),
            };
            side.push(OutRecord::keyed(
                Topic::Dlq.name(),
                format!("{}/{}/{}", record.topic, record.partition, record.offset),
                serde_json::to_vec(&letter).expect("dead letters serialise"),
            ));
        }
    }
}

/// Appends until acknowledged: the epoch must not be exposed before its remap is durable,
/// and the log being briefly unavailable is no reason to lose the pipeline.
fn append_durably(log: &dyn EventLog, records: Vec<OutRecord>, stop: &AtomicBool) -> Result<Vec<Position>, PipelineError> {
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

fn take_snapshots(states: &mut BTreeMap<(String, u32), PartitionState>) -> Vec<(String, u32, crate::state::PartitionSnapshot)> {
    let now = now_ms() as i64;
    states
        .iter_mut()
        .map(|((topic, partition), state)| {
            state.prune_window(now);
            (topic.clone(), *partition, state.to_snapshot())
        })
        .collect()
}

fn write_snapshots(store: &SnapshotStore, taken: &[(String, u32, crate::state::PartitionSnapshot)]) -> Result<(), PipelineError> {
    for (topic, partition, snapshot) in taken {
        store.write(topic, *partition, snapshot)?;
    }
    Ok(())
}
