//! The server: bind, serve, stop gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shopflow_views::Views;
use shopflow_ingest::EventLog;
use tokio::net::TcpListener;

use crate::config::ServingConfig;
use crate::routes::router;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Keys(#[from] crate::auth::KeyError),
    #[error("cannot open the search index: {0}")]
    Search(#[source] shopflow_search::SearchError),
}

/// A bound, not yet running server.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    /// Flips [`AppState::ready`] once the views caught up; ends then, or with the server.
    readiness: AbortOnDrop,
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Application {
    /// Binds `config.listen` (port 0: any free port) and takes a first reading of the log's
    /// end offsets, so the lag headers are there from the first request when the log is up.
    /// That reading is also what readiness waits for the views to reach; the task that
    /// flips [`AppState::ready`] starts here, so it can be awaited before the server runs.
    pub async fn build(config: ServingConfig, log: Arc<dyn EventLog>, views: Arc<Views>) -> Result<Self, ServingError> {
        let listen = config.listen;
        let listener = TcpListener::bind(listen).await.map_err(|source| ServingError::Bind { addr: listen, source })?;
        let addr = listener.local_addr().map_err(|source| ServingError::Bind { addr: listen, source })?;
        let search_config = shopflow_search::SearchConfig {
            dir: config.search_dir.clone(),
            commit: shopflow_search::CommitPolicy { commit_interval: config.search_commit_interval, ..Default::default() },
            ..Default::default()
        };
        let search = shopflow_search::SearchIndex::open(search_config, views.clone()).map_err(ServingError::Search)?;
        let state = AppState::new(config, log, views, search)?;
        tracing::info!(kid = state.auth.keys.active_kid(), "access tokens signed with the active key");
        crate::metrics::handle();
        // Best effort with a short bound: a log that is down must not keep the server from
        // starting; the background poll fills the offsets in later.
        let first_poll = state.config.end_offset_poll.max(Duration::from_secs(1));
        if let Ok(Err(e)) | Err(e) = tokio::time::timeout(first_poll, state.end_offsets.refresh(state.log.as_ref()))
            .await
            .map_err(|_| shopflow_ingest::LogError::Unavailable("end offset poll timed out".into()))
        {
            tracing::warn!(error = %e, "first end offset poll failed");
        }
        let readiness = AbortOnDrop(tokio::spawn({
            let state = state.clone();
            async move {
                state.wait_ready().await;
                tracing::info!(view_frontier = state.views.progress.frontier(), "views caught up with the log: ready");
            }
        }));
        Ok(Self { listener, addr, state, readiness })
    }

    /// Serves recommendations from `models` instead of the empty slot `build` starts with.
    /// The caller keeps its own `Arc` and promotes or rolls back models through it
    /// ([`ModelSlot::set`](crate::ModelSlot::set)) while the server runs:
    ///
    /// ```ignore
    /// let models = Arc::new(ModelSlot::new());
    /// let app = Application::build(config, log, views).await?.with_models(models.clone());
    /// // ... a model watcher calls models.set(Some(Box::new(adapter))) on each promotion
    /// ```
    pub fn with_models(mut self, models: Arc<crate::recommender::ModelSlot>) -> Self {
        self.state.models = models;
        self
    }

    /// Tokenizes the cards of `POST /api/v1/payments/methods` through `vault` (without one
    /// that route answers `503 payments_unavailable`):
    ///
    /// ```ignore
    /// let app = Application::build(config, log, views).await?.with_card_vault(Arc::new(gateway_vault));
    /// ```
    pub fn with_card_vault(mut self, vault: Arc<dyn crate::vault::CardVault>) -> Self {
        self.state.vault = Some(vault);
        self
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// and stops the background tasks.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServingError> {
        let Self { listener, addr, state, readiness } = self;
        let poller = tokio::spawn(crate::lag::poll_end_offsets(
            state.log.clone(),
            state.end_offsets.clone(),
            state.config.end_offset_poll,
        ));
        let upkeep = tokio::spawn(crate::metrics::run_upkeep(Duration::from_secs(5)));
        let limiter_upkeep = tokio::spawn({
            let limiters = state.limiters.clone();
            async move {
                let mut ticker = tokio::time::interval(Duration::from_secs(60));
                loop {
                    ticker.tick().await;
                    limiters.forget_idle();
                }
            }
        });
        tracing::info!(%addr, backend = state.log.backend(), "serving http");
        // With the peer address, which the gateway's per-IP limits key on.
        // Live streams (SSE) never end on their own: they are ended when the stop begins, so
        // that the graceful shutdown only waits for ordinary requests.
        let live = state.live.clone();
        let service = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let shutdown = async move {
            shutdown.await;
            live.close();
        };
        let result = axum::serve(listener, service).with_graceful_shutdown(shutdown).await;
        poller.abort();
        upkeep.abort();
        limiter_upkeep.abort();
        drop(readiness);
        tracing::info!(%addr, "http server stopped");
        result.map_err(ServingError::Serve)
    }
}
