//! Embedded log throughput: `embedded_append` (batches of 1000 records of 200 B, one appender
//! and four concurrent ones sharing group commits) and `embedded_read` (a reader draining
//! 200k records from four partitions). Run: `cargo bench -p shopflow-ingest --bench log`.
//!
//! With `SHOPFLOW_BENCH_KAFKA=host:port` it also runs `kafka_append` and `kafka_read` against
//! that broker (in a fresh namespace), for comparison.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::executor::block_on;
use shopflow_ingest::{
    EmbeddedLog, EventLog, KafkaConfig, KafkaLog, OutRecord, Position, TopicSpec,
};

const BATCH: usize = 1000;
const VALUE: [u8; 200] = [b'x'; 200];

fn batch(topic: &str, seq: usize) -> Vec<OutRecord> {
    (0..BATCH)
        .map(|i| {
            OutRecord::keyed(
                topic,
                format!("key-{}", (seq * BATCH + i) % 10_000),
                VALUE.to_vec(),
            )
        })
        .collect()
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(dir.path()).unwrap());
    block_on(log.ensure_topic(&TopicSpec::new("bench", 4))).unwrap();
    let mut g = c.benchmark_group("embedded_append");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut seq = 0;
    g.bench_function("1_appender_batch_1000x200B", |b| {
        b.iter(|| {
            seq += 1;
            block_on(log.append(batch("bench", seq))).unwrap()
        })
    });
    const APPENDERS: usize = 4;
    g.throughput(Throughput::Elements((APPENDERS * BATCH) as u64));
    g.bench_function("4_appenders_batch_1000x200B", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let threads: Vec<_> = (0..APPENDERS)
                .map(|_| {
                    let log = log.clone();
                    std::thread::spawn(move || {
                        for i in 0..iters as usize {
                            block_on(log.append(batch("bench", i))).unwrap();
                        }
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
            start.elapsed()
        })
    });
    g.finish();
}

fn read(c: &mut Criterion) {
    const TOTAL: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(dir.path()).unwrap();
    block_on(log.ensure_topic(&TopicSpec::new("bench", 4))).unwrap();
    for seq in 0..TOTAL / BATCH {
        block_on(log.append(batch("bench", seq))).unwrap();
    }
    let from: Vec<Position> = (0..4).map(|p| Position::new("bench", p, 0)).collect();
    let mut g = c.benchmark_group("embedded_read");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(TOTAL as u64));
    g.bench_function("drain_200k_x200B_4_partitions", |b| {
        b.iter(|| drain(&log, &from, TOTAL))
    });
    g.finish();
}

/// Reads `total` records from `from` with one reader: the read side of both backends.
fn drain(log: &dyn EventLog, from: &[Position], total: usize) -> usize {
    let mut reader = log.reader(from).unwrap();
    let mut n = 0;
    while n < total {
        n += reader.poll(1000, Duration::from_secs(1)).unwrap().len();
    }
    n
}

fn kafka(c: &mut Criterion) {
    let Ok(addr) = std::env::var("SHOPFLOW_BENCH_KAFKA") else {
        return;
    };
    let ns = format!("bench{}", std::process::id());
    let log = KafkaLog::connect(KafkaConfig::new(addr).with_namespace(ns)).unwrap();
    block_on(log.ensure_topic(&TopicSpec::new("bench", 4))).unwrap();
    let mut g = c.benchmark_group("kafka_append");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut seq = 0;
    g.bench_function("1_appender_batch_1000x200B", |b| {
        b.iter(|| {
            seq += 1;
            block_on(log.append(batch("bench", seq))).unwrap()
        })
    });
    g.finish();

    const TOTAL: usize = 100_000;
    let ends = block_on(log.end_offsets("bench")).unwrap();
    for seq in 0..TOTAL / BATCH {
        block_on(log.append(batch("bench", seq))).unwrap();
    }
    let from: Vec<Position> = (0..4)
        .map(|p| Position::new("bench", p, ends[p as usize]))
        .collect();
    let mut g = c.benchmark_group("kafka_read");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(TOTAL as u64));
    g.bench_function("drain_100k_x200B_4_partitions", |b| {
        b.iter(|| drain(&log, &from, TOTAL))
    });
    g.finish();
}

criterion_group!(benches, append, read, kafka);
criterion_main!(benches);
