//! The real pipeline on an embedded log in a temp dir, exporting changelogs, and a read
//! replica tailing them: the two sources of views that two `serve` replicas would have.
//! Dropping it stops both, also when a test fails half-way (a pipeline not stopped would keep
//! its worker threads, and the test, running forever).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use shopflow_dataflow::pipeline::{self, PipelineConfig, PipelineHandle};
use shopflow_events::Topic;
use shopflow_ingest::{EmbeddedLog, EventLog, TopicSpec};
use shopflow_serving::{Application, CardVault, ServingConfig};
use shopflow_views::Views;
use tokio::sync::oneshot;

pub struct RealPipeline {
    pub log: Arc<dyn EventLog>,
    /// The pipeline's own views (one-process mode).
    pub views: Arc<Views>,
    /// A replica's views, filled from the changelogs (scale-out mode).
    pub replica_views: Arc<Views>,
    pipeline: Option<PipelineHandle>,
    replica_stop: Arc<AtomicBool>,
    replica: Option<std::thread::JoinHandle<()>>,
    /// The temp dir of [`start`](Self::start) (none for [`start_at`](Self::start_at)).
    _dir: Option<tempfile::TempDir>,
}

impl RealPipeline {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut real = Self::start_at(dir.path()).await;
        real._dir = Some(dir);
        real
    }

    /// The log and the pipeline's state under `dir`, reopened if they are there already (a
    /// restart: the same views, recovered from the log and the pipeline's remap).
    pub async fn start_at(dir: &std::path::Path) -> Self {
        let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.join("log")).expect("open log"));
        for topic in Topic::ALL {
            let partitions = if topic == Topic::Dlq { 1 } else { 4 };
            log.ensure_topic(&TopicSpec::new(topic.name(), partitions)).await.expect("topic");
        }
        let config = PipelineConfig {
            data_dir: dir.join("pipeline"),
            idle_tick_ms: 5,
            snapshot_interval_ms: 3_600_000,
            snapshot_on_stop: false,
            export_changelogs: true,
            changelog_partitions: 2,
            ..PipelineConfig::default()
        };
        let views = Arc::new(Views::new());
        let pipeline = {
            let (log, views) = (log.clone(), views.clone());
            tokio::task::spawn_blocking(move || pipeline::start(config, log, Some(views))).await.unwrap().expect("pipeline")
        };
        let replica_views = Arc::new(Views::new());
        let replica_stop = Arc::new(AtomicBool::new(false));
        let replica = {
            let (log, views, stop) = (log.clone(), replica_views.clone(), replica_stop.clone());
            tokio::task::spawn_blocking(move || shopflow_dataflow::replica::spawn(log, views, stop)).await.unwrap().expect("replica")
        };
        Self { log, views, replica_views, pipeline: Some(pipeline), replica_stop, replica: Some(replica), _dir: None }
    }

    /// A serving configuration for these views: the test key, every source topic.
    pub fn serving_config() -> ServingConfig {
        let mut config = super::test_config();
        config.source_topics = pipeline::SOURCE_TOPICS.iter().map(|t| t.name().to_owned()).collect();
        config
    }
}

impl Drop for RealPipeline {
    fn drop(&mut self) {
        self.replica_stop.store(true, Ordering::SeqCst);
        let (replica, pipeline) = (self.replica.take(), self.pipeline.take());
        // Joining threads blocks: off the async workers when dropped inside a runtime.
        let stop = move || {
            if let Some(replica) = replica {
                let _ = replica.join();
            }
            if let Some(pipeline) = pipeline {
                if let Err(error) = pipeline.stop() {
                    eprintln!("pipeline stopped with an error: {error}");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(stop),
            _ => stop(),
        }
    }
}

/// A real server on port 0, stopped gracefully by [`Server::stop`] or told to stop on drop.
pub struct Server {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(config: ServingConfig, log: Arc<dyn EventLog>, views: Arc<Views>) -> Self {
        Self::start_with_vault(config, log, views, None).await
    }

    /// A server tokenizing cards through `vault`, if given.
    pub async fn start_with_vault(config: ServingConfig, log: Arc<dyn EventLog>, views: Arc<Views>, vault: Option<Arc<dyn CardVault>>) -> Self {
        let mut app = Application::build(config, log, views).await.expect("build app");
        if let Some(vault) = vault {
            app = app.with_card_vault(vault);
        }
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("server");
        });
        Self { base, stop: Some(stop), task: Some(task) }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
