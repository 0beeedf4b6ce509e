//! Kafka in and out: the event-log interface and its two backends (Kafka over rdkafka, and the
//! embedded durable log behind the one-command default).

mod error;
mod log;

pub use error::LogError;
pub use log::{EventLog, LogReader, OutRecord, Position, Record, TopicSpec};
