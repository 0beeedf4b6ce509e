//! The top-sellers view snapshotted into ClickHouse (the chDB engine over HTTP): ranked as
//! the view ranks, and once per snapshot time however often a snapshot is retried.

mod support;

use std::sync::Arc;
use std::time::Duration;

use shopflow_analytics::rows::TopSellerSnapshotRow;
use shopflow_analytics::snapshots::TopSellerSnapshots;
use shopflow_events::Id;
use shopflow_views::{TopSellerRow, ViewUpdate, Views};
use support::*;

#[tokio::test]
async fn snapshots_rank_the_view_and_are_written_once_per_time() {
    let clickhouse = ClickHouse::get();
    let settings = settings();
    let service = service(&clickhouse.url(), &settings).await;
    let views = Arc::new(Views::new());
    let sold = [("p-a", "c-1", 5), ("p-b", "c-2", 12), ("p-c", "c-1", 12), ("p-d", "c-2", 0), ("p-e", "c-1", 1)];
    views.apply(sold.iter().map(|(p, c, units)| ViewUpdate::TopSeller {
        key: Id::from(*p),
        row: Some(TopSellerRow { product_id: Id::from(*p), category_id: Some(Id::from(*c)), units: *units }),
    }));
    let snapshots = TopSellerSnapshots::new(service.client().clone(), views.clone(), Duration::from_secs(60), 3);
    let at = snapshots.aligned(1_764_540_000_123);
    assert_eq!(at % 60_000, 0);

    assert_eq!(snapshots.take(at).await.unwrap(), 3);
    // A retry (a restart, a lost answer) of the same time writes nothing more.
    assert_eq!(snapshots.take(at).await.unwrap(), 0);
    // The view moves on; the next time gets its own rows.
    views.apply([ViewUpdate::TopSeller {
        key: Id::from("p-e"),
        row: Some(TopSellerRow { product_id: Id::from("p-e"), category_id: Some(Id::from("c-1")), units: 40 }),
    }]);
    assert_eq!(snapshots.take(at + 60_000).await.unwrap(), 3);

    let count: u64 = service.client().query("SELECT count() FROM top_seller_snapshots").fetch_one().await.unwrap();
    assert_eq!(count, 6, "two snapshots of three rows, nothing doubled (count without FINAL)");
    let rows: Vec<TopSellerSnapshotRow> = service
        .client()
        .query("SELECT ?fields FROM top_seller_snapshots ORDER BY snapshot_at, rank")
        .fetch_all()
        .await
        .unwrap();
    let ranked = |at: i64| -> Vec<(u32, String, String, i64)> {
        rows.iter().filter(|r| r.snapshot_at == at).map(|r| (r.rank, r.product_id.clone(), r.category_id.clone(), r.units)).collect()
    };
    // Units descending, ties by product id; unsold products never appear.
    assert_eq!(
        ranked(at),
        vec![(1, "p-b".into(), "c-2".into(), 12), (2, "p-c".into(), "c-1".into(), 12), (3, "p-a".into(), "c-1".into(), 5)]
    );
    assert_eq!(ranked(at + 60_000)[0], (1, "p-e".into(), "c-1".into(), 40));
}
