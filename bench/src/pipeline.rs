//! The `pipeline` suite: ingest → dataflow → view throughput against the raw consume
//! ceiling of the same partitions, produce-to-visible freshness at a fixed rate, and the time
//! to ready after a crash under that load (restart from the periodic snapshot plus a backlog).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use shopflow_dataflow::pipeline::{self, PipelineConfig, SOURCE_TOPICS};
use shopflow_dataflow::views::Views;
use shopflow_ingest::{EventLog, OutRecord, Position};

use super::machine::{peak_rss_mib, MachineCpu, ThreadCpu};
pub use super::restart::RestartResult;
use super::restart::restart;
use shopflow_shopdata::Workload;
use shopflow_ingest::LogSettings;

/// Records per append while loading: large enough that loading is quick, small enough that
/// one append is one bounded transaction (or one bounded producer flush).
const LOAD_CHUNK: usize = 20_000;
/// Appends in flight while loading.
const LOAD_CONCURRENCY: usize = 4;
/// Most records one raw-consume poll takes, the same as the pipeline's default `max_batch`.
const RAW_POLL_MAX: usize = 20_000;
/// Freshness batches go out every this often; a batch holds rate × this many events.
const BATCH_INTERVAL: Duration = Duration::from_millis(5);

/// Where a run's log lives.
#[derive(Clone, Debug)]
pub struct Backend {
    pub name: &'static str,
    pub kafka: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "lower")]
pub enum Phase {
    Throughput,
    Freshness,
    Restart,
}

#[derive(Clone, Debug)]
pub struct SuiteConfig {
    pub phases: Vec<Phase>,
    pub events: u64,
    pub products: u64,
    pub rate: u64,
    pub duration: Duration,
    /// How long the restart phase produces at `rate` before the crash.
    pub restart_duration: Duration,
    pub workers: usize,
    pub partitions: u32,
    /// Scratch space for embedded logs and pipeline snapshots; removed after each phase.
    pub scratch: PathBuf,
    /// Longest a phase may wait for the views before it is reported as failed.
    pub timeout: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ThroughputResult {
    pub events: u64,
    pub products: u64,
    pub workers: usize,
    pub partitions: u32,
    /// Untimed: how long pre-loading took (append rate of the log, for context).
    pub load_secs: f64,
    pub load_events_per_sec: f64,
    /// Pipeline start (included) until the views reflect every appended offset.
    pub pipeline_secs: f64,
    pub pipeline_start_secs: f64,
    pub events_per_sec: f64,
    /// One bare reader over every source partition: the ceiling the spec asks for.
    pub raw: RawResult,
    /// As many bare readers as pipeline workers, partitions dealt like the pipeline deals them.
    pub raw_parallel: RawResult,
    /// pipeline events/s ÷ raw (one reader) records/s.
    pub ratio: f64,
    /// pipeline events/s ÷ raw (parallel readers) records/s.
    pub ratio_parallel: f64,
    /// CPU seconds per thread while the pipeline caught up, largest first.
    pub cpu_by_thread: Vec<(String, f64)>,
    /// Process CPU seconds ÷ wall seconds during the pipeline run (2.0 = both cores busy).
    pub cpu_cores_busy: f64,
    /// (seconds since pipeline start, source records reflected), sampled as progress advanced.
    pub progress_timeline: Vec<(f64, u64)>,
    pub peak_rss_mib: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RawResult {
    pub readers: usize,
    pub records: u64,
    pub bytes: u64,
    pub secs: f64,
    pub records_per_sec: f64,
    pub mib_per_sec: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub(super) fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| (us as f64 / 10.0).round() / 100.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: (h.mean() / 10.0).round() / 100.0,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FreshnessResult {
    pub target_rate: u64,
    pub achieved_rate: f64,
    pub batch_size: usize,
    pub batch_interval_ms: f64,
    pub duration_secs: f64,
    pub events: u64,
    pub batches: u64,
    /// Catalog preloaded (products) before producing, so stock events join real products.
    pub preloaded_products: u64,
    /// Per event: send instant of its batch until the views first reflect the batch's last
    /// position in every partition it touched.
    pub latency: Percentiles,
    /// The part of `latency` spent until the log acknowledged the append as durable.
    pub append_ack: Percentiles,
    /// How late the producer sent batches against its schedule (timer slack, CPU contention).
    pub producer_lag: Percentiles,
    /// Batches never seen in the views before the phase timed out.
    pub unresolved_batches: u64,
    /// The slowest batches: (seconds since producing started, latency ms), to correlate
    /// stalls with periodic work such as snapshots.
    pub slowest_batches: Vec<(f64, f64)>,
    pub cpu_by_thread: Vec<(String, f64)>,
    pub cpu_cores_busy: f64,
}

/// The CPU of the machine outside the benchmark process while one phase ran.
#[derive(Debug, Serialize, Deserialize)]
pub struct PhaseLoad {
    pub phase: String,
    /// Cores processes other than the benchmark and its broker kept busy on average (builds,
    /// tests sharing the machine): every figure of the phase is lower for it.
    pub other_cores: f64,
    /// Cores the Kafka broker kept busy on average (part of the Kafka backend's cost).
    pub broker_cores: Option<f64>,
    /// Cores the hypervisor took from this VM on average (CPU steal): no process here ran on
    /// them, so every figure of the phase is lower for it too.
    #[serde(default)]
    pub steal_cores: f64,
}

impl PhaseLoad {
    /// The machine's load between two samples; `broker`: the phase runs on the Kafka broker.
    pub fn between(phase: String, before: &MachineCpu, after: &MachineCpu, broker: bool) -> Self {
        Self {
            phase,
            other_cores: after.others_since(before),
            broker_cores: broker.then(|| after.broker_since(before)),
            steal_cores: after.steal_since(before),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BackendResult {
    pub backend: String,
    pub throughput: Option<ThroughputResult>,
    pub freshness: Option<FreshnessResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartResult>,
    /// Per phase: the CPU of the machine outside this process while it ran.
    #[serde(default)]
    pub machine_load: Vec<PhaseLoad>,
    pub errors: Vec<String>,
}

/// Runs the configured phases on one backend; a failing phase is recorded, not fatal, so one broken
/// backend still leaves a report for the others.
pub async fn run(backend: &Backend, config: &SuiteConfig) -> BackendResult {
    let mut result = BackendResult {
        backend: backend.name.to_owned(),
        ..Default::default()
    };
    for phase in &config.phases {
        run_phase(backend, config, *phase, &mut result).await;
    }
    result
}

pub async fn run_phase(
    backend: &Backend,
    config: &SuiteConfig,
    phase: Phase,
    result: &mut BackendResult,
) {
    let before = MachineCpu::sample(backend.kafka.as_deref());
    match phase {
        Phase::Throughput => throughput_phase(backend, config, result).await,
        Phase::Freshness => freshness_phase(backend, config, result).await,
        Phase::Restart => restart_phase(backend, config, result).await,
    }
    if let (Some(before), Some(after)) = (before, MachineCpu::sample(backend.kafka.as_deref())) {
        result.machine_load.push(PhaseLoad::between(phase.name().to_owned(), &before, &after, backend.kafka.is_some()));
    }
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Throughput => "throughput",
            Phase::Freshness => "freshness",
            Phase::Restart => "restart",
        }
    }
}

impl BackendResult {
    /// Takes what another run of the same backend measured (one phase per process).
    pub fn merge(&mut self, other: BackendResult) {
        self.throughput = self.throughput.take().or(other.throughput);
        self.freshness = self.freshness.take().or(other.freshness);
        self.restart = self.restart.take().or(other.restart);
        self.machine_load.extend(other.machine_load);
        self.errors.extend(other.errors);
    }
}

/// Records a phase that could not measure: logged, and listed among the backend's errors.
fn failed(backend: &Backend, phase: &str, result: &mut BackendResult, error: anyhow::Error) {
    tracing::error!(backend = backend.name, phase, error = format!("{error:#}"), "benchmark phase failed");
    result.errors.push(format!("{phase}: {error:#}"));
}

async fn throughput_phase(backend: &Backend, config: &SuiteConfig, result: &mut BackendResult) {
    tracing::info!(
        backend = backend.name,
        events = config.events,
        "throughput phase"
    );
    match throughput(backend, config).await {
        Ok(r) => {
            tracing::info!(
                backend = backend.name,
                events_per_sec = r.events_per_sec.round(),
                raw_per_sec = r.raw.records_per_sec.round(),
                ratio = r.ratio,
                "throughput measured"
            );
            result.throughput = Some(r);
        }
        Err(e) => failed(backend, "throughput", result, e),
    }
}

async fn freshness_phase(backend: &Backend, config: &SuiteConfig, result: &mut BackendResult) {
    tracing::info!(
        backend = backend.name,
        rate = config.rate,
        secs = config.duration.as_secs_f64(),
        "freshness phase"
    );
    match freshness(backend, config).await {
        Ok(r) => {
            tracing::info!(
                backend = backend.name,
                p50_ms = r.latency.p50_ms,
                p99_ms = r.latency.p99_ms,
                achieved_rate = r.achieved_rate.round(),
                "freshness measured"
            );
            result.freshness = Some(r);
        }
        Err(e) => failed(backend, "freshness", result, e),
    }
}

async fn restart_phase(backend: &Backend, config: &SuiteConfig, result: &mut BackendResult) {
    tracing::info!(
        backend = backend.name,
        rate = config.rate,
        secs = config.restart_duration.as_secs_f64(),
        "restart phase"
    );
    match restart(backend, config).await {
        Ok(r) => {
            tracing::info!(
                backend = backend.name,
                backlog_records = r.backlog_records,
                ready_secs = r.ready_secs,
                replay_records_per_sec = r.replay_records_per_sec.round(),
                views_match = r.views_match,
                "restart measured"
            );
            if !r.views_match {
                let differing: Vec<String> = r
                    .compared
                    .iter()
                    .filter(|c| c.differing_keys > 0)
                    .map(|c| format!("{} {} keys", c.view, c.differing_keys))
                    .collect();
                result.errors.push(format!(
                    "restart: the views after the restart differ from the views before the crash ({})",
                    differing.join(", ")
                ));
            }
            result.restart = Some(r);
        }
        Err(e) => failed(backend, "restart", result, e),
    }
}

/// A fresh log for one phase: its own directory (embedded) or namespace (Kafka).
pub(crate) struct PhaseLog {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) dir: PathBuf,
}

impl PhaseLog {
    pub(crate) async fn open(backend: &Backend, config: &SuiteConfig, phase: &str) -> anyhow::Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = config
            .scratch
            .join(format!("{}-{phase}-{}", backend.name, &id[..8]));
        let settings = LogSettings {
            kafka: backend.kafka.clone(),
            namespace: format!("bench-{phase}-{}", &id[..12]),
            partitions: config.partitions,
            data_dir: dir.clone(),
        };
        let log = shopflow_ingest::open(&settings).await?;
        Ok(Self { log, dir })
    }

    pub(crate) fn pipeline_config(&self, config: &SuiteConfig) -> PipelineConfig {
        PipelineConfig {
            workers: config.workers,
            data_dir: self.dir.join("pipeline"),
            ..Default::default()
        }
    }

    /// Closes the log and deletes its files (Kafka topics stay on the broker, which holds them
    /// in memory and is stopped after the benchmark).
    pub(crate) async fn remove(self) {
        let dir = self.dir;
        drop(self.log);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove benchmark scratch directory");
            }
        }
    }
}

pub(crate) async fn start_pipeline(
    config: PipelineConfig,
    log: Arc<dyn EventLog>,
    views: Arc<Views>,
) -> anyhow::Result<pipeline::PipelineHandle> {
    // Starting blocks on the log (topic metadata), so it runs off the async workers.
    Ok(tokio::task::spawn_blocking(move || pipeline::start(config, log, Some(views))).await??)
}

pub(crate) async fn stop_pipeline(handle: pipeline::PipelineHandle) -> anyhow::Result<()> {
    Ok(tokio::task::spawn_blocking(move || handle.stop()).await??)
}

/// Appends everything `generate` yields, generating on a separate thread so the appends are
/// never waiting for the generator and vice versa.
pub(crate) async fn load(
    log: &Arc<dyn EventLog>,
    generate: impl FnOnce(&mut dyn FnMut(Vec<OutRecord>) -> bool) + Send + 'static,
) -> anyhow::Result<u64> {
    let (mut tx, rx) = futures::channel::mpsc::channel::<Vec<OutRecord>>(LOAD_CONCURRENCY);
    let generator = std::thread::Builder::new()
        .name("bench-generator".into())
        .spawn(move || {
            generate(&mut |chunk| futures::executor::block_on(tx.send(chunk)).is_ok());
        })?;
    let appended = rx
        .map(|chunk| {
            let log = log.clone();
            async move {
                let n = chunk.len() as u64;
                log.append(chunk).await.map(|_| n)
            }
        })
        .buffer_unordered(LOAD_CONCURRENCY)
        .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
        .await
        .context("appending the workload");
    // The generator ends once its receiver is gone, also when an append failed.
    let _ = tokio::task::spawn_blocking(move || generator.join()).await;
    appended
}

/// Appends reference data and `products` product.created events, in order, so updates and
/// joins find them.
pub(crate) async fn load_catalog(
    log: &Arc<dyn EventLog>,
    workload: &mut Workload,
    products: u64,
) -> anyhow::Result<u64> {
    let mut n = 0;
    let reference = workload.reference_data();
    n += reference.len() as u64;
    log.append(reference).await?;
    let mut start = 0;
    while start < products {
        let end = (start + LOAD_CHUNK as u64).min(products);
        let chunk = workload.product_created(start..end);
        n += chunk.len() as u64;
        log.append(chunk).await?;
        start = end;
    }
    Ok(n)
}

/// The last written offset of every non-empty source partition.
pub(crate) async fn source_targets(log: &dyn EventLog) -> anyhow::Result<Vec<Position>> {
    let mut out = Vec::new();
    for topic in SOURCE_TOPICS {
        for (p, end) in log.end_offsets(topic.name()).await?.into_iter().enumerate() {
            if end > 0 {
                out.push(Position::new(topic.name(), p as u32, end - 1));
            }
        }
    }
    Ok(out)
}

/// Source records the views reflect, summed over the given partitions.
pub(crate) fn reflected(views: &Views, targets: &[Position]) -> u64 {
    targets
        .iter()
        .map(|t| {
            views
                .progress
                .covered(&t.topic, t.partition)
                .min(t.offset + 1)
        })
        .sum()
}

/// Waits (on progress notifications, not by polling) until the views reflect every target,
/// sampling how many records they reflect along the way.
pub(crate) async fn await_views(
    views: &Views,
    targets: &[Position],
    timeout: Duration,
    started: Instant,
    timeline: &mut Vec<(f64, u64)>,
) -> anyhow::Result<()> {
    let total: u64 = targets.iter().map(|t| t.offset + 1).sum();
    let mut changed = views.progress.subscribe();
    let mut last_sample = Instant::now() - Duration::from_secs(1);
    let wait = async {
        loop {
            if views.progress.has_passed(targets) {
                timeline.push((started.elapsed().as_secs_f64(), total));
                return Ok(());
            }
            if last_sample.elapsed() >= Duration::from_millis(250) {
                timeline.push((started.elapsed().as_secs_f64(), reflected(views, targets)));
                last_sample = Instant::now();
            }
            changed
                .changed()
                .await
                .context("views progress channel closed")?;
        }
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!(
            "views reflected {} of {total} records after {timeout:?}",
            reflected(views, targets)
        ),
    }
}

pub(crate) fn process_cpu(by_thread: &[(String, f64)]) -> f64 {
    by_thread.iter().map(|(_, s)| s).sum()
}

async fn throughput(backend: &Backend, config: &SuiteConfig) -> anyhow::Result<ThroughputResult> {
    let phase = PhaseLog::open(backend, config, "throughput").await?;
    let log = phase.log.clone();

    // Load, untimed.
    let load_started = Instant::now();
    let mut workload = Workload::new(config.products.min((config.events / 4).max(1)), 0x5eed);
    let products = workload.products();
    let catalog = load_catalog(&log, &mut workload, products).await?;
    let rest = config.events.saturating_sub(catalog);
    let mixed = load(&log, move |send| {
        let mut left = rest;
        while left > 0 {
            let n = left.min(LOAD_CHUNK as u64);
            if !send(workload.mixed(n as usize)) {
                return;
            }
            left -= n;
        }
    })
    .await?;
    let events = catalog + mixed;
    let load_secs = load_started.elapsed().as_secs_f64();
    tracing::info!(events, secs = load_secs, "workload loaded");
    let targets = source_targets(log.as_ref()).await?;
    let total: u64 = targets.iter().map(|t| t.offset + 1).sum();
    anyhow::ensure!(
        total == events,
        "the log holds {total} source records, {events} were appended"
    );

    // Raw consume first: it then runs on the same fresh heap and page cache the pipeline
    // meets, instead of inheriting the allocator state the pipeline run leaves behind.
    let starts: Vec<Position> = targets
        .iter()
        .map(|t| Position::new(t.topic.clone(), t.partition, 0))
        .collect();
    let raw = raw_consume(log.clone(), vec![starts.clone()], config.timeout).await?;
    // Dealt round-robin over the (topic, partition) list, as the pipeline deals them.
    let mut shares = vec![Vec::new(); config.workers.max(1)];
    let all = all_source_partitions(log.as_ref()).await?;
    let n = shares.len();
    for (i, (topic, p)) in all.into_iter().enumerate() {
        if targets.iter().any(|t| t.topic == topic && t.partition == p) {
            shares[i % n].push(Position::new(topic, p, 0));
        }
    }
    shares.retain(|s| !s.is_empty());
    let raw_parallel = raw_consume(log.clone(), shares, config.timeout).await?;
    anyhow::ensure!(
        raw.records == total,
        "the raw reader read {} of {total} records",
        raw.records
    );

    // Pipeline, timed from start until every appended offset is reflected.
    let views = Arc::new(Views::new());
    let cpu_before = ThreadCpu::sample();
    let started = Instant::now();
    let handle = start_pipeline(phase.pipeline_config(config), log.clone(), views.clone()).await?;
    let pipeline_start_secs = started.elapsed().as_secs_f64();
    let mut timeline = Vec::new();
    let waited = await_views(&views, &targets, config.timeout, started, &mut timeline).await;
    let pipeline_secs = started.elapsed().as_secs_f64();
    // Sampled while the workers still run: threads that ended are gone from /proc.
    let cpu_by_thread = ThreadCpu::sample().since(&cpu_before);
    stop_pipeline(handle).await?;
    waited?;
    let events_per_sec = events as f64 / pipeline_secs;

    let peak_rss_mib = peak_rss_mib();
    drop(log);
    phase.remove().await;
    Ok(ThroughputResult {
        events,
        products,
        workers: config.workers,
        partitions: config.partitions,
        load_secs,
        load_events_per_sec: events as f64 / load_secs,
        pipeline_secs,
        pipeline_start_secs,
        events_per_sec,
        ratio: events_per_sec / raw.records_per_sec,
        ratio_parallel: events_per_sec / raw_parallel.records_per_sec,
        raw,
        raw_parallel,
        cpu_cores_busy: process_cpu(&cpu_by_thread) / pipeline_secs,
        cpu_by_thread,
        progress_timeline: timeline,
        peak_rss_mib,
    })
}

pub(crate) async fn all_source_partitions(log: &dyn EventLog) -> anyhow::Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for topic in SOURCE_TOPICS {
        let count = log.partitions(topic.name()).await?;
        out.extend((0..count).map(|p| (topic.name().to_owned(), p)));
    }
    Ok(out)
}

/// Reads every share from its start positions to the end with bare readers, one thread per
/// share, touching every byte's length. Reader creation counts: a consumer has to connect too.
async fn raw_consume(
    log: Arc<dyn EventLog>,
    shares: Vec<Vec<Position>>,
    timeout: Duration,
) -> anyhow::Result<RawResult> {
    let mut ends = Vec::new();
    for share in &shares {
        let mut share_ends = Vec::new();
        for pos in share {
            share_ends.push(log.end_offsets(&pos.topic).await?[pos.partition as usize]);
        }
        ends.push(share_ends.iter().sum::<u64>());
    }
    let readers = shares.len();
    let started = Instant::now();
    let threads: Vec<_> = shares
        .into_iter()
        .zip(ends)
        .map(|(share, expected)| {
            let log = log.clone();
            std::thread::Builder::new()
                .name("bench-raw-reader".into())
                .spawn(move || -> anyhow::Result<(u64, u64)> {
                    let mut reader = log.reader(&share)?;
                    let (mut records, mut bytes) = (0u64, 0u64);
                    let deadline = Instant::now() + timeout;
                    while records < expected {
                        anyhow::ensure!(
                            Instant::now() < deadline,
                            "raw reader read {records} of {expected} records in {timeout:?}"
                        );
                        for r in reader.poll(RAW_POLL_MAX, Duration::from_millis(100))? {
                            records += 1;
                            bytes += (r.key.len() + r.value.as_ref().map_or(0, Vec::len)) as u64;
                        }
                    }
                    Ok((records, bytes))
                })
        })
        .collect::<Result<_, _>>()?;
    let joined = tokio::task::spawn_blocking(move || {
        threads.into_iter().map(|t| t.join()).collect::<Vec<_>>()
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let (mut records, mut bytes) = (0, 0);
    for j in joined {
        let (r, b) = j.map_err(|_| anyhow::anyhow!("raw reader panicked"))??;
        records += r;
        bytes += b;
    }
    Ok(RawResult {
        readers,
        records,
        bytes,
        secs,
        records_per_sec: records as f64 / secs,
        mib_per_sec: bytes as f64 / secs / (1024.0 * 1024.0),
    })
}

/// One produced batch once the log acknowledged it.
pub(crate) struct Acked {
    sent: Instant,
    acked: Instant,
    events: u64,
    /// The last position per partition the batch wrote.
    last: Vec<Position>,
}

pub(crate) fn last_per_partition(positions: Vec<Position>) -> Vec<Position> {
    let mut last: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for p in positions {
        let e = last.entry((p.topic, p.partition)).or_insert(0);
        *e = (*e).max(p.offset);
    }
    last.into_iter()
        .map(|((t, p), o)| Position::new(t, p, o))
        .collect()
}

pub(crate) fn histogram() -> Histogram<u64> {
    // Microseconds, up to an hour, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

async fn freshness(backend: &Backend, config: &SuiteConfig) -> anyhow::Result<FreshnessResult> {
    let phase = PhaseLog::open(backend, config, "freshness").await?;
    let log = phase.log.clone();
    let views = Arc::new(Views::new());
    let handle = start_pipeline(phase.pipeline_config(config), log.clone(), views.clone()).await?;
    let outcome = measure_freshness(config, &log, &views).await;
    stop_pipeline(handle).await?;
    drop(log);
    phase.remove().await;
    outcome
}

async fn measure_freshness(
    config: &SuiteConfig,
    log: &Arc<dyn EventLog>,
    views: &Arc<Views>,
) -> anyhow::Result<FreshnessResult> {
    // A running shop: the catalog exists and is reflected before the clock starts.
    let products = config.products.min(100_000);
    let mut workload = Workload::new(products, 0xf2e5);
    load_catalog(log, &mut workload, products).await?;
    let targets = source_targets(log.as_ref()).await?;
    await_views(
        views,
        &targets,
        config.timeout,
        Instant::now(),
        &mut Vec::new(),
    )
    .await
    .context("preloading the catalog")?;

    steady_load(config, log, views, workload, config.duration, products).await
}

/// Produces at `config.rate` for `duration` on an absolute schedule and measures, per batch,
/// the time until the views reflect it; returns once every batch is reflected (or the
/// timeout passed after the last append answered).
pub(crate) async fn steady_load(
    config: &SuiteConfig,
    log: &Arc<dyn EventLog>,
    views: &Arc<Views>,
    workload: Workload,
    duration: Duration,
    preloaded_products: u64,
) -> anyhow::Result<FreshnessResult> {
    // Every batch is built before the clock starts so generation never delays a send.
    let batch_size = ((config.rate as f64 * BATCH_INTERVAL.as_secs_f64()).round() as usize).max(1);
    let interval = Duration::from_secs_f64(batch_size as f64 / config.rate.max(1) as f64);
    let batches = ((duration.as_secs_f64() / interval.as_secs_f64()).round() as usize).max(1);
    let planned: Vec<Vec<OutRecord>> = {
        let mut w = workload;
        tokio::task::spawn_blocking(move || (0..batches).map(|_| w.mixed(batch_size)).collect())
            .await?
    };

    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<anyhow::Result<Acked>>();
    let cpu_before = ThreadCpu::sample();
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let producer = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lag = histogram();
            for (k, batch) in planned.into_iter().enumerate() {
                // Paced by an absolute schedule, so a late batch does not shift the rest.
                let due = start + interval * k as u32;
                tokio::time::sleep_until(due).await;
                let sent = Instant::now();
                lag.saturating_record(
                    sent.saturating_duration_since(due.into_std()).as_micros() as u64
                );
                let (log, done) = (log.clone(), done_tx.clone());
                // Appends run concurrently: a batch waiting for durability must not hold the
                // next one back, or the producer would measure its own queueing.
                tokio::spawn(async move {
                    let events = batch.len() as u64;
                    let acked = log.append(batch).await.map(|positions| Acked {
                        sent,
                        acked: Instant::now(),
                        events,
                        last: last_per_partition(positions),
                    });
                    let _ = done.send(acked.map_err(Into::into));
                });
            }
            (lag, Instant::now())
        })
    };

    let mut latency = histogram();
    let mut ack = histogram();
    let mut per_batch: Vec<(f64, f64)> = Vec::new();
    let start_std = start.into_std();
    let mut pending: Vec<Acked> = Vec::new();
    let mut changed = views.progress.subscribe();
    let mut events = 0u64;
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut closed = false;
    loop {
        tokio::select! {
            biased;
            next = done_rx.recv(), if !closed => match next {
                Some(acked) => {
                    let acked = acked.context("appending a freshness batch")?;
                    ack.saturating_record(acked.acked.duration_since(acked.sent).as_micros() as u64);
                    events += acked.events;
                    pending.push(acked);
                }
                None => {
                    closed = true;
                    deadline = Some(tokio::time::Instant::now() + config.timeout);
                }
            },
            r = changed.changed() => r.context("views progress channel closed")?,
            _ = async { tokio::time::sleep_until(deadline.expect("set")).await }, if deadline.is_some() => break,
        }
        let now = Instant::now();
        pending.retain(|b| {
            if !views.progress.has_passed(&b.last) {
                return true;
            }
            let us = now.duration_since(b.sent).as_micros() as u64;
            latency.saturating_record_n(us, b.events);
            per_batch.push((
                b.sent.duration_since(start_std).as_secs_f64(),
                us as f64 / 1000.0,
            ));
            false
        });
        if closed && pending.is_empty() {
            break;
        }
    }
    let cpu_by_thread = ThreadCpu::sample().since(&cpu_before);
    let (lag, producer_end) = producer.await?;
    // Every batch's sender is the producer's clone, dropped once it ends; so `closed` means all
    // appends have answered.
    // The last batch stands for one interval of production, like every other batch.
    let duration_secs =
        producer_end.duration_since(start_std).as_secs_f64() + interval.as_secs_f64();
    per_batch.sort_by(|a, b| b.1.total_cmp(&a.1));
    per_batch.truncate(10);
    let wall = Instant::now().duration_since(start_std).as_secs_f64();
    Ok(FreshnessResult {
        target_rate: config.rate,
        achieved_rate: events as f64 / duration_secs,
        batch_size,
        batch_interval_ms: interval.as_secs_f64() * 1000.0,
        duration_secs,
        events,
        batches: batches as u64,
        preloaded_products,
        latency: Percentiles::of(&latency),
        append_ack: Percentiles::of(&ack),
        producer_lag: Percentiles::of(&lag),
        unresolved_batches: pending.len() as u64,
        slowest_batches: per_batch,
        cpu_cores_busy: process_cpu(&cpu_by_thread) / wall,
        cpu_by_thread,
    })
}

/// Scratch root for a run's logs, next to the report.
pub fn scratch_dir(out: &Path) -> PathBuf {
    out.join("scratch")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_load_is_sampled() {
        let a = MachineCpu::sample(None).expect("/proc is readable");
        let b = MachineCpu::sample(Some("127.0.0.1:1")).expect("/proc is readable");
        assert!(b.others_since(&a) >= 0.0);
    }
}
