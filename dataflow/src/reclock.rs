//! Reclocking on restart (as Materialize binds timestamps to Kafka offsets). An earlier run
//! made each epoch's "records up to these offsets" durable in `_remap` before exposing the
//! epoch. After a restart from a snapshot, the records beyond the snapshot are read again into
//! exactly the epochs they had, so a replay gives the same epochs, hence the same outputs and
//! the same order-dependent decisions, bit for bit.
//!
//! Replay reads only what the current epoch needs: one reader per partition that still has
//! recorded epochs, polled only while its partition is bounded at the current epoch and only
//! up to that bound. Memory stays bounded (at most one poll per partition is ever ahead of its
//! bound, and only when a partition skips offsets) and every epoch makes progress whatever
//! the backlog of the other partitions — a shared reader that drained one partition at a time
//! could fill the buffer with records of a later epoch and stop, which is how replay wedged.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use shopflow_ingest::{EventLog, LogError, LogReader, Position, Record};

use crate::jobs::Epoch;
use crate::remap;

type Partition = (String, u32);

/// How long the current epoch may make no progress before replay asks the log whether its
/// bound can still be reached (records lost with a broker's disk, or deleted by retention).
const STALL_CHECK: Duration = Duration::from_secs(2);

/// The recorded epoch boundaries this worker still has to replay.
#[derive(Debug, Default)]
pub struct Replay {
    /// Per partition: (epoch, next offset after that epoch), ascending.
    bounds: BTreeMap<Partition, VecDeque<(Epoch, u64)>>,
}

impl Replay {
    /// Reads the remap from `from` (the earliest remap offset a restored partition may still
    /// need; 0 without snapshots) and keeps the boundaries of the partitions in `restored`
    /// beyond their restored next offset.
    pub fn load(log: &dyn EventLog, restored: &BTreeMap<Partition, u64>, from: u64) -> Result<Replay, LogError> {
        let mut seen: BTreeMap<Partition, BTreeMap<Epoch, u64>> = BTreeMap::new();
        for entry in remap::read(log, from)? {
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
        let bounds = seen
            .into_iter()
            .map(|(partition, ends)| {
                // A boundary that does not move the partition forward adds nothing.
                let mut last = 0;
                let queue = ends.into_iter().filter(|(_, end)| std::mem::replace(&mut last, *end) < *end).collect();
                (partition, queue)
            })
            .collect();
        Ok(Replay { bounds })
    }

    /// True once every recorded boundary is sealed.
    pub fn is_done(&self) -> bool {
        self.bounds.values().all(VecDeque::is_empty)
    }

    /// The epoch being replayed: the earliest recorded boundary not yet sealed.
    pub fn current(&self) -> Option<Epoch> {
        self.bounds.values().filter_map(|q| q.front().map(|(e, _)| *e)).min()
    }

    /// The partitions bounded at the current epoch, with the offset each must reach.
    fn needed(&self) -> Vec<(Partition, u64)> {
        let Some(epoch) = self.current() else { return Vec::new() };
        self.bounds
            .iter()
            .filter_map(|(p, q)| q.front().filter(|(e, _)| *e == epoch).map(|(_, end)| (p.clone(), *end)))
            .collect()
    }

    /// True when every partition bounded at the current epoch has been read up to its bound.
    pub fn epoch_complete(&self, read_to: &BTreeMap<Partition, u64>) -> bool {
        self.current().is_some() && self.needed().iter().all(|(p, end)| read_to.get(p).is_some_and(|next| next >= end))
    }

    /// Seals the current epoch: drops its boundaries. Returns the epoch sealed.
    pub fn seal(&mut self) -> Option<Epoch> {
        let epoch = self.current()?;
        for queue in self.bounds.values_mut() {
            if queue.front().is_some_and(|(e, _)| *e == epoch) {
                queue.pop_front();
            }
        }
        self.bounds.retain(|_, q| !q.is_empty());
        Some(epoch)
    }

    /// Forgets every boundary of `partition` (its records can no longer be read).
    fn abandon(&mut self, partition: &Partition) {
        self.bounds.remove(partition);
    }

    /// The partitions this replay has boundaries for (for logging).
    pub fn partitions(&self) -> BTreeSet<Partition> {
        self.bounds.iter().filter(|(_, q)| !q.is_empty()).map(|(p, _)| p.clone()).collect()
    }
}

/// The source while recorded epochs remain: hands out the records of the current epoch only.
pub struct ReplaySource {
    replay: Replay,
    /// One reader per partition that still has recorded epochs; dropped after its last one.
    readers: BTreeMap<Partition, Box<dyn LogReader>>,
    /// Next offset to hand out, per partition.
    read_to: BTreeMap<Partition, u64>,
    /// Records read past their partition's current bound; only when offsets were skipped
    /// (retention or compaction), so at most one poll's worth.
    ahead: BTreeMap<Partition, VecDeque<Record>>,
    /// When the current epoch last made progress, for the stall check.
    progressed: Instant,
}

impl ReplaySource {
    /// `restored`: each owned partition's next offset after the restored snapshot.
    pub fn new(replay: Replay, restored: &BTreeMap<Partition, u64>) -> Self {
        Self {
            replay,
            readers: BTreeMap::new(),
            read_to: restored.clone(),
            ahead: BTreeMap::new(),
            progressed: Instant::now(),
        }
    }

    pub fn current(&self) -> Option<Epoch> {
        self.replay.current()
    }

    pub fn is_done(&self) -> bool {
        self.replay.is_done()
    }

    pub fn partitions(&self) -> BTreeSet<Partition> {
        self.replay.partitions()
    }

    /// True when the current epoch's records have all been handed out.
    pub fn epoch_complete(&self) -> bool {
        self.replay.epoch_complete(&self.read_to)
    }

    /// Seals the current epoch, closing the readers of partitions that have no epoch left.
    pub fn seal(&mut self) -> Option<Epoch> {
        let sealed = self.replay.seal();
        let bounds = &self.replay.bounds;
        self.readers.retain(|partition, _| bounds.contains_key(partition));
        self.progressed = Instant::now();
        sealed
    }

    /// How many records were read past their partition's bound (the live reader reads them
    /// again from where the states stand, so they are dropped with the replay).
    #[cfg(test)]
    fn read_ahead(&self) -> usize {
        self.ahead.values().map(VecDeque::len).sum()
    }

    /// Up to `max` records of the current epoch, in offset order per partition. Waits at most
    /// `wait` when none is ready.
    pub fn poll(&mut self, log: &dyn EventLog, max: usize, wait: Duration) -> Result<Vec<Record>, LogError> {
        let mut out = Vec::new();
        let needed = self.replay.needed();
        let mut lagging = None;
        for (partition, end) in &needed {
            if out.len() >= max {
                break;
            }
            self.take(partition, *end, log, max - out.len(), Duration::ZERO, &mut out)?;
            if lagging.is_none() && self.read_to.get(partition).is_some_and(|next| next < end) {
                lagging = Some((partition.clone(), *end));
            }
        }
        if out.is_empty() {
            if let Some((partition, end)) = lagging {
                self.take(&partition, end, log, max, wait, &mut out)?;
            }
        }
        if !out.is_empty() {
            self.progressed = Instant::now();
        } else if !needed.is_empty() && self.progressed.elapsed() >= STALL_CHECK {
            self.give_up_unreachable(log, &needed)?;
            self.progressed = Instant::now();
        }
        Ok(out)
    }

    /// Reads `partition` up to `end` into `out`.
    fn take(
        &mut self,
        partition: &Partition,
        end: u64,
        log: &dyn EventLog,
        max: usize,
        wait: Duration,
        out: &mut Vec<Record>,
    ) -> Result<(), LogError> {
        let next = self.read_to.get(partition).copied().unwrap_or(0);
        if next >= end || max == 0 {
            return Ok(());
        }
        let mut fresh = VecDeque::new();
        let ahead = self.ahead.entry(partition.clone()).or_default();
        if ahead.is_empty() {
            let reader = match self.readers.entry(partition.clone()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(log.reader(&[Position::new(partition.0.clone(), partition.1, next)])?)
                }
            };
            let want = usize::try_from(end - next).unwrap_or(usize::MAX).min(max);
            fresh.extend(reader.poll(want, wait)?);
        }
        ahead.append(&mut fresh);
        let mut read_to = next;
        while let Some(record) = ahead.front() {
            if record.offset >= end {
                // The partition skipped past the bound: nothing more of this epoch exists.
                read_to = read_to.max(end);
                break;
            }
            if out.len() >= max {
                break;
            }
            read_to = record.offset + 1;
            out.extend(ahead.pop_front());
        }
        if ahead.is_empty() {
            self.ahead.remove(partition);
        }
        self.read_to.insert(partition.clone(), read_to);
        Ok(())
    }

    /// A partition whose log ends before its recorded bound can never complete its epoch (its
    /// records were lost with a broker's disk): its remaining epochs are dropped, loudly,
    /// rather than waiting forever.
    fn give_up_unreachable(&mut self, log: &dyn EventLog, needed: &[(Partition, u64)]) -> Result<(), LogError> {
        for (partition, end) in needed {
            let next = self.read_to.get(partition).copied().unwrap_or(0);
            if next >= *end {
                continue;
            }
            let log_end = futures::executor::block_on(log.end_offsets(&partition.0))?
                .get(partition.1 as usize)
                .copied()
                .unwrap_or(0);
            if log_end <= next {
                tracing::warn!(
                    topic = %partition.0, partition = partition.1, next, recorded_end = end, log_end,
                    "recorded epochs reach past the end of the log; replaying this partition without them"
                );
                self.replay.abandon(partition);
                self.readers.remove(partition);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopflow_ingest::{EmbeddedLog, OutRecord, TopicSpec};

    fn replay(bounds: &[(u32, &[(Epoch, u64)])]) -> Replay {
        Replay { bounds: bounds.iter().map(|(p, b)| (("catalog".to_owned(), *p), b.iter().copied().collect())).collect() }
    }

    fn log_with(counts: &[u64]) -> (tempfile::TempDir, EmbeddedLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(&dir.path().join("log")).unwrap();
        futures::executor::block_on(log.ensure_topic(&TopicSpec::new("catalog", counts.len() as u32))).unwrap();
        for (partition, count) in counts.iter().enumerate() {
            let records = (0..*count)
                .map(|i| OutRecord { topic: "catalog".into(), partition: Some(partition as u32), key: vec![], value: Some(i.to_string().into_bytes()) })
                .collect();
            futures::executor::block_on(log.append(records)).unwrap();
        }
        (dir, log)
    }

    /// Drives a source to the end; returns (epoch, records handed out) per sealed epoch and
    /// the largest batch handed out.
    type Sealed = Vec<(Epoch, Vec<(u32, u64)>)>;

    fn drive(source: &mut ReplaySource, log: &dyn EventLog, max: usize) -> (Sealed, usize) {
        let mut epochs = Vec::new();
        let mut current = Vec::new();
        let mut largest = 0;
        for _ in 0..100_000 {
            if source.is_done() {
                return (epochs, largest);
            }
            let batch = source.poll(log, max, Duration::from_millis(1)).unwrap();
            largest = largest.max(batch.len());
            current.extend(batch.iter().map(|r| (r.partition, r.offset)));
            if source.epoch_complete() {
                epochs.push((source.seal().unwrap(), std::mem::take(&mut current)));
            }
        }
        panic!("replay made no progress: sealed {epochs:?}");
    }

    #[test]
    fn records_are_handed_out_epoch_by_epoch_as_recorded() {
        // Partition 0 read offsets 0..2 in epoch 10 and 2..5 in epoch 30; partition 1 read
        // 0..1 in epoch 20.
        let (_dir, log) = log_with(&[6, 2]);
        let restored: BTreeMap<Partition, u64> = [(("catalog".into(), 0), 0), (("catalog".into(), 1), 0)].into();
        let mut source = ReplaySource::new(replay(&[(0, &[(10, 2), (30, 5)]), (1, &[(20, 1)])]), &restored);
        let (epochs, _) = drive(&mut source, &log, 100);
        assert_eq!(epochs, vec![(10, vec![(0, 0), (0, 1)]), (20, vec![(1, 0)]), (30, vec![(0, 2), (0, 3), (0, 4)])]);
        assert_eq!(source.read_ahead(), 0, "nothing is read beyond the last recorded epoch");
    }

    #[test]
    fn a_backlog_in_one_partition_cannot_wedge_an_epoch_of_another() {
        // The wedge of old: partition 0 holds a long backlog for a later epoch while the current
        // epoch needs partition 1; with a small batch limit, a shared reader filled its buffer
        // with partition 0 and stopped polling.
        let (_dir, log) = log_with(&[5_000, 40]);
        let restored: BTreeMap<Partition, u64> = [(("catalog".into(), 0), 0), (("catalog".into(), 1), 0)].into();
        let bounds: &[(u32, &[(Epoch, u64)])] = &[(0, &[(20, 4_000), (40, 5_000)]), (1, &[(10, 10), (30, 20), (50, 40)])];
        let mut source = ReplaySource::new(replay(bounds), &restored);
        let (epochs, largest) = drive(&mut source, &log, 50);
        let summary: Vec<(Epoch, usize)> = epochs.iter().map(|(e, r)| (*e, r.len())).collect();
        assert_eq!(summary, vec![(10, 10), (20, 4_000), (30, 10), (40, 1_000), (50, 20)]);
        assert!(largest <= 50, "a poll handed out {largest} records");
        for (epoch, records) in &epochs {
            assert!(records.windows(2).all(|w| w[0].0 != w[1].0 || w[0].1 + 1 == w[1].1), "epoch {epoch} out of order");
        }
    }

    #[test]
    fn offsets_missing_from_the_log_do_not_hold_an_epoch_forever() {
        // The remap says partition 1 was read up to offset 30, but the log only has 5 records.
        let (_dir, log) = log_with(&[3, 5]);
        let restored: BTreeMap<Partition, u64> = [(("catalog".into(), 0), 0), (("catalog".into(), 1), 0)].into();
        let mut source = ReplaySource::new(replay(&[(0, &[(10, 3)]), (1, &[(10, 30)])]), &restored);
        let (epochs, _) = drive(&mut source, &log, 100);
        let handed: Vec<(u32, u64)> = epochs.into_iter().flat_map(|(_, r)| r).collect();
        assert_eq!(handed.len(), 8, "every record that exists is replayed: {handed:?}");
        assert!(source.is_done());
    }
}
