//! The payment worker against a real gateway and a real log (embedded, and Kafka on the test
//! broker): requests in, outcomes out with derived ids, offsets committed only after the
//! outcomes are durable, nothing charged or reported twice across restarts and crashes.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use std::sync::Mutex;
use shopflow_events::{Envelope, Event, Topic};
use shopflow_ingest::{EventLog, LogError, LogReader, OutRecord, Position, TopicSpec};
use shopflow_payments::{outcome_event_id, WorkerConfig};
use support::*;

fn outcome_of(event: &Event) -> Option<(&str, String)> {
    match event {
        Event::ChargeSucceeded(e) => Some((e.order_id.as_str(), "succeeded".into())),
        Event::ChargeFailed(e) => {
            assert!(!e.retryable, "a failure the worker writes is final");
            Some((e.order_id.as_str(), format!("failed:{}", e.reason)))
        }
        Event::PaymentRefunded(e) => Some((e.refund_id.as_str(), "refunded".into())),
        Event::RefundFailed(e) => Some((e.refund_id.as_str(), format!("refund_failed:{}", e.reason))),
        _ => None,
    }
}

async fn requests_in_outcomes_out(backend: Backend) {
    let log = test_log(backend).await;
    let gateway_dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(gateway_dir.path(), 0).await;
    let charges = [
        ("o-visa", "tok_visa", "succeeded"),
        ("o-mc", "tok_mastercard", "succeeded"),
        ("o-declined", "tok_chargeDeclined", "failed:card_declined"),
        ("o-funds", "tok_chargeDeclinedInsufficientFunds", "failed:insufficient_funds"),
        ("o-expired", "tok_chargeDeclinedExpiredCard", "failed:expired_card"),
        ("o-transient", "tok_transient", "succeeded"),
        ("o-unknown", "tok_doesNotExist", "failed:invalid_token"),
    ];
    let requests: Vec<Envelope> =
        charges.iter().enumerate().map(|(i, (order, token, _))| charge_request(order, &format!("u-{i}"), 1_000 + i as i64, token)).collect();
    append(log.log.as_ref(), &requests).await;
    // A record that is not an event, and an event that is not a request: skipped, not fatal.
    log.log.append(vec![OutRecord::keyed("payments", "x", b"{not json".to_vec())]).await.unwrap();
    log.log.append(vec![OutRecord::keyed("payments", "o-x", serde_json::to_vec(&serde_json::json!({"v":1,"id":uuid::Uuid::new_v4(),"ts":1,"type":"order.shipped","data":{"order_id":"o-x"}})).unwrap())]).await.unwrap();

    let config = worker_config(&gateway.url());
    let group = config.group.clone();
    let mut worker = spawn_worker(log.log.clone(), config.clone());
    worker.caught_up(log.log.as_ref()).await;

    let outcomes = read_events(&log.log, "orders").await;
    assert_eq!(outcomes.len(), charges.len(), "one outcome per request");
    let by_order: HashMap<&str, (&shopflow_ingest::Record, &Envelope)> =
        outcomes.iter().map(|(r, e)| (outcome_of(&e.event).expect("an outcome").0, (r, e))).collect();
    for ((order, _, expected), request) in charges.iter().zip(&requests) {
        let (record, envelope) = by_order[order];
        assert_eq!(outcome_of(&envelope.event).unwrap().1, *expected, "{order}");
        assert_eq!(envelope.id, outcome_event_id(request.id), "{order}: the id derives from the request's");
        let Event::ChargeRequested(req) = &request.event else { unreachable!() };
        assert_eq!(record.key, req.user_id.as_str().as_bytes(), "{order}: keyed by the user id");
        if let Event::ChargeSucceeded(ok) = &envelope.event {
            assert_eq!(ok.amount, req.amount);
            let ledger = gateway.listing();
            let charge = ledger.charges.iter().find(|c| c.idempotency_key == *order).unwrap();
            assert_eq!(charge.payment_id(), Some(ok.payment_id.as_str()), "{order}: the gateway's payment id");
        }
    }

    // Refunds: one within what was captured, one beyond it.
    let Event::ChargeSucceeded(paid) = &by_order["o-visa"].1.event else { panic!("o-visa was paid") };
    let refunds = [
        refund_approved("o-visa", "u-0", "r-ok", paid.payment_id.as_str(), 400),
        refund_approved("o-visa", "u-0", "r-too-much", paid.payment_id.as_str(), 601),
    ];
    // One after the other: requests in flight at once reach the gateway in any order, and
    // whichever comes first is made (the saga never approves more than is refundable, so in
    // the shop the two never race for the same money).
    for refund in &refunds {
        append(log.log.as_ref(), std::slice::from_ref(refund)).await;
        worker.caught_up(log.log.as_ref()).await;
    }
    let outcomes = read_events(&log.log, "orders").await;
    let found: BTreeMap<String, (uuid::Uuid, String)> = outcomes
        .iter()
        .filter_map(|(_, e)| outcome_of(&e.event).map(|(k, o)| (k.to_owned(), (e.id, o))))
        .collect();
    assert_eq!(found["r-ok"], (outcome_event_id(refunds[0].id), "refunded".into()));
    assert_eq!(found["r-too-much"], (outcome_event_id(refunds[1].id), "refund_failed:amount_too_large".into()));

    let progress = worker.stop().await;
    assert_eq!((progress.charges_succeeded, progress.charges_failed, progress.refunds, progress.refunds_failed), (3, 4, 1, 1));
    assert_eq!(progress.skipped, 2);
    let ends = end_offsets(log.log.as_ref(), Topic::Payments).await;
    let committed: BTreeMap<u32, u64> =
        log.log.committed(&group, "payments").await.unwrap().into_iter().enumerate().map(|(p, o)| (p as u32, o.unwrap_or(0))).collect();
    assert_eq!(committed, ends, "everything handled is committed");

    // A restart finds nothing to do: no new outcome, no new charge.
    let orders_before = end_offsets(log.log.as_ref(), Topic::Orders).await;
    let charges_before = gateway.listing().charges.len();
    let mut again = spawn_worker(log.log.clone(), config);
    again.caught_up(log.log.as_ref()).await;
    assert_eq!(again.stop().await.outcomes(), 0);
    assert_eq!(end_offsets(log.log.as_ref(), Topic::Orders).await, orders_before);
    assert_eq!(gateway.listing().charges.len(), charges_before);
    gateway.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_in_outcomes_out_on_the_embedded_log() {
    requests_in_outcomes_out(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_in_outcomes_out_on_kafka() {
    requests_in_outcomes_out(Backend::Kafka).await;
}

#[derive(Clone, Debug)]
enum Op {
    /// Outcome event ids appended (durably: the append returned Ok).
    Appended(Vec<uuid::Uuid>),
    Committed(Vec<Position>),
}

/// A log that records appends and commits in the order they completed, and fails the first
/// `fail_appends` appends to `orders` as unavailable.
struct ProbeLog {
    inner: Arc<dyn EventLog>,
    ops: Mutex<Vec<Op>>,
    fail_appends: AtomicU32,
    /// Appends to `orders` wait for a permit here (and give it back), when set.
    gate: Option<tokio::sync::Semaphore>,
}

impl ProbeLog {
    fn new(inner: Arc<dyn EventLog>, fail_appends: u32) -> Self {
        Self { inner, ops: Mutex::new(Vec::new()), fail_appends: AtomicU32::new(fail_appends), gate: None }
    }
}

#[async_trait]
impl EventLog for ProbeLog {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ensure_topic(&self, spec: &TopicSpec) -> Result<(), LogError> {
        self.inner.ensure_topic(spec).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.inner.partitions(topic).await
    }
    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, LogError> {
        let to_orders = records.iter().any(|r| r.topic == "orders");
        if to_orders && self.fail_appends.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(LogError::Unavailable("probe: the log is down".into()));
        }
        if let (true, Some(gate)) = (to_orders, &self.gate) {
            let _permit = gate.acquire().await.unwrap();
        }
        let ids = records.iter().filter_map(|r| Envelope::decode(r.value.as_deref()?).ok()).map(|e| e.id).collect();
        let positions = self.inner.append(records).await?;
        if to_orders {
            self.ops.lock().unwrap().push(Op::Appended(ids));
        }
        Ok(positions)
    }
    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        self.inner.end_offsets(topic).await
    }
    fn reader(&self, from: &[Position]) -> Result<Box<dyn LogReader>, LogError> {
        self.inner.reader(from)
    }
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        self.inner.committed(group, topic).await
    }
    async fn commit(&self, group: &str, next: &[Position]) -> Result<(), LogError> {
        self.inner.commit(group, next).await?;
        self.ops.lock().unwrap().push(Op::Committed(next.to_vec()));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn offsets_are_committed_only_after_the_outcomes_are_durable() {
    let base = test_log(Backend::Embedded).await;
    let probe = Arc::new(ProbeLog::new(base.log.clone(), 3));
    let log: Arc<dyn EventLog> = probe.clone();
    let gateway_dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(gateway_dir.path(), 20).await;
    let tokens = ["tok_visa", "tok_chargeDeclined", "tok_transient", "tok_mastercard"];
    let requests: Vec<Envelope> =
        (0..60).map(|i| charge_request(&format!("o-{i}"), &format!("u-{}", i % 7), 100 + i, tokens[i as usize % tokens.len()])).collect();
    let positions = append(log.as_ref(), &requests).await;
    let mut worker = spawn_worker(log.clone(), worker_config(&gateway.url()));
    worker.caught_up(log.as_ref()).await;
    worker.stop().await;

    // Replay the probe's history: a commit past a request must come after its outcome's append.
    let request_at: HashMap<(u32, u64), uuid::Uuid> =
        positions.iter().zip(&requests).map(|(p, e)| ((p.partition, p.offset), outcome_event_id(e.id))).collect();
    let mut durable: HashSet<uuid::Uuid> = HashSet::new();
    let mut commits = 0;
    for op in probe.ops.lock().unwrap().clone() {
        match op {
            Op::Appended(ids) => durable.extend(ids),
            Op::Committed(next) => {
                commits += 1;
                for pos in next {
                    assert_eq!(pos.topic, "payments");
                    for offset in 0..pos.offset {
                        let id = request_at[&(pos.partition, offset)];
                        assert!(durable.contains(&id), "committed past payments/{}@{offset} before its outcome was appended", pos.partition);
                    }
                }
            }
        }
    }
    assert!(commits > 0);
    assert_eq!(probe.fail_appends.load(Ordering::SeqCst), 0, "the failed appends were retried");
    assert_eq!(durable.len(), requests.len());
    gateway.stop().await.unwrap();
}

/// While the outcomes of the first requests are being appended (held here until released),
/// the worker keeps charging: a slow durable write does not stop the requests behind it. Once
/// the log answers, every outcome is appended and committed.
#[tokio::test(flavor = "multi_thread")]
async fn charges_go_on_while_outcomes_are_being_appended() {
    let base = test_log(Backend::Embedded).await;
    let probe = Arc::new(ProbeLog { gate: Some(tokio::sync::Semaphore::new(0)), ..ProbeLog::new(base.log.clone(), 0) });
    let log: Arc<dyn EventLog> = probe.clone();
    let gateway_dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(gateway_dir.path(), 0).await;
    let requests: Vec<Envelope> = (0..40).map(|i| charge_request(&format!("o-{i}"), &format!("u-{i}"), 100 + i, "tok_visa")).collect();
    append(log.as_ref(), &requests).await;
    let config = WorkerConfig { concurrency: 4, ..worker_config(&gateway.url()) };
    let mut worker = spawn_worker(log.clone(), config);

    // Waiting on its flush, the worker could have charged at most two rounds of `concurrency`.
    let charged = async {
        loop {
            let charges = shopflow_payments::read_ledger(gateway_dir.path()).unwrap().charges.len();
            if charges == requests.len() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(DEADLINE, charged).await.expect("every request charged while the first append was held");
    assert!(probe.ops.lock().unwrap().is_empty(), "nothing appended or committed before the gate opened");

    probe.gate.as_ref().unwrap().add_permits(1);
    worker.caught_up(log.as_ref()).await;
    let progress = worker.stop().await;
    assert_eq!(progress.charges_succeeded, requests.len() as u64);
    let outcomes = read_events(&log, Topic::Orders.name()).await;
    assert_eq!(outcomes.len(), requests.len(), "each outcome appended once");
    gateway.stop().await.unwrap();
}

/// A gateway that hangs up on every request: the worker learns nothing of the charge, so it
/// neither fails nor commits it however long it takes, and once a real gateway answers on that
/// port the order is charged once and its success reported once.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_down_past_the_retry_budget_holds_the_charge_until_it_answers_then_charges_once() {
    let log = test_log(Backend::Embedded).await;
    let hangup = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = hangup.local_addr().unwrap();
    let (attempts_tx, mut attempts) = tokio::sync::mpsc::unbounded_channel();
    let hanging_up = tokio::spawn(async move {
        loop {
            let (connection, _) = hangup.accept().await.unwrap();
            drop(connection);
            let _ = attempts_tx.send(());
        }
    });
    let config = worker_config(&format!("http://{addr}"));
    let budget = config.retry_attempts as usize;
    let request = charge_request("o-1", "u-1", 500, "tok_visa");
    append(log.log.as_ref(), std::slice::from_ref(&request)).await;
    let mut worker = spawn_worker(log.log.clone(), config);
    // Twice the retry budget of unanswered attempts.
    for _ in 0..2 * budget {
        let attempt = tokio::time::timeout(std::time::Duration::from_secs(60), attempts.recv()).await;
        assert!(matches!(attempt, Ok(Some(()))), "the worker stopped trying before the gateway answered");
    }
    assert!(read_events(&log.log, "orders").await.is_empty(), "no outcome is reported while the gateway has not answered");
    hanging_up.abort();
    let _ = hanging_up.await;

    let gateway_dir = tempfile::tempdir().unwrap();
    let gateway = shopflow_payments::Gateway::start(shopflow_payments::GatewayConfig { listen: addr, data_dir: gateway_dir.path().to_path_buf(), latency_ms: 0 }).await.unwrap();
    worker.caught_up(log.log.as_ref()).await;
    worker.stop().await;
    let outcomes = read_events(&log.log, "orders").await;
    assert_eq!(outcomes.len(), 1);
    assert!(matches!(&outcomes[0].1.event, Event::ChargeSucceeded(_)), "{:?}", outcomes[0].1.event);
    assert_eq!(outcomes[0].1.id, outcome_event_id(request.id));
    assert_eq!(gateway.listing().charges.iter().filter(|c| c.idempotency_key == "o-1").count(), 1);
    gateway.stop().await.unwrap();
}

/// The in-process version of the `kill -9` test (`tests/payments.rs` at the root does it to a
/// real process): the worker's task is aborted with charges in flight, at whatever await it
/// is, and a new one takes over.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_aborted_mid_charge_resumes_without_charging_twice() {
    let log = test_log(Backend::Embedded).await;
    let gateway_dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(gateway_dir.path(), 100).await;
    let requests: Vec<Envelope> = (0..60).map(|i| charge_request(&format!("o-{i}"), &format!("u-{}", i % 5), 100, "tok_visa")).collect();
    append(log.log.as_ref(), &requests).await;
    let config = worker_config(&gateway.url());
    let worker = spawn_worker(log.log.clone(), config.clone());
    let some_charged = async {
        while gateway.listing().charges.len() < 15 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await; // condition poll
        }
    };
    tokio::time::timeout(DEADLINE, some_charged).await.expect("charges started");
    worker.task.abort();
    let _ = worker.task.await;
    assert!(gateway.listing().charges.len() < requests.len(), "aborted before the end");

    let mut worker = spawn_worker(log.log.clone(), config);
    worker.caught_up(log.log.as_ref()).await;
    worker.stop().await;
    let per_key = gateway.listing().charges_per_key().into_iter().map(|(k, n)| (k.to_owned(), n)).collect::<HashMap<_, _>>();
    assert_eq!(per_key.len(), requests.len());
    assert!(per_key.values().all(|n| *n == 1), "{per_key:?}");
    let mut ids: HashMap<String, HashSet<uuid::Uuid>> = HashMap::new();
    for (_, e) in read_events(&log.log, "orders").await {
        let (order, outcome) = outcome_of(&e.event).unwrap();
        assert_eq!(outcome, "succeeded");
        ids.entry(order.to_owned()).or_default().insert(e.id);
    }
    assert_eq!(ids.len(), requests.len(), "every order has an outcome");
    assert!(ids.values().all(|s| s.len() == 1), "one distinct outcome id per order");
    gateway.stop().await.unwrap();
}
