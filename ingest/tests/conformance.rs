//! One behavioural contract, run against both backends: the embedded log in a temp dir, and
//! Kafka on a real broker (`testing::kafka_broker`). Everything is driven with
//! `futures::executor::block_on`, which is how timely threads call the log, so this also proves
//! the futures need no async runtime.

use std::any::Any;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::executor::block_on;
use shopflow_events::partition_for;
use shopflow_ingest::{EventLog, LogError, LogReader, OutRecord, Position, Record, TopicSpec};

const DEADLINE: Duration = Duration::from_secs(30);

struct Fixture {
    log: Arc<dyn EventLog>,
    _guard: Box<dyn Any>,
}

fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = shopflow_ingest::EmbeddedLog::open(dir.path()).expect("open embedded log");
    Fixture {
        log: Arc::new(log),
        _guard: Box::new(dir),
    }
}

fn kafka() -> Fixture {
    let broker = shopflow_ingest::testing::kafka_broker();
    let log = shopflow_ingest::KafkaLog::connect(broker.config()).expect("kafka client");
    Fixture {
        log: Arc::new(log),
        _guard: Box::new(broker),
    }
}

fn rec(topic: &str, key: &str, value: &str) -> OutRecord {
    OutRecord::keyed(topic, key.as_bytes(), value.as_bytes())
}

fn on(topic: &str, partition: u32, key: &str, value: &str) -> OutRecord {
    OutRecord {
        partition: Some(partition),
        ..rec(topic, key, value)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Polls until `n` records came, failing at the deadline; then checks nothing more is pending.
fn read_exactly(reader: &mut dyn LogReader, n: usize) -> Vec<Record> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read {} of {n} records before the deadline",
            out.len()
        );
        out.extend(
            reader
                .poll(n - out.len(), Duration::from_millis(200))
                .expect("poll"),
        );
    }
    assert_eq!(out.len(), n, "read more records than written");
    out
}

/// (offset, key, value)
type Stored = (u64, Vec<u8>, Option<Vec<u8>>);

fn by_partition(records: &[Record]) -> BTreeMap<u32, Vec<Stored>> {
    let mut map: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for r in records {
        map.entry(r.partition)
            .or_default()
            .push((r.offset, r.key.clone(), r.value.clone()));
    }
    map
}

fn ensure_topic_is_idempotent(log: &dyn EventLog) {
    let spec = TopicSpec::new("orders", 3);
    block_on(log.ensure_topic(&spec)).unwrap();
    block_on(log.ensure_topic(&spec)).unwrap();
    assert_eq!(block_on(log.partitions("orders")).unwrap(), 3);
    // An existing topic is left as it is.
    block_on(log.ensure_topic(&TopicSpec::new("orders", 5))).unwrap();
    assert_eq!(block_on(log.partitions("orders")).unwrap(), 3);
    block_on(log.ensure_topic(&TopicSpec::new("changelog", 2).compacted())).unwrap();
    assert_eq!(block_on(log.partitions("changelog")).unwrap(), 2);
    assert_eq!(block_on(log.end_offsets("orders")).unwrap(), vec![0, 0, 0]);
}

fn bad_input_is_an_error(log: &dyn EventLog) {
    assert!(matches!(
        block_on(log.partitions("nope")),
        Err(LogError::UnknownTopic(_))
    ));
    assert!(matches!(
        block_on(log.ensure_topic(&TopicSpec::new("zero", 0))),
        Err(LogError::Invalid(_))
    ));
    assert!(matches!(
        block_on(log.ensure_topic(&TopicSpec::new("bad/name", 1))),
        Err(LogError::Invalid(_))
    ));
    assert!(matches!(
        block_on(log.append(vec![rec("nope", "k", "v")])),
        Err(LogError::UnknownTopic(_))
    ));
    block_on(log.ensure_topic(&TopicSpec::new("small", 2))).unwrap();
    let err = block_on(log.append(vec![rec("small", "a", "1"), on("small", 2, "b", "2")]));
    assert!(
        matches!(err, Err(LogError::UnknownPartition { partition: 2, .. })),
        "{err:?}"
    );
    // The valid record of the rejected batch was not written either.
    assert_eq!(block_on(log.end_offsets("small")).unwrap(), vec![0, 0]);
    assert!(log.reader(&[Position::new("small", 7, 0)]).is_err());
    assert!(log.reader(&[Position::new("nope", 0, 0)]).is_err());
    let twice = [Position::new("small", 0, 0), Position::new("small", 0, 3)];
    assert!(matches!(
        log.reader(&twice).map(|_| ()),
        Err(LogError::Invalid(_))
    ));
    assert_eq!(block_on(log.append(vec![])).unwrap(), vec![]);
}

fn keyed_records_land_on_partition_for(log: &dyn EventLog) {
    block_on(log.ensure_topic(&TopicSpec::new("carts", 4))).unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let records = keys.iter().map(|k| rec("carts", k, "v")).collect();
    let positions = block_on(log.append(records)).unwrap();
    for (key, pos) in keys.iter().zip(&positions) {
        assert_eq!(pos.topic, "carts");
        assert_eq!(pos.partition, partition_for(key.as_bytes(), 4), "key {key}");
    }
    assert!(
        positions
            .iter()
            .map(|p| p.partition)
            .collect::<HashSet<_>>()
            .len()
            > 1,
        "keys spread over partitions"
    );
    // An explicit partition wins over the key.
    let key = "user-0";
    let other = (partition_for(key.as_bytes(), 4) + 1) % 4;
    let pos = block_on(log.append(vec![on("carts", other, key, "v")])).unwrap();
    assert_eq!(pos[0].partition, other);
}

fn offsets_are_dense_and_positions_in_input_order(log: &dyn EventLog) {
    block_on(log.ensure_topic(&TopicSpec::new("payments", 3))).unwrap();
    let plan = [0u32, 1, 0, 2, 2, 0, 1, 0];
    let records = plan
        .iter()
        .enumerate()
        .map(|(i, p)| on("payments", *p, "k", &format!("v{i}")))
        .collect();
    let first = block_on(log.append(records)).unwrap();
    let expected: Vec<(u32, u64)> = vec![
        (0, 0),
        (1, 0),
        (0, 1),
        (2, 0),
        (2, 1),
        (0, 2),
        (1, 1),
        (0, 3),
    ];
    assert_eq!(
        first
            .iter()
            .map(|p| (p.partition, p.offset))
            .collect::<Vec<_>>(),
        expected
    );
    let second = block_on(log.append(vec![
        on("payments", 1, "k", "x"),
        on("payments", 0, "k", "y"),
    ]))
    .unwrap();
    assert_eq!(
        second
            .iter()
            .map(|p| (p.partition, p.offset))
            .collect::<Vec<_>>(),
        vec![(1, 2), (0, 4)]
    );
    assert_eq!(
        block_on(log.end_offsets("payments")).unwrap(),
        vec![5, 3, 2]
    );
}

fn readers_read_exactly_from_start_middle_and_end(log: &dyn EventLog) {
    block_on(log.ensure_topic(&TopicSpec::new("catalog", 3))).unwrap();
    let records = (0..60)
        .map(|i| on("catalog", i % 3, &format!("k{i}"), &format!("v{i}")))
        .collect();
    block_on(log.append(records)).unwrap();
    let expected = |p: u32, from: u64| -> Vec<Stored> {
        (0..60u32)
            .filter(|i| i % 3 == p)
            .enumerate()
            .skip(from as usize)
            .map(|(off, i)| {
                (
                    off as u64,
                    format!("k{i}").into_bytes(),
                    Some(format!("v{i}").into_bytes()),
                )
            })
            .collect()
    };

    let from_start: Vec<Position> = (0..3).map(|p| Position::new("catalog", p, 0)).collect();
    let got = read_exactly(&mut *log.reader(&from_start).unwrap(), 60);
    assert!(got.iter().all(|r| &*r.topic == "catalog"));
    let got = by_partition(&got);
    for p in 0..3 {
        assert_eq!(got[&p], expected(p, 0), "partition {p} from 0");
    }

    // Different starting points per partition, and a subset of partitions.
    let from_middle = vec![
        Position::new("catalog", 0, 7),
        Position::new("catalog", 2, 19),
    ];
    let mut reader = log.reader(&from_middle).unwrap();
    let got = by_partition(&read_exactly(&mut *reader, 13 + 1));
    assert_eq!(got[&0], expected(0, 7));
    assert_eq!(got[&2], expected(2, 19));
    assert!(!got.contains_key(&1));
    assert!(reader
        .poll(100, Duration::from_millis(300))
        .unwrap()
        .is_empty());

    let from_end: Vec<Position> = (0..3).map(|p| Position::new("catalog", p, 20)).collect();
    let mut reader = log.reader(&from_end).unwrap();
    assert!(reader
        .poll(100, Duration::from_millis(300))
        .unwrap()
        .is_empty());
    let pos = block_on(log.append(vec![on("catalog", 1, "late", "x")])).unwrap();
    let got = read_exactly(&mut *reader, 1);
    assert_eq!(
        (got[0].partition, got[0].offset, got[0].key.as_slice()),
        (1, 20, &b"late"[..])
    );
    assert_eq!(pos[0], Position::new("catalog", 1, 20));

    // `max` bounds a batch.
    let mut reader = log.reader(&from_start).unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut batch = Vec::new();
    while batch.is_empty() && Instant::now() < deadline {
        batch = reader.poll(5, Duration::from_millis(200)).unwrap();
    }
    assert!(
        !batch.is_empty() && batch.len() <= 5,
        "batch of {}",
        batch.len()
    );
}

fn a_waiting_reader_wakes_on_append(log: &dyn EventLog) {
    block_on(log.ensure_topic(&TopicSpec::new("interactions", 2))).unwrap();
    let mut reader = log
        .reader(&[
            Position::new("interactions", 0, 0),
            Position::new("interactions", 1, 0),
        ])
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        tx.send(()).unwrap();
        let started = Instant::now();
        let got = reader.poll(10, Duration::from_secs(20)).unwrap();
        (got, started.elapsed())
    });
    rx.recv().unwrap();
    block_on(log.append(vec![on("interactions", 1, "u", "viewed")])).unwrap();
    let (got, waited) = waiter.join().unwrap();
    assert_eq!(got.len(), 1, "woke with the appended record");
    assert_eq!((got[0].partition, got[0].offset), (1, 0));
    assert!(
        waited < Duration::from_secs(10),
        "woke by the append, not the timeout ({waited:?})"
    );
}

fn tombstones_and_empty_values_read_back(log: &dyn EventLog) {
    block_on(log.ensure_topic(&TopicSpec::new("views", 1).compacted())).unwrap();
    let before = now_ms();
    let records = vec![
        rec("views", "a", "1"),
        OutRecord {
            topic: "views".into(),
            partition: None,
            key: b"a".to_vec(),
            value: None,
        },
        OutRecord {
            topic: "views".into(),
            partition: None,
            key: b"b".to_vec(),
            value: Some(Vec::new()),
        },
    ];
    block_on(log.append(records)).unwrap();
    let after = now_ms();
    let got = read_exactly(
        &mut *log.reader(&[Position::new("views", 0, 0)]).unwrap(),
        3,
    );
    assert_eq!(got[0].value.as_deref(), Some(&b"1"[..]));
    assert_eq!(got[1].value, None, "tombstone");
    assert_eq!(got[1].key, b"a");
    assert_eq!(
        got[2].value.as_deref(),
        Some(&b""[..]),
        "an empty value is not a tombstone"
    );
    for r in &got {
        assert!(
            r.timestamp_ms >= before - 1000 && r.timestamp_ms <= after + 1000,
            "timestamp {}",
            r.timestamp_ms
        );
    }
}

fn concurrent_appenders_lose_nothing(log: Arc<dyn EventLog>) {
    const THREADS: usize = 4;
    const BATCHES: usize = 25;
    const PER_BATCH: usize = 20;
    block_on(log.ensure_topic(&TopicSpec::new("inventory", 3))).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for b in 0..BATCHES {
                    let batch = (0..PER_BATCH)
                        .map(|i| {
                            rec(
                                "inventory",
                                &format!("t{t}-{}", i % 5),
                                &format!("{t}:{b}:{i}"),
                            )
                        })
                        .collect();
                    acked.extend(block_on(log.append(batch)).unwrap());
                }
                acked
            })
        })
        .collect();
    let acked: Vec<Position> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let total = THREADS * BATCHES * PER_BATCH;
    assert_eq!(
        acked.iter().collect::<HashSet<_>>().len(),
        total,
        "every append got its own position"
    );
    let ends = block_on(log.end_offsets("inventory")).unwrap();
    assert_eq!(ends.iter().sum::<u64>() as usize, total);

    let from: Vec<Position> = (0..3).map(|p| Position::new("inventory", p, 0)).collect();
    let got = read_exactly(&mut *log.reader(&from).unwrap(), total);
    let values: HashSet<Vec<u8>> = got.iter().map(|r| r.value.clone().unwrap()).collect();
    assert_eq!(values.len(), total, "no record lost or duplicated");
    for (p, recs) in by_partition(&got) {
        let offsets: Vec<u64> = recs.iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            (0..ends[p as usize]).collect::<Vec<_>>(),
            "dense offsets in partition {p}"
        );
    }
    // Per key, records keep the order their appender sent them in.
    let mut last: BTreeMap<Vec<u8>, (usize, usize)> = BTreeMap::new();
    for r in &got {
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        let parts: Vec<usize> = v.split(':').map(|x| x.parse().unwrap()).collect();
        let seq = (parts[1], parts[2]);
        if let Some(prev) = last.insert(r.key.clone(), seq) {
            assert!(
                prev < seq,
                "order kept for key {:?}",
                String::from_utf8_lossy(&r.key)
            );
        }
    }
}

fn truncated_records_are_gone_and_offsets_stay(log: &dyn EventLog) {
    block_on(log.ensure_topic(&TopicSpec::new("trunc", 2))).unwrap();
    let records = (0..10).map(|i| on("trunc", 0, "k", &i.to_string())).chain([on("trunc", 1, "k", "other")]).collect();
    block_on(log.append(records)).unwrap();
    block_on(log.truncate_before("trunc", 0, 6)).unwrap();

    let got = read_exactly(&mut *log.reader(&[Position::new("trunc", 0, 0)]).unwrap(), 4);
    let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![6, 7, 8, 9], "a reader from 0 starts at the earliest retained offset");
    assert_eq!(got[0].value.as_deref(), Some(&b"6"[..]));
    assert_eq!(block_on(log.end_offsets("trunc")).unwrap(), vec![10, 1], "end offsets do not move");
    let other = read_exactly(&mut *log.reader(&[Position::new("trunc", 1, 0)]).unwrap(), 1);
    assert_eq!(other[0].value.as_deref(), Some(&b"other"[..]), "other partitions are untouched");
    let next = block_on(log.append(vec![on("trunc", 0, "k", "10")])).unwrap();
    assert_eq!(next[0].offset, 10, "appends continue the offsets");
}

fn group_offsets_commit_and_read_back(log: &dyn EventLog) {
    block_on(log.ensure_topic(&TopicSpec::new("grouped", 2))).unwrap();
    block_on(log.append(vec![on("grouped", 0, "k", "a"), on("grouped", 0, "k", "b"), on("grouped", 1, "k", "c")])).unwrap();
    assert_eq!(block_on(log.committed("sink", "grouped")).unwrap(), vec![None, None], "nothing committed yet");
    block_on(log.commit("sink", &[Position::new("grouped", 0, 1)])).unwrap();
    assert_eq!(block_on(log.committed("sink", "grouped")).unwrap(), vec![Some(1), None]);
    block_on(log.commit("sink", &[Position::new("grouped", 0, 2), Position::new("grouped", 1, 1)])).unwrap();
    assert_eq!(block_on(log.committed("sink", "grouped")).unwrap(), vec![Some(2), Some(1)], "a later commit replaces the earlier");
    assert_eq!(block_on(log.committed("other", "grouped")).unwrap(), vec![None, None], "groups are independent");
    assert!(block_on(log.committed("sink", "no-such-topic")).is_err());
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {

            #[test]
            fn ensure_topic_is_idempotent() {
                super::ensure_topic_is_idempotent(&*super::$backend().log);
            }
            #[test]
            fn bad_input_is_an_error() {
                super::bad_input_is_an_error(&*super::$backend().log);
            }
            #[test]
            fn keyed_records_land_on_partition_for() {
                super::keyed_records_land_on_partition_for(&*super::$backend().log);
            }
            #[test]
            fn offsets_are_dense_and_positions_in_input_order() {
                super::offsets_are_dense_and_positions_in_input_order(&*super::$backend().log);
            }
            #[test]
            fn readers_read_exactly_from_start_middle_and_end() {
                super::readers_read_exactly_from_start_middle_and_end(&*super::$backend().log);
            }
            #[test]
            fn a_waiting_reader_wakes_on_append() {
                super::a_waiting_reader_wakes_on_append(&*super::$backend().log);
            }
            #[test]
            fn tombstones_and_empty_values_read_back() {
                super::tombstones_and_empty_values_read_back(&*super::$backend().log);
            }
            #[test]
            fn truncated_records_are_gone_and_offsets_stay() {
                super::truncated_records_are_gone_and_offsets_stay(&*super::$backend().log);
            }
            #[test]
            fn group_offsets_commit_and_read_back() {
                super::group_offsets_commit_and_read_back(&*super::$backend().log);
            }
            #[test]
            fn concurrent_appenders_lose_nothing() {
                let fixture = super::$backend();
                super::concurrent_appenders_lose_nothing(fixture.log.clone());
            }
        }
    };
}

conformance!(embedded);
conformance!(kafka);

#[path = "embedded/durability.rs"]
mod embedded_durability;
