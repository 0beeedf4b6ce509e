//! The sink against the real engine (chDB behind the HTTP adapter) and a real broker.

mod support;

use shopflow_analytics::rows::*;
use shopflow_events::types::*;
use shopflow_events::{DeadLetter, Envelope, Event, Id, Money};
use shopflow_ingest::{OutRecord, Position};
use support::*;

fn id(s: &str) -> Id {
    Id::from(s)
}

fn at(event: Event, ts: i64) -> Envelope {
    let mut e = Envelope::new(event);
    e.ts = ts;
    e
}

/// One event of every type there is.
fn every_type() -> Vec<Envelope> {
    let eur = |m| Money::new(m, "EUR");
    let events = vec![
        Event::ProductCreated(ProductCreated {
            product_id: id("p1"), name: "Kettle".into(), description: "hot".into(), price: eur(1999), sku: "K1".into(),
            category_id: id("kitchen"), brand_id: id("acme"), supplier_id: id("sup"),
        }),
        Event::ProductUpdated(ProductUpdated { product_id: id("p1"), price: Some(eur(1799)), ..Default::default() }),
        Event::ProductDeleted(ProductDeleted { product_id: id("p9") }),
        Event::CategoryUpserted(NamedEntityUpserted { id: id("kitchen"), name: "Kitchen".into() }),
        Event::BrandUpserted(NamedEntityUpserted { id: id("acme"), name: "Acme".into() }),
        Event::SupplierUpserted(NamedEntityUpserted { id: id("sup"), name: "Supply".into() }),
        Event::ReviewPosted(ReviewPosted { review_id: id("r1"), product_id: id("p1"), user_id: id("u1"), rating: 5, text: "good".into() }),
        Event::WarehouseCreated(WarehouseCreated { warehouse_id: id("wh"), name: "W".into(), location: "B".into() }),
        Event::SynonymsSet(SynonymsSet { set_id: id("default"), groups: vec![vec!["kettle".into(), "boiler".into()]] }),
        Event::StockReceived(StockReceived { product_id: id("p1"), warehouse_id: id("wh"), quantity: 10 }),
        Event::StockAdjusted(StockAdjusted { product_id: id("p1"), warehouse_id: id("wh"), delta: -3, reason: "count".into() }),
        Event::UserRegistered(UserRegistered {
            user_id: id("u1"), email: "Ann@Example.com".into(), name: "Ann".into(), phone: "+49-555-0100".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(), role: Role::Customer,
        }),
        Event::ProfileUpdated(ProfileUpdated { user_id: id("u1"), name: Some("Anne".into()), phone: None }),
        Event::AddressAdded(AddressAdded {
            address_id: id("a1"), user_id: id("u1"), street: "Main 1".into(), city: "Berlin".into(), state: String::new(), country: "DE".into(),
            zip: "10115".into(), is_default: true,
        }),
        Event::RoleChanged(RoleChanged { user_id: id("u1"), role: Role::Admin }),
        Event::SessionStarted(SessionStarted {
            user_id: id("u1"), session_id: id("s1"), refresh_hash: "d1".repeat(32), issued_at: 1, expires_at: 2, client_ip: "203.0.113.9".into(),
        }),
        Event::SessionRefreshed(SessionRefreshed {
            user_id: id("u1"), session_id: id("s1"), presented_hash: "d1".repeat(32), refresh_hash: "d2".repeat(32), issued_at: 2,
            expires_at: 3, client_ip: "203.0.113.9".into(),
        }),
        Event::SessionRevoked(SessionRevoked { user_id: id("u1"), session_id: id("s1"), reason: "logout".into() }),
        Event::CartItemAdded(CartItemChanged { user_id: id("u1"), product_id: id("p1"), quantity: 2 }),
        Event::CartItemRemoved(CartItemChanged { user_id: id("u1"), product_id: id("p1"), quantity: 1 }),
        Event::CartQuantitySet(CartQuantitySet { user_id: id("u1"), product_id: id("p1"), quantity: 3 }),
        Event::CartCleared(CartCleared { user_id: id("u1") }),
        Event::OrderPlaced(OrderPlaced {
            order_id: id("o1"), user_id: id("u1"), address_id: id("a1"), idempotency_key: "k".into(), payment_token: "tok_ok".into(), from_cart: false,
            lines: vec![
                OrderLine { product_id: id("p1"), quantity: 2, unit_price: eur(1799) },
                OrderLine { product_id: id("p2"), quantity: 1, unit_price: eur(500) },
            ],
        }),
        Event::OrderCancelled(OrderCancelled { order_id: id("o1"), user_id: id("u1"), reason: "late".into() }),
        Event::OrderStatusChanged(OrderStatusChanged { order_id: id("o1"), user_id: id("u1"), status: OrderStatus::Shipped }),
        Event::PaymentMethodTokenized(PaymentMethodTokenized { user_id: id("u1"), token: "tok_ok".into(), last4: "4242".into(), card_brand: "visa".into(), exp_month: 12, exp_year: 2030 }),
        Event::ChargeRequested(ChargeRequested { order_id: id("o1"), user_id: id("u1"), amount: eur(4098), token: "tok_ok".into() }),
        Event::HoldRequested(HoldRequested { order_id: id("o1"), user_id: id("u1"), product_id: id("p1"), quantity: 2 }),
        Event::HoldDecided(HoldDecided {
            order_id: id("o1"), user_id: id("u1"), product_id: id("p1"), granted: true, available: 5,
            holds: vec![Hold { product_id: id("p1"), warehouse_id: id("wh"), quantity: 2 }],
        }),
        Event::HoldReleased(HoldReleased { order_id: id("o2"), product_id: id("p1"), reason: "rejected".into() }),
        Event::HoldCommitted(HoldCommitted { order_id: id("o1"), product_id: id("p1") }),
        Event::PaymentDeadline(PaymentDeadline { order_id: id("o3"), user_id: id("u1"), deadline: 5 }),
        Event::PaymentSubmitted(PaymentSubmitted { order_id: id("o1"), user_id: id("u1"), token: "tok_ok".into() }),
        Event::RefundRequested(RefundRequested { order_id: id("o1"), user_id: id("u1"), refund_id: id("r1"), amount: eur(500), reason: "broken".into() }),
        Event::RefundApproved(RefundApproved { order_id: id("o1"), user_id: id("u1"), refund_id: id("r1"), payment_id: id("pay1"), amount: eur(500) }),
        Event::RefundFailed(RefundFailed { order_id: id("o1"), user_id: id("u1"), refund_id: id("r2"), reason: "gateway".into() }),
        Event::ChargeSucceeded(ChargeSucceeded { order_id: id("o1"), user_id: id("u1"), payment_id: id("pay1"), amount: eur(4098), authorization_code: "AUTH-SECRET".into() }),
        Event::ChargeFailed(ChargeFailed { order_id: id("o1"), user_id: id("u1"), reason: "declined".into(), retryable: true }),
        Event::PaymentRefunded(PaymentRefunded { order_id: id("o1"), user_id: id("u1"), refund_id: id("r1"), payment_id: id("pay1"), amount: eur(500) }),
        Event::ProductViewed(ProductViewed { user_id: id("u1"), product_id: id("p1") }),
        Event::SearchPerformed(SearchPerformed { user_id: id("u1"), query: "kettle".into(), results: 3 }),
        Event::RecommendationClicked(RecommendationClicked { user_id: id("u1"), product_id: id("p1"), source: "similar".into() }),
        Event::ReservationAccepted(ReservationAccepted {
            order_id: id("o1"),
            user_id: id("u1"),
            holds: vec![Hold { product_id: id("p1"), warehouse_id: id("wh"), quantity: 2 }, Hold { product_id: id("p2"), warehouse_id: id("wh"), quantity: 1 }],
        }),
        Event::OrderRejected(OrderDecision { order_id: id("o2"), user_id: id("u1"), reason: "out_of_stock:p1".into(), amount: None }),
        Event::OrderConfirmed(OrderDecision { order_id: id("o1"), user_id: id("u1"), reason: String::new(), amount: Some(eur(4098)) }),
        Event::OrderExpired(OrderDecision { order_id: id("o3"), user_id: id("u1"), reason: "unpaid".into(), amount: None }),
        Event::CancellationAccepted(OrderDecision { order_id: id("o4"), user_id: id("u1"), reason: "changed mind".into(), amount: None }),
        Event::OrderShipped(OrderDecision { order_id: id("o1"), user_id: id("u1"), reason: String::new(), amount: None }),
        Event::OrderDelivered(OrderDecision { order_id: id("o1"), user_id: id("u1"), reason: String::new(), amount: None }),
        Event::RefundCompleted(OrderDecision { order_id: id("o1"), user_id: id("u1"), reason: String::new(), amount: Some(eur(500)) }),
        Event::StockAdjustmentRejected(StockAdjustmentRejected {
            event_id: uuid::Uuid::nil(), product_id: id("p1"), warehouse_id: id("wh"), delta: -50, available: 7,
        }),
    ];
    events.into_iter().enumerate().map(|(i, e)| at(e, 1_764_000_000_000 + i as i64 * 1000)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_lands_with_its_columns_and_bad_events_go_to_the_dlq() {
    let ch = ClickHouse::get();
    let settings = settings();
    let service = service(&ch.url(), &settings).await;
    let log = kafka_log().await;
    let events = every_type();
    assert_eq!(events.len(), shopflow_events::TYPE_NAMES.len(), "one event of every type");
    let mut records = records(&events);
    // Two bad records: not JSON, and an order event on the catalog topic.
    records.push(OutRecord::keyed("catalog", "x", "{not json"));
    let misplaced = events.iter().find(|e| e.event.type_name() == "order.placed").unwrap();
    records.push(OutRecord::keyed("catalog", "o1", misplaced.to_json()));
    log.log.append(records).await.unwrap();

    let mut sink = spawn_sink(log.log.clone(), service.clone(), settings.clone());
    sink.caught_up(&*log.log).await;
    let progress = sink.stop().await;
    assert_eq!(progress.dead_letters, 2);

    // The raw table: every event with its id, type, key, time and payload.
    let raw: Vec<EventRow> = service.client().query("SELECT ?fields FROM events ORDER BY ts").fetch_all().await.unwrap();
    assert_eq!(raw.len(), events.len());
    for (row, e) in raw.iter().zip(&events) {
        assert_eq!((row.id, row.ts, row.r#type.as_str(), row.key.as_str()), (e.id, e.ts, e.event.type_name(), e.key().as_str()));
        if shopflow_analytics::sink::holds_secrets(&e.event) {
            // Redacted: the rest of the payload is kept, secrets and personal data are not.
            for secret in ["Ann@", "argon2", "d1d1d1d1", "d2d2d2d2", "203.0.113.9", "555-0100", "Main 1", "AUTH-SECRET"] {
                assert!(!row.payload.contains(secret), "{} keeps {secret}: {}", row.r#type, row.payload);
            }
            assert!(row.payload.contains("\"user_id\":\"u1\"") || row.payload.contains("\"order_id\""), "{}", row.payload);
        } else {
            assert_eq!(serde_json::from_str::<Envelope>(&row.payload).unwrap(), *e);
        }
        assert_eq!(row.log_topic, e.topic().name());
    }
    let types: Vec<String> = service.client().query("SELECT DISTINCT type FROM events ORDER BY type").fetch_all().await.unwrap();
    let mut expected: Vec<String> = shopflow_events::TYPE_NAMES.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(types, expected, "every type landed");

    // Typed tables: counts per table, then the columns of the ones with the most mapping.
    for (table, n) in [
        ("products", 3), ("stock_moves", 2), ("users", 7), ("cart_events", 4), ("orders", 3), ("order_lines", 2),
        ("payments", 9), ("product_views", 1), ("searches", 1), ("recommendation_clicks", 1), ("decisions", 13),
    ] {
        assert_eq!(count(&service, table).await, n, "{table}");
    }
    let orders: Vec<OrderRow> = service.client().query("SELECT ?fields FROM orders ORDER BY ts").fetch_all().await.unwrap();
    assert_eq!(
        orders.iter().map(|o| (o.kind.as_str(), o.status.as_str(), o.lines, o.items, o.total, o.currency.as_str(), o.reason.as_str())).collect::<Vec<_>>(),
        vec![("placed", "placed", 2, 3, 2 * 1799 + 500, "EUR", ""), ("cancelled", "cancelled", 0, 0, 0, "", "late"), ("status_changed", "shipped", 0, 0, 0, "", "")]
    );
    let lines: Vec<OrderLineRow> = service.client().query("SELECT ?fields FROM order_lines ORDER BY line").fetch_all().await.unwrap();
    assert_eq!(lines.iter().map(|l| (l.line, l.product_id.as_str(), l.quantity, l.unit_price)).collect::<Vec<_>>(), vec![(0, "p1", 2, 1799), (1, "p2", 1, 500)]);
    let revenue: String = service.client().query("SELECT toString(sum(total)) FROM orders").fetch_one().await.unwrap();
    assert_eq!(revenue, "40.98", "Decimal(18, 2) holds minor units");

    let users: Vec<UserRow> = service.client().query("SELECT ?fields FROM users ORDER BY ts").fetch_all().await.unwrap();
    let hash = shopflow_analytics::sink::request_builder::RequestBuilder::new(settings.email_hash_key.clone()).email_hash("ann@example.com ");
    assert_eq!(users[0].email_hash, hash, "the keyed hash of the normalised address");
    assert_eq!((users[0].kind.as_str(), users[0].role.as_str()), ("registered", "customer"));
    assert_eq!(users[2].country, "DE");
    assert_eq!((users[3].kind.as_str(), users[3].role.as_str()), ("role_changed", "admin"));
    assert_eq!((users[4].kind.as_str(), users[4].session_id.as_str()), ("session_started", "s1"));
    // Nothing secret in a typed table: no address, no password hash, no name or phone.
    for table in ["users", "payments", "orders", "events"] {
        let dump: String = service.client().query(&format!("SELECT toString(groupArray(tuple(*))) FROM {table}")).fetch_one().await.unwrap();
        for secret in ["Ann@", "ann@", "argon2", "AUTH-SECRET", "555-0100", "d1d1d1d1", "d2d2d2d2", "203.0.113.9"] {
            assert!(!dump.contains(secret), "{table} holds {secret}: {dump}");
        }
    }
    let payments: Vec<PaymentRow> = service.client().query("SELECT ?fields FROM payments ORDER BY ts").fetch_all().await.unwrap();
    assert_eq!((payments[0].token.as_str(), payments[0].last4.as_str(), payments[0].card_brand.as_str()), ("tok_ok", "4242", "visa"));
    let kind = |k: &str| payments.iter().find(|p| p.kind == k).unwrap_or_else(|| panic!("a {k} row: {payments:?}"));
    assert_eq!((kind("charge_succeeded").amount, kind("charge_succeeded").payment_id.as_str()), (4098, "pay1"));
    assert!(payments.iter().all(|p| !format!("{p:?}").contains("AUTH-SECRET")));
    assert_eq!((kind("charge_failed").reason.as_str(), kind("charge_failed").retryable), ("declined", 1));
    let decisions: Vec<DecisionRow> = service.client().query("SELECT ?fields FROM decisions ORDER BY ts").fetch_all().await.unwrap();
    let kind = |k: &str| decisions.iter().find(|d| d.kind == k).unwrap_or_else(|| panic!("a {k} row: {decisions:?}"));
    assert_eq!((kind("accepted").holds, kind("accepted").quantity), (2, 3));
    assert_eq!((kind("adjustment_rejected").quantity, kind("adjustment_rejected").available), (-50, 7));
    let products: Vec<ProductRow> = service.client().query("SELECT ?fields FROM products ORDER BY ts").fetch_all().await.unwrap();
    assert_eq!((products[0].category_id.as_deref(), products[0].price), (Some("kitchen"), Some(1999)));
    assert_eq!((products[1].category_id.as_deref(), products[1].price, products[1].name.as_deref()), (None, Some(1799), None));
    let moves: Vec<StockMoveRow> = service.client().query("SELECT ?fields FROM stock_moves ORDER BY ts").fetch_all().await.unwrap();
    assert_eq!(moves.iter().map(|m| m.delta).collect::<Vec<_>>(), vec![10, -3]);
    let searches: Vec<SearchRow> = service.client().query("SELECT ?fields FROM searches").fetch_all().await.unwrap();
    assert_eq!((searches[0].query.as_str(), searches[0].hits), ("kettle", 3));

    // The dead letters, with their reasons, on the dlq topic.
    let dlq_end = log.log.end_offsets("dlq").await.unwrap()[0];
    assert_eq!(dlq_end, 2);
    let mut reader = log.log.reader(&[Position::new("dlq", 0, 0)]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < 2 {
        for r in reader.poll(10, std::time::Duration::from_secs(1)).unwrap() {
            letters.push(serde_json::from_slice::<DeadLetter>(r.value.as_deref().unwrap()).unwrap());
        }
    }
    assert!(letters[0].reason.contains("malformed"), "{}", letters[0].reason);
    assert!(letters[1].reason.contains("belongs on topic orders"), "{}", letters[1].reason);

    // A second migrate applies nothing and keeps the data.
    let again = shopflow_analytics::migrations::migrate(service.client(), &settings.database).await.unwrap();
    assert!(again.is_empty());
    assert_eq!(count(&service, "events").await, events.len() as u64);
}

fn activity(shoppers: usize, days: u32) -> Vec<Envelope> {
    shopflow_shopdata::activity::Activity { shoppers, days, ..shopflow_shopdata::activity::Activity::new(1_763_942_400_000) }.events()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_stopped_for_ten_seconds_under_steady_load_loses_and_doubles_nothing() {
    let mut adapter = Adapter::start();
    // Small pending bound: while ClickHouse is away the reader has to stop (back-pressure).
    let settings = shopflow_analytics::AnalyticsSettings { max_pending_records: 2_000, poll_max: 500, ..settings() };
    let service = service(&adapter.url(), &settings).await;
    let log = kafka_log().await;
    let events = activity(300, 24);
    assert!(events.len() > 15_000, "{} events", events.len());
    let expected = expected_counts(&events);

    let mut sink = spawn_sink(log.log.clone(), service.clone(), settings.clone());
    // ~1,000 events/s for ~20 s: ClickHouse is away for 10 s of it.
    let load = steady_load(log.log.clone(), records(&events), 50, std::time::Duration::from_millis(50));
    tokio::time::timeout(DEADLINE, sink.progress.wait_for(|p| p.records > 2_000)).await.unwrap().unwrap();
    adapter.kill();
    let records_at_stop = sink.progress.borrow().records;
    tokio::time::sleep(std::time::Duration::from_secs(10)).await; // the outage itself
    let during = sink.progress.borrow().records;
    assert_eq!(during, records_at_stop, "nothing is acknowledged while ClickHouse is down");
    adapter.restart();
    load.await.unwrap();
    sink.caught_up(&*log.log).await;
    let progress = sink.stop().await;
    assert_eq!(progress.records, events.len() as u64);
    assert_eq!(counts(&service).await, expected, "SELECT count() per table equals the events, exactly");
    let distinct: u64 = service.client().query("SELECT uniqExact(id) FROM events").fetch_one().await.unwrap();
    assert_eq!(distinct, events.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_before_a_crash_but_never_committed_are_not_written_again() {
    use shopflow_analytics::sink::request_builder::{Present, RequestBuilder, RowBatch};
    let ch = ClickHouse::get();
    let settings = settings();
    let service = service(&ch.url(), &settings).await;
    let log = kafka_log().await;
    let events = activity(40, 7);
    let expected = expected_counts(&events);
    log.log.append(records(&events)).await.unwrap();

    // A sink that died after ClickHouse took some batches, before it committed any offset:
    // the first half of partition 0 of every topic in full, and then half a batch (the raw
    // table and orders only) of what followed.
    let mut from = Vec::new();
    for topic in shopflow_analytics::sink::source_topics() {
        from.push(Position::new(topic.name(), 0, 0));
    }
    let mut reader = log.log.reader(&from).unwrap();
    let mut read = Vec::new();
    let in_partition_0: usize = {
        let mut n = 0;
        for topic in shopflow_analytics::sink::source_topics() {
            n += log.log.end_offsets(topic.name()).await.unwrap()[0] as usize;
        }
        n
    };
    while read.len() < in_partition_0 {
        read.extend(reader.poll(1000, std::time::Duration::from_secs(1)).unwrap());
    }
    let builder = RequestBuilder::new(settings.email_hash_key.clone());
    let (first, second) = read.split_at(read.len() / 2);
    let mut batch = RowBatch::default();
    for r in first {
        builder.add(&mut batch, r, &Present::default());
    }
    service.insert(&mut batch).await.unwrap();
    let mut partial = RowBatch::default();
    for r in second {
        builder.add(&mut partial, r, &Present::default());
    }
    partial.products.clear();
    partial.stock_moves.clear();
    partial.order_lines.clear();
    partial.product_views.clear();
    partial.cart_events.clear();
    service.insert(&mut partial).await.unwrap();
    assert!(counts(&service).await["events"] > 0);

    // A retry of an insert whose answer was lost finds its rows there and sends nothing.
    let mut again = RowBatch::default();
    for r in first {
        builder.add(&mut again, r, &Present::default());
    }
    service.drop_present(&mut again).await.unwrap();
    for t in shopflow_analytics::sink::request_builder::Table::ALL {
        assert_eq!(again.rows_in(t), 0, "{t:?}");
    }

    // The restarted sink reads from the (absent) committed offsets and fills in exactly the rest.
    let mut sink = spawn_sink(log.log.clone(), service.clone(), settings.clone());
    sink.caught_up(&*log.log).await;
    sink.stop().await;
    assert_eq!(counts(&service).await, expected);

    // And a third run, from the committed offsets, adds nothing.
    let sink = spawn_sink(log.log.clone(), service.clone(), settings.clone());
    let progress = sink.stop().await;
    assert_eq!(progress.records, 0);
    assert_eq!(counts(&service).await, expected);
}
