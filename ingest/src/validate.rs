//! Input checks shared by both backends, so that bad input fails the same way on each.

use crate::{LogError, TopicSpec};

/// Kafka's rule (legal characters, at most 249 of them), applied to the embedded log too so a
/// topic that works locally also works on a broker.
pub(crate) fn topic_name(name: &str) -> Result<(), LogError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty()
        || name.len() > 249
        || name == "."
        || name == ".."
        || !name.chars().all(legal)
    {
        return Err(LogError::Invalid(format!("illegal topic name {name:?}")));
    }
    Ok(())
}

pub(crate) fn spec(spec: &TopicSpec) -> Result<(), LogError> {
    topic_name(&spec.name)?;
    if spec.partitions == 0 || spec.partitions > i32::MAX as u32 {
        return Err(LogError::Invalid(format!(
            "topic {} needs 1..=2^31-1 partitions",
            spec.name
        )));
    }
    Ok(())
}

/// The partition a record goes to: the explicit one if it exists, else the key's.
pub(crate) fn partition(
    topic: &str,
    explicit: Option<u32>,
    key: &[u8],
    partitions: u32,
) -> Result<u32, LogError> {
    if partitions == 0 {
        return Err(LogError::UnknownTopic(topic.to_string()));
    }
    match explicit {
        Some(p) if p < partitions => Ok(p),
        Some(p) => Err(LogError::UnknownPartition {
            topic: topic.to_string(),
            partition: p,
        }),
        None => Ok(shopflow_events::partition_for(key, partitions)),
    }
}

/// Keys and values are length-prefixed with u32 in the embedded log; Kafka's limits are far
/// lower anyway.
pub(crate) fn sizes(key: &[u8], value: Option<&[u8]>) -> Result<(), LogError> {
    let max = u32::MAX as usize;
    if key.len() > max || value.is_some_and(|v| v.len() > max) {
        return Err(LogError::Invalid("record too large".into()));
    }
    Ok(())
}

/// A reader owns each of its partitions once; reading one twice would duplicate records.
pub(crate) fn distinct(from: &[crate::Position]) -> Result<(), LogError> {
    let mut seen = std::collections::HashSet::with_capacity(from.len());
    for pos in from {
        if !seen.insert((pos.topic.as_str(), pos.partition)) {
            return Err(LogError::Invalid(format!(
                "partition {}/{} assigned twice",
                pos.topic, pos.partition
            )));
        }
    }
    Ok(())
}
