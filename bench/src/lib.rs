//! The macro benchmark harness: `shopflow bench` runs the suites on each backend and writes
//! `OUT/report.json` and `OUT/report.md`, merging in other suites' results found in `OUT`
//! (`recommender.json`).
//!
//! Suites:
//! - `pipeline`: end-to-end throughput (pre-loaded log → pipeline → views) against the raw
//!   consume ceiling of the same partitions, produce-to-visible freshness at a fixed rate, and
//!   restart: time to ready after a crash under that rate with the default settings.
//! - `recommend`: `GET /api/v1/recommend/user/{id}` latency under load from concurrent HTTP
//!   clients, against the real server with an NMF model fitted on a synthetic shop.
//! - `auth`: argon2id and login latency, and product-read throughput with an access token
//!   against without one (`auth.json`, merged like the external suites).
//! - `commerce`: orders decided per second in the dataflow, `POST /orders?wait=decision`
//!   latency at fixed rates over HTTP, top-sellers freshness after an order (`commerce.json`
//!   and `commerce.md`, merged likewise).

mod auth;
mod commerce;
mod http;
mod machine;
mod pipeline;
mod recommend;
mod report;
mod restart;
pub mod search;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Where the report (report.json, report.md) is written.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Kafka bootstrap servers (HOST:PORT); when given, the suites also run on Kafka.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Skip the embedded backend (e.g. to rerun only Kafka).
    #[arg(long)]
    pub no_embedded: bool,
    /// Events pre-loaded for the throughput run [default: 2000000; --quick: 100000].
    #[arg(long)]
    pub events: Option<u64>,
    /// Size of the Zipf-distributed product keyspace [default: 100000; --quick: 10000].
    #[arg(long)]
    pub products: Option<u64>,
    /// Produce rate of the freshness run, events/s.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Length of the freshness run in seconds [default: 15; --quick: 3].
    #[arg(long)]
    pub duration: Option<f64>,
    /// How long the restart phase produces at --rate before the crash, in seconds
    /// [default: 15; --quick: 4]. With the default 10 s snapshot interval, 15 s leaves several
    /// seconds of events beyond the last snapshot.
    #[arg(long)]
    pub restart_duration: Option<f64>,
    /// Pipeline worker threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Partitions per source topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Small sizes, for a smoke test of the harness.
    #[arg(long)]
    pub quick: bool,
    /// Which phases to run: the pipeline suite's throughput, freshness and restart, and the
    /// recommend suite (which needs no backend).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,freshness,restart,recommend,auth,commerce"
    )]
    pub phases: Vec<Phase>,
    /// Orders pre-loaded for the commerce suite's dataflow phase [default: 200000; --quick: 20000].
    #[arg(long)]
    pub commerce_orders: Option<u64>,
    /// Rates (orders/s) of the commerce suite's HTTP runs, one run each
    /// [default: 250,500,1000,2000; --quick: 200,1000].
    #[arg(long, value_delimiter = ',')]
    pub commerce_rates: Option<Vec<f64>>,
    /// Length of each commerce HTTP run in seconds [default: 10; --quick: 2].
    #[arg(long)]
    pub commerce_duration: Option<f64>,
    /// The pipeline's idle tick in the commerce suite (how often an idle worker seals an
    /// epoch, which paces the saga's steps) [default: the pipeline's default].
    #[arg(long)]
    pub commerce_idle_tick_ms: Option<u64>,
    /// Any other pipeline setting of the commerce suite, `field=value` (repeatable), e.g.
    /// `--commerce-pipeline epochs_in_flight=2`.
    #[arg(long)]
    pub commerce_pipeline: Vec<String>,
    /// Concurrent HTTP clients of the recommend suite (one keep-alive connection each).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Measured load time of the recommend suite in seconds [default: 10; --quick: 2].
    #[arg(long)]
    pub recommend_duration: Option<f64>,
    /// Longest any phase may wait for the views, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Run every phase in this process instead of one child process per backend and phase.
    #[arg(long)]
    pub in_process: bool,
    /// Internal: run as a child for one phase and write its results (JSON) to this file.
    #[arg(long, hide = true)]
    pub child_output: Option<PathBuf>,
}

/// A phase as `--phases` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[clap(rename_all = "lower")]
pub enum Phase {
    Throughput,
    Freshness,
    Restart,
    Recommend,
    /// Login cost and the access-token check's cost on reads (`auth.json`).
    Auth,
    /// The order saga: decisions/s in the dataflow, order latency over HTTP, top-sellers
    /// freshness (`commerce.json`).
    Commerce,
}

impl Phase {
    fn pipeline(self) -> Option<pipeline::Phase> {
        match self {
            Phase::Throughput => Some(pipeline::Phase::Throughput),
            Phase::Freshness => Some(pipeline::Phase::Freshness),
            Phase::Restart => Some(pipeline::Phase::Restart),
            Phase::Recommend | Phase::Auth | Phase::Commerce => None,
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0, "--rate must be positive");
    anyhow::ensure!(args.workers > 0, "--workers must be positive");
    anyhow::ensure!(args.clients > 0, "--clients must be positive");
    anyhow::ensure!(
        args.restart_duration.is_none_or(|d| d > 0.0),
        "--restart-duration must be positive"
    );
    let run_recommend = args.phases.contains(&Phase::Recommend);
    let config = pipeline::SuiteConfig {
        events: args
            .events
            .unwrap_or(if args.quick { 100_000 } else { 2_000_000 }),
        products: args
            .products
            .unwrap_or(if args.quick { 10_000 } else { 100_000 }),
        rate: args.rate,
        duration: Duration::from_secs_f64(args.duration.unwrap_or(if args.quick {
            3.0
        } else {
            15.0
        })),
        restart_duration: Duration::from_secs_f64(args.restart_duration.unwrap_or(
            if args.quick { 4.0 } else { 15.0 },
        )),
        workers: args.workers,
        partitions: args.partitions,
        scratch: pipeline::scratch_dir(&args.out),
        timeout: Duration::from_secs(args.timeout),
        phases: args.phases.iter().filter_map(|p| p.pipeline()).collect(),
    };
    let recommend_config = recommend::RecommendConfig::new(
        args.quick,
        args.clients,
        args.recommend_duration,
        config.scratch.clone(),
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let machine = machine::facts();
    tracing::info!(nproc = machine.nproc, commit = ?machine.git_commit, out = %args.out.display(), "benchmark starting");

    let mut backends = Vec::new();
    if !args.no_embedded {
        backends.push(pipeline::Backend {
            name: "embedded",
            kafka: None,
        });
    }
    if let Some(kafka) = &args.kafka {
        backends.push(pipeline::Backend {
            name: "kafka",
            kafka: Some(kafka.clone()),
        });
    }
    anyhow::ensure!(
        !backends.is_empty() || config.phases.is_empty(),
        "no backend to run: drop --no-embedded or pass --kafka"
    );
    if let Some(path) = &args.child_output {
        if run_recommend {
            anyhow::ensure!(
                config.phases.is_empty(),
                "a child runs either the recommend suite or pipeline phases"
            );
            let result = recommend::run(&recommend_config).await?;
            std::fs::write(path, serde_json::to_vec(&result)?)
                .with_context(|| format!("writing {}", path.display()))?;
            return Ok(());
        }
        let mut results = Vec::new();
        for backend in &backends {
            results.push(pipeline::run(backend, &config).await);
        }
        std::fs::write(path, serde_json::to_vec(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
        return Ok(());
    }
    let mut results = Vec::new();
    for backend in backends.iter().filter(|_| !config.phases.is_empty()) {
        if args.in_process {
            results.push(pipeline::run(backend, &config).await);
            continue;
        }
        let mut merged = pipeline::BackendResult {
            backend: backend.name.to_owned(),
            ..Default::default()
        };
        for phase in &config.phases {
            match run_child(&args, &config, backend, *phase).await {
                Ok(child) => child.into_iter().for_each(|r| merged.merge(r)),
                Err(e) => {
                    tracing::error!(
                        backend = backend.name,
                        phase = phase.name(),
                        error = format!("{e:#}"),
                        "benchmark phase failed"
                    );
                    merged.errors.push(format!("{}: {e:#}", phase.name()));
                }
            }
        }
        results.push(merged);
    }
    // After the pipeline phases, in a child of its own for the same reason as they are.
    let recommend = if !run_recommend {
        None
    } else {
        let outcome = if args.in_process {
            recommend::run(&recommend_config).await
        } else {
            run_recommend_child(&args, &config).await
        };
        Some(outcome.map_err(|e| {
            tracing::error!(error = format!("{e:#}"), "recommend suite failed");
            format!("{e:#}")
        }))
    };
    // A stale result must not pass for this run's.
    let auth_json = args.out.join("auth.json");
    let _ = std::fs::remove_file(&auth_json);
    if args.phases.contains(&Phase::Auth) {
        let auth_config = auth::AuthConfig::new(args.quick, args.clients, config.scratch.clone());
        match auth::run(&auth_config).await {
            Ok(result) => std::fs::write(&auth_json, serde_json::to_vec_pretty(&result)?)?,
            Err(e) => tracing::error!(error = format!("{e:#}"), "auth suite failed"),
        }
    }
    let commerce_json = args.out.join("commerce.json");
    let _ = std::fs::remove_file(&commerce_json);
    let _ = std::fs::remove_file(args.out.join("commerce.md"));
    if args.phases.contains(&Phase::Commerce) {
        anyhow::ensure!(args.commerce_rates.as_ref().is_none_or(|r| r.iter().all(|r| *r > 0.0)), "--commerce-rates must be positive");
        let mut commerce_config =
            commerce::CommerceConfig::new(args.quick, args.commerce_orders, args.commerce_rates.clone(), args.commerce_duration, &config);
        commerce_config.pipeline_overrides = args.commerce_idle_tick_ms.map(|ms| format!("idle_tick_ms={ms}")).into_iter().collect();
        commerce_config.pipeline_overrides.extend(args.commerce_pipeline.iter().cloned());
        commerce_config.check_overrides().map_err(anyhow::Error::msg)?;
        let result = commerce::run(&commerce_config, &config, &backends).await;
        commerce::write(&result, &args.out)?;
    }
    let _ = std::fs::remove_dir_all(&config.scratch);

    let report = report::Report::new(machine, &config, args.quick, results, recommend, &args.out)?;
    let (json, md) = report.write(&args.out)?;
    println!(
        "benchmark report:\n  {}\n  {}",
        md.display(),
        json.display()
    );
    Ok(())
}

/// Runs one backend's phase in a child process of this binary. Each phase thus starts with a
/// fresh heap and fresh threads: the allocator state a 2M-event pipeline run leaves behind
/// otherwise slows whatever runs after it, and backends would not be compared fairly.
async fn run_child(
    args: &BenchArgs,
    config: &pipeline::SuiteConfig,
    backend: &pipeline::Backend,
    phase: pipeline::Phase,
) -> anyhow::Result<Vec<pipeline::BackendResult>> {
    let exe = std::env::current_exe().context("locating the shopflow binary")?;
    std::fs::create_dir_all(&config.scratch)?;
    let output = config
        .scratch
        .join(format!("{}-{}.json", backend.name, phase.name()));
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("bench")
        .arg("--out")
        .arg(&args.out)
        .arg("--events")
        .arg(config.events.to_string())
        .arg("--products")
        .arg(config.products.to_string())
        .arg("--rate")
        .arg(config.rate.to_string())
        .arg("--duration")
        .arg(config.duration.as_secs_f64().to_string())
        .arg("--restart-duration")
        .arg(config.restart_duration.as_secs_f64().to_string())
        .arg("--workers")
        .arg(config.workers.to_string())
        .arg("--partitions")
        .arg(config.partitions.to_string())
        .arg("--timeout")
        .arg(args.timeout.to_string())
        .arg("--phases")
        .arg(phase.name())
        .arg("--child-output")
        .arg(&output);
    match &backend.kafka {
        Some(kafka) => cmd.arg("--no-embedded").arg("--kafka").arg(kafka),
        None => &mut cmd,
    };
    if args.quick {
        cmd.arg("--quick");
    }
    finish_child(cmd, &output).await
}

/// Runs a prepared child command to completion and reads the JSON result it wrote to `output`.
async fn finish_child<T: serde::de::DeserializeOwned>(
    mut cmd: tokio::process::Command,
    output: &std::path::Path,
) -> anyhow::Result<T> {
    let status = cmd
        .kill_on_drop(true)
        .status()
        .await
        .context("starting the benchmark child process")?;
    anyhow::ensure!(status.success(), "benchmark child process failed: {status}");
    let text = std::fs::read(output).with_context(|| format!("reading {}", output.display()))?;
    let _ = std::fs::remove_file(output);
    Ok(serde_json::from_slice(&text)?)
}

/// Runs the recommend suite in a child process of this binary (see [`run_child`]).
async fn run_recommend_child(
    args: &BenchArgs,
    config: &pipeline::SuiteConfig,
) -> anyhow::Result<recommend::RecommendResult> {
    let exe = std::env::current_exe().context("locating the shopflow binary")?;
    std::fs::create_dir_all(&config.scratch)?;
    let output = config.scratch.join("recommend.json");
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("bench")
        .arg("--out")
        .arg(&args.out)
        .arg("--phases")
        .arg("recommend")
        .arg("--clients")
        .arg(args.clients.to_string())
        .arg("--child-output")
        .arg(&output);
    if let Some(secs) = args.recommend_duration {
        cmd.arg("--recommend-duration").arg(secs.to_string());
    }
    if args.quick {
        cmd.arg("--quick");
    }
    finish_child(cmd, &output).await
}
