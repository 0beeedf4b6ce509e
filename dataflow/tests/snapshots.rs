//! A pipeline starts from snapshots written by earlier formats: they are migrated, and the
//! views show what they held.

use std::sync::Arc;
use std::time::Duration;

use shopflow_dataflow::pipeline::{self, PipelineConfig};
use shopflow_dataflow::views::Views;
use shopflow_events::Id;
use shopflow_ingest::{EmbeddedLog, EventLog, Position, TopicSpec};

async fn start_from_fixture(format: u32) -> Arc<Views> {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap());
    for topic in ["catalog", "inventory", "users", "interactions", "carts", "orders", "decisions", "dlq"] {
        log.ensure_topic(&TopicSpec::new(topic, 1)).await.unwrap();
    }
    let snapshots = dir.path().join("pipeline/snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    let fixture = format!("{}/tests/fixtures/snapshot-format{format}/catalog-0.snap", env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(fixture, snapshots.join("catalog-0.snap")).unwrap();

    let views = Arc::new(Views::new());
    let config = PipelineConfig { workers: 1, data_dir: dir.path().join("pipeline"), ..PipelineConfig::default() };
    let (l, v) = (log.clone(), views.clone());
    let handle = tokio::task::spawn_blocking(move || pipeline::start(config, l, Some(v))).await.unwrap().unwrap();
    // The snapshot covers catalog offsets 0 and 1; once progress says so, the restored state
    // is in the views.
    views.progress.wait_for(&[Position::new("catalog", 0, 1)], Duration::from_secs(60)).await.expect("the pipeline starts");
    tokio::task::spawn_blocking(move || handle.stop()).await.unwrap().unwrap();
    views
}

#[tokio::test(flavor = "multi_thread")]
async fn a_format_1_snapshot_still_starts_and_its_rows_are_served() {
    let views = start_from_fixture(1).await;
    assert_eq!(views.products.get(&Id::from("fixture-p1")).map(|p| p.name), Some("Fixture Kettle".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_format_2_snapshot_still_starts_and_its_rows_are_served() {
    let views = start_from_fixture(2).await;
    let product = views.products.get(&Id::from("fixture-p2")).expect("restored");
    assert_eq!((product.name.as_str(), product.stock), ("Fixture Teapot", 4));
    assert_eq!(views.requests.len(), 1, "the idempotency index is restored");
}
