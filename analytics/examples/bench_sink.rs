//! The analytics benchmark (`scripts/bench-analytics.sh`): the ClickHouse sink's throughput
//! over a preloaded backlog, and its lag behind the log at a steady produce rate. Writes
//! `OUT/analytics.json`, which `shopflow bench` merges into its report.
//!
//! Usage: bench_sink --kafka HOST:PORT --clickhouse URL --out DIR [--backlog N] [--rate R]
//!        [--seconds S]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shopflow_analytics::{AnalyticsSettings, ClickHouseService, ClickHouseSink};
use shopflow_events::{Envelope, Topic};
use shopflow_ingest::{event_topic_spec, EventLog, KafkaConfig, KafkaLog, OutRecord};
use tokio::sync::{mpsc, watch};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// At least `n` activity events (the demo shop's shoppers, scaled up), as log records.
fn workload(n: usize, seed: u64) -> Vec<OutRecord> {
    let mut out = Vec::with_capacity(n);
    let mut round = 0;
    while out.len() < n {
        let events: Vec<Envelope> = shopflow_shopdata::activity::Activity {
            shoppers: 2_000,
            days: 30,
            seed: seed + round,
            with_catalog: round == 0,
            ..shopflow_shopdata::activity::Activity::new(1_763_942_400_000)
        }
        .events();
        out.extend(shopflow_shopdata::records(&events));
        round += 1;
    }
    out.truncate(n);
    out
}

async fn open(brokers: &str) -> anyhow::Result<Arc<dyn EventLog>> {
    let namespace = format!("bench{}", uuid::Uuid::new_v4().simple());
    let log: Arc<dyn EventLog> = Arc::new(KafkaLog::connect(KafkaConfig::new(brokers.to_string()).with_namespace(namespace))?);
    for topic in Topic::ALL {
        log.ensure_topic(&event_topic_spec(topic, 4)).await?;
    }
    Ok(log)
}

async fn service(url: &str, settings: &AnalyticsSettings) -> anyhow::Result<ClickHouseService> {
    let client = shopflow_analytics::client(settings, url);
    shopflow_analytics::migrations::migrate(&client, &settings.database).await?;
    Ok(ClickHouseService::new(client))
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let brokers = arg("--kafka").context("--kafka HOST:PORT")?;
    let url = arg("--clickhouse").context("--clickhouse URL")?;
    let out = std::path::PathBuf::from(arg("--out").unwrap_or_else(|| "target/bench".into()));
    let backlog: usize = arg("--backlog").map_or(Ok(300_000), |v| v.parse())?;
    let rate: u64 = arg("--rate").map_or(Ok(20_000), |v| v.parse())?;
    let seconds: u64 = arg("--seconds").map_or(Ok(30), |v| v.parse())?;
    std::fs::create_dir_all(&out)?;

    // Throughput: the sink drains a preloaded backlog.
    let log = open(&brokers).await?;
    let records = workload(backlog, 1);
    eprintln!("preloading {} events", records.len());
    for chunk in records.chunks(5_000) {
        log.append(chunk.to_vec()).await?;
    }
    let settings = AnalyticsSettings { database: format!("bench_{}", uuid::Uuid::new_v4().simple()), ..Default::default() };
    let svc = service(&url, &settings).await?;
    let sink = ClickHouseSink::new(log.clone(), svc.clone(), settings.clone());
    let mut progress = sink.progress();
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(sink.run(stopped));
    let total = records.len() as u64;
    progress.wait_for(|p| p.records >= total).await?;
    let drain = started.elapsed().as_secs_f64();
    let rows = progress.borrow().rows;
    stop.send(true)?;
    task.await??;
    eprintln!("throughput: {total} events, {rows} rows in {drain:.1} s");

    // Lag: a steady produce rate while the sink runs; lag = acknowledged - appended.
    let log = open(&brokers).await?;
    let settings = AnalyticsSettings { database: format!("bench_{}", uuid::Uuid::new_v4().simple()), ..Default::default() };
    let svc = service(&url, &settings).await?;
    let (acks_tx, mut acks_rx) = mpsc::unbounded_channel();
    let sink = ClickHouseSink::new(log.clone(), svc, settings).with_acks(acks_tx);
    let mut progress = sink.progress();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(sink.run(stopped));
    let records = workload((rate * seconds) as usize, 2);
    let per_tick = (rate / 20) as usize; // every 50 ms
    let producer_started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut behind_ticks = 0u64;
    let mut produced = 0u64;
    for chunk in records.chunks(per_tick.max(1)) {
        tick.tick().await;
        let t = Instant::now();
        log.append(chunk.to_vec()).await?;
        produced += chunk.len() as u64;
        if t.elapsed() > Duration::from_millis(50) {
            behind_ticks += 1;
        }
    }
    let produce_secs = producer_started.elapsed().as_secs_f64();
    progress.wait_for(|p| p.records >= produced).await?;
    let steady_rows = progress.borrow().rows;
    let steady_secs = producer_started.elapsed().as_secs_f64();
    stop.send(true)?;
    task.await??;
    let mut lags = Vec::with_capacity(produced as usize);
    while let Ok(a) = acks_rx.try_recv() {
        lags.extend(a.appended_ms.iter().map(|t| a.at_ms - t));
    }
    lags.sort_unstable();
    let (p50, p99, max) = (percentile(&lags, 0.5), percentile(&lags, 0.99), lags.last().copied().unwrap_or(0));
    eprintln!("steady: {produced} events at {:.0}/s; lag p50 {p50} ms, p99 {p99} ms, max {max} ms", produced as f64 / produce_secs);

    let report = serde_json::json!({
        "engine": "chDB 26.9 (chdb-core) behind analytics/adapter/chdb_http.py, one Python process",
        "log": "nisshi (Kafka protocol, memory storage), 4 partitions per topic",
        "throughput": {
            "events": total,
            "rows": rows,
            "seconds": drain,
            "rows_per_s": (rows as f64 / drain).round(),
            "events_per_s": (total as f64 / drain).round(),
            "aim_rows_per_s": 100_000,
        },
        "steady": {
            "target_rate_per_s": rate,
            "achieved_rate_per_s": (produced as f64 / produce_secs).round(),
            "producer_ticks_late": behind_ticks,
            "events": produced,
            "rows": steady_rows,
            "rows_per_s": (steady_rows as f64 / steady_secs).round(),
            "lag_ms_p50": p50,
            "lag_ms_p99": p99,
            "lag_ms_max": max,
            "aim_lag_ms_p99": 2_000,
        },
        "at_ms": now_ms(),
    });
    std::fs::write(out.join("analytics.json"), serde_json::to_string_pretty(&report)?)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
