//! A reader of a fixed set of partitions. It learns what is committed from the shared end
//! offsets, reads ranges in read transactions, and sleeps on the append condvar when caught up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::ReadableDatabase;

use super::codec;
use super::store::{storage, table_name, LogTable, Shared};
use crate::{LogError, LogReader, Record};

struct Assignment {
    topic: Arc<str>,
    partition: u32,
    table: String,
    next: u64,
}

pub(crate) struct EmbeddedReader {
    shared: Arc<Shared>,
    assignments: Vec<Assignment>,
    /// Where the next poll starts, so one busy partition cannot starve the others.
    rotation: usize,
}

impl EmbeddedReader {
    pub(crate) fn new(shared: Arc<Shared>, from: &[crate::Position]) -> Result<Self, LogError> {
        crate::validate::distinct(from)?;
        let mut assignments = Vec::with_capacity(from.len());
        {
            let state = shared.state.lock();
            for pos in from {
                let topic = state
                    .topics
                    .get(&pos.topic)
                    .ok_or_else(|| LogError::UnknownTopic(pos.topic.clone()))?;
                if pos.partition >= topic.partitions {
                    return Err(LogError::UnknownPartition {
                        topic: pos.topic.clone(),
                        partition: pos.partition,
                    });
                }
                assignments.push(Assignment {
                    topic: topic.name.clone(),
                    partition: pos.partition,
                    table: table_name(&pos.topic, pos.partition),
                    next: pos.offset,
                });
            }
        }
        Ok(Self {
            shared,
            assignments,
            rotation: 0,
        })
    }

    /// Blocks until some assigned partition has records past its read position, or the
    /// deadline passes. Returns each partition's committed end offset.
    fn wait_for_data(&self, deadline: Instant) -> Option<Vec<u64>> {
        let mut state = self.shared.state.lock();
        loop {
            let ends: Vec<u64> = self
                .assignments
                .iter()
                .map(|a| {
                    state
                        .topics
                        .get(&*a.topic)
                        .map_or(0, |t| t.ends[a.partition as usize])
                })
                .collect();
            if self
                .assignments
                .iter()
                .zip(&ends)
                .any(|(a, end)| a.next < *end)
            {
                return Some(ends);
            }
            if self
                .shared
                .appended
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return None;
            }
        }
    }
}

impl LogReader for EmbeddedReader {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError> {
        if max == 0 || self.assignments.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let Some(ends) = self.wait_for_data(deadline) else {
                return Ok(Vec::new());
            };
            let txn = self.shared.db.begin_read().map_err(storage)?;
            let mut out = Vec::with_capacity(max.min(4096));
            let n = self.assignments.len();
            self.rotation = (self.rotation + 1) % n;
            for i in 0..n {
                let idx = (self.rotation + i) % n;
                let end = ends[idx];
                let a = &mut self.assignments[idx];
                if a.next >= end || out.len() >= max {
                    continue;
                }
                let table = txn.open_table(LogTable::new(&a.table)).map_err(storage)?;
                let mut stopped_early = false;
                for entry in table.range(a.next..end).map_err(storage)? {
                    let (offset, bytes) = entry.map_err(storage)?;
                    let rec = codec::decode(bytes.value())?;
                    out.push(Record {
                        topic: a.topic.clone(),
                        partition: a.partition,
                        offset: offset.value(),
                        key: rec.key.to_vec(),
                        value: rec.value.map(<[u8]>::to_vec),
                        timestamp_ms: rec.timestamp_ms,
                    });
                    a.next = offset.value() + 1;
                    if out.len() >= max {
                        stopped_early = true;
                        break;
                    }
                }
                // A range emptied by compaction still counts as read.
                if !stopped_early {
                    a.next = end;
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Ok(out);
            }
        }
    }
}
