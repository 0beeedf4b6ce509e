//! Snapshots of the pipeline's top-sellers view into `top_seller_snapshots`.
//!
//! The view is a materialized output, not an event stream, so it does not go through the
//! sink's exactly-once bookkeeping by log position. Instead snapshot times are aligned to the
//! interval (`floor(now / interval) * interval`) and a time already present in the table is
//! never written again: a restart, a retry after a lost answer, or a second sink process
//! within the same interval finds the rows and skips. (Two writers racing on the very same
//! time could both insert; run one snapshotting sink, as `up` and `sink clickhouse` do.)

use std::sync::Arc;
use std::time::Duration;

use clickhouse::Client;
use shopflow_views::Views;
use tokio::sync::watch;

use crate::rows::TopSellerSnapshotRow;
use crate::AnalyticsError;

pub struct TopSellerSnapshots {
    client: Client,
    views: Arc<Views>,
    interval: Duration,
    /// Rows per snapshot: the best `top` products by units.
    top: usize,
}

impl TopSellerSnapshots {
    pub fn new(client: Client, views: Arc<Views>, interval: Duration, top: usize) -> Self {
        Self { client, views, interval: interval.max(Duration::from_millis(1)), top }
    }

    /// The snapshot time `now_ms` belongs to.
    pub fn aligned(&self, now_ms: i64) -> i64 {
        let step = self.interval.as_millis() as i64;
        now_ms - now_ms.rem_euclid(step)
    }

    /// Writes the snapshot of time `at` (ms) unless the table holds it already; returns the
    /// rows written (0 when skipped or when nothing has sold).
    pub async fn take(&self, at: i64) -> Result<usize, AnalyticsError> {
        let present: u64 = self
            .client
            .query("SELECT count() FROM top_seller_snapshots WHERE snapshot_at = fromUnixTimestamp64Milli(?, 'UTC')")
            .bind(at)
            .fetch_one()
            .await?;
        if present > 0 {
            return Ok(0);
        }
        let mut rows: Vec<_> = self.views.top_sellers.snapshot().into_iter().map(|(_, row)| row).filter(|r| r.units > 0).collect();
        rows.sort_by(|a, b| b.units.cmp(&a.units).then_with(|| a.product_id.cmp(&b.product_id)));
        rows.truncate(self.top);
        if rows.is_empty() {
            return Ok(0);
        }
        let mut insert = self.client.insert::<TopSellerSnapshotRow>("top_seller_snapshots").await?;
        for (rank, row) in rows.iter().enumerate() {
            insert
                .write(&TopSellerSnapshotRow {
                    snapshot_at: at,
                    rank: rank as u32 + 1,
                    product_id: row.product_id.to_string(),
                    category_id: row.category_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                    units: row.units,
                })
                .await?;
        }
        insert.end().await?;
        tracing::info!(snapshot_at = at, rows = rows.len(), "top-seller snapshot written");
        Ok(rows.len())
    }

    /// Takes a snapshot at every aligned time until `shutdown` turns true. A failed snapshot
    /// (ClickHouse away) is retried at the next tick for the then-current time.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.interval.min(Duration::from_secs(5)));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let at = self.aligned(crate::sink::now_ms());
            if let Err(e) = self.take(at).await {
                tracing::warn!(error = %e, "top-seller snapshot failed; retrying at the next tick");
            }
        }
    }
}
