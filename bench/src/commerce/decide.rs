//! Phase `decide`: orders decided per second in the dataflow. A log pre-loaded with a catalog,
//! stock receipts, customers and N `order.placed`; the pipeline starts, and the clock runs
//! until every order has its hold decision in the `orders` view (`reserved` or `rejected`).
//! That takes each order through the saga's round trips on the log: the hold requests to the
//! products' partitions, the hold answers back to the order's, and on success the charge
//! request to the payment worker's queue (no worker runs here: payment is outside the dataflow,
//! so reserved orders stay reserved).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shopflow_dataflow::views::Views;
use shopflow_events::types::OrderStatus;
use shopflow_events::{Id, Topic};
use shopflow_ingest::{EventLog, TopicSpec};

use super::shop::{self, Shop};
use super::CommerceConfig;
use crate::machine::{peak_rss_mib, MachineCpu, ThreadCpu};
use crate::pipeline::{load, process_cpu, start_pipeline, stop_pipeline, Backend, PhaseLoad, PhaseLog, SuiteConfig};

/// Orders per generated chunk while loading.
const CHUNK: u64 = 20_000;

#[derive(Debug, Serialize, Deserialize)]
pub struct DecideResult {
    pub backend: String,
    pub orders: u64,
    pub products: u64,
    pub customers: u64,
    pub order_lines: u64,
    pub workers: usize,
    pub partitions: u32,
    /// The pipeline settings that bound the latency of one saga step.
    pub idle_tick_ms: u64,
    pub max_batch: usize,
    #[serde(default)]
    pub epochs_in_flight: usize,
    pub deadline_check_ms: u64,
    pub snapshot_interval_ms: u64,
    /// Untimed: pre-loading (catalog, stock, customers, orders).
    pub load_secs: f64,
    pub preloaded_records: u64,
    /// Pipeline start until every order is decided (catalog and stock included).
    pub pipeline_secs: f64,
    /// Pipeline start until the first decision.
    pub first_decision_secs: f64,
    /// orders ÷ pipeline_secs.
    pub orders_per_sec: f64,
    /// Decision rate between 10 % and 90 % of the orders decided (the steady part, without
    /// start-up and catalog).
    pub steady_orders_per_sec: f64,
    pub reserved: u64,
    pub rejected: u64,
    /// Rejections by reason (the product left out).
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Records the pipeline consumed from its source topics: pre-loaded plus the saga's own
    /// hold requests (`inventory`) and hold answers (`orders`).
    pub source_records: u64,
    pub saga_hold_records: u64,
    /// What the saga wrote besides: charge requests (`payments`), decisions for people
    /// (`decisions`), dead letters.
    pub saga_other_records: u64,
    /// source_records ÷ pipeline_secs.
    pub events_per_sec: f64,
    /// (source_records + saga_other_records) ÷ pipeline_secs.
    pub all_records_per_sec: f64,
    /// (seconds since pipeline start, orders decided), sampled every 250 ms.
    pub timeline: Vec<(f64, u64)>,
    pub cpu_by_thread: Vec<(String, f64)>,
    pub cpu_cores_busy: f64,
    pub peak_rss_mib: Option<f64>,
    pub machine_load: Option<PhaseLoad>,
}

/// Counts orders whose row left `pending`, from the views' change notifications (a scan of
/// the whole view per publication would cost more than the saga).
struct Decided {
    seen: Mutex<HashSet<Id>>,
    count: AtomicU64,
}

pub(crate) async fn run(backend: &Backend, config: &SuiteConfig, commerce: &CommerceConfig) -> anyhow::Result<DecideResult> {
    let (orders, products) = (commerce.orders, commerce.products);
    let before = MachineCpu::sample(backend.kafka.as_deref());
    let phase = PhaseLog::open(backend, config, "commerce-decide").await?;
    let outcome = measure(backend, config, commerce, &phase, orders, products).await;
    phase.remove().await;
    let mut result = outcome?;
    if let (Some(before), Some(after)) = (before, MachineCpu::sample(backend.kafka.as_deref())) {
        result.machine_load = Some(PhaseLoad::between("commerce-decide".into(), &before, &after, backend.kafka.is_some()));
    }
    Ok(result)
}

async fn end_offsets(log: &dyn EventLog, topics: &[Topic]) -> anyhow::Result<u64> {
    let mut sum = 0;
    for topic in topics {
        sum += log.end_offsets(topic.name()).await?.iter().sum::<u64>();
    }
    Ok(sum)
}

const SOURCES: [Topic; 6] = [Topic::Catalog, Topic::Inventory, Topic::Users, Topic::Interactions, Topic::Carts, Topic::Orders];
const SAGA_OTHER: [Topic; 3] = [Topic::Payments, Topic::Decisions, Topic::Dlq];

async fn measure(backend: &Backend, config: &SuiteConfig, commerce: &CommerceConfig, phase: &PhaseLog, orders: u64, products: u64) -> anyhow::Result<DecideResult> {
    let log = phase.log.clone();
    for topic in SOURCES.iter().chain(&SAGA_OTHER) {
        log.ensure_topic(&TopicSpec::new(topic.name(), config.partitions)).await?;
    }
    let customers = (orders / 10).clamp(100, 20_000);
    let load_started = Instant::now();
    let mut shop = Shop::new(products, 0, customers, 0xc0ffee);
    let mut preloaded = 0u64;
    for chunk in [shop.reference_data(), shop.catalog_and_stock(), shop.customer_records()] {
        for part in chunk.chunks(CHUNK as usize) {
            preloaded += part.len() as u64;
            log.append(part.to_vec()).await?;
        }
    }
    let lines = Arc::new(AtomicU64::new(0));
    let counted = lines.clone();
    preloaded += load(&log, move |send| {
        let mut n = 0;
        while n < orders {
            let chunk: Vec<_> = (n..(n + CHUNK).min(orders))
                .map(|i| {
                    let record = shop.order_placed(i);
                    // Lines are counted from the JSON rather than threaded through: loading is untimed.
                    let envelope = shopflow_events::Envelope::decode(record.value.as_deref().unwrap_or_default()).ok();
                    if let Some(shopflow_events::Event::OrderPlaced(o)) = envelope.map(|e| e.event) {
                        counted.fetch_add(o.lines.len() as u64, Ordering::Relaxed);
                    }
                    record
                })
                .collect();
            n += chunk.len() as u64;
            if !send(chunk) {
                return;
            }
        }
    })
    .await?;
    let load_secs = load_started.elapsed().as_secs_f64();
    let sources_before = end_offsets(log.as_ref(), &SOURCES).await?;
    anyhow::ensure!(sources_before == preloaded, "the log holds {sources_before} source records, {preloaded} were appended");
    tracing::info!(backend = backend.name, orders, records = preloaded, secs = load_secs, "commerce workload loaded");

    let views = Arc::new(Views::new());
    let decided = Arc::new(Decided { seen: Mutex::new(HashSet::new()), count: AtomicU64::new(0) });
    {
        let (weak, decided) = (Arc::downgrade(&views), decided.clone());
        views.on_change(Box::new(move |changed| {
            let Some(views) = weak.upgrade() else { return };
            if changed.orders.is_empty() {
                return;
            }
            let mut seen = decided.seen.lock().expect("not poisoned");
            for id in changed.orders {
                if !seen.contains(id) && views.orders.with(id, |row| row.status != OrderStatus::Pending) == Some(true) {
                    seen.insert(id.clone());
                    decided.count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let pipeline_config = commerce.pipeline(phase.pipeline_config(config));
    let settings = pipeline_config.clone();
    let cpu_before = ThreadCpu::sample();
    let started = Instant::now();
    let handle = start_pipeline(pipeline_config, log.clone(), views.clone()).await?;
    let mut timeline = Vec::new();
    let mut first_decision_secs = None;
    let deadline = started + config.timeout;
    let waited: anyhow::Result<()> = loop {
        let n = decided.count.load(Ordering::Relaxed);
        let t = started.elapsed().as_secs_f64();
        if n > 0 && first_decision_secs.is_none() {
            first_decision_secs = Some(t);
        }
        if n >= orders {
            timeline.push((t, n));
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("{n} of {orders} orders decided after {:?}", config.timeout));
        }
        if timeline.last().is_none_or(|(last, _)| t - last >= 0.25) {
            timeline.push((t, n));
        }
        // Short sleeps: the end is found within 2 ms, well under the run's length.
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let pipeline_secs = started.elapsed().as_secs_f64();
    let cpu_by_thread = ThreadCpu::sample().since(&cpu_before);
    let sources_after = end_offsets(log.as_ref(), &SOURCES).await?;
    let others = end_offsets(log.as_ref(), &SAGA_OTHER).await?;
    stop_pipeline(handle).await?;
    waited.context("waiting for every order's decision")?;

    let (mut reserved, mut rejected, mut by_reason) = (0, 0, BTreeMap::new());
    for (_, row) in views.orders.snapshot() {
        match row.status {
            OrderStatus::Reserved => reserved += 1,
            OrderStatus::Rejected => {
                rejected += 1;
                *by_reason.entry(shop::outcome("rejected", &row.reason)).or_insert(0) += 1;
            }
            _ => {}
        }
    }
    let steady = steady_rate(&timeline, orders);
    Ok(DecideResult {
        backend: backend.name.to_owned(),
        orders,
        products,
        customers,
        order_lines: lines.load(Ordering::Relaxed),
        workers: config.workers,
        partitions: config.partitions,
        idle_tick_ms: settings.idle_tick_ms,
        max_batch: settings.max_batch,
        epochs_in_flight: settings.epochs_in_flight,
        deadline_check_ms: settings.deadline_check_ms,
        snapshot_interval_ms: settings.snapshot_interval_ms,
        load_secs,
        preloaded_records: preloaded,
        pipeline_secs,
        first_decision_secs: first_decision_secs.unwrap_or(pipeline_secs),
        orders_per_sec: orders as f64 / pipeline_secs,
        steady_orders_per_sec: steady,
        reserved,
        rejected,
        rejected_by_reason: by_reason,
        source_records: sources_after,
        saga_hold_records: sources_after - sources_before,
        saga_other_records: others,
        events_per_sec: sources_after as f64 / pipeline_secs,
        all_records_per_sec: (sources_after + others) as f64 / pipeline_secs,
        timeline,
        cpu_cores_busy: process_cpu(&cpu_by_thread) / pipeline_secs,
        cpu_by_thread,
        peak_rss_mib: peak_rss_mib(),
        machine_load: None,
    })
}

/// Orders per second between the samples where 10 % and 90 % of `total` were decided; 0 (not
/// measured) when that span is under two sampling intervals, as when the decisions land in one
/// or two large epochs: a rate over one interval says more about the sampling than the pipeline.
pub(crate) fn steady_rate(timeline: &[(f64, u64)], total: u64) -> f64 {
    let index = |share: f64| timeline.iter().position(|(_, n)| *n as f64 >= share * total as f64);
    match (index(0.1), index(0.9)) {
        (Some(i0), Some(i1)) if i1 >= i0 + 2 => {
            let ((t0, n0), (t1, n1)) = (timeline[i0], timeline[i1]);
            (n1 - n0) as f64 / (t1 - t0)
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::steady_rate;

    #[test]
    fn steady_rate_spans_ten_to_ninety_percent() {
        let timeline = [(0.0, 0), (1.0, 5), (2.0, 10), (3.0, 50), (4.0, 90), (5.0, 100)];
        assert_eq!(steady_rate(&timeline, 100), 40.0);
        assert_eq!(steady_rate(&[(0.0, 0), (1.0, 100)], 100), 0.0);
        // 10 % to 90 % within one sampling interval: not a rate.
        assert_eq!(steady_rate(&[(0.0, 0), (1.0, 5), (1.25, 95), (2.0, 100)], 100), 0.0);
    }
}
