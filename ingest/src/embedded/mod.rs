//! The embedded durable log behind the one-command default: redb underneath, one table per
//! topic-partition, appends group-committed by a single writer thread.

mod codec;
mod reader;
mod store;
mod writer;

use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use futures::channel::oneshot;
use parking_lot::{Condvar, Mutex};

use crate::{validate, EventLog, LogError, LogReader, OutRecord, Position, TopicSpec};
use store::{Shared, State};
pub use writer::CompactionStats;
use writer::Request;

/// The file inside the log directory.
pub const DB_FILE: &str = "log.redb";

/// Tombstones younger than this survive `compact`, so readers that are behind still see deletes.
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The embedded log. Cheap to clone; all clones share one database and one writer thread.
/// The database closes when the last clone and the last reader are dropped.
#[derive(Clone)]
pub struct EmbeddedLog {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    requests: Sender<Request>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Closing the channel stops the writer after it drains; joining makes "dropped" mean
        // "every accepted append is committed and the writer's database handle is gone".
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.requests, closed));
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("embedded log writer panicked");
            }
        }
    }
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LogError::Storage(format!("create {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        let db = redb::Database::builder()
            .set_cache_size(256 * 1024 * 1024)
            .create(&path)
            .map_err(|e| LogError::Storage(format!("open {}: {e}", path.display())))?;
        let topics = store::load(&db)?;
        tracing::info!(path = %path.display(), topics = topics.len(), "opened embedded log");
        let shared = Arc::new(Shared {
            db,
            state: Mutex::new(State { topics }),
            appended: Condvar::new(),
        });
        let (requests, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("shopflow-log-writer".into())
            .spawn(move || writer::run(writer_shared, rx))
            .map_err(|e| LogError::Storage(format!("spawn writer: {e}")))?;
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                requests,
                writer: Some(writer),
            }),
        })
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(writer::Reply<T>) -> Request,
    ) -> Result<T, LogError> {
        let (tx, rx) = oneshot::channel();
        self.handle
            .requests
            .send(make(tx))
            .map_err(|_| LogError::Unavailable("embedded log writer stopped".into()))?;
        rx.await
            .map_err(|_| LogError::Unavailable("embedded log writer stopped".into()))?
    }

    /// Keeps only the latest record per key in every partition of a compacted topic, and drops
    /// tombstones older than [`DEFAULT_TOMBSTONE_RETENTION`]. Offsets do not change; readers
    /// skip the gaps.
    pub async fn compact(&self, topic: &str) -> Result<CompactionStats, LogError> {
        self.compact_with(topic, DEFAULT_TOMBSTONE_RETENTION).await
    }

    /// [`compact`](Self::compact) with an explicit tombstone retention (zero drops them all).
    pub async fn compact_with(
        &self,
        topic: &str,
        tombstone_retention: Duration,
    ) -> Result<CompactionStats, LogError> {
        let topic = topic.to_string();
        self.request(|reply| Request::Compact {
            topic,
            tombstone_retention,
            reply,
        })
        .await
    }

    fn topic_state<T>(
        &self,
        topic: &str,
        f: impl FnOnce(&store::TopicState) -> T,
    ) -> Result<T, LogError> {
        let state = self.handle.shared.state.lock();
        state
            .topics
            .get(topic)
            .map(f)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        validate::spec(spec)?;
        if self.topic_state(&spec.name, |_| ()).is_ok() {
            return Ok(());
        }
        let spec = spec.clone();
        self.request(|reply| Request::EnsureTopic { spec, reply })
            .await
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.topic_state(topic, |t| t.partitions)
    }

    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, LogError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.request(|reply| Request::Append { records, reply })
            .await
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        self.topic_state(topic, |t| t.ends.clone())
    }

    async fn truncate_before(&self, topic: &str, partition: u32, offset: u64) -> Result<(), LogError> {
        let topic = topic.to_string();
        self.request(|reply| Request::Truncate { topic, partition, before: offset, reply }).await.map(|_| ())
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        let partitions = self.topic_state(topic, |t| t.partitions)?;
        store::committed(&self.handle.shared.db, group, topic, partitions)
    }

    async fn commit(&self, group: &str, next: &[Position]) -> Result<(), LogError> {
        for pos in next {
            let partitions = self.topic_state(&pos.topic, |t| t.partitions)?;
            if pos.partition >= partitions {
                return Err(LogError::UnknownPartition { topic: pos.topic.clone(), partition: pos.partition });
            }
        }
        // Through the writer thread: the positions share the next group commit's fsync with
        // the appends instead of blocking the caller (often an async task) on a write
        // transaction and fsync of their own.
        let (group, next) = (group.to_owned(), next.to_vec());
        self.request(|reply| Request::CommitGroup { group, next, reply }).await
    }

    fn reader(&self, from: &[Position]) -> Result<Box<dyn LogReader>, LogError> {
        Ok(Box::new(reader::EmbeddedReader::new(
            self.handle.shared.clone(),
            from,
        )?))
    }
}
