//! Stage 1, the source: reads this worker's partitions. After a restart it first replays the
//! records beyond the snapshots into the epochs they had (`crate::reclock`), then switches to
//! a live reader from where the states stand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use shopflow_ingest::{EventLog, LogReader, Position, Record};

use super::machine::Partition;
use super::PipelineError;
use crate::jobs::Epoch;
use crate::reclock::{Replay, ReplaySource};

pub(super) struct Source {
    log: Arc<dyn EventLog>,
    replay: Option<ReplaySource>,
    live: Option<Box<dyn LogReader>>,
}

impl Source {
    /// A source over the `restored` partitions (next offset each); reads the remap from
    /// `remap_from` to find the recorded epochs still to replay.
    pub(super) fn open(log: Arc<dyn EventLog>, restored: &BTreeMap<Partition, u64>, remap_from: u64) -> Result<Self, PipelineError> {
        if restored.is_empty() {
            return Ok(Self { log, replay: None, live: None });
        }
        let replay = ReplaySource::new(Replay::load(log.as_ref(), restored, remap_from)?, restored);
        if !replay.is_done() {
            return Ok(Self { log, replay: Some(replay), live: None });
        }
        let from: Vec<Position> = restored.iter().map(|((t, p), o)| Position::new(t.clone(), *p, *o)).collect();
        let live = Some(log.reader(&from)?);
        Ok(Self { log, replay: None, live })
    }

    /// The epoch being replayed, while replaying.
    pub(super) fn recorded_epoch(&self) -> Option<Epoch> {
        self.replay.as_ref().and_then(ReplaySource::current)
    }

    /// The partitions with recorded epochs to replay (for logging).
    pub(super) fn replaying(&self) -> Option<BTreeSet<Partition>> {
        self.replay.as_ref().map(ReplaySource::partitions)
    }

    /// Up to `max` records; `None` when this worker has nothing to read at all.
    pub(super) fn poll(&mut self, max: usize, wait: Duration) -> Result<Option<Vec<Record>>, PipelineError> {
        Ok(match (self.replay.as_mut(), self.live.as_mut()) {
            (Some(replay), _) => Some(replay.poll(self.log.as_ref(), max, wait)?),
            (None, Some(live)) => Some(live.poll(max, wait)?),
            (None, None) => None,
        })
    }

    /// Whether the epoch being read is complete: while replaying, when its recorded records
    /// are all read; live, `otherwise` decides.
    pub(super) fn epoch_complete(&self, otherwise: bool) -> bool {
        match &self.replay {
            Some(replay) => replay.epoch_complete(),
            None => otherwise,
        }
    }

    /// After an epoch is sealed: the next recorded epoch while replaying. Once the last is
    /// sealed, live reading starts at `positions` (records read ahead of the last recorded
    /// epoch are read again from there).
    pub(super) fn sealed(&mut self, positions: impl FnOnce() -> Vec<Position>) -> Result<Option<Epoch>, PipelineError> {
        let Some(replay) = self.replay.as_mut() else { return Ok(None) };
        replay.seal();
        if !replay.is_done() {
            return Ok(replay.current());
        }
        self.replay = None;
        self.live = Some(self.log.reader(&positions())?);
        Ok(None)
    }

    pub(super) fn is_replaying(&self) -> bool {
        self.replay.is_some()
    }
}
