//! What every handler shares.

use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use shopflow_search::SearchIndex;
use shopflow_views::Views;
use shopflow_ingest::EventLog;
use tokio::sync::watch;

use crate::auth::{Auth, KeyError};
use crate::config::ServingConfig;
use crate::gateway::Limiters;
use crate::lag::{EndOffsets, NotReady, NotReadyReason, Readiness};
use crate::recommender::ModelSlot;
use crate::vault::CardVault;

/// Shared by every handler; cheap to clone: what never changes after start is behind one
/// `Arc` (handlers reach it through `Deref`), so a clone is three reference counts, not one
/// per part. (Axum clones the state for every extractor of every request: with an `Arc` per
/// field, those clones and drops were ~6 % of the runtime's CPU at 2,000 orders/s.)
#[derive(Clone)]
pub struct AppState {
    shared: Arc<SharedState>,
    /// The promoted recommendation model, if any. Shared with whoever promotes models (the
    /// binary's model watcher), so a promotion or rollback is seen by the next request.
    /// Outside `shared`: the application's builder sets it after the state exists.
    pub models: Arc<ModelSlot>,
    /// Tokenizes cards (`POST /payments/methods`); `None`: `503 payments_unavailable`. Set
    /// by the builder, as `models`.
    pub vault: Option<Arc<dyn CardVault>>,
}

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.shared
    }
}

/// The parts of [`AppState`] that are fixed once it is made.
pub struct SharedState {
    /// Where writes go.
    pub log: Arc<dyn EventLog>,
    /// What reads answer from.
    pub views: Arc<Views>,
    pub config: Arc<ServingConfig>,
    /// Last known end offsets of the source topics (for the lag headers).
    pub end_offsets: Arc<EndOffsets>,
    /// Reads currently waiting for a consistency token (also the gauge
    /// `serving_consistency_waits_in_flight`); observable so tests and operators can see waits.
    /// Never above `config.max_consistency_waiters`.
    waiting_reads: Arc<watch::Sender<usize>>,
    /// Whether the views have caught up with the log since start (`/readyz`).
    readiness: Arc<Readiness>,
    /// First answers to writes under an idempotency key, per server (`crate::idempotency`).
    pub(crate) answers: Arc<crate::idempotency::AnswerCache>,
    /// Signing keys and the password hasher.
    pub auth: Arc<Auth>,
    /// The gateway's rate limits and login throttle (per process).
    pub limiters: Arc<Limiters>,
    /// This server's own search index, following `views`.
    pub search: Arc<SearchIndex>,
    /// Whether the index has been asked to sync with the caught-up views (once per start).
    search_sync_requested: Arc<AtomicBool>,
    /// What the live streams (SSE) follow, and their cap.
    pub live: Arc<crate::live::Live>,
    /// Appends the events the server records on its own (`search.performed`), batched.
    pub recorder: crate::recorder::Recorder,
}

impl AppState {
    /// Fails only on configuration: no (or a too short) signing key.
    pub fn new(config: ServingConfig, log: Arc<dyn EventLog>, views: Arc<Views>, search: Arc<SearchIndex>) -> Result<Self, KeyError> {
        let auth = Arc::new(Auth::from_config(&config.auth)?);
        let limiters = Arc::new(Limiters::new(&config.gateway));
        let end_offsets = Arc::new(EndOffsets::new(config.source_topics.clone()));
        let waiting_reads = Arc::new(watch::channel(0).0);
        // Empty until a model is promoted: the recommendation routes answer from trending.
        let models = Arc::new(ModelSlot::new());
        let readiness = Arc::new(Readiness::default());
        let answers = crate::idempotency::new_answer_cache();
        let search_sync_requested = Arc::new(AtomicBool::new(false));
        let live = crate::live::Live::attach(&views, config.commerce.max_live_streams);
        let recorder = crate::recorder::Recorder::spawn(log.clone());
        let shared = SharedState {
            recorder,
            log,
            views,
            config: Arc::new(config),
            end_offsets,
            waiting_reads,
            readiness,
            answers,
            auth,
            limiters,
            search,
            search_sync_requested,
            live,
        };
        Ok(Self { shared: Arc::new(shared), models, vault: None })
    }

    /// Watches the number of reads waiting for a consistency token right now.
    pub fn waiting_reads(&self) -> watch::Receiver<usize> {
        self.waiting_reads.subscribe()
    }

    /// Counts one waiting read until the guard drops (also when the client goes away);
    /// `None` when `max_consistency_waiters` reads are waiting already. Check and count are
    /// one step, so concurrent reads cannot overshoot the cap.
    pub(crate) fn wait_guard(&self) -> Option<WaitGuard> {
        let limit = self.config.max_consistency_waiters;
        let admitted = self.waiting_reads.send_if_modified(|n| {
            let room = *n < limit;
            if room {
                *n += 1;
            }
            room
        });
        if !admitted {
            return None;
        }
        metrics::gauge!(WAITS_GAUGE).increment(1.0);
        Some(WaitGuard(self.waiting_reads.clone()))
    }

    /// Watches readiness: `false` until the views have caught up with the log as it was when
    /// the server started (or replayed), then `true` for good. [`Application::build`] starts
    /// a task that flips it as soon as progress or a new end offset poll makes it true.
    ///
    /// For the binary, to say when `shopflow up` is ready (select it with the shutdown
    /// signal: it never completes if the views never catch up):
    ///
    /// ```ignore
    /// let app = Application::build(config, log, views).await?;
    /// let state = app.state().clone();
    /// tokio::spawn(async move {
    ///     state.wait_ready().await;
    ///     println!("ready");
    /// });
    /// app.run_until_stopped(shutdown).await?;
    /// ```
    ///
    /// [`Application::build`]: crate::Application::build
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.readiness.subscribe()
    }

    /// Completes once the views have caught up with the log as of start (at once if they
    /// have). Event-driven: re-checks on every progress change and every end offset poll, so
    /// it works with or without the task [`Application::build`] starts.
    ///
    /// [`Application::build`]: crate::Application::build
    pub async fn wait_ready(&self) {
        let mut progress = self.views.progress.subscribe();
        let mut polled = self.end_offsets.subscribe();
        let mut synced = self.search.synced();
        while self.check_ready().is_err() {
            // Every sender lives in `self`'s `Arc`s, so no wait can fail while we borrow.
            tokio::select! {
                changed = progress.changed() => if changed.is_err() { std::future::pending::<()>().await },
                changed = polled.changed() => if changed.is_err() { std::future::pending::<()>().await },
                changed = synced.changed() => if changed.is_err() { std::future::pending::<()>().await },
            }
        }
    }

    /// Ready now, or why not (latches ready the first time it holds): the views have caught
    /// up with the log as of start, and then the search index has synced with them.
    pub fn check_ready(&self) -> Result<(), NotReady> {
        self.readiness.check(&self.views.progress, &self.end_offsets, || {
            // The sync compares the whole index with the whole view: once, when the view is
            // complete (a product deleted while this server was down leaves only then).
            if !self.search_sync_requested.swap(true, Ordering::SeqCst) {
                tracing::info!("views caught up: syncing the search index with them");
                self.search.sync();
            }
            if *self.search.synced().borrow() {
                Ok(())
            } else {
                Err(NotReady { reason: NotReadyReason::SearchIndexing, behind: None })
            }
        })
    }
}

const WAITS_GAUGE: &str = "serving_consistency_waits_in_flight";

pub(crate) struct WaitGuard(Arc<watch::Sender<usize>>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
        metrics::gauge!(WAITS_GAUGE).decrement(1.0);
    }
}
