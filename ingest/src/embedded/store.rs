//! The redb layout: a metadata table of topics, a table of partition end offsets, and one table
//! per topic-partition keyed by offset.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::LogError;

/// topic -> (partitions, compacted)
pub(crate) const TOPICS: TableDefinition<&str, (u32, bool)> = TableDefinition::new("topics");
/// (topic, partition) -> next offset. Kept apart from the records because compaction may delete
/// the last record of a partition, and the end must not move back.
pub(crate) const ENDS: TableDefinition<(&str, u32), u64> = TableDefinition::new("ends");

/// (group, topic, partition) -> next offset to read: consumer-group progress of sinks.
pub(crate) const GROUPS: TableDefinition<(&str, &str, u32), u64> = TableDefinition::new("groups");

pub(crate) type LogTable<'a> = TableDefinition<'a, u64, &'static [u8]>;

pub(crate) fn table_name(topic: &str, partition: u32) -> String {
    format!("log/{topic}/{partition}")
}

pub(crate) fn storage(e: impl Display) -> LogError {
    LogError::Storage(e.to_string())
}

#[derive(Clone, Debug)]
pub(crate) struct TopicState {
    pub name: Arc<str>,
    pub partitions: u32,
    pub compacted: bool,
    /// Next offset per partition, as of the last commit.
    pub ends: Vec<u64>,
}

#[derive(Default)]
pub(crate) struct State {
    pub topics: HashMap<String, TopicState>,
}

/// What the writer thread, the handles and the readers share. `state` only ever reflects
/// committed transactions, so a reader that sees an end offset can read up to it.
pub(crate) struct Shared {
    pub db: Database,
    pub state: Mutex<State>,
    pub appended: Condvar,
}

/// Creates the metadata tables if needed and loads every topic's state.
pub(crate) fn load(db: &Database) -> Result<HashMap<String, TopicState>, LogError> {
    let txn = db.begin_write().map_err(storage)?;
    txn.open_table(TOPICS).map_err(storage)?;
    txn.open_table(ENDS).map_err(storage)?;
    txn.open_table(GROUPS).map_err(storage)?;
    txn.commit().map_err(storage)?;

    let txn = db.begin_read().map_err(storage)?;
    let topics = txn.open_table(TOPICS).map_err(storage)?;
    let ends = txn.open_table(ENDS).map_err(storage)?;
    let mut out = HashMap::new();
    for entry in topics.iter().map_err(storage)? {
        let (name, meta) = entry.map_err(storage)?;
        let name = name.value().to_string();
        let (partitions, compacted) = meta.value();
        let mut topic_ends = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let end = ends
                .get((name.as_str(), p))
                .map_err(storage)?
                .map_or(0, |g| g.value());
            topic_ends.push(end);
        }
        out.insert(
            name.clone(),
            TopicState {
                name: name.into(),
                partitions,
                compacted,
                ends: topic_ends,
            },
        );
    }
    Ok(out)
}

/// The committed positions of `group` in `topic`'s first `partitions` partitions.
pub(crate) fn committed(db: &Database, group: &str, topic: &str, partitions: u32) -> Result<Vec<Option<u64>>, LogError> {
    let txn = db.begin_read().map_err(storage)?;
    let table = txn.open_table(GROUPS).map_err(storage)?;
    (0..partitions)
        .map(|p| Ok(table.get((group, topic, p)).map_err(storage)?.map(|g| g.value())))
        .collect()
}

