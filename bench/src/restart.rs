//! The restart phase: a crash under steady load with the default settings, and the time
//! until a fresh pipeline on the same log and data directory has caught up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shopflow_dataflow::pipeline::{self, PipelineConfig};
use shopflow_dataflow::snapshot::SnapshotStore;
use shopflow_dataflow::views::Views;
use shopflow_ingest::{EventLog, Position};
use shopflow_shopdata::Workload;

use super::machine::ThreadCpu;
use super::pipeline::*;

/// A crash under steady load and the restart after it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RestartResult {
    /// The pipeline settings of both runs: the defaults, bar workers and data directory.
    pub snapshot_interval_ms: u64,
    pub max_batch: usize,
    pub workers: usize,
    /// Catalog preloaded before producing (products).
    pub preloaded_products: u64,
    /// The first run's steady load up to the crash, with its produce-to-visible latency.
    pub before_crash: FreshnessResult,
    /// Seconds from the first pipeline's start until the crash.
    pub first_run_secs: f64,
    /// Source records in the log at the crash (catalog included).
    pub log_records: u64,
    /// Non-empty source partitions, and how many of them had a snapshot at the crash.
    pub source_partitions: usize,
    pub snapshotted_partitions: usize,
    /// Records the restored snapshots hold (sum of their next offsets).
    pub snapshot_records: u64,
    /// Records beyond the restored snapshots: what the restart reads from the log again.
    pub backlog_records: u64,
    /// Distinct epochs recorded in `_remap` beyond the restored snapshots (what replay
    /// re-creates one by one), and the remap entries (one per worker and epoch) behind them.
    pub backlog_epochs: u64,
    pub backlog_remap_entries: u64,
    /// The backlog in seconds of production at the phase's rate.
    pub backlog_secs_of_load: f64,
    /// Age of the oldest snapshot file when the pipeline was stopped.
    pub snapshot_age_secs: Option<f64>,
    /// How long stopping the first pipeline took (no final snapshot is written).
    pub stop_secs: f64,
    /// Until `pipeline::start` returned (topic metadata, workers spawned).
    pub restart_start_secs: f64,
    /// From the restart until the views cover every source end offset (the `/readyz` rule).
    pub ready_secs: f64,
    /// backlog_records ÷ ready_secs.
    pub replay_records_per_sec: f64,
    /// Every compared view equal before the crash and once ready after the restart.
    pub views_match: bool,
    pub compared: Vec<ViewComparison>,
    /// (seconds since restart, source records reflected, snapshot included) as progress advanced.
    pub progress_timeline: Vec<(f64, u64)>,
    pub cpu_by_thread: Vec<(String, f64)>,
    pub cpu_cores_busy: f64,
}

/// One view before the crash against the same view once the restarted pipeline is ready.
#[derive(Debug, Serialize, Deserialize)]
pub struct ViewComparison {
    pub view: String,
    pub rows_before: usize,
    pub rows_after: usize,
    /// Keys missing on either side or with different rows.
    pub differing_keys: usize,
    /// A few of them, as `key: before → after`.
    pub samples: Vec<String>,
}

/// The restart phase: a pipeline with the default settings (snapshot every 10 s, 20,000 records
/// per epoch) under a steady load, stopped the way `kill -9` leaves its state (no final
/// snapshot: only the periodic snapshots and the durable remap survive), then a fresh pipeline
/// on the same log and data directory, timed until the views cover every end offset.
pub(crate) async fn restart(backend: &Backend, config: &SuiteConfig) -> anyhow::Result<RestartResult> {
    let phase = PhaseLog::open(backend, config, "restart").await?;
    let outcome = measure_restart(config, &phase).await;
    let log = phase.log.clone();
    drop(log);
    phase.remove().await;
    outcome
}

async fn measure_restart(config: &SuiteConfig, phase: &PhaseLog) -> anyhow::Result<RestartResult> {
    let log = &phase.log;
    let pipeline_config = PipelineConfig {
        snapshot_on_stop: false,
        ..phase.pipeline_config(config)
    };
    let data_dir = pipeline_config.data_dir.clone();

    // First run: the catalog, then the steady load until the crash.
    let views = Arc::new(Views::new());
    let first_started = Instant::now();
    let handle = start_pipeline(pipeline_config.clone(), log.clone(), views.clone()).await?;
    let first = async {
        let products = config.products.min(100_000);
        let mut workload = Workload::new(products, 0xf2e5);
        load_catalog(log, &mut workload, products).await?;
        let targets = source_targets(log.as_ref()).await?;
        await_views(
            &views,
            &targets,
            config.timeout,
            Instant::now(),
            &mut Vec::new(),
        )
        .await
        .context("preloading the catalog")?;
        let before_crash = steady_load(
            config,
            log,
            &views,
            workload,
            config.restart_duration,
            products,
        )
        .await?;
        anyhow::ensure!(
            before_crash.unresolved_batches == 0,
            "{} batches of the first run were never reflected",
            before_crash.unresolved_batches
        );
        Ok::<_, anyhow::Error>((products, before_crash))
    }
    .await;
    // The producer has just stopped and the views reflect all it wrote: what they show now is
    // what the restarted pipeline must show again.
    let before = ViewsAt::take(&views);
    let first_run_secs = first_started.elapsed().as_secs_f64();
    let crashed_at = std::time::SystemTime::now();
    let stop_started = Instant::now();
    stop_pipeline(handle).await?;
    let stop_secs = stop_started.elapsed().as_secs_f64();
    let (preloaded_products, before_crash) = first?;
    drop(views);

    // What survived: the periodic snapshots, against the log's end.
    let targets = source_targets(log.as_ref()).await?;
    let log_records: u64 = targets.iter().map(|t| t.offset + 1).sum();
    let store = SnapshotStore::new(data_dir.join("snapshots"));
    let (mut snapshot_records, mut snapshotted_partitions) = (0u64, 0usize);
    let mut oldest: Option<std::time::SystemTime> = None;
    let mut restored: BTreeMap<(String, u32), u64> = BTreeMap::new();
    let mut remap_from = u64::MAX;
    for t in &targets {
        let Some(state) = store.load(&t.topic, t.partition)? else {
            restored.insert((t.topic.clone(), t.partition), 0);
            remap_from = 0;
            continue;
        };
        restored.insert((t.topic.clone(), t.partition), state.next_offset);
        remap_from = remap_from.min(state.remap_next);
        snapshotted_partitions += 1;
        snapshot_records += state.next_offset.min(t.offset + 1);
        let file = data_dir
            .join("snapshots")
            .join(format!("{}-{}.snap", t.topic, t.partition));
        if let Ok(modified) = std::fs::metadata(&file).and_then(|m| m.modified()) {
            oldest = Some(oldest.map_or(modified, |o| o.min(modified)));
        }
    }
    let snapshot_age_secs = oldest
        .and_then(|o| crashed_at.duration_since(o).ok())
        .map(|d| d.as_secs_f64());
    let backlog_records = log_records - snapshot_records;
    let (backlog_epochs, backlog_remap_entries) =
        recorded_epochs_beyond(log.clone(), &restored, remap_from, config.timeout).await?;

    // Second run: fresh views, same log and data directory.
    let views = Arc::new(Views::new());
    let cpu_before = ThreadCpu::sample();
    let started = Instant::now();
    let handle = start_pipeline(pipeline_config.clone(), log.clone(), views.clone()).await?;
    let restart_start_secs = started.elapsed().as_secs_f64();
    let mut timeline = Vec::new();
    let waited = await_views(&views, &targets, config.timeout, started, &mut timeline).await;
    let ready_secs = started.elapsed().as_secs_f64();
    let cpu_by_thread = ThreadCpu::sample().since(&cpu_before);
    let after = ViewsAt::take(&views);
    stop_pipeline(handle).await?;
    waited.context("restart: waiting for the views to cover the log")?;

    let compared = before.compare(&after);
    Ok(RestartResult {
        snapshot_interval_ms: pipeline_config.snapshot_interval_ms,
        max_batch: pipeline_config.max_batch,
        workers: pipeline_config.workers,
        preloaded_products,
        before_crash,
        first_run_secs,
        log_records,
        source_partitions: targets.len(),
        snapshotted_partitions,
        snapshot_records,
        backlog_records,
        backlog_epochs,
        backlog_remap_entries,
        backlog_secs_of_load: backlog_records as f64 / config.rate.max(1) as f64,
        snapshot_age_secs,
        stop_secs,
        restart_start_secs,
        ready_secs,
        replay_records_per_sec: backlog_records as f64 / ready_secs,
        views_match: compared.iter().all(|c| c.differing_keys == 0),
        compared,
        progress_timeline: timeline,
        cpu_cores_busy: process_cpu(&cpu_by_thread) / ready_secs,
        cpu_by_thread,
    })
}

/// Counts the epochs `_remap` records beyond the restored offsets (read from `from`, the
/// earliest remap position a snapshot still needs): distinct epochs, and entries behind them.
async fn recorded_epochs_beyond(
    log: Arc<dyn EventLog>,
    restored: &BTreeMap<(String, u32), u64>,
    from: u64,
    timeout: Duration,
) -> anyhow::Result<(u64, u64)> {
    let end = log
        .end_offsets(pipeline::REMAP_TOPIC)
        .await?
        .first()
        .copied()
        .unwrap_or(0);
    let restored = restored.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u64)> {
        let mut epochs = std::collections::BTreeSet::new();
        let mut entries = 0u64;
        let mut next = from.min(end);
        if next == end {
            return Ok((0, 0));
        }
        let mut reader = log.reader(&[Position::new(pipeline::REMAP_TOPIC, 0, next)])?;
        let deadline = Instant::now() + timeout;
        while next < end {
            anyhow::ensure!(
                Instant::now() < deadline,
                "reading the remap stalled at {next} of {end}"
            );
            for record in reader.poll(10_000, Duration::from_millis(100))? {
                next = record.offset + 1;
                let Some(entry) = record
                    .value
                    .as_deref()
                    .and_then(|v| serde_json::from_slice::<pipeline::RemapEntry>(v).ok())
                else {
                    continue;
                };
                let beyond = entry.offsets.iter().any(|p| {
                    restored
                        .get(&(p.topic.clone(), p.partition))
                        .is_some_and(|&r| p.offset > r)
                });
                if beyond {
                    entries += 1;
                    epochs.insert(entry.epoch);
                }
            }
        }
        Ok((epochs.len() as u64, entries))
    })
    .await?
}

/// The views the restart phase compares, as of one instant.
struct ViewsAt {
    products: Vec<(shopflow_events::Id, shopflow_dataflow::views::ProductRow)>,
    stock: Vec<(
        (shopflow_events::Id, shopflow_events::Id),
        shopflow_dataflow::views::StockRow,
    )>,
    warehouses: Vec<(shopflow_events::Id, shopflow_dataflow::views::WarehouseRow)>,
}

impl ViewsAt {
    fn take(views: &Views) -> Self {
        Self {
            products: views.products.snapshot(),
            stock: views.stock.snapshot(),
            warehouses: views.warehouses.snapshot(),
        }
    }

    fn compare(&self, after: &ViewsAt) -> Vec<ViewComparison> {
        vec![
            compare_view("products", &self.products, &after.products),
            compare_view("stock", &self.stock, &after.stock),
            compare_view("warehouses", &self.warehouses, &after.warehouses),
        ]
    }
}

/// Compares two key-ordered snapshots of one view.
fn compare_view<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    view: &str,
    before: &[(K, V)],
    after: &[(K, V)],
) -> ViewComparison {
    let b: BTreeMap<&K, &V> = before.iter().map(|(k, v)| (k, v)).collect();
    let a: BTreeMap<&K, &V> = after.iter().map(|(k, v)| (k, v)).collect();
    let mut differing_keys = 0;
    let mut samples = Vec::new();
    let keys: std::collections::BTreeSet<&K> = b.keys().chain(a.keys()).copied().collect();
    for k in keys {
        let (x, y) = (b.get(k), a.get(k));
        if x != y {
            differing_keys += 1;
            if samples.len() < 3 {
                samples.push(format!("{k:?}: {x:?} → {y:?}"));
            }
        }
    }
    ViewComparison {
        view: view.to_owned(),
        rows_before: before.len(),
        rows_after: after.len(),
        differing_keys,
        samples,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_view_counts_changed_missing_and_extra_keys() {
        let before = vec![(1, "a"), (2, "b"), (3, "c")];
        let after = vec![(1, "a"), (2, "x"), (4, "d")];
        let c = compare_view("v", &before, &after);
        assert_eq!((c.rows_before, c.rows_after, c.differing_keys), (3, 3, 3));
        assert_eq!(c.samples.len(), 3);
        assert_eq!(compare_view("v", &before, &before).differing_keys, 0);
    }
}
