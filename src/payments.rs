//! `shopflow gateway` (the simulated card gateway), `shopflow payments` (the payment worker),
//! `shopflow notify` (the notifier), and their in-process start in `up`.
//!
//! Paths left at their defaults live under the log's data directory: the gateway's ledger in
//! `<data_dir>/gateway`, the outbox at `<data_dir>/outbox.jsonl`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use shopflow_ingest::EventLog;
use shopflow_payments::notifier::Notifier;
use shopflow_payments::worker::PaymentWorker;
use shopflow_payments::{Gateway, GatewayConfig, NotifierConfig, PaymentsSettings, RunningGateway};
use tokio::sync::watch;

use crate::run::{apply_log_args, shutdown_signal};
use crate::settings::Settings;
use crate::LogArgs;

#[derive(Args)]
pub struct GatewayArgs {
    /// Port on 127.0.0.1 (default: `payments.gateway.listen`, 127.0.0.1:8087; 0: any free port).
    #[arg(long)]
    pub port: Option<u16>,
    /// Where the ledger lives (default: `payments.gateway.data_dir`, data/gateway).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Simulated processing time of each charge and refund.
    #[arg(long)]
    pub latency_ms: Option<u64>,
}

#[derive(Args)]
pub struct PaymentsArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The gateway's base URL (default: `payments.worker.gateway_url`, http://127.0.0.1:8087).
    #[arg(long)]
    pub gateway_url: Option<String>,
    /// Requests in flight at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
}

#[derive(Args)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The outbox file (default: `<data_dir>/outbox.jsonl`).
    #[arg(long)]
    pub outbox: Option<PathBuf>,
}

/// A default path becomes the same name under the log's data directory.
fn under_data_dir(configured: &Path, default: &Path, data_dir: &Path) -> PathBuf {
    match (configured == default, default.file_name()) {
        (true, Some(name)) => data_dir.join(name),
        _ => configured.to_path_buf(),
    }
}

fn gateway_config(settings: &Settings) -> GatewayConfig {
    let mut config = settings.payments.gateway.clone();
    config.data_dir = under_data_dir(&config.data_dir, &GatewayConfig::default().data_dir, &settings.log.data_dir);
    config
}

fn notifier_config(settings: &Settings) -> NotifierConfig {
    let mut config = settings.payments.notifier.clone();
    config.outbox = under_data_dir(&config.outbox, &NotifierConfig::default().outbox, &settings.log.data_dir);
    config
}

pub async fn gateway(settings: Settings, args: GatewayArgs) -> anyhow::Result<()> {
    let mut config = gateway_config(&settings);
    if let Some(port) = args.port {
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(ms) = args.latency_ms {
        config.latency_ms = ms;
    }
    let gateway = Gateway::start(config).await?;
    println!("payment gateway (test mode) on {}", gateway.url());
    shutdown_signal().await;
    gateway.stop().await?;
    Ok(())
}

pub async fn worker(mut settings: Settings, args: PaymentsArgs) -> anyhow::Result<()> {
    apply_log_args(&mut settings.log, &args.log);
    let mut config = settings.payments.worker.clone();
    if let Some(url) = args.gateway_url {
        config.gateway_url = url;
    }
    if let Some(n) = args.concurrency {
        config.concurrency = n;
    }
    let log = shopflow_ingest::open(&settings.log).await?;
    until_signal("payment worker", |stopped| PaymentWorker::new(log, config).run(stopped)).await
}

pub async fn notify(mut settings: Settings, args: NotifyArgs) -> anyhow::Result<()> {
    apply_log_args(&mut settings.log, &args.log);
    let mut config = notifier_config(&settings);
    if let Some(outbox) = args.outbox {
        config.outbox = outbox;
    }
    let log = shopflow_ingest::open(&settings.log).await?;
    until_signal("notifier", |stopped| Notifier::new(log, config).run(stopped)).await
}

/// Runs a component until SIGINT or SIGTERM, then asks it to stop and waits while it finishes
/// what it holds. A component that ends by itself is an error: it runs until asked to stop.
async fn until_signal<T, F>(name: &str, run: impl FnOnce(watch::Receiver<bool>) -> F) -> anyhow::Result<()>
where
    T: Send + 'static,
    F: Future<Output = Result<T, shopflow_payments::PaymentsError>> + Send + 'static,
{
    let (stop, stopped) = watch::channel(false);
    let mut task = tokio::spawn(run(stopped));
    tokio::select! {
        _ = shutdown_signal() => {}
        result = &mut task => {
            result.with_context(|| format!("the {name} panicked"))??;
            anyhow::bail!("the {name} stopped by itself");
        }
    }
    let _ = stop.send(true);
    task.await.with_context(|| format!("the {name} panicked"))??;
    Ok(())
}

/// The payment side of `up`: the gateway (on 127.0.0.1, any free port unless
/// `payments.gateway.listen` is set), the worker pointed at it, and the notifier.
pub struct Embedded {
    gateway: RunningGateway,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<Result<shopflow_payments::WorkerProgress, shopflow_payments::PaymentsError>>,
    notifier: tokio::task::JoinHandle<Result<shopflow_payments::NotifierProgress, shopflow_payments::PaymentsError>>,
    outbox: PathBuf,
}

impl Embedded {
    pub async fn start(settings: &Settings, log: Arc<dyn EventLog>) -> anyhow::Result<Self> {
        let PaymentsSettings { worker, .. } = &settings.payments;
        let mut gateway_config = gateway_config(settings);
        if gateway_config.listen == GatewayConfig::default().listen {
            gateway_config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        }
        let gateway = Gateway::start(gateway_config).await?;
        let worker_config = shopflow_payments::WorkerConfig { gateway_url: gateway.url(), ..worker.clone() };
        let notifier_config = notifier_config(settings);
        let outbox = notifier_config.outbox.clone();
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(PaymentWorker::new(log.clone(), worker_config).run(stopped.clone()));
        let notifier = tokio::spawn(Notifier::new(log, notifier_config).run(stopped));
        Ok(Self { gateway, stop, worker, notifier, outbox })
    }

    pub fn gateway_url(&self) -> String {
        self.gateway.url()
    }

    pub fn outbox(&self) -> &Path {
        &self.outbox
    }

    /// Stops the worker and the notifier (each finishes what it holds), then the gateway.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, result) in [
            ("payment worker", self.worker.await.map(|r| r.map(|_| ()))),
            ("notifier", self.notifier.await.map(|r| r.map(|_| ()))),
        ] {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(component = name, error = %e, "payments component failed"),
                Err(e) => tracing::error!(component = name, error = %e, "payments component panicked"),
            }
        }
        if let Err(e) = self.gateway.stop().await {
            tracing::error!(error = %e, "payment gateway failed");
        }
    }
}

/// The serving layer's card vault, on the gateway: the binary adapts one to the other so that
/// neither crate depends on the other. Errors are built from the gateway's codes, never from
/// the card.
pub struct GatewayVault(shopflow_payments::GatewayClient);

impl GatewayVault {
    pub fn new(gateway_url: &str) -> anyhow::Result<Self> {
        Ok(Self(shopflow_payments::GatewayClient::new(gateway_url, std::time::Duration::from_secs(10))?))
    }
}

#[async_trait::async_trait]
impl shopflow_serving::CardVault for GatewayVault {
    async fn tokenize(
        &self,
        _user: &shopflow_events::Id,
        card: &shopflow_serving::Card,
    ) -> Result<shopflow_serving::TokenizedCard, shopflow_serving::VaultError> {
        use shopflow_payments::gateway::api::{CardNumber, TokenizeRequest};
        let request = TokenizeRequest {
            number: CardNumber::new(card.number.clone()),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            cvc: Some(card.cvc.clone()),
        };
        match self.0.tokenize(&request).await {
            Ok(token) => Ok(shopflow_serving::TokenizedCard {
                token: token.token,
                last4: token.last4,
                brand: token.brand,
                exp_month: token.exp_month,
                exp_year: token.exp_year,
            }),
            Err(error) if error.is_transient() => Err(shopflow_serving::VaultError::Unavailable("gateway unavailable".into())),
            Err(error) => Err(shopflow_serving::VaultError::Refused(error.code().unwrap_or("card_refused").to_owned())),
        }
    }
}
