//! Where a paid order's time went, step by step through the saga, read back from the log: each
//! record's append time (milliseconds) marks when a step's output became durable, so the gap
//! between two steps is one hop of the saga (a poll, a fold, an epoch's commit, the payment
//! worker's round trip), and the last gap is the pipeline's publication plus the HTTP answer.
//!
//! The steps, for an order with several lines the last hold of each kind:
//! `order.placed` → `stock.hold_requested` → `order.hold_decided` →
//! `payment.charge_requested` → `payment.charge_succeeded` → `order.confirmed` → the answer.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shopflow_events::Topic;
use shopflow_ingest::{EventLog, Position};

use super::fresh::Stat;

/// The saga's steps, in order, and the topic each is written to.
const STEPS: [(&str, Topic); 6] = [
    ("order.placed", Topic::Orders),
    ("stock.hold_requested", Topic::Inventory),
    ("order.hold_decided", Topic::Orders),
    ("payment.charge_requested", Topic::Payments),
    ("payment.charge_succeeded", Topic::Orders),
    ("order.confirmed", Topic::Decisions),
];

/// The topics the steps are on, each once.
const TOPICS: [Topic; 4] = [Topic::Orders, Topic::Inventory, Topic::Payments, Topic::Decisions];

/// Each hop between consecutive steps, then the last step to the client's answer.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// `(from → to, distribution)`, in saga order.
    pub hops: Vec<(String, Stat)>,
}

/// Where each topic ends now: a run's records start there.
pub(crate) async fn mark(log: &dyn EventLog) -> anyhow::Result<Vec<Position>> {
    let mut from = Vec::new();
    for topic in TOPICS {
        for (partition, offset) in log.end_offsets(topic.name()).await?.into_iter().enumerate() {
            from.push(Position::new(topic.name(), partition as u32, offset));
        }
    }
    Ok(from)
}

/// The hops of the orders in `paid` (order id, sent, answered; wall clock µs), from the
/// records appended since `from`.
pub(crate) async fn measure(log: &dyn EventLog, from: Vec<Position>, paid: &[(String, i64, i64)]) -> anyhow::Result<Timeline> {
    let wanted: HashMap<&str, i64> = paid.iter().map(|(id, _, answered)| (id.as_str(), *answered)).collect();
    let reader = log.reader(&from)?;
    let ends: HashMap<(String, u32), u64> = mark(log).await?.into_iter().map(|p| ((p.topic, p.partition), p.offset)).collect();
    // Partitions with nothing appended since `from` are not waited for.
    let ends: BTreeMap<(String, u32), u64> = from
        .into_iter()
        .filter_map(|p| {
            let key = (p.topic, p.partition);
            ends.get(&key).copied().filter(|end| *end > p.offset).map(|end| (key, end))
        })
        .collect();
    let owned: Vec<String> = wanted.keys().map(|k| (*k).to_owned()).collect();
    // The reader blocks: read on a thread of the blocking pool.
    let times = tokio::task::spawn_blocking(move || read(reader, ends, owned)).await??;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); STEPS.len()];
    for (order, steps) in &times {
        let Some(answered_us) = wanted.get(order.as_str()) else { continue };
        if steps.iter().any(Option::is_none) {
            continue;
        }
        let at: Vec<f64> = steps.iter().map(|t| t.unwrap_or_default() as f64).collect();
        for (hop, pair) in at.windows(2).enumerate() {
            samples[hop].push(pair[1] - pair[0]);
        }
        samples[STEPS.len() - 1].push(*answered_us as f64 / 1000.0 - at[STEPS.len() - 1]);
    }
    let names = STEPS.iter().map(|(name, _)| *name).chain(std::iter::once("answer")).collect::<Vec<_>>();
    let hops = samples.iter().enumerate().map(|(i, s)| (format!("{} → {}", names[i], names[i + 1]), Stat::of(s))).collect();
    Ok(Timeline { hops })
}

/// Per order, the append time of each step's last record (`None`: not seen).
fn read(
    mut reader: Box<dyn shopflow_ingest::LogReader>,
    ends: BTreeMap<(String, u32), u64>,
    orders: Vec<String>,
) -> anyhow::Result<HashMap<String, Vec<Option<i64>>>> {
    let mut times: HashMap<String, Vec<Option<i64>>> = orders.into_iter().map(|o| (o, vec![None; STEPS.len()])).collect();
    let mut left = ends;
    while !left.is_empty() {
        let batch = reader.poll(10_000, Duration::from_secs(5))?;
        anyhow::ensure!(!batch.is_empty(), "the log ended before the offsets it reported");
        for record in batch {
            let key = (record.topic.to_string(), record.partition);
            if left.get(&key).is_some_and(|end| record.offset + 1 >= *end) {
                left.remove(&key);
            }
            let Some(value) = record.value.as_deref() else { continue };
            let Ok(event) = serde_json::from_slice::<Step>(value) else { continue };
            let Some(step) = STEPS.iter().position(|(name, topic)| *name == event.kind && topic.name() == &*record.topic) else { continue };
            if let Some(steps) = times.get_mut(event.data.order_id.as_str()) {
                let at = &mut steps[step];
                *at = Some(at.map_or(record.timestamp_ms, |t| t.max(record.timestamp_ms)));
            }
        }
    }
    Ok(times)
}

/// The two fields of an event this needs.
#[derive(Deserialize)]
struct Step {
    #[serde(rename = "type")]
    kind: String,
    data: StepData,
}

#[derive(Deserialize)]
struct StepData {
    #[serde(default)]
    order_id: String,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shopflow_ingest::{EmbeddedLog, OutRecord, TopicSpec};

    use super::*;

    fn step(topic: Topic, kind: &str, order: &str) -> OutRecord {
        OutRecord::keyed(topic.name(), order, format!(r#"{{"type":"{kind}","data":{{"order_id":"{order}"}}}}"#).into_bytes())
    }

    /// Each order's steps are appended one append after another (so their append times never
    /// go back). `o-0` came before the mark, `o-2` lacks its decision, and `o-3` is not among
    /// the paid: only `o-1` counts.
    #[tokio::test]
    async fn hops_are_measured_per_paid_order_from_the_records_since_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
        for topic in TOPICS {
            log.ensure_topic(&TopicSpec::new(topic.name(), 2)).await.unwrap();
        }
        // Before the mark: not this run's.
        for (kind, topic) in STEPS {
            log.append(vec![step(topic, kind, "o-0")]).await.unwrap();
        }
        let from = mark(log.as_ref()).await.unwrap();
        for order in ["o-1", "o-2", "o-3"] {
            for (kind, topic) in STEPS {
                if order == "o-2" && kind == "order.confirmed" {
                    continue;
                }
                // Two holds for one order: the later one counts.
                let times = if kind == "stock.hold_requested" { 2 } else { 1 };
                for _ in 0..times {
                    log.append(vec![step(topic, kind, order)]).await.unwrap();
                }
            }
        }
        let answered = wall_us() + 1_000;
        let paid: Vec<(String, i64, i64)> = ["o-0", "o-1", "o-2"].iter().map(|o| ((*o).to_owned(), 0, answered)).collect();

        let timeline = measure(log.as_ref(), from, &paid).await.unwrap();
        assert_eq!(timeline.hops.len(), STEPS.len());
        assert_eq!(timeline.hops[0].0, "order.placed → stock.hold_requested");
        assert_eq!(timeline.hops[STEPS.len() - 1].0, "order.confirmed → answer");
        for (name, stat) in &timeline.hops {
            assert_eq!(stat.count, 1, "{name}: only o-1 has every step since the mark");
            assert!(stat.p50_ms.unwrap() >= 0.0, "{name}: steps in order give no negative hop");
        }
    }

    fn wall_us() -> i64 {
        super::super::load::wall_us()
    }
}
