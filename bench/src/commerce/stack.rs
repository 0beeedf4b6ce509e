//! The whole shop in this process, as `shopflow up` runs it: the embedded log, the pipeline
//! (the saga), the simulated card gateway in test mode with the payment worker and the
//! notifier (as `up`'s `payments::Embedded` starts them), and the HTTP server. The shop
//! (catalog, stock, customers with default addresses) is loaded and reflected before anything
//! is measured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shopflow_dataflow::pipeline::{PipelineConfig, PipelineHandle};
use shopflow_dataflow::views::Views;
use shopflow_events::types::Role;
use shopflow_events::{Id, Topic};
use shopflow_ingest::{EventLog, LogSettings, TopicSpec};
use shopflow_payments::notifier::Notifier;
use shopflow_payments::worker::PaymentWorker;
use shopflow_payments::{Gateway, GatewayConfig, NotifierConfig, PaymentsError, RunningGateway, WorkerConfig};
use shopflow_serving::auth::KeyRing;
use shopflow_serving::{Application, ServingConfig};
use tokio::sync::watch;

use super::shop::{customer_id, Shop};
use super::CommerceConfig;
use crate::pipeline::{await_views, source_targets, start_pipeline, stop_pipeline};

type Task<T> = tokio::task::JoinHandle<Result<T, PaymentsError>>;

pub(crate) struct Stack {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) views: Arc<Views>,
    pub(crate) addr: SocketAddr,
    /// One access token per customer, by customer number.
    pub(crate) tokens: Vec<String>,
    pub(crate) pipeline: PipelineConfig,
    pub(crate) serving: ServingConfig,
    handle: PipelineHandle,
    gateway: RunningGateway,
    stop_payments: watch::Sender<bool>,
    worker: Task<shopflow_payments::WorkerProgress>,
    notifier: Task<shopflow_payments::NotifierProgress>,
    stop_server: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), shopflow_serving::ServingError>>,
    dir: PathBuf,
}

impl Stack {
    pub(crate) async fn start(config: &CommerceConfig, shop: &Shop) -> anyhow::Result<Self> {
        let (scratch, partitions, workers, timeout) = (&config.scratch, config.partitions, config.workers, config.timeout);
        let dir = scratch.join(format!("commerce-http-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let settings = LogSettings { kafka: None, namespace: String::new(), partitions, data_dir: dir.join("log") };
        let log = shopflow_ingest::open(&settings).await?;
        for topic in Topic::ALL {
            log.ensure_topic(&TopicSpec::new(topic.name(), if topic == Topic::Dlq { 1 } else { partitions })).await?;
        }
        for records in [shop.reference_data(), shop.catalog_and_stock(), shop.customer_records()] {
            for chunk in records.chunks(20_000) {
                log.append(chunk.to_vec()).await?;
            }
        }
        let views = Arc::new(Views::new());
        // Snapshots are part of running a shop, so they stay at their default interval.
        let pipeline = config.pipeline(PipelineConfig { workers, data_dir: dir.join("pipeline"), ..PipelineConfig::default() });
        let handle = start_pipeline(pipeline.clone(), log.clone(), views.clone()).await?;
        let targets = source_targets(log.as_ref()).await?;
        await_views(&views, &targets, timeout, Instant::now(), &mut Vec::new()).await.context("loading the shop")?;

        let gateway = Gateway::start(GatewayConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: dir.join("gateway"),
            ..GatewayConfig::default()
        })
        .await?;
        let (stop_payments, stopped) = watch::channel(false);
        let worker_config = WorkerConfig { gateway_url: gateway.url(), ..WorkerConfig::default() };
        let worker = tokio::spawn(PaymentWorker::new(log.clone(), worker_config).run(stopped.clone()));
        let notifier_config = NotifierConfig { outbox: dir.join("outbox.jsonl"), ..NotifierConfig::default() };
        let notifier = tokio::spawn(Notifier::new(log.clone(), notifier_config).run(stopped));

        let serving: ServingConfig = crate::http::serving_config();
        let keys = KeyRing::from_config(&serving.auth)?;
        let tokens = (0..shop.customers).map(|i| keys.issue(&customer_id(i), Role::Customer, &Id::generate())).collect();
        let app = Application::build(serving.clone(), log.clone(), views.clone()).await?;
        let addr = app.local_addr();
        let (stop_server, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stop.await;
        }));
        Ok(Self { log, views, addr, tokens, pipeline, serving, handle, gateway, stop_payments, worker, notifier, stop_server, server, dir })
    }

    /// Stops the server, the payment side, then the pipeline, and deletes the files.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop_server.send(());
        // Live streams never end by themselves; a graceful stop gets a bounded wait.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
        let _ = self.stop_payments.send(true);
        for (name, result) in [
            ("payment worker", self.worker.await.map(|r| r.map(|_| ()))),
            ("notifier", self.notifier.await.map(|r| r.map(|_| ()))),
        ] {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(component = name, error = %e, "payments component failed"),
                Err(e) => tracing::warn!(component = name, error = %e, "payments component panicked"),
            }
        }
        if let Err(e) = self.gateway.stop().await {
            tracing::warn!(error = %e, "payment gateway failed");
        }
        stop_pipeline(self.handle).await?;
        drop(self.log);
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}
