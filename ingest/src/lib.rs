//! Kafka in and out: the event-log interface and its two backends (Kafka over rdkafka, and the
//! embedded durable log behind the one-command default).

pub mod embedded;
mod error;
pub mod kafka;
mod log;
#[cfg(feature = "testing")]
pub mod testing;
mod validate;

pub use embedded::EmbeddedLog;
pub use error::LogError;
pub use kafka::{GroupConsumer, KafkaConfig, KafkaLog};
pub use log::{EventLog, LogReader, OutRecord, Position, Record, TopicSpec};
