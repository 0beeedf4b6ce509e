//! The three ways to run shopflow.

use std::sync::Arc;

use shopflow_dataflow::pipeline::{self, PipelineConfig};
use shopflow_dataflow::views::Views;
use shopflow_events::Topic;
use shopflow_ingest::EventLog;
use shopflow_serving::{Application, ModelSlot};

use crate::settings::{LogSettings, Settings};
use crate::{LogArgs, PipelineArgs, ServeArgs, UpArgs};

/// Command-line overrides of the log settings, shared by every command that opens the log.
pub fn apply_log_args(settings: &mut LogSettings, args: &LogArgs) {
    if let Some(kafka) = &args.kafka {
        settings.kafka = Some(kafka.clone());
    }
    if let Some(ns) = &args.namespace {
        settings.namespace = ns.clone();
    }
    if let Some(dir) = &args.data_dir {
        settings.data_dir = dir.clone();
    }
    if let Some(p) = args.partitions {
        settings.partitions = p;
    }
}

async fn start_pipeline(
    config: PipelineConfig,
    log: Arc<dyn EventLog>,
    views: Option<Arc<Views>>,
) -> anyhow::Result<pipeline::PipelineHandle> {
    // Starting blocks on the log (topic metadata), so it runs off the async workers.
    Ok(tokio::task::spawn_blocking(move || pipeline::start(config, log, views)).await??)
}

async fn stop_pipeline(handle: pipeline::PipelineHandle) -> anyhow::Result<()> {
    Ok(tokio::task::spawn_blocking(move || handle.stop()).await??)
}

/// The lag headers sum over the topics the views are computed from.
fn source_topics() -> Vec<String> {
    pipeline::SOURCE_TOPICS.iter().map(|t| t.name().to_owned()).collect()
}

/// Makes sure the serving layer has a signing key: the configured one, else the key file in
/// the data directory, which `up` creates (random, owner-only) on first start. Replicas
/// (`serve`) never create one: they must share the deployment's key, or tokens signed by one
/// replica would be refused by the next.
fn ensure_signing_key(settings: &mut Settings, create: bool) -> anyhow::Result<()> {
    let auth = &mut settings.serving.auth;
    if auth.key.is_some() || auth.key_file.is_some() {
        return Ok(());
    }
    let path = settings.log.data_dir.join("auth").join("signing.key");
    if !path.exists() {
        anyhow::ensure!(
            create,
            "no signing key: set SHOPFLOW_SERVING__AUTH__KEY_FILE (the same key file for every replica), or put one at {}",
            path.display()
        );
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let key: String = (0..2).map(|_| uuid::Uuid::new_v4().simple().to_string()).collect();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        std::io::Write::write_all(&mut options.open(&path)?, key.as_bytes())?;
        tracing::info!(path = %path.display(), "signing key created");
    }
    auth.key_file = Some(path);
    Ok(())
}

pub async fn up(mut settings: Settings, args: UpArgs) -> anyhow::Result<()> {
    apply_log_args(&mut settings.log, &args.log);
    ensure_signing_key(&mut settings, true)?;
    settings.serving.source_topics = source_topics();
    if let Some(w) = args.workers {
        settings.pipeline.workers = w;
    }
    if let Some(listen) = args.listen {
        settings.serving.listen = listen;
    }
    settings.pipeline.data_dir = settings.log.data_dir.join("pipeline");
    // One process, one index: kept on disk, reopened and synced with the views at start.
    // (`serve` replicas keep theirs in memory unless configured: each builds its own.)
    if settings.serving.search_dir.is_none() {
        settings.serving.search_dir = Some(settings.log.data_dir.join("search"));
    }
    let log = shopflow_ingest::open(&settings.log).await?;

    let catalog_written: u64 = log.end_offsets(Topic::Catalog.name()).await?.iter().sum();
    let demo = catalog_written == 0 && args.demo_products > 0;
    if demo {
        let records = shopflow_shopdata::demo::records(args.demo_products);
        let count = records.len();
        for chunk in records.chunks(1_000) {
            log.append(chunk.to_vec()).await?;
        }
        tracing::info!(events = count, "demo catalog loaded");
    }
    if let Some(email) = &args.admin_email {
        let password = std::env::var(crate::admin::PASSWORD_ENV)
            .map_err(|_| anyhow::anyhow!("--admin-email needs the password in {}", crate::admin::PASSWORD_ENV))?;
        shopflow_serving::auth::admin::create(log.as_ref(), email, "", &password).await?;
    }

    let views = Arc::new(Views::new());
    let handle = start_pipeline(settings.pipeline.clone(), log.clone(), Some(views.clone())).await?;
    let demo = demo.then(|| tokio::spawn(crate::demo::follow_up(log.clone(), views.clone(), args.demo_products)));
    let analytics = match args.analytics {
        true => Some(crate::analytics::Embedded::start(&settings, log.clone(), views.clone()).await?),
        false => None,
    };
    let payments = crate::payments::Embedded::start(&settings, log.clone()).await?;
    let models = watch_models(&settings);
    let vault = Arc::new(crate::payments::GatewayVault::new(&payments.gateway_url())?);
    let app = Application::build(settings.serving.clone(), log.clone(), views).await?.with_models(models).with_card_vault(vault);
    let base = format!("http://{}", app.local_addr());
    println!("\n  payment gateway (test mode): {}; e-mails go to {}", payments.gateway_url(), payments.outbox().display());
    if let Some((_, url)) = &analytics {
        println!("\n  analytics: {url}/play (SQL), {url}/dashboard; `shopflow analytics report --url {url}`");
    }
    println!(
        "\nshopflow is up ({} log, {} pipeline workers)\n\n  browse:  {base}/api/v1/products\n  metrics: {base}/metrics\n  \
         openapi: {base}/api/v1/openapi.json\n\n  \
         curl -s {base}/api/v1/products?limit=3\n  \
         # an admin: SHOPFLOW_ADMIN_PASSWORD=... shopflow up --admin-email you@example.com, then\n  \
         TOKEN=$(curl -s {base}/api/v1/auth/login -H 'content-type: application/json' \\\n    \
         -d '{{\"email\":\"you@example.com\",\"password\":\"...\"}}' | jq -r .access_token)\n  \
         curl -si -H \"authorization: Bearer $TOKEN\" -X POST {base}/api/v1/products -H 'content-type: application/json' \\\n    \
         -d '{{\"name\":\"Tea Pot\",\"price\":{{\"amount_minor\":2599,\"currency\":\"EUR\"}},\"category_id\":\"kitchen\",\"brand_id\":\"acme\",\"supplier_id\":\"sup-eu\"}}'\n  \
         curl -s -H 'x-consistency-token: <token from the answer>' {base}/api/v1/products/<id>\n",
        log.backend(),
        settings.pipeline.workers,
    );
    let state = app.state().clone();
    let started = std::time::Instant::now();
    let ready = tokio::spawn(async move {
        state.wait_ready().await;
        println!("  ready: the views have caught up with the log and the search index with them ({} ms after start); /readyz answers 200\n", started.elapsed().as_millis());
    });
    app.run_until_stopped(shutdown_signal()).await?;
    ready.abort();
    if let Some(demo) = demo {
        demo.abort();
    }
    payments.stop().await;
    if let Some((analytics, _)) = analytics {
        analytics.stop().await;
    }
    stop_pipeline(handle).await?;
    tracing::info!("shopflow stopped");
    Ok(())
}

pub async fn pipeline(mut settings: Settings, args: PipelineArgs) -> anyhow::Result<()> {
    apply_log_args(&mut settings.log, &args.log);
    let config = &mut settings.pipeline;
    if let Some(w) = args.workers {
        config.workers = w;
    }
    if let Some(p) = args.process {
        config.process = p;
    }
    if let Some(addresses) = args.addresses {
        config.addresses = addresses;
    }
    config.export_changelogs = true;
    // One snapshot store for every process of the cluster (a file per source partition): after
    // a rescale, whichever worker takes a partition over loads its snapshot. Across machines,
    // this directory is the shared storage they all mount (see README, "Scale-out").
    config.data_dir = settings.log.data_dir.join("pipeline");
    let log = shopflow_ingest::open(&settings.log).await?;
    let handle = start_pipeline(settings.pipeline.clone(), log, None).await?;
    tracing::info!(process = settings.pipeline.process, workers = settings.pipeline.workers, "pipeline running");
    let stop = handle.stop_flag();
    let mut handle = handle;
    tokio::select! {
        _ = shutdown_signal() => {}
        // A worker that failed raises the stop flag; the process ends with it.
        _ = wait_for_flag(stop.clone()) => tracing::error!("a pipeline worker stopped the pipeline"),
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::task::spawn_blocking(move || handle.join()).await??;
    Ok(())
}

pub async fn serve(mut settings: Settings, args: ServeArgs) -> anyhow::Result<()> {
    apply_log_args(&mut settings.log, &args.log);
    settings.serving.source_topics = source_topics();
    if let Some(listen) = args.listen {
        settings.serving.listen = listen;
    }
    ensure_signing_key(&mut settings, false)?;
    anyhow::ensure!(
        settings.log.kafka.is_some(),
        "serve is a read replica of a pipeline cluster and needs --kafka (the embedded log belongs to one process: use `shopflow up`)"
    );
    let log = shopflow_ingest::open(&settings.log).await?;
    let mut export = settings.pipeline.clone();
    export.export_changelogs = true;
    pipeline::ensure_topics(log.as_ref(), &export).await?;
    let views = Arc::new(Views::new());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tail = {
        let (log, views, stop) = (log.clone(), views.clone(), stop.clone());
        tokio::task::spawn_blocking(move || shopflow_dataflow::replica::spawn(log, views, stop)).await??
    };
    let models = watch_models(&settings);
    let mut app = Application::build(settings.serving.clone(), log, views).await?.with_models(models);
    // Cards are tokenized by the payment gateway the worker uses, when one is configured.
    // (Unreachable, it answers 503 payments_unavailable, as the route documents.)
    app = app.with_card_vault(Arc::new(crate::payments::GatewayVault::new(&settings.payments.worker.gateway_url)?));
    println!("shopflow replica serving on http://{}", app.local_addr());
    app.run_until_stopped(shutdown_signal()).await?;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || tail.join()).await;
    Ok(())
}

/// The promoted recommendation model of the store under the data directory, reloaded
/// whenever a model is promoted or rolled back (replicas share the store's directory).
fn watch_models(settings: &Settings) -> Arc<ModelSlot> {
    let slot = Arc::new(ModelSlot::new());
    crate::models::spawn_model_watcher(settings.log.data_dir.join("models"), slot.clone(), std::time::Duration::from_secs(1));
    slot
}

async fn wait_for_flag(flag: Arc<std::sync::atomic::AtomicBool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    while !flag.load(std::sync::atomic::Ordering::Relaxed) {
        tick.tick().await;
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("sigint received, shutting down"),
        _ = terminate => tracing::info!("sigterm received, shutting down"),
    }
}
