//! The remap (as Materialize calls it): which source offsets each epoch covers. Before a
//! worker lets the frontier pass an epoch that read records, it appends the epoch's entry to
//! the `_remap` topic and waits for it to be durable; only then can the epoch's output be
//! published. On restart, entries beyond the snapshots are read back (`read`) so that replay
//! puts every record into the epoch it had (`crate::reclock`). In memory, each worker keeps
//! the entries publication still needs to say which offsets a frontier covers
//! (`RemapHistory`).
//!
//! `_remap` stays bounded: each snapshot records the remap offset after the last entry it
//! covers (`PartitionState::remap_next`, also written beside it as `<partition>.remap`). A
//! restart reads from the least of its partitions' offsets, and after each snapshot worker 0
//! truncates the topic below the least over every partition (`SnapshotStore::remap_floor`,
//! `EventLog::truncate_before`: Kafka's DeleteRecords, a range delete on the embedded log).

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shopflow_ingest::{EventLog, LogError, OutRecord, Position};

use crate::jobs::Epoch;

/// The topic the remap is made durable in (one partition: entries of all workers, in order).
pub const REMAP_TOPIC: &str = "_remap";

/// One epoch's remap entry, as written to the `_remap` topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemapEntry {
    pub worker: usize,
    pub peers: usize,
    pub epoch: Epoch,
    /// Next offset of each partition the worker owns, after this epoch.
    pub offsets: Vec<Position>,
}

impl RemapEntry {
    /// The record that makes this entry durable.
    pub fn record(&self) -> OutRecord {
        OutRecord {
            topic: REMAP_TOPIC.to_owned(),
            partition: Some(0),
            key: self.worker.to_string().into_bytes(),
            value: Some(serde_json::to_vec(self).expect("remap entries serialise")),
        }
    }
}

/// Every readable entry from remap offset `from` to the end of the topic as it is now.
pub fn read(log: &dyn EventLog, from: u64) -> Result<Vec<RemapEntry>, LogError> {
    let end = futures::executor::block_on(log.end_offsets(REMAP_TOPIC))?.first().copied().unwrap_or(0);
    let mut entries = Vec::new();
    let mut next = from.min(end);
    if next >= end {
        return Ok(entries);
    }
    let mut reader = log.reader(&[Position::new(REMAP_TOPIC, 0, next)])?;
    while next < end {
        let records = reader.poll(10_000, Duration::from_millis(500))?;
        if records.is_empty() {
            return Err(LogError::Unavailable(format!("remap ends at {end} but reading stalled at {next}")));
        }
        for record in records {
            next = record.offset + 1;
            match record.value.as_deref().and_then(|v| serde_json::from_slice::<RemapEntry>(v).ok()) {
                Some(entry) => entries.push(entry),
                None => tracing::warn!(offset = record.offset, "unreadable remap entry skipped"),
            }
        }
    }
    Ok(entries)
}

/// Source offsets per sealed epoch on this worker: "records up to these offsets are in epochs
/// at or below this one". Written by the source, read by publication.
#[derive(Default)]
pub struct RemapHistory {
    entries: VecDeque<(Epoch, Vec<Position>)>,
}

impl RemapHistory {
    pub fn push(&mut self, epoch: Epoch, offsets: Vec<Position>) {
        self.entries.push_back((epoch, offsets));
    }

    /// The offsets read by every epoch below `frontier`, forgetting entries no longer needed.
    pub fn offsets_before(&mut self, frontier: Epoch) -> Option<Vec<Position>> {
        while self.entries.len() > 1 && self.entries[1].0 < frontier {
            self.entries.pop_front();
        }
        self.entries.front().filter(|(e, _)| *e < frontier).map(|(_, o)| o.clone())
    }
}
