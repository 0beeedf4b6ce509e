//! `shopflow sink clickhouse`, `shopflow analytics migrate|report|seed-demo`, and the analytics
//! part of `up --analytics` (the chDB adapter started locally when no ClickHouse is configured).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use shopflow_analytics::{dashboards, migrations, report, AnalyticsSettings, ClickHouseService, ClickHouseSink};
use shopflow_analytics::snapshots::TopSellerSnapshots;
use shopflow_ingest::EventLog;
use tokio::sync::watch;

use crate::settings::Settings;
use crate::LogArgs;

#[derive(Args)]
pub struct SinkArgs {
    #[command(subcommand)]
    pub target: SinkTarget,
}

#[derive(Subcommand)]
pub enum SinkTarget {
    /// Delivers every event (and its typed rows) to ClickHouse, exactly once, as consumer group
    /// `analytics.group`.
    Clickhouse(SinkClickHouseArgs),
}

#[derive(Args)]
pub struct SinkClickHouseArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
}

#[derive(Args, Clone)]
pub struct ClickHouseArgs {
    /// ClickHouse's HTTP address (default: `analytics.url`).
    #[arg(long)]
    pub url: Option<String>,
    /// Database (default: `analytics.database`, "shopflow").
    #[arg(long)]
    pub database: Option<String>,
}

#[derive(Args)]
pub struct AnalyticsArgs {
    #[command(subcommand)]
    pub command: AnalyticsCommand,
}

#[derive(Subcommand)]
pub enum AnalyticsCommand {
    /// Creates the database and applies the pending schema migrations.
    Migrate(ClickHouseArgs),
    /// Runs every dashboard: prints the tables, writes report.md and one PNG per dashboard.
    Report(ReportArgs),
    /// Appends four weeks of demo shop activity (catalog, views, searches, carts, orders,
    /// payments, stock moves; timestamped up to now) to the log, for the dashboards.
    SeedDemo(SeedArgs),
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// Where report.md and the PNGs go.
    #[arg(long, default_value = "target/analytics-report")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[arg(long, default_value_t = 28)]
    pub days: u32,
    #[arg(long, default_value_t = 40)]
    pub shoppers: usize,
}

fn resolve(settings: &mut AnalyticsSettings, args: &ClickHouseArgs) -> anyhow::Result<String> {
    if let Some(db) = &args.database {
        settings.database = db.clone();
    }
    args.url.clone().or_else(|| settings.url.clone()).context(
        "no ClickHouse configured: pass --url or set analytics.url (SHOPFLOW_ANALYTICS__URL); `shopflow up --analytics` starts a local one",
    )
}

/// Migrates, retrying while ClickHouse is not reachable yet (it may start after us).
async fn migrate_when_reachable(service: &ClickHouseService, database: &str) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match migrations::migrate(service.client(), database).await {
            Ok(applied) => {
                tracing::info!(?applied, database, "analytics schema up to date");
                return Ok(());
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "clickhouse not reachable yet; retrying the migrations");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub async fn sink(mut settings: Settings, args: SinkArgs) -> anyhow::Result<()> {
    let SinkTarget::Clickhouse(args) = args.target;
    crate::run::apply_log_args(&mut settings.log, &args.log);
    let url = resolve(&mut settings.analytics, &args.clickhouse)?;
    let log = shopflow_ingest::open(&settings.log).await?;
    let service = ClickHouseService::new(shopflow_analytics::client(&settings.analytics, &url));
    migrate_when_reachable(&service, &settings.analytics.database).await?;
    let sink = ClickHouseSink::new(log.clone(), service.clone(), settings.analytics.clone());
    let (stop, stopped) = watch::channel(false);
    let mut task = tokio::spawn(sink.run(stopped.clone()));
    // The top-sellers view comes from the pipeline cluster's changelogs, as a replica's does.
    let replica_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let replica = {
        let (log, views, flag) = (log.clone(), Arc::new(shopflow_dataflow::views::Views::new()), replica_stop.clone());
        let spawned = tokio::task::spawn_blocking({
            let views = views.clone();
            move || shopflow_dataflow::replica::spawn(log, views, flag)
        })
        .await?;
        match spawned {
            Ok(thread) => {
                tokio::spawn(snapshots(&service, views, &settings.analytics).run(stopped));
                Some(thread)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no view changelogs to follow (no pipeline cluster?): top-seller snapshots are off");
                None
            }
        }
    };
    println!("analytics sink: {} -> {url} (database {})", settings.log.kafka.as_deref().unwrap_or("embedded log"), settings.analytics.database);
    let progress = tokio::select! {
        _ = crate::run::shutdown_signal() => {
            stop.send(true).ok();
            task.await??
        }
        // The sink only ends by itself on an error that waiting cannot fix.
        ended = &mut task => ended??,
    };
    replica_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(replica) = replica {
        let _ = tokio::task::spawn_blocking(move || replica.join()).await;
    }
    println!("analytics sink stopped: {} records, {} rows", progress.records, progress.rows);
    Ok(())
}

fn snapshots(service: &ClickHouseService, views: Arc<shopflow_dataflow::views::Views>, settings: &AnalyticsSettings) -> TopSellerSnapshots {
    TopSellerSnapshots::new(
        service.client().clone(),
        views,
        Duration::from_secs(settings.top_seller_snapshot_secs),
        settings.top_seller_snapshot_rows,
    )
}

pub async fn analytics(mut settings: Settings, args: AnalyticsArgs) -> anyhow::Result<()> {
    match args.command {
        AnalyticsCommand::Migrate(ch) => {
            let url = resolve(&mut settings.analytics, &ch)?;
            let client = shopflow_analytics::client(&settings.analytics, &url);
            let applied = migrations::migrate(&client, &settings.analytics.database).await?;
            println!("applied migrations {applied:?}; {} known", migrations::MIGRATIONS.len());
            Ok(())
        }
        AnalyticsCommand::Report(r) => {
            let url = resolve(&mut settings.analytics, &r.clickhouse)?;
            let client = shopflow_analytics::client(&settings.analytics, &url);
            run_report(&client, &settings.analytics.database, &r.out).await
        }
        AnalyticsCommand::SeedDemo(s) => {
            crate::run::apply_log_args(&mut settings.log, &s.log);
            let log = shopflow_ingest::open(&settings.log).await?;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
            let activity = shopflow_shopdata::activity::Activity {
                shoppers: s.shoppers,
                days: s.days,
                ..shopflow_shopdata::activity::Activity::new(now - i64::from(s.days) * 86_400_000)
            };
            let records = shopflow_shopdata::records(&activity.events());
            let bar = indicatif::ProgressBar::new(records.len() as u64);
            for chunk in records.chunks(1_000) {
                log.append(chunk.to_vec()).await?;
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            println!("appended {} demo events over {} days", records.len(), s.days);
            Ok(())
        }
    }
}

async fn run_report(client: &clickhouse::Client, database: &str, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let all = dashboards::all();
    let bar = indicatif::ProgressBar::new(all.len() as u64)
        .with_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")?);
    let mut markdown = format!("# shopflow analytics report\n\nDatabase `{database}`; one section and one chart per dashboard (`analytics/dashboards/*.sql`).\n\n");
    let mut printed = String::new();
    for d in &all {
        bar.set_message(d.name);
        let table = dashboards::run(client, database, d).await?;
        let text = report::format_table(d.title, &table);
        let png = report::chart(out, d, &table)?;
        printed.push_str(&text);
        printed.push('\n');
        markdown.push_str(&text);
        markdown.push_str(&format!("\n![{}]({})\n\n", d.title, png.file_name().unwrap_or_default().to_string_lossy()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    std::fs::write(out.join("report.md"), markdown)?;
    print!("{printed}");
    println!("report: {}", out.join("report.md").display());
    Ok(())
}

/// The analytics part of `up --analytics`: a sink inside the process, to the configured
/// ClickHouse or to a chDB adapter started here (stopped with it).
pub struct Embedded {
    adapter: Option<Child>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<shopflow_analytics::Progress, shopflow_analytics::AnalyticsError>>,
}

impl Embedded {
    /// `views`: the process's own views, whose top sellers are snapshotted.
    pub async fn start(settings: &Settings, log: Arc<dyn EventLog>, views: Arc<shopflow_dataflow::views::Views>) -> anyhow::Result<(Self, String)> {
        let mut analytics = settings.analytics.clone();
        let (url, adapter) = match &analytics.url {
            Some(url) => (url.clone(), None),
            None => {
                let (url, child) = start_adapter(&settings.log.data_dir.join("clickhouse"), analytics.adapter_port)?;
                analytics.compression = shopflow_analytics::Compression::None;
                (url, Some(child))
            }
        };
        let service = ClickHouseService::new(shopflow_analytics::client(&analytics, &url));
        migrate_when_reachable(&service, &analytics.database).await?;
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(snapshots(&service, views, &analytics).run(stopped.clone()));
        let task = tokio::spawn(ClickHouseSink::new(log, service, analytics).run(stopped));
        Ok((Self { adapter, stop, task }, url))
    }

    pub async fn stop(mut self) {
        self.stop.send(true).ok();
        match self.task.await {
            Ok(Ok(p)) => tracing::info!(records = p.records, "analytics sink stopped"),
            Ok(Err(e)) => tracing::warn!(error = %e, "analytics sink ended with an error"),
            Err(e) => tracing::warn!(error = %e, "analytics sink task failed"),
        }
        if let Some(child) = self.adapter.as_mut() {
            stop_child(child);
        }
    }
}

const ADAPTER: &str = include_str!("../analytics/adapter/chdb_http.py");

/// Starts the chDB adapter (Python from `scripts/clickhouse.sh install`) on 127.0.0.1.
fn start_adapter(dir: &Path, port: u16) -> anyhow::Result<(String, Child)> {
    std::fs::create_dir_all(dir)?;
    let script = dir.join("chdb_http.py");
    std::fs::write(&script, ADAPTER)?;
    let python = std::env::var_os("SHOPFLOW_CHDB_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/shopflow/chdb-venv/bin/python")
    });
    anyhow::ensure!(python.exists(), "{} not found: run scripts/clickhouse.sh install, or set analytics.url", python.display());
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["--port", &port.to_string(), "--path"])
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", python.display()))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let mut answer = String::new();
            if s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_ok() && s.read_to_string(&mut answer).is_ok() && answer.contains("Ok.") {
                break;
            }
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the chdb adapter exited during startup: {status}");
        }
        if Instant::now() > deadline {
            stop_child(&mut child);
            anyhow::bail!("the chdb adapter did not answer on port {port} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50)); // probe interval
    }
    Ok((format!("http://127.0.0.1:{port}"), child))
}

/// SIGTERM, a bounded wait, then SIGKILL: by PID, this child only.
fn stop_child(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
