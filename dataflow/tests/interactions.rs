//! The interaction matrix, purchases and trending views, through the real pipeline on the
//! embedded log.

use std::sync::Arc;
use std::time::Duration;

use shopflow_dataflow::pipeline::{self, PipelineConfig};
use shopflow_dataflow::views::Views;
use shopflow_events::types::*;
use shopflow_events::{Envelope, Event, Id, Money};
use shopflow_ingest::{EmbeddedLog, EventLog, OutRecord, TopicSpec};

fn record(envelope: Envelope) -> OutRecord {
    OutRecord::of(&envelope)
}

fn viewed(user: &str, product: &str) -> Envelope {
    Envelope::new(Event::ProductViewed(ProductViewed { user_id: user.into(), product_id: product.into() }))
}

#[tokio::test(flavor = "multi_thread")]
async fn interactions_purchases_and_trending_follow_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap());
    for topic in ["catalog", "inventory", "users", "interactions", "carts", "orders", "decisions"] {
        log.ensure_topic(&TopicSpec::new(topic, 2)).await.unwrap();
    }
    log.ensure_topic(&TopicSpec::new("dlq", 1)).await.unwrap();
    let views = Arc::new(Views::new());
    let config = PipelineConfig { workers: 2, data_dir: dir.path().join("pipeline"), ..PipelineConfig::default() };
    let (l, v) = (log.clone(), views.clone());
    let handle = tokio::task::spawn_blocking(move || pipeline::start(config, l, Some(v))).await.unwrap().unwrap();

    let kettle = Envelope::new(Event::ProductCreated(ProductCreated {
        product_id: "kettle".into(),
        name: "Kettle".into(),
        description: String::new(),
        price: Money::new(100, "EUR"),
        sku: String::new(),
        category_id: "kitchen".into(),
        brand_id: "b".into(),
        supplier_id: "s".into(),
    }));
    let mut stale = viewed("u2", "lamp");
    stale.ts -= 2 * 60 * 60 * 1_000; // two hours old: outside the one-hour trending window
    let order = |id: &str| {
        Envelope::new(Event::OrderPlaced(OrderPlaced {
            order_id: id.into(),
            user_id: "u1".into(),
            lines: vec![OrderLine { product_id: "kettle".into(), quantity: 2, unit_price: Money::new(100, "EUR") }],
            address_id: "a".into(),
            idempotency_key: id.into(),
            payment_token: "tok_ok".into(),
            from_cart: false,
        }))
    };
    let events = vec![
        kettle,
        viewed("u1", "kettle"),
        viewed("u1", "lamp"),
        Envelope::new(Event::CartItemAdded(CartItemChanged { user_id: "u1".into(), product_id: "kettle".into(), quantity: 1 })),
        order("o1"),
        order("o2"),
        Envelope::new(Event::OrderCancelled(OrderCancelled { order_id: "o2".into(), user_id: "u1".into(), reason: String::new() })),
        stale,
    ];
    let positions = log.append(events.into_iter().map(record).collect()).await.unwrap();
    views.progress.wait_for(&positions, Duration::from_secs(60)).await.unwrap();

    let u1: Vec<(String, i64)> =
        views.user_interactions(&Id::from("u1")).into_iter().map(|r| (r.product_id.to_string(), r.weight)).collect();
    // kettle: view 1 + cart 3 + two orders of 2 units at 5 each (cancelling keeps the intent).
    assert_eq!(u1, vec![("kettle".to_owned(), 1 + 3 + 10 + 10), ("lamp".to_owned(), 1)]);
    let bought: Vec<(String, i64)> =
        views.user_purchases(&Id::from("u1")).into_iter().map(|r| (r.product_id.to_string(), r.quantity)).collect();
    assert_eq!(bought, vec![("kettle".to_owned(), 2)], "the cancelled order's units are taken back");
    assert_eq!(views.user_interactions(&Id::from("u2")).len(), 1, "old events still count in the matrix");

    let kettle = views.trending.get(&Id::from("kettle")).expect("kettle is trending");
    assert_eq!((kettle.score, kettle.category_id.as_ref().map(Id::as_str)), (24, Some("kitchen")));
    let lamp = views.trending.get(&Id::from("lamp")).expect("lamp is trending");
    assert_eq!((lamp.score, lamp.category_id), (1, None), "the stale view is outside the window");

    // Top sellers count paid orders only: these were placed (and found no stock), never paid.
    assert!(views.top_sellers.is_empty(), "nothing was paid");

    tokio::task::spawn_blocking(move || handle.stop()).await.unwrap().unwrap();
}
