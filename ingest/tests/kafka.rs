//! Kafka-only behaviour on a real broker: `GroupConsumer` commits and resumes, and appends larger
//! than librdkafka's local queue still complete in order.

use std::time::{Duration, Instant};

use futures::executor::block_on;
use shopflow_ingest::testing::kafka_broker;
use shopflow_ingest::{EventLog, GroupConsumer, KafkaLog, OutRecord, Position, Record, TopicSpec};

fn read(consumer: &mut GroupConsumer, n: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < n {
        assert!(Instant::now() < deadline, "read {} of {n}", out.len());
        out.extend(
            consumer
                .poll(n - out.len(), Duration::from_millis(200))
                .unwrap(),
        );
    }
    out
}

#[test]
fn a_group_resumes_after_its_committed_offsets() {
    let broker = kafka_broker();
    let config = broker.config();
    let log = KafkaLog::connect(config.clone()).unwrap();
    block_on(log.ensure_topic(&TopicSpec::new("decisions", 2))).unwrap();
    let batch = |from: usize| {
        (from..from + 10)
            .map(|i| OutRecord::keyed("decisions", format!("o{i}"), format!("{i}")))
            .collect()
    };
    block_on(log.append(batch(0))).unwrap();

    let mut first = GroupConsumer::subscribe(&config, "sink", &["decisions"]).unwrap();
    let got = read(&mut first, 10);
    assert!(got.iter().all(|r| &*r.topic == "decisions"));
    let mut next: Vec<Position> = Vec::new();
    for r in &got {
        next.retain(|p| p.partition != r.partition);
        next.push(Position::new("decisions", r.partition, r.offset + 1));
    }
    first.commit(&next).unwrap();
    drop(first);

    block_on(log.append(batch(10))).unwrap();
    let mut second = GroupConsumer::subscribe(&config, "sink", &["decisions"]).unwrap();
    let got = read(&mut second, 10);
    let mut values: Vec<usize> = got
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.value.as_deref().unwrap())
                .parse()
                .unwrap()
        })
        .collect();
    values.sort_unstable();
    assert_eq!(
        values,
        (10..20).collect::<Vec<_>>(),
        "resumed after the commit, nothing re-read"
    );
}

#[test]
fn an_append_larger_than_the_producer_queue_completes_in_order() {
    let broker = kafka_broker();
    let mut config = broker.config();
    // A tiny queue forces the "queue full: wait for an earlier delivery" path.
    config
        .overrides
        .push(("queue.buffering.max.messages".into(), "50".into()));
    let log = KafkaLog::connect(config).unwrap();
    block_on(log.ensure_topic(&TopicSpec::new("big", 2))).unwrap();
    let records: Vec<OutRecord> = (0..2000)
        .map(|i| OutRecord {
            partition: Some(i % 2),
            ..OutRecord::keyed("big", "k", format!("{i}"))
        })
        .collect();
    let positions = block_on(log.append(records)).unwrap();
    assert_eq!(positions.len(), 2000);
    for (i, p) in positions.iter().enumerate() {
        assert_eq!(
            (p.partition, p.offset),
            ((i % 2) as u32, (i / 2) as u64),
            "record {i}"
        );
    }
    assert_eq!(block_on(log.end_offsets("big")).unwrap(), vec![1000, 1000]);
}
