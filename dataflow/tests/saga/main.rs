//! The order saga through the real pipeline (embedded log, 3 partitions, 1–2 workers), held
//! to a from-scratch recomputation in plain Rust over the same log (`model.rs`).
//!
//! A random log of stock moves, orders, payment outcomes, cancels, shipping, refunds, cart
//! edits, producer retries and jumps of the log clock is appended in random batches while the
//! pipeline runs, so the saga's own messages interleave with new actions. The test plays the
//! payment worker: each order's payment plan says what the "gateway" answers. Once the log is
//! quiet (the views passed every record and no new one was written meanwhile), every view must
//! equal the model's, every hold answer in the log must equal the model's decision, and held
//! units never exceeded stock on hand after any record.

mod model;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use shopflow_dataflow::pipeline::{self, PipelineConfig};
use shopflow_dataflow::views::Views;
use shopflow_events::types::*;
use shopflow_events::{Envelope, Event, Id, Money};
use shopflow_ingest::{EmbeddedLog, EventLog, OutRecord, Position, TopicSpec};

use model::{Model, HOUR};

const PRODUCTS: usize = 4;
const WAREHOUSES: usize = 2;
const USERS: usize = 4;
const PARTITIONS: u32 = 3;

#[derive(Clone, Debug)]
enum Pay {
    Succeed,
    Decline,
    InsufficientFunds,
    /// No answer: the order expires (or was decided otherwise).
    Never,
}

#[derive(Clone, Debug)]
enum Action {
    Receive { product: usize, warehouse: usize, quantity: u32 },
    /// `delta` 0 is invalid (dead-lettered).
    Adjust { product: usize, warehouse: usize, delta: i64 },
    Order { user: usize, lines: Vec<(usize, u32)>, token: bool, pay: Pay },
    /// The gateway's answer for the n-th order whose charge was requested (modulo).
    Answer { nth: usize },
    Cancel { order: usize },
    Ship { order: usize },
    Deliver { order: usize },
    Refund { order: usize, amount: i64 },
    SubmitPayment { order: usize },
    Cart { user: usize, product: usize, op: u8, quantity: u32 },
    /// A record of the user's partition 20 minutes of log time later: past every deadline.
    ClockJump { user: usize },
    /// The previous record appended again (a producer retry).
    Retry,
    /// Let the pipeline catch up before going on.
    Settle,
}

fn action() -> impl Strategy<Value = Action> {
    let product = 0..PRODUCTS;
    prop_oneof![
        3 => (product.clone(), 0..WAREHOUSES, 1..6u32).prop_map(|(product, warehouse, quantity)| Action::Receive { product, warehouse, quantity }),
        1 => (product.clone(), 0..WAREHOUSES, -4..3i64).prop_map(|(product, warehouse, delta)| Action::Adjust { product, warehouse, delta }),
        5 => (0..USERS, proptest::collection::vec((product.clone(), 1..4u32), 1..4), prop::bool::weighted(0.85),
              prop_oneof![4 => Just(Pay::Succeed), 1 => Just(Pay::Decline), 1 => Just(Pay::InsufficientFunds), 1 => Just(Pay::Never)])
            .prop_map(|(user, lines, token, pay)| Action::Order { user, lines, token, pay }),
        4 => (0..50usize).prop_map(|nth| Action::Answer { nth }),
        1 => (0..50usize).prop_map(|order| Action::Cancel { order }),
        1 => (0..50usize).prop_map(|order| Action::Ship { order }),
        1 => (0..50usize).prop_map(|order| Action::Deliver { order }),
        1 => (0..50usize, 1..3_000i64).prop_map(|(order, amount)| Action::Refund { order, amount }),
        1 => (0..50usize).prop_map(|order| Action::SubmitPayment { order }),
        2 => (0..USERS, product, 0..4u8, 0..4u32).prop_map(|(user, product, op, quantity)| Action::Cart { user, product, op, quantity }),
        1 => (0..USERS).prop_map(|user| Action::ClockJump { user }),
        1 => Just(Action::Retry),
        1 => Just(Action::Settle),
    ]
}

fn product(i: usize) -> Id {
    Id::from(format!("p{i}").as_str())
}

fn user(i: usize) -> Id {
    Id::from(format!("u{i}").as_str())
}

fn record(envelope: &Envelope) -> OutRecord {
    OutRecord::of(envelope)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

struct Harness {
    log: Arc<dyn EventLog>,
    views: Arc<Views>,
    /// Orders placed: (order, user, total, plan).
    orders: Vec<(Id, Id, i64, Pay, bool)>,
    /// The gateway's answers already given (by order): one per order, as a real gateway.
    answered: HashSet<Id>,
    refunds_answered: HashSet<Id>,
    last: Option<Envelope>,
    clock: i64,
}

impl Harness {
    async fn append(&mut self, batch: &mut Vec<Envelope>) {
        if batch.is_empty() {
            return;
        }
        self.last = batch.last().cloned();
        self.log.append(batch.iter().map(record).collect()).await.unwrap();
        batch.clear();
    }

    fn stamp(&mut self, event: Event) -> Envelope {
        self.clock += 1;
        Envelope { ts: self.clock, ..Envelope::new(event) }
    }

    /// Waits until the views passed every source record and nothing new was written meanwhile:
    /// the saga has no message left in flight.
    async fn quiesce(&mut self) {
        for round in 0.. {
            assert!(round < 1_000, "the saga did not come to rest");
            let ends = end_positions(self.log.as_ref()).await;
            let sources: Vec<Position> = ends.iter().filter(|p| p.topic != "payments" && p.offset != u64::MAX).cloned().collect();
            if let Err(error) = self.views.progress.wait_for(&sources, Duration::from_secs(60)).await {
                panic!("the views did not pass {sources:?}: {error}");
            }
            self.answer_payment_requests().await;
            if end_positions(self.log.as_ref()).await == ends {
                return;
            }
        }
    }

    /// The payment worker's part: answers every charge request and refund approval in the
    /// `payments` topic by the order's plan, once per order (or refund), as a gateway would.
    async fn answer_payment_requests(&mut self) {
        let mut batch = Vec::new();
        for bytes in read_topic(self.log.as_ref(), "payments").await.into_iter().flatten() {
            let envelope = Envelope::decode(&bytes).unwrap();
            match envelope.event {
                Event::ChargeRequested(r) => {
                    if self.answered.contains(&r.order_id) {
                        continue;
                    }
                    let Some((_, _, _, pay, _)) = self.orders.iter().find(|o| o.0 == r.order_id) else { continue };
                    let outcome = match pay {
                        Pay::Succeed => Event::ChargeSucceeded(ChargeSucceeded {
                            order_id: r.order_id.clone(),
                            user_id: r.user_id.clone(),
                            payment_id: Id::from(format!("pay-{}", r.order_id).as_str()),
                            amount: r.amount.clone(),
                            authorization_code: "A1".into(),
                        }),
                        Pay::Decline | Pay::InsufficientFunds => Event::ChargeFailed(ChargeFailed {
                            order_id: r.order_id.clone(),
                            user_id: r.user_id.clone(),
                            reason: if matches!(pay, Pay::Decline) { "card_declined" } else { "insufficient_funds" }.into(),
                            retryable: false,
                        }),
                        Pay::Never => continue,
                    };
                    self.answered.insert(r.order_id.clone());
                    let stamped = self.stamp(outcome);
                    batch.push(stamped);
                }
                Event::RefundApproved(r) => {
                    if self.refunds_answered.insert(r.refund_id.clone()) {
                        let stamped = self.stamp(Event::PaymentRefunded(PaymentRefunded {
                            order_id: r.order_id,
                            user_id: r.user_id,
                            refund_id: r.refund_id,
                            payment_id: r.payment_id,
                            amount: r.amount,
                        }));
                        batch.push(stamped);
                    }
                }
                _ => {}
            }
        }
        self.append(&mut batch).await;
    }
}

async fn end_positions(log: &dyn EventLog) -> Vec<Position> {
    let mut out = Vec::new();
    for topic in ["catalog", "inventory", "users", "carts", "orders", "payments"] {
        for (p, end) in log.end_offsets(topic).await.unwrap().into_iter().enumerate() {
            // Sources: the last record (what the views must pass; none yet: nothing to wait
            // for). `payments` is not a source: compared only, to see new requests.
            let offset = if topic == "payments" { end } else { end.checked_sub(1).unwrap_or(u64::MAX) };
            out.push(Position::new(topic, p as u32, offset));
        }
    }
    out
}

/// Every record of every partition of `topic`, per partition in offset order.
async fn read_topic(log: &dyn EventLog, topic: &str) -> Vec<Vec<Vec<u8>>> {
    let ends = log.end_offsets(topic).await.unwrap();
    let mut out = Vec::new();
    for (p, end) in ends.into_iter().enumerate() {
        let mut records = Vec::new();
        if end > 0 {
            let mut reader = log.reader(&[Position::new(topic, p as u32, 0)]).unwrap();
            let mut empty_polls = 0;
            while (records.len() as u64) < end {
                let batch = reader.poll(10_000, Duration::from_secs(1)).unwrap();
                empty_polls = if batch.is_empty() { empty_polls + 1 } else { 0 };
                assert!(empty_polls < 10, "{topic}/{p}: read {} of {end} records", records.len());
                records.extend(batch.into_iter().map(|r| r.value.unwrap_or_default()));
            }
        }
        out.push(records);
    }
    out
}

async fn run(actions: Vec<Action>, workers: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap());
    for topic in ["catalog", "inventory", "users", "interactions", "carts", "orders", "payments", "decisions", "dlq"] {
        log.ensure_topic(&TopicSpec::new(topic, PARTITIONS)).await.unwrap();
    }
    let views = Arc::new(Views::new());
    // Available stock is never negative at any publication, not only at the end.
    let negative = Arc::new(AtomicBool::new(false));
    {
        let (v, n) = (Arc::downgrade(&views), negative.clone());
        views.on_change(Box::new(move |_| {
            if let Some(v) = v.upgrade() {
                if v.stock_available.snapshot().iter().any(|(_, r)| r.available < 0 || r.held < 0) {
                    n.store(true, Ordering::SeqCst);
                }
            }
        }));
    }
    let config = PipelineConfig { workers, data_dir: dir.path().join("pipeline"), ..PipelineConfig::default() };
    let (l, v) = (log.clone(), views.clone());
    let handle = tokio::task::spawn_blocking(move || pipeline::start(config, l, Some(v))).await.unwrap().unwrap();
    // A failed assertion returns early: the workers must still stop, or dropping the handle
    // (which joins them) would wait forever.
    let _stop = StopOnDrop(handle.stop_flag());

    let mut h = Harness { log: log.clone(), views: views.clone(), orders: vec![], answered: HashSet::new(), refunds_answered: HashSet::new(), last: None, clock: now() };
    let mut batch: Vec<Envelope> = Vec::new();
    let prices: Vec<i64> = (0..PRODUCTS).map(|i| 250 + 125 * i as i64).collect();
    for i in 0..PRODUCTS {
        let created = h.stamp(Event::ProductCreated(ProductCreated {
            product_id: product(i),
            name: format!("Product {i}"),
            description: String::new(),
            price: Money::new(prices[i], "EUR"),
            sku: String::new(),
            category_id: Id::from(format!("c{}", i % 2).as_str()),
            brand_id: "b".into(),
            supplier_id: "s".into(),
        }));
        batch.push(created);
    }
    h.append(&mut batch).await;

    let requested = |h: &Harness, nth: usize| -> Option<usize> {
        let with_token: Vec<usize> = (0..h.orders.len()).filter(|i| h.orders[*i].4).collect();
        (!with_token.is_empty()).then(|| with_token[nth % with_token.len()])
    };
    for (step, action) in actions.iter().enumerate() {
        let order_at = |h: &Harness, n: usize| (!h.orders.is_empty()).then(|| h.orders[n % h.orders.len()].clone());
        let event = match action.clone() {
            Action::Receive { product: p, warehouse, quantity } => Some(Event::StockReceived(StockReceived {
                product_id: product(p),
                warehouse_id: Id::from(format!("w{warehouse}").as_str()),
                quantity,
            })),
            Action::Adjust { product: p, warehouse, delta } => Some(Event::StockAdjusted(StockAdjusted {
                product_id: product(p),
                warehouse_id: Id::from(format!("w{warehouse}").as_str()),
                delta,
                reason: "count".into(),
            })),
            Action::Order { user: u, lines, token, pay } => {
                let order_id = Id::from(format!("o{step}").as_str());
                let lines: Vec<OrderLine> = lines
                    .into_iter()
                    .map(|(p, quantity)| OrderLine { product_id: product(p), quantity, unit_price: Money::new(prices[p], "EUR") })
                    .collect();
                let total = lines.iter().map(|l| i64::from(l.quantity) * l.unit_price.amount_minor).sum();
                h.orders.push((order_id.clone(), user(u), total, pay, token));
                Some(Event::OrderPlaced(OrderPlaced {
                    order_id,
                    user_id: user(u),
                    lines,
                    address_id: "a".into(),
                    idempotency_key: format!("k{step}"),
                    payment_token: if token { "tok_visa".into() } else { String::new() },
                    from_cart: step % 7 == 0,
                }))
            }
            Action::Answer { nth } => {
                // An answer the saga did not ask for (yet): the saga must cope in any order.
                requested(&h, nth).and_then(|i| {
                    let (order_id, user_id, total, pay, _) = h.orders[i].clone();
                    if !matches!(pay, Pay::Succeed) || !h.answered.insert(order_id.clone()) {
                        return None;
                    }
                    Some(Event::ChargeSucceeded(ChargeSucceeded {
                        payment_id: Id::from(format!("pay-{order_id}").as_str()),
                        order_id,
                        user_id,
                        amount: Money::new(total, "EUR"),
                        authorization_code: "A1".into(),
                    }))
                })
            }
            Action::Cancel { order } => order_at(&h, order).map(|(order_id, user_id, ..)| {
                Event::OrderCancelled(OrderCancelled { order_id, user_id, reason: String::new() })
            }),
            Action::Ship { order } => order_at(&h, order).map(|(order_id, user_id, ..)| {
                Event::OrderStatusChanged(OrderStatusChanged { order_id, user_id, status: OrderStatus::Shipped })
            }),
            Action::Deliver { order } => order_at(&h, order).map(|(order_id, user_id, ..)| {
                Event::OrderStatusChanged(OrderStatusChanged { order_id, user_id, status: OrderStatus::Delivered })
            }),
            Action::Refund { order, amount } => order_at(&h, order).map(|(order_id, user_id, ..)| {
                Event::RefundRequested(RefundRequested {
                    refund_id: Id::from(format!("r{step}").as_str()),
                    order_id,
                    user_id,
                    amount: Money::new(amount, "EUR"),
                    reason: String::new(),
                })
            }),
            Action::SubmitPayment { order } => order_at(&h, order).map(|(order_id, user_id, ..)| {
                Event::PaymentSubmitted(PaymentSubmitted { order_id, user_id, token: "tok_visa".into() })
            }),
            Action::Cart { user: u, product: p, op, quantity } => Some(match op {
                0 => Event::CartItemAdded(CartItemChanged { user_id: user(u), product_id: product(p), quantity: quantity.max(1) }),
                1 => Event::CartItemRemoved(CartItemChanged { user_id: user(u), product_id: product(p), quantity: quantity.max(1) }),
                2 => Event::CartQuantitySet(CartQuantitySet { user_id: user(u), product_id: product(p), quantity }),
                _ => Event::CartCleared(CartCleared { user_id: user(u) }),
            }),
            Action::ClockJump { user: u } => {
                h.clock += 20 * 60 * 1_000;
                Some(Event::PaymentDeadline(PaymentDeadline { order_id: "clock".into(), user_id: user(u), deadline: h.clock }))
            }
            Action::Retry => {
                h.append(&mut batch).await;
                if let Some(last) = h.last.clone() {
                    batch.push(last);
                }
                None
            }
            Action::Settle => {
                h.append(&mut batch).await;
                h.quiesce().await;
                None
            }
        };
        if let Some(event) = event {
            let stamped = h.stamp(event);
            batch.push(stamped);
        }
        if step % 3 == 2 {
            h.append(&mut batch).await;
            h.answer_payment_requests().await;
        }
    }
    h.append(&mut batch).await;
    h.quiesce().await;
    // Answers for orders whose plan is to pay after all (late: after expiry or cancel).
    h.quiesce().await;

    // The model, from the log alone.
    let mut model = Model::new(shopflow_dataflow::state::DEFAULT_HOLD_TIMEOUT_MS);
    for topic in ["catalog", "inventory", "orders", "carts"] {
        for partition in read_topic(log.as_ref(), topic).await {
            model.partition(&partition);
        }
    }
    prop_assert!(model.oversold.is_empty(), "held exceeded on hand: {:?}", model.oversold);
    prop_assert!(!negative.load(Ordering::SeqCst), "a publication showed negative available stock");

    // Every hold answer the pipeline wrote is the model's.
    let mut answers = 0;
    for partition in read_topic(log.as_ref(), "orders").await {
        for bytes in partition {
            if let Ok(Envelope { event: Event::HoldDecided(d), .. }) = Envelope::decode(&bytes) {
                let expected = model.answers.get(&(d.order_id.clone(), d.product_id.clone()));
                prop_assert_eq!(expected, Some(&(d.granted, d.holds.clone())), "hold answer for {}/{}", d.order_id, d.product_id);
                answers += 1;
            }
        }
    }
    prop_assert!(answers >= model.answers.len());

    prop_assert_eq!(rows_of(views.orders.snapshot()), model.orders.values().cloned().collect::<Vec<_>>());
    prop_assert_eq!(rows_of(views.payments.snapshot()), model.payments.values().cloned().collect::<Vec<_>>());
    prop_assert_eq!(rows_of(views.stock_available.snapshot()), model.stock_available());
    prop_assert_eq!(rows_of(views.carts.snapshot()), model.carts.values().cloned().collect::<Vec<_>>());
    let mut user_orders = model.user_orders();
    user_orders.sort_by(|a, b| (&a.user_id, &a.order_id).cmp(&(&b.user_id, &b.order_id)));
    prop_assert_eq!(rows_of(views.user_orders.snapshot()), user_orders);
    prop_assert_eq!(rows_of(views.top_sellers.snapshot()), model.top_sellers(i64::MIN));
    let checked = now();
    prop_assert_eq!(rows_of(views.top_sellers_hour.snapshot()), model.top_sellers(checked - HOUR));
    prop_assert_eq!(rows_of(views.top_sellers_day.snapshot()), model.top_sellers(checked - model::DAY));
    let mut revenue = model.revenue_rows();
    revenue.sort_by_key(|r| (r.day.clone(), r.category_id.clone().unwrap_or_else(|| "-".into()), r.currency.clone()));
    prop_assert_eq!(rows_of(views.revenue.snapshot()), revenue);
    let mut latest = model.latest_orders(100);
    latest.sort_by(|a, b| (&a.order_id, &a.product_id).cmp(&(&b.order_id, &b.product_id)));
    prop_assert_eq!(rows_of(views.latest_orders.snapshot()), latest);

    tokio::task::spawn_blocking(move || handle.stop()).await.unwrap().unwrap();
    Ok(())
}

proptest! {
    // 24 random logs by default; SAGA_CASES to run more (or fewer) without editing.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SAGA_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24),
        max_shrink_iters: std::env::var("SAGA_SHRINK").ok().and_then(|v| v.parse().ok()).unwrap_or(40),
        ..ProptestConfig::default()
    })]

    #[test]
    fn views_equal_a_from_scratch_recomputation_and_stock_never_goes_negative(
        actions in proptest::collection::vec(action(), 1..60),
        workers in 1..=2usize,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let workers = std::env::var("SAGA_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(workers);
        eprintln!("saga case: {} actions, {workers} worker(s)", actions.len());
        runtime.block_on(run(actions, workers))?;
        eprintln!("saga case done");
    }
}

/// The rows of a table snapshot, in key order.
fn rows_of<K, V>(rows: Vec<(K, V)>) -> Vec<V> {
    rows.into_iter().map(|(_, r)| r).collect()
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
