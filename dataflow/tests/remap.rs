//! `_remap` is truncated below what every partition's snapshot covers, and a restart after a
//! crash still reproduces the views from the truncated remap.

use std::sync::Arc;
use std::time::Duration;

use shopflow_dataflow::pipeline::{self, PipelineConfig, REMAP_TOPIC};
use shopflow_dataflow::views::Views;
use shopflow_events::types::StockReceived;
use shopflow_events::{Envelope, Event, Id};
use shopflow_ingest::{EmbeddedLog, EventLog, OutRecord, Position, TopicSpec};

fn receipts(round: usize) -> Vec<OutRecord> {
    (0..30)
        .map(|i| {
            let e = Envelope::new(Event::StockReceived(StockReceived {
                product_id: Id::from(format!("p{}", (round * 30 + i) % 50).as_str()),
                warehouse_id: "w".into(),
                quantity: 1 + i as u32,
            }));
            OutRecord::of(&e)
        })
        .collect()
}

fn earliest_remap_offset(log: &dyn EventLog) -> u64 {
    let mut reader = log.reader(&[Position::new(REMAP_TOPIC, 0, 0)]).unwrap();
    reader.poll(1, Duration::from_secs(5)).unwrap().first().map(|r| r.offset).expect("the remap has entries")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_remap_is_truncated_below_the_snapshots_and_a_crash_restart_still_matches() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap());
    for topic in ["catalog", "inventory", "users", "interactions", "carts", "orders", "decisions", "dlq"] {
        log.ensure_topic(&TopicSpec::new(topic, 2)).await.unwrap();
    }
    let config = PipelineConfig { workers: 2, data_dir: dir.path().join("pipeline"), snapshot_interval_ms: 10, snapshot_on_stop: false, ..PipelineConfig::default() };
    let views = Arc::new(Views::new());
    let (l, v, c) = (log.clone(), views.clone(), config.clone());
    let handle = tokio::task::spawn_blocking(move || pipeline::start(c, l, Some(v))).await.unwrap().unwrap();

    // Rounds of writes, each read in its own epochs and covered by later snapshots, until the
    // remap's first entries are gone.
    let mut written = Vec::new();
    let mut truncated = false;
    for round in 0..200 {
        let positions = log.append(receipts(round)).await.unwrap();
        views.progress.wait_for(&positions, Duration::from_secs(60)).await.unwrap();
        written.extend(positions);
        let l = log.clone();
        if tokio::task::spawn_blocking(move || earliest_remap_offset(l.as_ref())).await.unwrap() > 0 {
            truncated = true;
            break;
        }
    }
    assert!(truncated, "the remap was never truncated");
    tokio::task::spawn_blocking(move || handle.stop()).await.unwrap().unwrap();

    // The stop wrote no final snapshot: the restart replays what the periodic ones miss.
    let restarted = Arc::new(Views::new());
    let (l, v) = (log.clone(), restarted.clone());
    let handle = tokio::task::spawn_blocking(move || pipeline::start(config, l, Some(v))).await.unwrap().unwrap();
    restarted.progress.wait_for(&written, Duration::from_secs(60)).await.unwrap();
    tokio::task::spawn_blocking(move || handle.stop()).await.unwrap().unwrap();
    assert_eq!(restarted.stock.snapshot(), views.stock.snapshot());
}
