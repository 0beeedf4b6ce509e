//! Replaying the log with the recorded remap gives the same epochs: every record of every
//! partition lands in the epoch it had in the first run, whatever the worker count.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use shopflow_dataflow::pipeline::{self, PipelineConfig, RemapEntry, REMAP_TOPIC};
use shopflow_dataflow::views::Views;
use shopflow_events::types::{ProductCreated, StockReceived};
use shopflow_events::{Envelope, Event, Id, Money};
use shopflow_ingest::{EmbeddedLog, EventLog, OutRecord, Position, TopicSpec};

fn batch(round: usize) -> Vec<OutRecord> {
    (0..40)
        .flat_map(|i| {
            let product = Id::from(format!("p{}", (round * 40 + i) % 70).as_str());
            [
                Envelope::new(Event::ProductCreated(ProductCreated {
                    product_id: product.clone(),
                    name: format!("round {round} item {i}"),
                    description: String::new(),
                    price: Money::new(100, "EUR"),
                    sku: String::new(),
                    category_id: "c".into(),
                    brand_id: "b".into(),
                    supplier_id: "s".into(),
                })),
                Envelope::new(Event::StockReceived(StockReceived { product_id: product, warehouse_id: "w".into(), quantity: 1 + i as u32 })),
            ]
        })
        .map(|e| OutRecord::of(&e))
        .collect()
}

async fn wait_visible(views: &Views, positions: &[Position]) {
    views.progress.wait_for(positions, Duration::from_secs(60)).await.expect("the views reach every write");
}

/// Per source partition, the (epoch, next offset) boundaries in remap records `from..`.
fn boundaries(log: &dyn EventLog, from: u64) -> BTreeMap<(String, u32), BTreeSet<(u64, u64)>> {
    let end = futures::executor::block_on(log.end_offsets(REMAP_TOPIC)).unwrap()[0];
    let mut reader = log.reader(&[Position::new(REMAP_TOPIC, 0, from)]).unwrap();
    let mut entries: BTreeMap<(String, u32), BTreeMap<u64, u64>> = BTreeMap::new();
    let mut next = from;
    while next < end {
        for record in reader.poll(1_000, Duration::from_secs(5)).unwrap() {
            next = record.offset + 1;
            let entry: RemapEntry = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
            for p in entry.offsets {
                entries.entry((p.topic, p.partition)).or_default().insert(entry.epoch, p.offset);
            }
        }
    }
    // Keep only boundaries that moved their partition: an entry also lists the partitions
    // that read nothing in its epoch.
    entries
        .into_iter()
        .map(|(partition, ends)| {
            let mut last = 0;
            let moved = ends.into_iter().filter(|(_, end)| std::mem::replace(&mut last, *end) < *end).collect();
            (partition, moved)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_from_scratch_reproduces_every_recorded_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap());
    for topic in ["catalog", "inventory", "users", "interactions", "carts", "orders", "decisions"] {
        log.ensure_topic(&TopicSpec::new(topic, 3)).await.unwrap();
    }
    log.ensure_topic(&TopicSpec::new("dlq", 1)).await.unwrap();

    // First run: several write rounds, each visible before the next, so the log is read in
    // many epochs. It stops without a snapshot, as after a crash.
    let first = PipelineConfig {
        workers: 2,
        data_dir: dir.path().join("run1"),
        snapshot_on_stop: false,
        ..PipelineConfig::default()
    };
    let views1 = Arc::new(Views::new());
    let (log1, v1) = (log.clone(), views1.clone());
    let handle = tokio::task::spawn_blocking(move || pipeline::start(first, log1, Some(v1))).await.unwrap().unwrap();
    let mut written = Vec::new();
    for round in 0..6 {
        let positions = log.append(batch(round)).await.unwrap();
        wait_visible(&views1, &positions).await;
        written.extend(positions);
    }
    tokio::task::spawn_blocking(move || handle.stop()).await.unwrap().unwrap();
    let recorded_end = log.end_offsets(REMAP_TOPIC).await.unwrap()[0];
    let recorded = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || boundaries(log.as_ref(), 0)).await.unwrap()
    };
    assert!(recorded.values().map(BTreeSet::len).sum::<usize>() >= 6, "the first run read in several epochs: {recorded:?}");

    // Second run: no snapshot, one worker; it replays the whole log under the recorded remap.
    let second = PipelineConfig { workers: 1, data_dir: dir.path().join("run2"), ..PipelineConfig::default() };
    let views2 = Arc::new(Views::new());
    let (log2, v2) = (log.clone(), views2.clone());
    let handle = tokio::task::spawn_blocking(move || pipeline::start(second, log2, Some(v2))).await.unwrap().unwrap();
    wait_visible(&views2, &written).await;
    tokio::task::spawn_blocking(move || handle.stop()).await.unwrap().unwrap();
    let replayed = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || boundaries(log.as_ref(), recorded_end)).await.unwrap()
    };

    assert_eq!(replayed, recorded, "the replay put records into different epochs");
    assert_eq!(views1.products.snapshot(), views2.products.snapshot());
    assert_eq!(views1.stock.snapshot(), views2.stock.snapshot());
}
