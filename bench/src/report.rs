//! The report: one JSON document with every number, and a Markdown rendering with the aims of
//! issues 2 (pipeline) and 3 (recommendations) and whether each was met.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use super::machine::MachineFacts;
use super::pipeline::{BackendResult, SuiteConfig};
use super::recommend::RecommendResult;

/// End-to-end events/s the embedded log must sustain on the 2-core machine.
pub const AIM_THROUGHPUT_EMBEDDED: f64 = 200_000.0;
/// Pipeline ÷ raw consume.
pub const AIM_RATIO: f64 = 0.5;
/// p99 produce-to-visible at 20,000 events/s on the embedded log.
pub const AIM_P99_MS: f64 = 50.0;
pub const AIM_P99_RATE: u64 = 20_000;
/// After a crash under the freshness load with the default settings, the views cover the log
/// again within one snapshot interval (10 s)...
pub const AIM_RESTART_READY_SECS: f64 = 10.0;
/// ...with at least this much of the load beyond the snapshot (else the aim was not tested).
pub const AIM_RESTART_MIN_BACKLOG_SECS: f64 = 5.0;
/// p99 of `GET /api/v1/recommend/user/{id}` under load (issue 3).
pub const AIM_RECOMMEND_P99_MS: f64 = 5.0;

/// Other suites write their results next to the report under these names.
const EXTERNAL_SUITES: [&str; 4] = ["recommender", "auth", "analytics", "commerce"];

#[derive(Serialize)]
pub struct Report {
    machine: MachineFacts,
    config: ConfigEcho,
    suites: Suites,
    /// Markdown that external suites rendered themselves, by suite name.
    #[serde(skip)]
    external_md: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ConfigEcho {
    quick: bool,
    events: u64,
    products: u64,
    rate: u64,
    duration_secs: f64,
    restart_duration_secs: f64,
    workers: usize,
    partitions: u32,
}

#[derive(Serialize)]
struct Suites {
    /// Keyed by backend (`embedded`, `kafka`), in the order they ran.
    #[serde(serialize_with = "by_backend", skip_serializing_if = "Vec::is_empty")]
    pipeline: Vec<BackendResult>,
    /// The measurements, or `{"error": ...}` when the suite failed; absent when not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    recommend: Option<RecommendOutcome>,
    #[serde(flatten)]
    external: serde_json::Map<String, Value>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RecommendOutcome {
    Measured(Box<RecommendResult>),
    Failed { error: String },
}

impl Report {
    pub fn new(
        machine: MachineFacts,
        config: &SuiteConfig,
        quick: bool,
        pipeline: Vec<BackendResult>,
        recommend: Option<Result<RecommendResult, String>>,
        out: &Path,
    ) -> anyhow::Result<Self> {
        let mut external = serde_json::Map::new();
        let mut external_md = std::collections::BTreeMap::new();
        for name in EXTERNAL_SUITES {
            let path = out.join(format!("{name}.json"));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let value: Value = serde_json::from_str(&text)
                        .with_context(|| format!("parsing {}", path.display()))?;
                    external.insert(name.to_owned(), value);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            }
            if let Ok(md) = std::fs::read_to_string(out.join(format!("{name}.md"))) {
                external_md.insert(name.to_owned(), md);
            }
        }
        Ok(Self {
            machine,
            config: ConfigEcho {
                quick,
                events: config.events,
                products: config.products,
                rate: config.rate,
                duration_secs: config.duration.as_secs_f64(),
                restart_duration_secs: config.restart_duration.as_secs_f64(),
                workers: config.workers,
                partitions: config.partitions,
            },
            suites: Suites {
                pipeline,
                recommend: recommend.map(|r| match r {
                    Ok(r) => RecommendOutcome::Measured(Box::new(r)),
                    Err(error) => RecommendOutcome::Failed { error },
                }),
                external,
            },
            external_md,
        })
    }

    /// Writes report.json and report.md; returns their paths.
    pub fn write(&self, out: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let json = out.join("report.json");
        let md = out.join("report.md");
        std::fs::write(&json, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", json.display()))?;
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("writing {}", md.display()))?;
        Ok((json, md))
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(s, "# shopflow benchmark report\n");
        let _ = writeln!(
            s,
            "{} · commit `{}`{} · {} cores ({}) · {} GiB RAM{}\n",
            m.date_utc,
            m.git_commit.as_deref().unwrap_or("unknown"),
            if m.git_dirty == Some(true) {
                " (with uncommitted changes)"
            } else {
                ""
            },
            m.nproc,
            m.cpu_model.as_deref().unwrap_or("unknown cpu"),
            m.memory_gib.map_or("?".to_owned(), |g| g.to_string()),
            if self.config.quick {
                " · **--quick run: sizes too small for the aims**"
            } else {
                ""
            },
        );
        if !self.suites.pipeline.is_empty() {
            self.pipeline_markdown(&mut s);
        }
        if let Some(r) = &self.suites.recommend {
            self.recommend_markdown(r, &mut s);
        }
        for (name, value) in &self.suites.external {
            // A suite that renders itself (`<name>.md` beside its JSON) is included as written.
            if let Some(md) = self.external_md.get(name) {
                s.push_str(md);
                continue;
            }
            let _ = writeln!(s, "## Suite `{name}`\n");
            let _ = writeln!(s, "From `{name}.json`.\n\n| key | value |\n|---|---|");
            let mut rows = Vec::new();
            flatten("", value, &mut rows);
            for (k, v) in rows {
                let _ = writeln!(s, "| `{k}` | {} |", v.replace('|', "\\|"));
            }
            s.push('\n');
        }
        s
    }

    fn pipeline_markdown(&self, s: &mut String) {
        let c = &self.config;
        let _ = writeln!(s, "## Suite `pipeline`\n");
        let _ = writeln!(
            s,
            "Workload: catalog and inventory events (75% stock.received, 20% stock.adjusted, 5% product.updated \
             after product.created for every product) on a Zipf(1.0) keyspace of {} products, {} partitions per \
             topic, {} pipeline workers.\n",
            c.products, c.partitions, c.workers
        );

        let _ = writeln!(s, "### Throughput: log → pipeline → views\n");
        let _ = writeln!(
            s,
            "The log is pre-loaded (untimed); the clock runs from pipeline start until the views reflect every \
             appended offset. Raw consume reads the same partitions with bare `LogReader`s, touching every \
             record's bytes.\n"
        );
        let _ = writeln!(
            s,
            "| backend | events | pipeline events/s | raw consume rec/s (1 reader) | ratio | raw rec/s ({} readers) | ratio | aim | met |",
            c.workers
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---|---|");
        for b in &self.suites.pipeline {
            let Some(t) = &b.throughput else {
                if failed(b, "throughput") {
                    let _ = writeln!(s, "| {} | — | failed | | | | | | **no** |", b.backend);
                }
                continue;
            };
            let mut aims = vec![format!("ratio ≥ {AIM_RATIO}")];
            let mut met = t.ratio >= AIM_RATIO;
            if b.backend == "embedded" {
                aims.insert(
                    0,
                    format!("≥ {} events/s", thousands(AIM_THROUGHPUT_EMBEDDED)),
                );
                met &= t.events_per_sec >= AIM_THROUGHPUT_EMBEDDED;
            }
            let _ = writeln!(
                s,
                "| {} | {} | **{}** | {} | {:.2} | {} | {:.2} | {} | {} |",
                b.backend,
                thousands(t.events as f64),
                thousands(t.events_per_sec),
                thousands(t.raw.records_per_sec),
                t.ratio,
                thousands(t.raw_parallel.records_per_sec),
                t.ratio_parallel,
                aims.join(", "),
                yes_no(met && !c.quick),
            );
        }
        s.push('\n');
        for b in &self.suites.pipeline {
            let Some(t) = &b.throughput else { continue };
            let threads: Vec<String> = t
                .cpu_by_thread
                .iter()
                .take(6)
                .map(|(n, secs)| format!("`{n}` {secs:.1} s"))
                .collect();
            let _ = writeln!(
                s,
                "- {}: pipeline took {:.2} s (start {:.2} s); {:.2} cores busy; CPU by thread: {}; peak RSS {} MiB; \
                 load (untimed) {} events/s.",
                b.backend,
                t.pipeline_secs,
                t.pipeline_start_secs,
                t.cpu_cores_busy,
                threads.join(", "),
                t.peak_rss_mib.map_or("?".to_owned(), |m| m.to_string()),
                thousands(t.load_events_per_sec),
            );
        }
        s.push('\n');

        let _ = writeln!(s, "### Freshness: produce → visible in the views\n");
        let _ = writeln!(
            s,
            "A producer appends batches of rate/200 events every 5 ms on an absolute schedule (appends run \
             concurrently, so a slow ack does not delay the next batch). A batch's latency is from the instant \
             its append was issued until the views' progress first covers its last offset in every partition it \
             wrote; every event of the batch gets that latency (percentiles are per event). The catalog \
             ({} products) is loaded and reflected before the clock starts; no warm-up is discarded. \
             \"ack\" is the part until the log acknowledged the append as durable.\n",
            c.products.min(100_000)
        );
        let _ = writeln!(
            s,
            "| backend | target/s | achieved/s | p50 ms | p90 ms | p99 ms | max ms | ack p50 / p99 ms | aim | met |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|");
        for b in &self.suites.pipeline {
            let Some(f) = &b.freshness else {
                if failed(b, "freshness") {
                    let _ = writeln!(
                        s,
                        "| {} | {} | failed | | | | | | | **no** |",
                        b.backend, c.rate
                    );
                }
                continue;
            };
            let (aim, met) = if b.backend == "embedded" {
                let met = f.latency.p99_ms <= AIM_P99_MS
                    && f.target_rate >= AIM_P99_RATE
                    && f.unresolved_batches == 0
                    && f.achieved_rate >= 0.95 * f.target_rate as f64;
                (
                    format!(
                        "p99 ≤ {AIM_P99_MS} ms at {} /s",
                        thousands(AIM_P99_RATE as f64)
                    ),
                    yes_no(met && !c.quick),
                )
            } else {
                ("—".to_owned(), "—")
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.1} | {:.1} | **{:.1}** | {:.1} | {:.1} / {:.1} | {} | {} |",
                b.backend,
                thousands(f.target_rate as f64),
                thousands(f.achieved_rate),
                f.latency.p50_ms,
                f.latency.p90_ms,
                f.latency.p99_ms,
                f.latency.max_ms,
                f.append_ack.p50_ms,
                f.append_ack.p99_ms,
                aim,
                met,
            );
        }
        s.push('\n');
        for b in &self.suites.pipeline {
            let Some(f) = &b.freshness else { continue };
            let slow: Vec<String> = f
                .slowest_batches
                .iter()
                .take(5)
                .map(|(t, ms)| format!("{ms:.0} ms at {t:.1} s"))
                .collect();
            let _ = writeln!(
                s,
                "- {}: {} events in {} batches over {:.1} s; unresolved batches {}; producer lag p99 {:.1} ms; \
                 {:.2} cores busy; slowest batches: {}.",
                b.backend,
                thousands(f.events as f64),
                f.batches,
                f.duration_secs,
                f.unresolved_batches,
                f.producer_lag.p99_ms,
                f.cpu_cores_busy,
                slow.join(", "),
            );
        }
        s.push('\n');
        self.restart_markdown(s);
        self.shared_machine_markdown(s);
        for b in &self.suites.pipeline {
            for e in &b.errors {
                let _ = writeln!(s, "- **{} failed**: {}", b.backend, e.replace('\n', " "));
            }
        }
        s.push('\n');
    }
}

impl Report {
    /// How much CPU other processes (and the broker) took while each phase ran.
    fn shared_machine_markdown(&self, s: &mut String) {
        let loads: Vec<(&str, &super::pipeline::PhaseLoad)> = self
            .suites
            .pipeline
            .iter()
            .flat_map(|b| b.machine_load.iter().map(move |l| (b.backend.as_str(), l)))
            .collect();
        if loads.is_empty() {
            return;
        }
        let others: Vec<String> = loads
            .iter()
            .map(|(b, l)| format!("{b} {} {:.2}", l.phase, l.other_cores))
            .collect();
        let broker: Vec<String> = loads
            .iter()
            .filter_map(|(b, l)| l.broker_cores.map(|c| format!("{b} {} {c:.2}", l.phase)))
            .collect();
        let worst = loads.iter().map(|(_, l)| l.other_cores + l.steal_cores).fold(0.0f64, f64::max);
        let steal: Vec<String> = loads.iter().map(|(b, l)| format!("{b} {} {:.2}", l.phase, l.steal_cores)).collect();
        let _ = writeln!(
            s,
            "\nOther processes on the machine (cores busy on average, of {}, while each phase ran; the benchmark \
             process and its broker excluded): {}.{} Taken by the hypervisor (CPU steal, cores): {}.{}",
            self.machine.nproc,
            others.join(", "),
            if broker.is_empty() {
                String::new()
            } else {
                format!(" The Kafka broker (same machine): {}.", broker.join(", "))
            },
            steal.join(", "),
            if worst >= 0.2 {
                " **The machine was shared during at least one phase: its figures are lower than an idle \
                 machine would give.**"
            } else {
                ""
            }
        );
    }

    fn restart_markdown(&self, s: &mut String) {
        let c = &self.config;
        let ran = self
            .suites
            .pipeline
            .iter()
            .any(|b| b.restart.is_some() || failed(b, "restart"));
        if !ran {
            return;
        }
        let _ = writeln!(s, "### Restart: time to ready after a crash under load
");
        let _ = writeln!(
            s,
            "A pipeline with the default settings (snapshot every 10 s, at most 20,000 records per epoch; \
             {} workers) loads the catalog ({} products), then takes the freshness producer's load ({} events/s) \
             for {:.0} s. The moment the producer has stopped and the views reflect everything it wrote, the \
             views (products, stock, warehouses) are copied and the pipeline is stopped with \
             `snapshot_on_stop = false`: no final snapshot is written, so what survives is what a `kill -9` \
             leaves — the last periodic snapshot of each partition and the durable `_remap` of epochs. A fresh \
             pipeline (new views, same log and data directory) is then started and timed until its views cover \
             every source end offset, the condition `/readyz` waits for. The backlog is the log's records beyond \
             the restored snapshots (end offsets − snapshot offsets), which the restart reads again into the \
             epochs the first run recorded for them; replay rate is backlog ÷ time to ready (the time also \
             includes restoring the snapshot state into the dataflow). The views once ready must equal the \
             copies taken before the crash.\n",
            c.workers,
            c.products.min(100_000),
            thousands(c.rate as f64),
            c.restart_duration_secs,
        );
        let _ = writeln!(
            s,
            "| backend | load before crash | backlog records | backlog (s of load) | snapshot age at crash | time to ready | replay rec/s | views equal | aim | met |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---|---|---|");
        for b in &self.suites.pipeline {
            let Some(r) = &b.restart else {
                if failed(b, "restart") {
                    let _ = writeln!(
                        s,
                        "| {} | — | failed | | | | | | | **no** |",
                        b.backend
                    );
                }
                continue;
            };
            let met = r.views_match
                && r.ready_secs <= AIM_RESTART_READY_SECS
                && r.backlog_secs_of_load >= AIM_RESTART_MIN_BACKLOG_SECS
                && r.snapshot_interval_ms == 10_000
                && r.before_crash.target_rate >= AIM_P99_RATE;
            let _ = writeln!(
                s,
                "| {} | {} ev/s × {:.1} s | {} | {:.1} | {} | **{:.2} s** | {} | {} | ready ≤ {AIM_RESTART_READY_SECS} s with ≥ {AIM_RESTART_MIN_BACKLOG_SECS} s of backlog, views equal | {} |",
                b.backend,
                thousands(r.before_crash.achieved_rate),
                r.before_crash.duration_secs,
                thousands(r.backlog_records as f64),
                r.backlog_secs_of_load,
                r.snapshot_age_secs
                    .map_or("—".to_owned(), |a| format!("{a:.1} s")),
                r.ready_secs,
                thousands(r.replay_records_per_sec),
                if r.views_match { "yes" } else { "**no**" },
                yes_no(met && !c.quick),
            );
        }
        s.push('\n');
        for b in &self.suites.pipeline {
            let Some(r) = &b.restart else { continue };
            let threads: Vec<String> = r
                .cpu_by_thread
                .iter()
                .take(4)
                .map(|(n, secs)| format!("`{n}` {secs:.1} s"))
                .collect();
            let views: Vec<String> = r
                .compared
                .iter()
                .map(|v| {
                    format!(
                        "{} {} → {} rows{}",
                        v.view,
                        thousands(v.rows_before as f64),
                        thousands(v.rows_after as f64),
                        if v.differing_keys == 0 {
                            String::new()
                        } else {
                            format!(
                                ", **{} keys differ** (e.g. {})",
                                v.differing_keys,
                                v.samples.join("; ").replace('|', "\\|")
                            )
                        }
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "- {}: log {} records at the crash, snapshots of {}/{} partitions hold {}; the backlog spans {} \
                 recorded epochs ({} remap entries); first run {:.1} s (freshness under the load p50 {:.1} ms, \
                 p99 {:.1} ms); stop {:.2} s; restart: start {:.2} s, ready {:.2} s, {:.2} cores busy, CPU by \
                 thread: {}; views compared: {}.",
                b.backend,
                thousands(r.log_records as f64),
                r.snapshotted_partitions,
                r.source_partitions,
                thousands(r.snapshot_records as f64),
                thousands(r.backlog_epochs as f64),
                thousands(r.backlog_remap_entries as f64),
                r.first_run_secs,
                r.before_crash.latency.p50_ms,
                r.before_crash.latency.p99_ms,
                r.stop_secs,
                r.restart_start_secs,
                r.ready_secs,
                r.cpu_cores_busy,
                threads.join(", "),
                views.join(", "),
            );
        }
    }

    fn recommend_markdown(&self, outcome: &RecommendOutcome, s: &mut String) {
        let _ = writeln!(s, "## Suite `recommend`\n");
        let r = match outcome {
            RecommendOutcome::Measured(r) => r,
            RecommendOutcome::Failed { error } => {
                let _ = writeln!(
                    s,
                    "**failed**: {}; aim p99 ≤ {AIM_RECOMMEND_P99_MS} ms met: **no**\n",
                    error.replace('\n', " ")
                );
                return;
            }
        };
        let (shop, model) = (&r.shop, &r.model);
        let _ = writeln!(
            s,
            "`GET /api/v1/recommend/user/{{id}}` (default limit 10) against the real HTTP server, answering from \
             views filled directly with a synthetic shop: {} products in {} categories ({} sold out, {} warehouses), \
             {} users with Zipf({}) product popularity and a taste for two categories, {} interaction rows, \
             {} purchase rows (filtered from answers), {} trending rows. The model is an NMF of rank {} fitted \
             on the weighted user × product matrix ({} iterations{}, {:.2} s; serving model with similar items \
             {:.2} s), installed in the model slot; every known user's answer folds their interactions in \
             per request.\n",
            thousands(shop.products as f64),
            shop.categories,
            shop.sold_out_products,
            shop.warehouses,
            thousands(shop.users as f64),
            1.0,
            thousands(shop.interaction_rows as f64),
            thousands(shop.purchase_rows as f64),
            thousands(shop.trending_rows as f64),
            model.rank,
            model.iterations,
            if model.converged { ", converged" } else { "" },
            model.fit_secs,
            model.build_secs,
        );
        let _ = writeln!(
            s,
            "Load: {} closed-loop clients, one keep-alive HTTP/1.1 connection each, each sending its next request \
             when the previous answer is in; users drawn at random, {:.0}% of them cold-start ids the shop has never \
             seen (answered from trending). {:.1} s warm-up (not recorded), then {:.1} s measured. Latency is \
             client-side, from sending the request to the last byte of the answer, so it includes queueing behind \
             the other clients; req/s is the server's capacity at this concurrency, not an offered rate. \
             **The load generator runs in the same process (thread `bench-load`) and shares the machine's {} \
             cores with the server**: its CPU is listed below and is taken from the server.\n",
            r.clients,
            r.cold_share * 100.0,
            r.warmup_secs,
            r.duration_secs,
            self.machine.nproc,
        );
        let _ = writeln!(
            s,
            "| clients | requests | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | model / trending answers | aim | met |"
        );
        let _ = writeln!(
            s,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|"
        );
        let met = r.latency.p99_ms <= AIM_RECOMMEND_P99_MS && r.errors == 0 && r.requests > 0;
        let _ = writeln!(
            s,
            "| {} | {} | **{}** | {:.2} | {:.2} | **{:.2}** | {:.2} | {:.2} | {} | {:.1}% / {:.1}% | p99 ≤ {} ms | {} |",
            r.clients,
            thousands(r.requests as f64),
            thousands(r.requests_per_sec),
            r.latency.p50_ms,
            r.latency.p90_ms,
            r.latency.p99_ms,
            r.latency.p999_ms,
            r.latency.max_ms,
            r.errors,
            r.model_share * 100.0,
            r.trending_share * 100.0,
            AIM_RECOMMEND_P99_MS,
            yes_no(met && !self.config.quick),
        );
        s.push('\n');
        let sources: Vec<String> = r
            .sources
            .iter()
            .map(|(k, v)| format!("`{k}` {}", thousands(*v as f64)))
            .collect();
        let threads: Vec<String> = r
            .cpu_by_thread
            .iter()
            .take(6)
            .map(|(n, secs)| format!("`{n}` {secs:.1} s"))
            .collect();
        let kinds = [
            ("known users", &r.latency_known_users),
            ("cold-start users", &r.latency_cold_users),
        ];
        for (kind, l) in kinds {
            let _ = writeln!(
                s,
                "- {kind}: {} requests, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms.",
                thousands(l.count as f64),
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms
            );
        }
        let _ = writeln!(
            s,
            "- answers by source: {}; known users answered from trending only: {}; answers shorter than 10 items: {}.",
            sources.join(", "),
            r.known_users_answered_by_trending,
            r.short_answers,
        );
        let _ = writeln!(
            s,
            "- {:.2} cores busy during the load (warm-up included); CPU by thread: {}.",
            r.cpu_cores_busy,
            threads.join(", "),
        );
        if r.errors > 0 {
            let _ = writeln!(
                s,
                "- **{} failed requests**, e.g.: {}",
                r.errors,
                r.error_samples.join("; ").replace('|', "\\|")
            );
        }
        s.push('\n');
    }
}

fn by_backend<S: serde::Serializer>(results: &[BackendResult], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(results.len()))?;
    for r in results {
        map.serialize_entry(&r.backend, r)?;
    }
    map.end()
}

/// A phase that ran and failed, as opposed to one that was not asked for.
fn failed(result: &BackendResult, phase: &str) -> bool {
    result.errors.iter().any(|e| e.starts_with(phase))
}

fn yes_no(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    // Groups of three from the right: the first group takes what is left over.
    let first = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    let mut out = digits[..first.min(digits.len())].to_owned();
    for group in digits.as_bytes()[first.min(digits.len())..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).expect("ascii digits"));
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Dotted keys for nested objects; arrays of scalars inline, other arrays as JSON.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Number(n) => out.push((prefix.to_owned(), n.to_string())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.4), "1,234,567");
    }

    #[test]
    fn flatten_uses_dotted_keys() {
        let mut rows = Vec::new();
        flatten(
            "",
            &serde_json::json!({"a": 1, "b": {"c": "x", "d": [1, 2]}}),
            &mut rows,
        );
        assert_eq!(
            rows,
            vec![
                ("a".into(), "1".into()),
                ("b.c".into(), "x".into()),
                ("b.d".into(), "[1,2]".into())
            ]
        );
    }
}
