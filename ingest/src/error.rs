/// Errors of the event log. `Unavailable` is worth retrying; the others are not.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("partition {partition} does not exist in topic {topic}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("log unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}
