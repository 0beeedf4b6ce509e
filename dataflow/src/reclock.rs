//! Reclocking on restart (as Materialize binds timestamps to Kafka offsets). An earlier run
//! made each epoch's "records up to these offsets" durable in `_remap` before exposing the
//! epoch. After a restart from a snapshot, the records beyond the snapshot are read again into
//! exactly the epochs they had, so a replay gives the same epochs, hence the same outputs and
//! the same order-dependent decisions, bit for bit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use shopflow_ingest::{EventLog, LogError, Position, Record};

use crate::jobs::Epoch;
use crate::pipeline::{RemapEntry, REMAP_TOPIC};

type Partition = (String, u32);

/// The recorded epoch boundaries this worker still has to replay.
#[derive(Debug, Default)]
pub struct Replay {
    /// Per partition: (epoch, next offset after that epoch), ascending.
    bounds: BTreeMap<Partition, VecDeque<(Epoch, u64)>>,
    /// Records read ahead of their partition's current boundary.
    held: BTreeMap<Partition, VecDeque<Record>>,
}

impl Replay {
    /// Reads the whole remap and keeps the boundaries of `owned` partitions beyond `restored`
    /// (each partition's next offset after the snapshot).
    pub fn load(log: &dyn EventLog, restored: &BTreeMap<Partition, u64>) -> Result<Replay, LogError> {
        let end = futures::executor::block_on(log.end_offsets(REMAP_TOPIC))?.first().copied().unwrap_or(0);
        let mut reader = log.reader(&[Position::new(REMAP_TOPIC, 0, 0)])?;
        let mut seen: BTreeMap<Partition, BTreeMap<Epoch, u64>> = BTreeMap::new();
        let mut next = 0;
        while next < end {
            let records = reader.poll(10_000, Duration::from_millis(500))?;
            if records.is_empty() {
                return Err(LogError::Unavailable(format!("remap ends at {end} but reading stalled at {next}")));
            }
            for record in records {
                next = record.offset + 1;
                let Some(entry) = record.value.as_deref().and_then(|v| serde_json::from_slice::<RemapEntry>(v).ok()) else {
                    tracing::warn!(offset = record.offset, "unreadable remap entry skipped");
                    continue;
                };
                for position in entry.offsets {
                    let partition = (position.topic, position.partition);
                    let Some(&from) = restored.get(&partition) else { continue };
                    if position.offset > from {
                        let ends = seen.entry(partition).or_default();
                        let end = ends.entry(entry.epoch).or_insert(0);
                        *end = (*end).max(position.offset);
                    }
                }
            }
        }
        let bounds = seen
            .into_iter()
            .map(|(partition, ends)| {
                // A boundary that does not move the partition forward adds nothing.
                let mut last = 0;
                let queue = ends.into_iter().filter(|(_, end)| std::mem::replace(&mut last, *end) < *end).collect();
                (partition, queue)
            })
            .collect();
        Ok(Replay { bounds, held: BTreeMap::new() })
    }

    /// True once every recorded boundary is sealed and every held record handed back.
    pub fn is_done(&self) -> bool {
        self.bounds.values().all(VecDeque::is_empty) && self.held.values().all(VecDeque::is_empty)
    }

    /// The epoch being replayed: the earliest recorded boundary not yet sealed.
    pub fn current(&self) -> Option<Epoch> {
        self.bounds.values().filter_map(|q| q.front().map(|(e, _)| *e)).min()
    }

    pub fn held(&self) -> usize {
        self.held.values().map(VecDeque::len).sum()
    }

    /// Of `records` (and those held earlier), the ones that belong to the current epoch, in
    /// offset order per partition; the rest is held back. After the last boundary everything
    /// is handed back.
    pub fn admit(&mut self, records: Vec<Record>) -> Vec<Record> {
        for record in records {
            self.held.entry((record.topic.to_string(), record.partition)).or_default().push_back(record);
        }
        let current = self.current();
        let mut admitted = Vec::new();
        for (partition, queue) in &mut self.held {
            let limit = match (current, self.bounds.get(partition).and_then(|b| b.front())) {
                (Some(epoch), Some((bound_epoch, end))) if *bound_epoch == epoch => Some(*end),
                // This partition read nothing more in the current epoch.
                (Some(_), Some(_)) => Some(0),
                // Replayed epochs remain for other partitions: this one waits for them.
                (Some(_), None) => Some(0),
                (None, _) => None,
            };
            while queue.front().is_some_and(|r| limit.is_none_or(|end| r.offset < end)) {
                admitted.extend(queue.pop_front());
            }
        }
        admitted
    }

    /// True when every partition bounded at the current epoch has been read up to its bound.
    pub fn epoch_complete(&self, next_offsets: &BTreeMap<Partition, u64>) -> bool {
        let Some(epoch) = self.current() else { return false };
        self.bounds.iter().all(|(partition, queue)| match queue.front() {
            Some((e, end)) if *e == epoch => next_offsets.get(partition).is_some_and(|next| next >= end),
            _ => true,
        })
    }

    /// Seals the current epoch: drops its boundaries. Returns the epoch sealed.
    pub fn seal(&mut self) -> Option<Epoch> {
        let epoch = self.current()?;
        for queue in self.bounds.values_mut() {
            if queue.front().is_some_and(|(e, _)| *e == epoch) {
                queue.pop_front();
            }
        }
        Some(epoch)
    }

    /// The partitions this replay has boundaries for (for logging).
    pub fn partitions(&self) -> BTreeSet<Partition> {
        self.bounds.iter().filter(|(_, q)| !q.is_empty()).map(|(p, _)| p.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record(partition: u32, offset: u64) -> Record {
        Record { topic: Arc::from("catalog"), partition, offset, key: vec![], value: None, timestamp_ms: 0 }
    }

    fn replay(bounds: &[(u32, &[(Epoch, u64)])]) -> Replay {
        Replay {
            bounds: bounds.iter().map(|(p, b)| (("catalog".to_owned(), *p), b.iter().copied().collect())).collect(),
            held: BTreeMap::new(),
        }
    }

    #[test]
    fn records_are_admitted_epoch_by_epoch_as_recorded() {
        // Partition 0 read offsets 0..2 in epoch 10 and 2..5 in epoch 30; partition 1 read
        // 0..1 in epoch 20.
        let mut r = replay(&[(0, &[(10, 2), (30, 5)]), (1, &[(20, 1)])]);
        let mut next: BTreeMap<Partition, u64> = [(("catalog".into(), 0), 0), (("catalog".into(), 1), 0)].into();
        let batch = (0..6).map(|o| record(0, o)).chain([record(1, 0), record(1, 1)]).collect();

        let mut epochs = Vec::new();
        let mut admitted = r.admit(batch);
        loop {
            for rec in &admitted {
                next.insert((rec.topic.to_string(), rec.partition), rec.offset + 1);
            }
            if !r.epoch_complete(&next) {
                break;
            }
            epochs.push((r.seal().unwrap(), admitted.iter().map(|r| (r.partition, r.offset)).collect::<Vec<_>>()));
            admitted = r.admit(Vec::new());
        }
        assert_eq!(
            epochs,
            vec![(10, vec![(0, 0), (0, 1)]), (20, vec![(1, 0)]), (30, vec![(0, 2), (0, 3), (0, 4)])]
        );
        // After the last boundary, the rest flows freely.
        assert!(r.current().is_none());
        let rest: Vec<_> = admitted.iter().map(|r| (r.partition, r.offset)).collect();
        assert_eq!(rest, vec![(0, 5), (1, 1)]);
        assert!(r.is_done());
    }
}
