//! The Kafka backend over rdkafka: an idempotent producer for appends, the admin API for
//! topics, and manually assigned consumers for readers.

mod blocking;
mod config;
mod group;
mod reader;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::RwLock;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::{validate, EventLog, LogError, LogReader, OutRecord, Position, TopicSpec};
pub use config::KafkaConfig;
pub use group::GroupConsumer;

/// The event log on a Kafka cluster. Cheap to clone.
///
/// Every future it returns runs without an async runtime (blocking librdkafka calls run on
/// their own threads), so `futures::executor::block_on` works for all methods.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// For metadata and watermark queries; never subscribes or polls.
    meta: Arc<BaseConsumer>,
    /// Partition counts seen so far. Kafka topics can grow partitions; this log assumes they
    /// do not while it runs (keyed placement would change under a running pipeline anyway).
    partitions: RwLock<HashMap<String, u32>>,
    /// One never-subscribed consumer per group whose offsets this log commits or reads
    /// (`EventLog::commit`/`committed`), made on first use.
    groups: parking_lot::Mutex<HashMap<String, Arc<BaseConsumer>>>,
}

pub(crate) fn kafka_error(e: KafkaError) -> LogError {
    LogError::Unavailable(e.to_string())
}

impl KafkaLog {
    /// The broker's configuration of a topic (`retention.ms`, `cleanup.policy`, ...), as
    /// DescribeConfigs reports it.
    pub async fn topic_config(&self, topic: &str) -> Result<std::collections::BTreeMap<String, String>, LogError> {
        use rdkafka::admin::ResourceSpecifier;
        let full = self.inner.config.qualify(topic);
        let timeout = self.inner.config.request_timeout;
        let opts = AdminOptions::new().request_timeout(Some(timeout));
        let results = self
            .inner
            .admin
            .describe_configs([&ResourceSpecifier::Topic(&full)], &opts)
            .await
            .map_err(kafka_error)?;
        let resource = results
            .into_iter()
            .next()
            .ok_or_else(|| LogError::Unavailable(format!("no config returned for {full}")))?
            .map_err(|code| LogError::Unavailable(format!("describe configs of {full}: {code}")))?;
        Ok(resource.entries.into_iter().filter_map(|e| Some((e.name, e.value?))).collect())
    }

    /// Creates the clients. librdkafka connects lazily, so this does not touch the network;
    /// use [`check`](Self::check) to find out whether the cluster is reachable.
    pub fn connect(config: KafkaConfig) -> Result<Self, LogError> {
        let producer: FutureProducer = config.producer().create().map_err(kafka_error)?;
        let admin: AdminClient<DefaultClientContext> =
            config.client().create().map_err(kafka_error)?;
        let meta: BaseConsumer = config.assigned_consumer().create().map_err(kafka_error)?;
        tracing::info!(brokers = %config.brokers, namespace = %config.namespace, "kafka log configured");
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                meta: Arc::new(meta),
                partitions: RwLock::new(HashMap::new()),
                groups: parking_lot::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The consumer that speaks for `group` in offset commits and fetches. It never
    /// subscribes, so it never joins the group's membership: its commits are "simple" ones
    /// (generation -1), which brokers accept while no member of that group is active.
    fn group_client(&self, group: &str) -> Result<Arc<BaseConsumer>, LogError> {
        let mut groups = self.inner.groups.lock();
        if let Some(c) = groups.get(group) {
            return Ok(c.clone());
        }
        let consumer: BaseConsumer = self.inner.config.consumer(group).create().map_err(kafka_error)?;
        let consumer = Arc::new(consumer);
        groups.insert(group.to_string(), consumer.clone());
        Ok(consumer)
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.inner.config
    }

    /// Fetches cluster metadata once: `Ok` means a broker answered.
    pub async fn check(&self) -> Result<(), LogError> {
        let meta = self.inner.meta.clone();
        let timeout = self.inner.config.request_timeout;
        blocking::run("metadata", move || {
            meta.fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(kafka_error)
        })
        .await
    }

    /// The partition count of a topic straight from the brokers, or `None` if they do not
    /// know it.
    fn fetch_partitions(
        meta: &BaseConsumer,
        full: &str,
        timeout: Duration,
    ) -> Result<Option<u32>, LogError> {
        let md = meta
            .fetch_metadata(Some(full), timeout)
            .map_err(kafka_error)?;
        let Some(topic) = md.topics().iter().find(|t| t.name() == full) else {
            return Ok(None);
        };
        match topic.error().map(RDKafkaErrorCode::from) {
            None if !topic.partitions().is_empty() => Ok(Some(topic.partitions().len() as u32)),
            None | Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(None),
            Some(code) => Err(LogError::Unavailable(format!(
                "metadata for {full}: {code}"
            ))),
        }
    }

    async fn cached_partitions(&self, topic: &str) -> Result<u32, LogError> {
        if let Some(n) = self.inner.partitions.read().get(topic) {
            return Ok(*n);
        }
        validate::topic_name(topic)?;
        let meta = self.inner.meta.clone();
        let full = self.inner.config.qualify(topic);
        let timeout = self.inner.config.request_timeout;
        let n = blocking::run("metadata", move || {
            Self::fetch_partitions(&meta, &full, timeout)
        })
        .await?
        .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?;
        self.inner.partitions.write().insert(topic.to_string(), n);
        Ok(n)
    }

    /// Enqueues one record; when librdkafka's queue is full, waits for this call's oldest
    /// outstanding delivery to free room (no timer needed, so no runtime needed).
    async fn enqueue(
        &self,
        full: &str,
        partition: u32,
        records: &[OutRecord],
        index: usize,
        futures: &mut [(DeliveryFuture, u32)],
        done: &mut Vec<Result<Position, LogError>>,
    ) -> Result<DeliveryFuture, LogError> {
        let rec = &records[index];
        loop {
            let mut fr = FutureRecord::<[u8], [u8]>::to(full)
                .partition(partition as i32)
                .key(rec.key.as_slice());
            if let Some(v) = &rec.value {
                fr = fr.payload(v.as_slice());
            }
            let err = match self.inner.producer.send_result(fr) {
                Ok(f) => return Ok(f),
                Err((e, _unsent)) => e,
            };
            let queue_full = matches!(
                err,
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
            );
            if !queue_full || done.len() >= futures.len() {
                return Err(kafka_error(err));
            }
            tracing::trace!("producer queue full, waiting for an earlier delivery");
            let i = done.len();
            let (f, p) = &mut futures[i];
            let r = Self::delivered(f, &records[i].topic, *p).await;
            done.push(r);
        }
    }

    async fn delivered(
        f: &mut DeliveryFuture,
        topic: &str,
        partition: u32,
    ) -> Result<Position, LogError> {
        match f.await {
            Ok(Ok(d)) => Ok(Position::new(topic, d.partition as u32, d.offset as u64)),
            Ok(Err((e, _))) => Err(match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) => LogError::UnknownPartition {
                    topic: topic.into(),
                    partition,
                },
                _ => kafka_error(e),
            }),
            Err(_) => Err(LogError::Unavailable("producer dropped a delivery".into())),
        }
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        validate::spec(spec)?;
        let full = self.inner.config.qualify(&spec.name);
        let mut topic = NewTopic::new(
            &full,
            spec.partitions as i32,
            TopicReplication::Fixed(self.inner.config.replication_factor),
        );
        if spec.compacted {
            topic = topic.set("cleanup.policy", "compact");
        }
        if spec.retained_forever {
            topic = topic.set("retention.ms", "-1").set("retention.bytes", "-1");
        }
        let timeout = self.inner.config.request_timeout;
        let opts = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let results = self
            .inner
            .admin
            .create_topics([&topic], &opts)
            .await
            .map_err(kafka_error)?;
        for r in results {
            match r {
                Ok(_) => {
                    tracing::info!(topic = %full, partitions = spec.partitions, "created topic")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(LogError::Unavailable(format!(
                        "create topic {name}: {code}"
                    )))
                }
            }
        }
        // Creation is acknowledged by the controller before every broker's metadata shows the
        // topic; wait for it so the next append or reader does not see "unknown topic".
        let meta = self.inner.meta.clone();
        let deadline = Instant::now() + timeout;
        let n = blocking::run("metadata", move || loop {
            if let Some(n) = Self::fetch_partitions(&meta, &full, timeout)? {
                return Ok(n);
            }
            if Instant::now() >= deadline {
                return Err(LogError::Unavailable(format!(
                    "topic {full} not visible after creation"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        })
        .await?;
        self.inner.partitions.write().insert(spec.name.clone(), n);
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.cached_partitions(topic).await
    }

    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, LogError> {
        // Resolve every partition first: a bad record fails the call before anything is sent.
        let mut counts: HashMap<&str, u32> = HashMap::new();
        let mut targets = Vec::with_capacity(records.len());
        for rec in &records {
            let n = match counts.get(rec.topic.as_str()) {
                Some(n) => *n,
                None => {
                    let n = self.cached_partitions(&rec.topic).await?;
                    counts.insert(&rec.topic, n);
                    n
                }
            };
            validate::sizes(&rec.key, rec.value.as_deref())?;
            targets.push(validate::partition(&rec.topic, rec.partition, &rec.key, n)?);
        }
        let mut names: HashMap<&str, String> = HashMap::new();
        let mut futures: Vec<(DeliveryFuture, u32)> = Vec::with_capacity(records.len());
        let mut done: Vec<Result<Position, LogError>> = Vec::with_capacity(records.len());
        for (rec, partition) in records.iter().zip(targets) {
            let full = names
                .entry(&rec.topic)
                .or_insert_with(|| self.inner.config.qualify(&rec.topic))
                .clone();
            let f = self
                .enqueue(
                    &full,
                    partition,
                    &records,
                    futures.len(),
                    &mut futures,
                    &mut done,
                )
                .await?;
            futures.push((f, partition));
        }
        for (i, rec) in records.iter().enumerate().skip(done.len()) {
            let (f, p) = &mut futures[i];
            done.push(Self::delivered(f, &rec.topic, *p).await);
        }
        done.into_iter().collect()
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        let n = self.cached_partitions(topic).await?;
        let meta = self.inner.meta.clone();
        let full = self.inner.config.qualify(topic);
        let timeout = self.inner.config.request_timeout;
        blocking::run("watermarks", move || {
            (0..n)
                .map(|p| {
                    meta.fetch_watermarks(&full, p as i32, timeout)
                        .map(|(_, high)| high.max(0) as u64)
                        .map_err(kafka_error)
                })
                .collect()
        })
        .await
    }

    /// Blocks for a metadata round trip to check the partitions exist.
    async fn truncate_before(&self, topic: &str, partition: u32, offset: u64) -> Result<(), LogError> {
        let mut list = rdkafka::TopicPartitionList::new();
        let offset = i64::try_from(offset).map_err(|_| LogError::Invalid(format!("offset {offset} too large")))?;
        list.add_partition_offset(&self.inner.config.qualify(topic), partition as i32, rdkafka::Offset::Offset(offset))
            .map_err(kafka_error)?;
        let timeout = self.inner.config.request_timeout;
        let opts = AdminOptions::new().request_timeout(Some(timeout)).operation_timeout(Some(timeout));
        let result = self.inner.admin.delete_records(&list, &opts).await.map_err(kafka_error)?;
        for element in result.elements() {
            if let Err(e) = element.error() {
                return Err(LogError::Unavailable(format!("delete records of {topic}/{partition}: {e}")));
            }
        }
        Ok(())
    }

    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        let n = self.cached_partitions(topic).await?;
        let client = self.group_client(group)?;
        let full = self.inner.config.qualify(topic);
        let timeout = self.inner.config.request_timeout;
        blocking::run("committed", move || {
            let mut tpl = rdkafka::TopicPartitionList::with_capacity(n as usize);
            for p in 0..n {
                tpl.add_partition(&full, p as i32);
            }
            let got = client.committed_offsets(tpl, timeout).map_err(kafka_error)?;
            Ok((0..n)
                .map(|p| match got.find_partition(&full, p as i32).map(|e| e.offset()) {
                    Some(rdkafka::Offset::Offset(o)) if o >= 0 => Some(o as u64),
                    _ => None,
                })
                .collect())
        })
        .await
    }

    async fn commit(&self, group: &str, next: &[Position]) -> Result<(), LogError> {
        if next.is_empty() {
            return Ok(());
        }
        let client = self.group_client(group)?;
        let mut tpl = rdkafka::TopicPartitionList::with_capacity(next.len());
        for pos in next {
            let offset = i64::try_from(pos.offset).map_err(|_| LogError::Invalid(format!("offset {pos} too large")))?;
            tpl.add_partition_offset(&self.inner.config.qualify(&pos.topic), pos.partition as i32, rdkafka::Offset::Offset(offset))
                .map_err(kafka_error)?;
        }
        blocking::run("commit", move || {
            client.commit(&tpl, rdkafka::consumer::CommitMode::Sync).map_err(kafka_error)
        })
        .await
    }

    fn reader(&self, from: &[Position]) -> Result<Box<dyn LogReader>, LogError> {
        validate::distinct(from)?;
        let mut known: HashMap<&str, u32> = HashMap::new();
        for pos in from {
            let n = match known.get(pos.topic.as_str()) {
                Some(n) => *n,
                None => {
                    validate::topic_name(&pos.topic)?;
                    let full = self.inner.config.qualify(&pos.topic);
                    let n = Self::fetch_partitions(
                        &self.inner.meta,
                        &full,
                        self.inner.config.request_timeout,
                    )?
                    .ok_or_else(|| LogError::UnknownTopic(pos.topic.clone()))?;
                    known.insert(&pos.topic, n);
                    n
                }
            };
            if pos.partition >= n {
                return Err(LogError::UnknownPartition {
                    topic: pos.topic.clone(),
                    partition: pos.partition,
                });
            }
        }
        Ok(Box::new(reader::KafkaReader::assigned(
            &self.inner.config,
            from,
        )?))
    }
}
