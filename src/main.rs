//! `shopflow`: the one binary. `up` runs everything in one process; `pipeline` and `serve` are
//! the scale-out processes; `schema` prints the event JSON Schema; `bench` runs the macro
//! benchmarks and writes a report.

mod admin;
mod analytics;
mod demo;
mod import;
mod models;
mod payments;
mod run;
mod settings;
mod train;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

// The pipeline allocates and frees many small rows per event across worker threads; glibc's
// allocator spent ~40% of pipeline CPU in a profile, mimalloc much less.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "shopflow", version, about = "An e-commerce backend as a streaming dataflow")]
struct Cli {
    /// TOML configuration file (default: ./shopflow.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process: log, pipeline, HTTP; loads a demo catalog on first start.
    Up(UpArgs),
    /// The pipeline alone, as one process of a timely cluster, exporting view changelogs.
    Pipeline(PipelineArgs),
    /// A read replica: tails the view changelogs and serves HTTP.
    Serve(ServeArgs),
    /// Prints the JSON Schema of every event type.
    Schema,
    /// Runs the macro benchmarks and writes target/bench/report.{md,json}.
    Bench(shopflow_bench::BenchArgs),
    /// Trains a recommendation model, evaluates it and writes it to the model store.
    Train(train::TrainArgs),
    /// Lists, promotes and rolls back trained recommendation models.
    Models(models::ModelsArgs),
    /// Administers accounts: `admin create --email E` makes the first admin.
    Admin(admin::AdminArgs),
    /// Delivers the log to an external system (`sink clickhouse`).
    Sink(analytics::SinkArgs),
    /// The analytics database: `migrate`, `report`, `seed-demo`.
    Analytics(analytics::AnalyticsArgs),
    /// Runs the search benchmark (tantivy in process and over HTTP, PostgreSQL GIN) and writes
    /// OUT/search.{md,json}.
    BenchSearch(shopflow_bench::search::SearchBenchArgs),
    /// Imports a catalog file (CSV or JSON Lines) through a running server's write path.
    Import(import::ImportArgs),
    /// The simulated card gateway (test mode: test cards and tokens, a durable ledger).
    Gateway(payments::GatewayArgs),
    /// The payment worker: charges and refunds the pipeline requests on `payments`.
    Payments(payments::PaymentsArgs),
    /// The notifier: mails order decisions to an outbox file, once per decision.
    Notify(payments::NotifyArgs),
}

#[derive(Args, Clone)]
pub struct LogArgs {
    /// Kafka bootstrap servers (HOST:PORT); without it the embedded log is used.
    #[arg(long)]
    pub kafka: Option<String>,
    /// Topic namespace on Kafka.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Local state directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Partitions per event topic when creating topics.
    #[arg(long)]
    pub partitions: Option<u32>,
}

#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Pipeline worker threads.
    #[arg(long, short = 'w')]
    pub workers: Option<usize>,
    /// HTTP listen address.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Products in the demo catalog loaded on first start (0: none).
    #[arg(long, default_value_t = 240)]
    pub demo_products: usize,
    /// Creates (or promotes) this admin account at start; its password comes from
    /// SHOPFLOW_ADMIN_PASSWORD.
    #[arg(long)]
    pub admin_email: Option<String>,
    /// Also run the ClickHouse sink (to `analytics.url`, or a local chDB adapter it starts).
    #[arg(long)]
    pub analytics: bool,
}

#[derive(Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[arg(long, short = 'w')]
    pub workers: Option<usize>,
    /// This process's index in the cluster.
    #[arg(long, short = 'p')]
    pub process: Option<usize>,
    /// Comma-separated HOST:PORT of every pipeline process, in process order.
    #[arg(long, value_delimiter = ',')]
    pub addresses: Option<Vec<String>>,
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = settings::Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&shopflow_events::json_schema())?);
            Ok(())
        }
        Command::Up(args) => runtime()?.block_on(run::up(settings, args)),
        Command::Pipeline(args) => runtime()?.block_on(run::pipeline(settings, args)),
        Command::Serve(args) => runtime()?.block_on(run::serve(settings, args)),
        Command::Bench(args) => runtime()?.block_on(shopflow_bench::run(args)),
        Command::Train(args) => runtime()?.block_on(train::run(settings, args)),
        Command::Models(args) => models::cli(settings, args),
        Command::Admin(args) => runtime()?.block_on(admin::cli(settings, args)),
        Command::Sink(args) => runtime()?.block_on(analytics::sink(settings, args)),
        Command::Analytics(args) => runtime()?.block_on(analytics::analytics(settings, args)),
        Command::BenchSearch(args) => runtime()?.block_on(shopflow_bench::search::run(args)),
        Command::Import(args) => runtime()?.block_on(import::run(args)),
        Command::Gateway(args) => runtime()?.block_on(payments::gateway(settings, args)),
        Command::Payments(args) => runtime()?.block_on(payments::worker(settings, args)),
        Command::Notify(args) => runtime()?.block_on(payments::notify(settings, args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
