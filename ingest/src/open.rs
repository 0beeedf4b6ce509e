//! Opening the log a deployment is configured for: Kafka when brokers are given, else the
//! embedded log under the data directory; every event topic is ensured with its spec.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use shopflow_events::Topic;

use crate::{EmbeddedLog, EventLog, KafkaConfig, KafkaLog, LogError, TopicSpec};

/// Where the log is and how its topics are made (`[log]` in the configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// Kafka bootstrap servers; without them the embedded log under `data_dir/log` is used.
    pub kafka: Option<String>,
    /// Prefix of every topic name on Kafka, so deployments can share a cluster.
    pub namespace: String,
    /// Partitions of each event topic when shopflow creates it.
    pub partitions: u32,
    /// Root of local state: the embedded log and the pipeline's snapshots.
    pub data_dir: PathBuf,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { kafka: None, namespace: String::new(), partitions: 4, data_dir: PathBuf::from("data") }
    }
}

/// The spec of an event topic: dead letters in one partition with the broker's retention;
/// every other event topic is the system of record for its entities, kept forever (a
/// partition whose snapshot is lost is rebuilt from its first record).
pub fn event_topic_spec(topic: Topic, partitions: u32) -> TopicSpec {
    match topic {
        Topic::Dlq => TopicSpec::new(topic.name(), 1),
        _ => TopicSpec::new(topic.name(), partitions).retained_forever(),
    }
}

/// Opens (and, for Kafka, checks) the configured log and ensures every event topic.
pub async fn open(settings: &LogSettings) -> Result<Arc<dyn EventLog>, LogError> {
    let log: Arc<dyn EventLog> = match &settings.kafka {
        Some(brokers) => {
            let config = KafkaConfig::new(brokers.clone()).with_namespace(settings.namespace.clone());
            let log = KafkaLog::connect(config)?;
            log.check().await.map_err(|e| LogError::Unavailable(format!("kafka at {brokers} is not reachable: {e}")))?;
            Arc::new(log)
        }
        None => {
            let dir = settings.data_dir.join("log");
            Arc::new(EmbeddedLog::open(&dir).map_err(|e| LogError::Storage(format!("opening the embedded log in {}: {e}", dir.display())))?)
        }
    };
    for topic in Topic::ALL {
        log.ensure_topic(&event_topic_spec(topic, settings.partitions)).await?;
    }
    Ok(log)
}
