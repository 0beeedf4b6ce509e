//! What the live views (SSE, `routes/live.rs`) follow: one views listener per server fans
//! the changes out to the open streams, and a per-process cap on how many are open.
//!
//! The listener runs inside `Views::apply` on a pipeline (or replica) thread, so it only
//! sends: order ids on a broadcast channel, a new version number for the rankings. Streams
//! re-read the views themselves; a stream that falls behind the broadcast (lagged) re-reads
//! too, so nothing is lost, only coalesced.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use shopflow_events::Id;
use shopflow_views::{Changed, Views};
use tokio::sync::{broadcast, watch};

/// Order change notifications buffered per stream before it counts as lagged (and re-reads).
const ORDER_CHANGES_BUFFER: usize = 1024;

pub struct Live {
    /// Ids of the orders whose rows changed, one message per applied batch.
    orders: broadcast::Sender<Arc<[Id]>>,
    /// The rankings' version: bumped on every batch that changed a top-sellers ranking.
    /// Milliseconds of wall time (or one more than the last), so it grows across restarts
    /// too and a `Last-Event-ID` from before a restart reads as "behind".
    rankings: watch::Sender<u64>,
    open: AtomicUsize,
    limit: usize,
    /// Set when the server stops: streams end, so a graceful shutdown is not held open by
    /// clients that would otherwise listen forever.
    closed: watch::Sender<bool>,
}

impl Live {
    /// A hub following `views`, allowing `limit` open streams. The listener holds the hub
    /// weakly: once the server is gone it does nothing (views cannot unregister listeners).
    pub fn attach(views: &Views, limit: usize) -> Arc<Self> {
        let live = Arc::new(Self {
            orders: broadcast::channel(ORDER_CHANGES_BUFFER).0,
            rankings: watch::channel(crate::lag::now_ms()).0,
            open: AtomicUsize::new(0),
            limit,
            closed: watch::channel(false).0,
        });
        let hub: Weak<Live> = Arc::downgrade(&live);
        views.on_change(Box::new(move |changed: &Changed<'_>| {
            if let Some(live) = hub.upgrade() {
                live.changed(changed);
            }
        }));
        live
    }

    fn changed(&self, changed: &Changed<'_>) {
        if !changed.orders.is_empty() && self.orders.receiver_count() > 0 {
            // No receiver is not an error: nobody is watching.
            let _ = self.orders.send(changed.orders.into());
        }
        if changed.rankings {
            let now = crate::lag::now_ms();
            self.rankings.send_modify(|version| *version = now.max(*version + 1));
        }
    }

    pub fn order_changes(&self) -> broadcast::Receiver<Arc<[Id]>> {
        self.orders.subscribe()
    }

    pub fn ranking_versions(&self) -> watch::Receiver<u64> {
        self.rankings.subscribe()
    }

    /// Ends every stream, open or opened later (the server is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Completes once [`close`](Self::close) was called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.subscribe();
        async move {
            // An error means the hub is gone, which closes its streams too.
            let _ = closed.wait_for(|closed| *closed).await;
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Counts one open stream until the guard drops (the client went away); `None` at the cap.
    pub fn open(self: &Arc<Self>) -> Option<StreamGuard> {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < self.limit).then_some(n + 1))
            .ok()?;
        metrics::gauge!(STREAMS_GAUGE).increment(1.0);
        Some(StreamGuard(self.clone()))
    }

    /// Streams open right now.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

const STREAMS_GAUGE: &str = "serving_live_streams_open";

pub struct StreamGuard(Arc<Live>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!(STREAMS_GAUGE).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_open_streams_and_frees_on_drop() {
        let views = Views::new();
        let live = Live::attach(&views, 2);
        let a = live.open().unwrap();
        let _b = live.open().unwrap();
        assert!(live.open().is_none());
        drop(a);
        assert!(live.open().is_some());
    }

    #[test]
    fn ranking_versions_only_grow() {
        let views = Views::new();
        let live = Live::attach(&views, 1);
        let mut versions = live.ranking_versions();
        let first = *versions.borrow_and_update();
        let changed = Changed { products: &[], synonyms: false, orders: &[], rankings: true };
        live.changed(&changed);
        live.changed(&changed);
        assert!(*versions.borrow() >= first + 2);
    }
}
