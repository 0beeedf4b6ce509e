//! The group-commit writer: the only thread that writes to the database. It takes everything
//! pending on its channel, writes it in one transaction, commits durably, publishes the new end
//! offsets to readers, and only then answers the callers. One fsync thus covers many appends.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::channel::oneshot;
use redb::{ReadableTable, Table, WriteTransaction};

use super::codec;
use super::store::{storage, table_name, LogTable, Shared, TopicState, ENDS, GROUPS, TOPICS};
use crate::{validate, LogError, OutRecord, Position, TopicSpec};

/// Bounds one transaction so a flood of appends cannot make a commit arbitrarily late.
const MAX_GROUP_RECORDS: usize = 64 * 1024;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, LogError>>;

pub(crate) enum Request {
    Append {
        records: Vec<OutRecord>,
        reply: Reply<Vec<Position>>,
    },
    EnsureTopic {
        spec: TopicSpec,
        reply: Reply<()>,
    },
    /// A consumer group's positions, committed with the appends of the same group commit.
    CommitGroup {
        group: String,
        next: Vec<Position>,
        reply: Reply<()>,
    },
    Compact {
        topic: String,
        tombstone_retention: Duration,
        reply: Reply<CompactionStats>,
    },
    Truncate {
        topic: String,
        partition: u32,
        before: u64,
        reply: Reply<u64>,
    },
}

impl Request {
    fn weight(&self) -> usize {
        match self {
            Request::Append { records, .. } => records.len(),
            _ => 1,
        }
    }
}

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Records superseded by a later record with the same key, plus expired tombstones.
    pub removed: u64,
    pub retained: u64,
}

pub(crate) fn run(shared: Arc<Shared>, rx: Receiver<Request>) {
    let mut topics = shared.state.lock().topics.clone();
    let mut buf = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut weight = first.weight();
        let mut group = vec![first];
        while weight < MAX_GROUP_RECORDS {
            match rx.try_recv() {
                Ok(req) => {
                    weight += req.weight();
                    group.push(req);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        // Compaction rewrites whole partitions, so it gets its own transaction after the
        // group's appends rather than bloating theirs.
        let (compactions, writes): (Vec<_>, Vec<_>) = group
            .into_iter()
            .partition(|r| matches!(r, Request::Compact { .. } | Request::Truncate { .. }));
        if !writes.is_empty() {
            commit_group(&shared, &mut topics, writes, &mut buf);
        }
        for req in compactions {
            match req {
                Request::Compact {
                    topic,
                    tombstone_retention,
                    reply,
                } => {
                    let result = compact(&shared, &topics, &topic, tombstone_retention);
                    if let Err(e) = &result {
                        tracing::warn!(topic, error = %e, "compaction failed");
                    }
                    let _ = reply.send(result);
                }
                Request::Truncate {
                    topic,
                    partition,
                    before,
                    reply,
                } => {
                    let _ = reply.send(truncate(&shared, &topics, &topic, partition, before));
                }
                _ => {}
            }
        }
    }
    tracing::debug!("embedded log writer stopped");
}

/// A reply waiting for the commit, with what to answer if it succeeds.
enum Pending {
    Positions(Reply<Vec<Position>>, Vec<Position>),
    Unit(Reply<()>),
}

/// Changes made to the writer's view of the topics by an uncommitted transaction, so they can
/// be rolled back if the commit fails, and published if it succeeds.
#[derive(Default)]
struct Undo {
    /// Each touched topic's end offsets from before this group.
    ends: HashMap<String, Vec<u64>>,
    new_topics: Vec<String>,
}

fn commit_group(
    shared: &Shared,
    topics: &mut HashMap<String, TopicState>,
    reqs: Vec<Request>,
    buf: &mut Vec<u8>,
) {
    let mut pending = Vec::with_capacity(reqs.len());
    let mut undo = Undo::default();
    let result = write_group(shared, topics, reqs, buf, &mut pending, &mut undo);
    match result {
        Ok(()) => {
            publish(shared, topics, &undo);
            for p in pending {
                match p {
                    Pending::Positions(reply, positions) => drop(reply.send(Ok(positions))),
                    Pending::Unit(reply) => drop(reply.send(Ok(()))),
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "embedded log commit failed");
            for (topic, ends) in undo.ends {
                if let Some(t) = topics.get_mut(&topic) {
                    t.ends = ends;
                }
            }
            for name in undo.new_topics {
                topics.remove(&name);
            }
            let msg = e.to_string();
            for p in pending {
                match p {
                    Pending::Positions(reply, _) => {
                        drop(reply.send(Err(LogError::Storage(msg.clone()))))
                    }
                    Pending::Unit(reply) => drop(reply.send(Err(LogError::Storage(msg.clone())))),
                }
            }
        }
    }
}

fn write_group(
    shared: &Shared,
    topics: &mut HashMap<String, TopicState>,
    reqs: Vec<Request>,
    buf: &mut Vec<u8>,
    pending: &mut Vec<Pending>,
    undo: &mut Undo,
) -> Result<(), LogError> {
    let txn = shared.db.begin_write().map_err(storage)?;
    {
        let mut tables: HashMap<String, Slots<'_>> = HashMap::new();
        let mut meta = txn.open_table(TOPICS).map_err(storage)?;
        let now = now_ms();
        for req in reqs {
            match req {
                Request::EnsureTopic { spec, reply } => {
                    if !topics.contains_key(&spec.name) {
                        meta.insert(spec.name.as_str(), (spec.partitions, spec.compacted))
                            .map_err(storage)?;
                        topics.insert(
                            spec.name.clone(),
                            TopicState {
                                name: spec.name.as_str().into(),
                                partitions: spec.partitions,
                                compacted: spec.compacted,
                                ends: vec![0; spec.partitions as usize],
                            },
                        );
                        undo.new_topics.push(spec.name);
                    }
                    pending.push(Pending::Unit(reply));
                }
                Request::CommitGroup { group, next, reply } => {
                    let mut table = txn.open_table(GROUPS).map_err(storage)?;
                    for pos in &next {
                        table.insert((group.as_str(), pos.topic.as_str(), pos.partition), pos.offset).map_err(storage)?;
                    }
                    pending.push(Pending::Unit(reply));
                }
                Request::Append { records, reply } => {
                    let targets = match resolve(topics, &records) {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                    };
                    let mut positions = Vec::with_capacity(records.len());
                    // Batches are mostly one topic: look the topic up once per run of records.
                    let mut start = 0;
                    while start < records.len() {
                        let name = &records[start].topic;
                        let end = records[start..]
                            .iter()
                            .position(|r| r.topic != *name)
                            .map_or(records.len(), |k| start + k);
                        let topic = topics
                            .get_mut(name)
                            .ok_or_else(|| storage("topic vanished"))?;
                        if !undo.ends.contains_key(name) {
                            undo.ends.insert(name.clone(), topic.ends.clone());
                        }
                        let slots = table_slots(&mut tables, name, topic.partitions);
                        for (rec, &partition) in
                            records[start..end].iter().zip(&targets[start..end])
                        {
                            let slot = &mut topic.ends[partition as usize];
                            let offset = *slot;
                            *slot += 1;
                            let table = open(&txn, slots, name, partition)?;
                            codec::encode_into(buf, now, &rec.key, rec.value.as_deref());
                            table.insert(offset, buf.as_slice()).map_err(storage)?;
                            positions.push(Position::new(name.clone(), partition, offset));
                        }
                        start = end;
                    }
                    pending.push(Pending::Positions(reply, positions));
                }
                Request::Compact { reply, .. } => {
                    let _ =
                        reply.send(Err(LogError::Invalid("compaction in a write group".into())));
                }
                Request::Truncate { reply, .. } => {
                    let _ =
                        reply.send(Err(LogError::Invalid("truncation in a write group".into())));
                }
            }
        }
        let mut ends = txn.open_table(ENDS).map_err(storage)?;
        for (topic, before) in &undo.ends {
            let Some(now) = topics.get(topic) else {
                continue;
            };
            for (partition, (old, new)) in before.iter().zip(&now.ends).enumerate() {
                if old != new {
                    ends.insert((topic.as_str(), partition as u32), *new)
                        .map_err(storage)?;
                }
            }
        }
    }
    txn.commit().map_err(storage)
}

/// Validates a whole append before any of it is written, so a bad record fails its request
/// alone and leaves no partial write behind.
fn resolve(
    topics: &HashMap<String, TopicState>,
    records: &[OutRecord],
) -> Result<Vec<u32>, LogError> {
    records
        .iter()
        .map(|rec| {
            let topic = topics
                .get(&rec.topic)
                .ok_or_else(|| LogError::UnknownTopic(rec.topic.clone()))?;
            validate::sizes(&rec.key, rec.value.as_deref())?;
            validate::partition(&rec.topic, rec.partition, &rec.key, topic.partitions)
        })
        .collect()
}

type Slots<'t> = Vec<Option<Table<'t, u64, &'static [u8]>>>;

fn table_slots<'t, 'm>(
    tables: &'m mut HashMap<String, Slots<'t>>,
    topic: &str,
    partitions: u32,
) -> &'m mut Slots<'t> {
    tables
        .entry(topic.to_string())
        .or_insert_with(|| (0..partitions).map(|_| None).collect())
}

fn open<'t, 'm>(
    txn: &'t WriteTransaction,
    slots: &'m mut Slots<'t>,
    topic: &str,
    partition: u32,
) -> Result<&'m mut Table<'t, u64, &'static [u8]>, LogError> {
    let slot = slots
        .get_mut(partition as usize)
        .ok_or_else(|| storage("table cache"))?;
    if slot.is_none() {
        let name = table_name(topic, partition);
        *slot = Some(txn.open_table(LogTable::new(&name)).map_err(storage)?);
    }
    slot.as_mut().ok_or_else(|| storage("table cache"))
}

fn publish(shared: &Shared, topics: &HashMap<String, TopicState>, undo: &Undo) {
    if undo.ends.is_empty() && undo.new_topics.is_empty() {
        return;
    }
    let mut state = shared.state.lock();
    for name in &undo.new_topics {
        if let Some(t) = topics.get(name) {
            state.topics.insert(name.clone(), t.clone());
        }
    }
    for topic in undo.ends.keys() {
        if let (Some(src), Some(dst)) = (topics.get(topic), state.topics.get_mut(topic)) {
            dst.ends.clone_from(&src.ends);
        }
    }
    drop(state);
    shared.appended.notify_all();
}

fn compact(
    shared: &Shared,
    topics: &HashMap<String, TopicState>,
    topic: &str,
    tombstone_retention: Duration,
) -> Result<CompactionStats, LogError> {
    let state = topics
        .get(topic)
        .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?;
    if !state.compacted {
        return Err(LogError::Invalid(format!("topic {topic} is not compacted")));
    }
    let cutoff =
        now_ms().saturating_sub(i64::try_from(tombstone_retention.as_millis()).unwrap_or(i64::MAX));
    let mut stats = CompactionStats::default();
    let txn = shared.db.begin_write().map_err(storage)?;
    for partition in 0..state.partitions {
        let name = table_name(topic, partition);
        let mut table = txn.open_table(LogTable::new(&name)).map_err(storage)?;
        // key -> (offset, tombstone, timestamp) of its latest record
        let mut latest: HashMap<Vec<u8>, (u64, bool, i64)> = HashMap::new();
        let mut doomed = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (offset, bytes) = entry.map_err(storage)?;
            let rec = codec::decode(bytes.value())?;
            let now_latest = (offset.value(), rec.value.is_none(), rec.timestamp_ms);
            if let Some((older, _, _)) = latest.insert(rec.key.to_vec(), now_latest) {
                doomed.push(older);
            }
        }
        for (offset, tombstone, ts) in latest.into_values() {
            // At least as old as the retention (with zero: every tombstone, even one of this millisecond).
            if tombstone && ts <= cutoff {
                doomed.push(offset);
            } else {
                stats.retained += 1;
            }
        }
        for offset in &doomed {
            table.remove(*offset).map_err(storage)?;
        }
        stats.removed += doomed.len() as u64;
    }
    txn.commit().map_err(storage)?;
    tracing::info!(
        topic,
        removed = stats.removed,
        retained = stats.retained,
        "compacted topic"
    );
    Ok(stats)
}

/// Removes the records of one partition below `before`; returns how many.
fn truncate(
    shared: &Shared,
    topics: &HashMap<String, TopicState>,
    topic: &str,
    partition: u32,
    before: u64,
) -> Result<u64, LogError> {
    let state = topics
        .get(topic)
        .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?;
    if partition >= state.partitions {
        return Err(LogError::UnknownPartition { topic: topic.to_string(), partition });
    }
    let txn = shared.db.begin_write().map_err(storage)?;
    let removed = {
        let mut table = txn.open_table(LogTable::new(&table_name(topic, partition))).map_err(storage)?;
        let doomed: Vec<u64> = table
            .range(..before)
            .map_err(storage)?
            .map(|entry| entry.map(|(offset, _)| offset.value()).map_err(storage))
            .collect::<Result<_, _>>()?;
        for offset in &doomed {
            table.remove(*offset).map_err(storage)?;
        }
        doomed.len() as u64
    };
    txn.commit().map_err(storage)?;
    Ok(removed)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
