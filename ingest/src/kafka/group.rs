//! A consumer-group member for sinks that want the broker to balance partitions and remember
//! their progress: subscribe, poll, process, then commit what was processed.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::reader::Batcher;
use super::{kafka_error, KafkaConfig};
use crate::{LogError, LogReader, Position, Record};

pub struct GroupConsumer {
    consumer: BaseConsumer,
    batcher: Batcher,
    config: KafkaConfig,
}

impl GroupConsumer {
    /// Joins group `{namespace}.{group_id}` for the given logical topics. Without a committed
    /// offset a partition starts at its earliest record.
    pub fn subscribe(
        config: &KafkaConfig,
        group_id: &str,
        topics: &[&str],
    ) -> Result<Self, LogError> {
        let consumer: BaseConsumer = config.consumer(group_id).create().map_err(kafka_error)?;
        let full: Vec<String> = topics.iter().map(|t| config.qualify(t)).collect();
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        consumer.subscribe(&refs).map_err(kafka_error)?;
        Ok(Self {
            consumer,
            batcher: Batcher::new(config),
            config: config.clone(),
        })
    }

    /// Up to `max` records of the partitions currently assigned to this member. Polling also
    /// drives the group protocol, so call it regularly.
    pub fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError> {
        self.batcher.poll(&self.consumer, max, timeout)
    }

    /// Records that processing is done up to (excluding) each position: pass the offset of the
    /// next record to read, i.e. last processed offset + 1. Blocks until the broker confirms.
    pub fn commit(&self, next: &[Position]) -> Result<(), LogError> {
        if next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(next.len());
        for pos in next {
            let offset = i64::try_from(pos.offset)
                .map_err(|_| LogError::Invalid(format!("offset {pos} too large")))?;
            tpl.add_partition_offset(
                &self.config.qualify(&pos.topic),
                pos.partition as i32,
                Offset::Offset(offset),
            )
            .map_err(kafka_error)?;
        }
        self.consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(kafka_error)
    }
}

impl LogReader for GroupConsumer {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<Record>, LogError> {
        GroupConsumer::poll(self, max, timeout)
    }
}
