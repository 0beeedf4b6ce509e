//! Stage 2, the state machine: this worker's partitions' states, restored from their
//! snapshots, folding records in offset order into changes of the base collections, dead
//! letters and decisions; snapshotted periodically off the worker thread.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shopflow_events::{DeadLetter, Envelope, Topic};
use shopflow_ingest::{EventLog, OutRecord, Position, Record};

use super::{PipelineConfig, PipelineError};
use crate::base::Changes;
use crate::jobs::weights::InteractionWeights;
use crate::remap::REMAP_TOPIC;
use crate::snapshot::SnapshotStore;
use crate::state::{Fold, PartitionSnapshot, PartitionState};

pub(super) type Partition = (String, u32);

/// What the worker that truncates `_remap` (worker 0) needs: the log and every source
/// partition, whose snapshots together decide how far.
pub(super) struct RemapTruncation {
    pub log: Arc<dyn EventLog>,
    pub partitions: Vec<Partition>,
}

pub(super) struct StateMachine {
    states: BTreeMap<Partition, PartitionState>,
    truncation: Option<Arc<RemapTruncation>>,
    weights: InteractionWeights,
    hold_timeout_ms: i64,
    /// Deadlines already announced by this process (not state: after a restart one may be
    /// announced again, which the fold ignores; the announcement's id derives from it).
    announced: std::collections::HashSet<(i64, shopflow_events::Id)>,
    snapshots: SnapshotStore,
    interval: Duration,
    last_snapshot: Instant,
    writer: Option<JoinHandle<Result<(), PipelineError>>>,
}

impl StateMachine {
    /// The states of `owned`, each from its snapshot or empty (then rebuilt from the log).
    pub(super) fn restore(owned: &[Partition], config: &PipelineConfig, truncation: Option<RemapTruncation>) -> Result<Self, PipelineError> {
        let snapshots = SnapshotStore::new(config.data_dir.join("snapshots"));
        let mut states = BTreeMap::new();
        for (topic, partition) in owned {
            let state = snapshots.load(topic, *partition)?.unwrap_or_else(|| PartitionState::new(topic, *partition));
            states.insert((topic.clone(), *partition), state);
        }
        Ok(Self {
            states,
            truncation: truncation.map(Arc::new),
            weights: config.weights,
            hold_timeout_ms: config.hold_timeout_ms,
            announced: Default::default(),
            snapshots,
            interval: Duration::from_millis(config.snapshot_interval_ms),
            last_snapshot: Instant::now(),
            writer: None,
        })
    }

    pub(super) fn next_offsets(&self) -> BTreeMap<Partition, u64> {
        self.states.iter().map(|(k, s)| (k.clone(), s.next_offset)).collect()
    }

    pub(super) fn positions(&self) -> Vec<Position> {
        self.states.iter().map(|((t, p), s)| Position::new(t.clone(), *p, s.next_offset)).collect()
    }

    /// The remap offset from which entries may describe records beyond the restored states.
    pub(super) fn remap_from(&self) -> u64 {
        self.states.values().map(|s| s.remap_next).min().unwrap_or(0)
    }

    /// Every restored row, to enter the dataflow before anything is read.
    pub(super) fn insertions(&self) -> impl Iterator<Item = Changes> + '_ {
        self.states.values().map(PartitionState::as_insertions)
    }

    /// Folds `records` into `changes`; dead letters and decisions go to `side`.
    pub(super) fn apply(&mut self, records: &[Record], changes: &mut Changes, side: &mut Vec<OutRecord>) {
        let fold = Fold { weights: &self.weights, hold_timeout_ms: self.hold_timeout_ms };
        for record in records {
            apply_record(record, &mut self.states, &fold, changes, side);
        }
        for decision in changes.decisions.drain(..) {
            side.push(decision.record());
        }
    }

    /// `order.payment_deadline` records for the unpaid orders whose deadline the wall clock
    /// `now` has passed, each once per process. Appended like any write, they reach the
    /// orders' partitions as ordinary records: the expiry is decided by their time there.
    pub(super) fn due_deadlines(&mut self, now: i64) -> Vec<OutRecord> {
        let mut out = Vec::new();
        for state in self.states.values() {
            for due in state.due_deadlines(now) {
                if !self.announced.insert((due.deadline, due.order_id.clone())) {
                    continue;
                }
                let name = format!("payment-deadline\n{}\n{}", due.order_id, due.deadline);
                let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes());
                let envelope = Envelope { id, ..Envelope::new(shopflow_events::Event::PaymentDeadline(due)) };
                out.push(OutRecord::of(&envelope));
            }
        }
        out
    }

    /// Notes that every entry up to remap offset `offset` covers only records in the states.
    pub(super) fn remap_written(&mut self, offset: u64) {
        for state in self.states.values_mut() {
            state.remap_next = offset + 1;
        }
    }

    /// Takes a snapshot when one is due and the previous one is written. Taking it is a copy;
    /// encoding and fsync happen off the worker so the dataflow keeps moving.
    pub(super) fn snapshot_if_due(&mut self) -> Result<(), PipelineError> {
        let writer_idle = self.writer.as_ref().is_none_or(|w| w.is_finished());
        if !writer_idle || self.last_snapshot.elapsed() < self.interval {
            return Ok(());
        }
        self.join_writer()?;
        let taken = self.take();
        let store = self.snapshots.clone();
        let truncation = self.truncation.clone();
        self.writer = Some(std::thread::spawn(move || {
            write(&store, &taken)?;
            if let Some(truncation) = truncation {
                truncate_remap(&store, &truncation);
            }
            Ok(())
        }));
        self.last_snapshot = Instant::now();
        Ok(())
    }

    /// Waits for the snapshot being written; with `final_snapshot`, writes one more.
    pub(super) fn finish(&mut self, final_snapshot: bool) -> Result<(), PipelineError> {
        self.join_writer()?;
        if final_snapshot {
            let taken = self.take();
            write(&self.snapshots, &taken)?;
        }
        Ok(())
    }

    fn join_writer(&mut self) -> Result<(), PipelineError> {
        match self.writer.take() {
            Some(writer) => writer.join().map_err(|_| PipelineError::Worker("snapshot writer panicked".into()))?,
            None => Ok(()),
        }
    }

    fn take(&mut self) -> Vec<(String, u32, PartitionSnapshot)> {
        let now = super::now_ms() as i64;
        self.states
            .iter_mut()
            .map(|((topic, partition), state)| {
                state.prune_window(now);
                (topic.clone(), *partition, state.to_snapshot())
            })
            .collect()
    }
}

/// Lets the log drop the `_remap` entries every snapshot covers, so the topic stays as long
/// as a snapshot interval of epochs. Best effort: a failure only leaves more to read.
fn truncate_remap(store: &SnapshotStore, truncation: &RemapTruncation) {
    let Some(floor) = store.remap_floor(&truncation.partitions) else { return };
    match futures::executor::block_on(truncation.log.truncate_before(REMAP_TOPIC, 0, floor)) {
        Ok(()) => tracing::debug!(floor, "remap truncated"),
        Err(error) => tracing::warn!(%error, floor, "remap truncation failed"),
    }
}

fn write(store: &SnapshotStore, taken: &[(String, u32, PartitionSnapshot)]) -> Result<(), PipelineError> {
    for (topic, partition, snapshot) in taken {
        store.write(topic, *partition, snapshot)?;
    }
    Ok(())
}

fn apply_record(
    record: &Record,
    states: &mut BTreeMap<Partition, PartitionState>,
    fold: &Fold,
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
            state.apply_with(record.offset, &envelope, fold, changes);
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
