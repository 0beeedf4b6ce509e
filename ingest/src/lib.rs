//! Kafka in and out: the event-log interface and its two backends (Kafka over rdkafka, and the
//! embedded durable log behind the one-command default).
//!
//! - [`EmbeddedLog::open`]`(dir)`: redb file `dir/log.redb`, one process at a time.
//! - [`KafkaLog::connect`]`(`[`KafkaConfig`]`)`: topics live under `{namespace}.{name}`.
//!
//! Both behave the same through [`EventLog`] (checked by `tests/conformance.rs`), and every
//! future either returns runs under `futures::executor::block_on`, no tokio runtime needed.
//! `EventLog::reader` may block briefly (Kafka: one metadata round trip).
//!
//! Semantics worth knowing:
//! - An append that fails with [`LogError::Unavailable`] may still have been (partly) written
//!   on Kafka; a retry can duplicate records, which consumers absorb through event ids.
//! - A Kafka reader started beyond a partition's end offset restarts at its earliest offset
//!   (`auto.offset.reset=earliest`); start at most at `end_offsets`.
//! - Compacted topics on the embedded log are compacted only when asked
//!   ([`EmbeddedLog::compact`]); offsets never change, readers skip the gaps.
//!
//! Feature `testing` adds [`testing::kafka_broker`], a real broker for tests.

mod channel;
pub mod embedded;
mod error;
pub mod kafka;
mod log;
mod open;
#[cfg(feature = "testing")]
pub mod testing;
mod validate;

pub use channel::spawn_channel_reader;
pub use embedded::EmbeddedLog;
pub use error::LogError;
pub use kafka::{GroupConsumer, KafkaConfig, KafkaLog};
pub use log::{EventLog, LogReader, OutRecord, Position, Record, TopicSpec};
pub use open::{event_topic_spec, open, LogSettings};
