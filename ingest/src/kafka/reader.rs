//! Consumers that hand out batches of records: the manually assigned reader behind
//! `EventLog::reader`, and the polling shared with [`super::GroupConsumer`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{kafka_error, KafkaConfig};
use crate::{LogError, LogReader, Position, Record};

/// Turns broker messages into records with logical topic names.
pub(crate) struct Batcher {
    config: KafkaConfig,
    /// broker topic name -> logical name, shared by all records of the topic
    names: HashMap<String, Arc<str>>,
}

impl Batcher {
    pub(crate) fn new(config: &KafkaConfig) -> Self {
        Self {
            config: config.clone(),
            names: HashMap::new(),
        }
    }

    fn record(&mut self, m: &BorrowedMessage<'_>) -> Record {
        let topic = match self.names.get(m.topic()) {
            Some(t) => t.clone(),
            None => {
                let logical: Arc<str> =
                    self.config.unqualify(m.topic()).unwrap_or(m.topic()).into();
                self.names.insert(m.topic().to_string(), logical.clone());
                logical
            }
        };
        Record {
            topic,
            partition: m.partition() as u32,
            offset: m.offset() as u64,
            key: m.key().map(<[u8]>::to_vec).unwrap_or_default(),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        }
    }

    /// Waits up to `timeout` for a first message, then takes whatever else is already fetched.
    /// Errors from librdkafka here are transient (it retries connections itself), so they are
    /// logged rather than returned: a reader outlives broker restarts.
    pub(crate) fn poll(
        &mut self,
        consumer: &BaseConsumer,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<Record>, LogError> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        let deadline = Instant::now() + timeout;
        while out.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match consumer.poll(left) {
                Some(Ok(m)) => out.push(self.record(&m)),
                Some(Err(e)) => tracing::warn!(error = %e, "kafka consumer error"),
                None => {}
            }
            if left.is_zero() {
                break;
            }
        }
        while out.len() < max {
            match consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => out.push(self.record(&m)),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    break;
                }
                None => break,
            }
        }
        Ok(out)
    }
}

pub(crate) struct KafkaReader {
    consumer: BaseConsumer,
    batcher: Batcher,
}

impl KafkaReader {
    pub(crate) fn assigned(config: &KafkaConfig, from: &[Position]) -> Result<Self, LogError> {
        let consumer: BaseConsumer = config.assigned_consumer().create().map_err(kafka_error)?;
        let mut tpl = TopicPartitionList::with_capacity(from.len());
        for pos in from {
            let offset = i64::try_from(pos.offset)
                .map_err(|_| LogError::Invalid(format!("offset {pos} too large")))?;
            tpl.add_partition_offset(
                &config.qualify(&pos.topic),
                pos.partition as i32,
                Offset::Offset(offset),
            )
            .map_err(kafka_error)?;
        }
        consumer.assign(&tpl).map_err(kafka_error)?;
        Ok(Self {
            consumer,
            batcher: Batcher::new(config),
        })
    }
}

impl LogReader for KafkaReader {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError> {
        self.batcher.poll(&self.consumer, max, timeout)
    }
}
