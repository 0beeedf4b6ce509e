//! `kill -9` of the real `shopflow payments` process in the middle of charging: ~200 charge
//! requests on `payments`, a gateway that takes 300 ms per charge, the worker killed with
//! charges in flight and restarted. Afterwards the gateway has charged each order exactly
//! once, and `orders` holds exactly one distinct outcome event id per order (a re-appended
//! outcome repeats its id, which the pipeline drops), and no order lacks one.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shopflow_events::types::ChargeRequested;
use shopflow_events::{Envelope, Event, Id, Money, Topic};
use shopflow_ingest::{event_topic_spec, EventLog, KafkaConfig, KafkaLog, Position};
use shopflow_payments::{outcome_event_id, Gateway, GatewayConfig};
use support::*;

const ORDERS: usize = 200;
const PARTITIONS: u32 = 4;
/// The worker's default consumer group (`payments.worker.group`).
const GROUP: &str = "payments-worker";

/// Token of order `i`, and the outcome it must get.
fn token_of(i: usize) -> (&'static str, &'static str) {
    match i % 10 {
        0 => ("tok_chargeDeclined", "failed:card_declined"),
        1 => ("tok_transient", "succeeded"),
        2 => ("tok_chargeDeclinedInsufficientFunds", "failed:insufficient_funds"),
        3 => ("tok_mastercard", "succeeded"),
        _ => ("tok_visa", "succeeded"),
    }
}

async fn committed_everything(log: &dyn EventLog) -> bool {
    let ends = log.end_offsets(Topic::Payments.name()).await.unwrap();
    let committed = log.committed(GROUP, Topic::Payments.name()).await.unwrap();
    ends.iter().zip(committed).all(|(end, c)| *end == 0 || c.is_some_and(|c| c >= *end))
}

/// Every record of `orders`, decoded.
fn read_orders(log: &Arc<dyn EventLog>, ends: &[u64]) -> Vec<Envelope> {
    let starts: Vec<Position> = (0..ends.len()).map(|p| Position::new("orders", p as u32, 0)).collect();
    let mut reader = log.reader(&starts).unwrap();
    let mut next = vec![0u64; ends.len()];
    let mut out = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while next.iter().zip(ends).any(|(n, e)| n < e) {
        assert!(Instant::now() < deadline, "reading orders back timed out");
        for record in reader.poll(1_000, Duration::from_millis(200)).unwrap() {
            if record.offset < ends[record.partition as usize] {
                next[record.partition as usize] = record.offset + 1;
                out.push(Envelope::decode(record.value.as_deref().unwrap()).expect("the worker writes valid events"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_payment_worker_mid_charge_charges_each_order_once_and_reports_it_once() {
    let broker = kafka_broker();
    let namespace = unique_namespace();
    let log: Arc<dyn EventLog> = Arc::new(KafkaLog::connect(KafkaConfig::new(broker.addr()).with_namespace(&namespace)).unwrap());
    for topic in Topic::ALL {
        log.ensure_topic(&event_topic_spec(topic, PARTITIONS)).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    // The gateway outlives the worker, as a card processor does.
    let gateway = Gateway::start(GatewayConfig { listen: "127.0.0.1:0".parse().unwrap(), data_dir: dir.path().join("gateway"), latency_ms: 300 })
        .await
        .unwrap();

    let requests: Vec<Envelope> = (0..ORDERS)
        .map(|i| {
            Envelope::new(Event::ChargeRequested(ChargeRequested {
                order_id: Id::from(format!("order-{i}").as_str()),
                user_id: Id::from(format!("user-{}", i % 37).as_str()),
                amount: Money::new(100 + i as i64, "EUR"),
                token: token_of(i).0.into(),
            }))
        })
        .collect();
    log.append(shopflow_shopdata::records(&requests)).await.unwrap();

    let data = dir.path().join("data");
    let url = gateway.url();
    let args = [
        "payments", "--kafka", broker.addr(), "--namespace", &namespace, "--partitions", "4", "--data-dir", data.to_str().unwrap(), "--gateway-url", &url,
    ];
    // Fast retries: the transient card's two failures should not dominate the run.
    let env = [("SHOPFLOW_PAYMENTS__WORKER__CONCURRENCY", "16"), ("SHOPFLOW_PAYMENTS__WORKER__RETRY_INITIAL_MS", "20")];
    let worker = Shopflow::spawn_env(&args, &env, dir.path(), "payments-1");

    // Mid-run: some charges made, many to go, and (at 16 in flight × 300 ms) some in flight.
    let deadline = Instant::now() + DEADLINE;
    while gateway.listing().charges.len() < 40 {
        assert!(Instant::now() < deadline, "the worker charged too little in time: {}", worker.stderr_text());
        tokio::time::sleep(Duration::from_millis(10)).await; // condition poll
    }
    worker.kill9();
    let charged_at_kill = gateway.listing().charges.len();
    assert!(charged_at_kill < ORDERS, "killed before the end ({charged_at_kill} charged)");
    let replays_before = gateway.stats().replays;

    let worker = Shopflow::spawn_env(&args, &env, dir.path(), "payments-2");
    let deadline = Instant::now() + DEADLINE;
    while !committed_everything(log.as_ref()).await {
        assert!(Instant::now() < deadline, "the restarted worker did not finish: {}", worker.stderr_text());
        tokio::time::sleep(Duration::from_millis(100)).await; // condition poll
    }
    worker.terminate();

    // The gateway: exactly one charge per order.
    let ledger = gateway.listing();
    let per_key = ledger.charges_per_key();
    assert_eq!(per_key.len(), ORDERS, "every order was charged (or declined)");
    let twice: Vec<_> = per_key.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "orders charged more than once: {twice:?}");
    assert!(
        gateway.stats().replays > replays_before,
        "the restart re-ran requests the killed worker had already sent (the kill was mid-charge)"
    );

    // `orders`: one distinct outcome id per order, the one derived from its request, and the
    // outcome the card calls for.
    let ends = log.end_offsets("orders").await.unwrap();
    let outcomes = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || read_orders(&log, &ends)).await.unwrap()
    };
    let mut ids: HashMap<String, HashSet<uuid::Uuid>> = HashMap::new();
    let mut results: HashMap<String, String> = HashMap::new();
    for envelope in &outcomes {
        let (order, result) = match &envelope.event {
            Event::ChargeSucceeded(e) => {
                let charge = ledger.charges.iter().find(|c| c.idempotency_key == e.order_id.as_str()).unwrap();
                assert_eq!(charge.payment_id(), Some(e.payment_id.as_str()), "the outcome names the gateway's payment");
                (e.order_id.to_string(), "succeeded".to_owned())
            }
            Event::ChargeFailed(e) => (e.order_id.to_string(), format!("failed:{}", e.reason)),
            other => panic!("unexpected event on orders: {}", other.type_name()),
        };
        ids.entry(order.clone()).or_default().insert(envelope.id);
        results.insert(order, result);
    }
    for (i, request) in requests.iter().enumerate() {
        let order = format!("order-{i}");
        let got = ids.get(&order).unwrap_or_else(|| panic!("{order} has no outcome"));
        assert_eq!(got.len(), 1, "{order}: {} distinct outcome ids", got.len());
        assert!(got.contains(&outcome_event_id(request.id)), "{order}: the id derives from the request's");
        assert_eq!(results[&order], token_of(i).1, "{order}");
    }
    assert_eq!(ids.len(), ORDERS);
    eprintln!(
        "kill -9 test: {charged_at_kill} charged at the kill, {} outcome records for {ORDERS} orders, {} replayed gateway answers",
        outcomes.len(),
        gateway.stats().replays
    );
    gateway.stop().await.unwrap();
}
