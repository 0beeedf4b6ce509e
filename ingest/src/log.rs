//! The event-log interface: the one abstraction the write path, the dataflow source, the
//! changelog export and the benchmarks all use. Two backends implement it: Kafka (rdkafka)
//! and the embedded durable log (redb), with the same topic/partition/offset/key semantics.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::LogError;

/// What a topic is: its name (without namespace), partition count, and whether the log may
/// keep only the latest record per key (changelogs) instead of every record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub compacted: bool,
    /// Keep every record forever (no time or size retention). Entity topics need it: a
    /// partition whose snapshot is lost or unusable is rebuilt from its first record, so a
    /// broker default of 7 days would silently drop the older part of the catalog.
    pub retained_forever: bool,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: u32) -> Self {
        Self {
            name: name.into(),
            partitions,
            compacted: false,
            retained_forever: false,
        }
    }

    pub fn compacted(mut self) -> Self {
        self.compacted = true;
        self
    }

    pub fn retained_forever(mut self) -> Self {
        self.retained_forever = true;
        self
    }
}

/// A record to append. Without an explicit partition, the partition is
/// `shopflow_events::partition_for(key, partitions)` on both backends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: String,
    pub partition: Option<u32>,
    pub key: Vec<u8>,
    /// `None` is a tombstone (deletes the key in a compacted topic).
    pub value: Option<Vec<u8>>,
}

impl OutRecord {
    pub fn keyed(
        topic: impl Into<String>,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: key.into(),
            value: Some(value.into()),
        }
    }

    /// An event as the log keeps it: on its topic, keyed by its business key (so the key
    /// picks the partition), the envelope as JSON.
    pub fn of(envelope: &shopflow_events::Envelope) -> Self {
        Self::keyed(envelope.topic().name(), envelope.key().as_str(), envelope.to_json())
    }
}

/// A place in the log: the offset of one record in one topic partition. As a read position it
/// is the offset of the next record to read.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Position {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

impl Position {
    pub fn new(topic: impl Into<String>, partition: u32, offset: u64) -> Self {
        Self {
            topic: topic.into(),
            partition,
            offset,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
    /// Append time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// The shared log. Topic names given to it are logical (`catalog`); a backend may place them
/// under a namespace so that several deployments or tests share one broker.
///
/// The futures it returns do not depend on a particular async runtime, so synchronous callers
/// (timely worker threads) may drive them with `futures::executor::block_on`.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Which backend this is (`"kafka"` or `"embedded"`), for logs and reports.
    fn backend(&self) -> &'static str;

    /// Creates the topic if it does not exist. An existing topic is left as it is.
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError>;

    /// The partition count of an existing topic.
    async fn partitions(&self, topic: &str) -> Result<u32, LogError>;

    /// Appends records and returns their positions, in input order, once every one of them is
    /// durable (acks=all on Kafka, a committed transaction on the embedded log). Records for one
    /// partition keep their input order.
    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, LogError>;

    /// The next offset to be written, per partition (index = partition).
    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError>;

    /// A reader over the given partitions, each starting at the given offset.
    /// An offset below the earliest retained one starts at the earliest.
    fn reader(&self, from: &[Position]) -> Result<Box<dyn LogReader>, LogError>;

    /// Lets the log drop the records of one partition below `offset` (Kafka's DeleteRecords).
    /// Offsets never change and end offsets stay; a reader asking for a dropped offset starts
    /// at the earliest retained one. Advisory: a log may keep them longer (the default keeps
    /// everything).
    async fn truncate_before(&self, topic: &str, partition: u32, offset: u64) -> Result<(), LogError> {
        let _ = (topic, partition, offset);
        Ok(())
    }

    /// The positions consumer group `group` committed for `topic`, per partition (index =
    /// partition; `None` = nothing committed yet). A committed offset is the next record to
    /// read. Sinks that read with their own reader keep their progress here (the ClickHouse
    /// sink commits only after ClickHouse acknowledged).
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        let _ = (group, topic);
        Err(LogError::Invalid(format!("the {} log keeps no consumer-group offsets", self.backend())))
    }

    /// Records that group `group` has processed everything before each position (pass the
    /// next offset to read). Durable when it returns. A commit never needs to move backwards
    /// for the sinks here, and the backends do not check it.
    async fn commit(&self, group: &str, next: &[Position]) -> Result<(), LogError> {
        let _ = (group, next);
        Err(LogError::Invalid(format!("the {} log keeps no consumer-group offsets", self.backend())))
    }
}

/// A blocking reader of a fixed set of partitions, for a thread that owns them.
pub trait LogReader: Send {
    /// Up to `max` records in offset order per partition; waits at most `timeout` for the
    /// first one and returns an empty batch if none came.
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError>;
}
