//! What the payment tests share: a log (embedded in a temp dir, or Kafka in a namespace of its
//! own on the test broker), a gateway, running workers and notifiers, and reading a topic back.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shopflow_events::types::{ChargeRequested, RefundApproved};
use shopflow_events::{Envelope, Event, Id, Money, Topic};
use shopflow_ingest::{event_topic_spec, EmbeddedLog, EventLog, KafkaLog, Position, Record};
use shopflow_payments::notifier::Notifier;
use shopflow_payments::worker::PaymentWorker;
use shopflow_payments::{Gateway, GatewayConfig, NotifierConfig, NotifierProgress, PaymentsError, RunningGateway, WorkerConfig, WorkerProgress};
use tokio::sync::watch;

pub const DEADLINE: Duration = Duration::from_secs(120);
pub const PARTITIONS: u32 = 3;

/// A log and what keeps it alive (its directory, or the broker handle).
pub struct TestLog {
    pub log: Arc<dyn EventLog>,
    _dir: Option<tempfile::TempDir>,
    _broker: Option<shopflow_ingest::testing::BrokerHandle>,
}

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Embedded,
    Kafka,
}

pub async fn test_log(backend: Backend) -> TestLog {
    let (log, dir, broker): (Arc<dyn EventLog>, _, _) = match backend {
        Backend::Embedded => {
            let dir = tempfile::tempdir().unwrap();
            (Arc::new(EmbeddedLog::open(&dir.path().join("log")).unwrap()), Some(dir), None)
        }
        Backend::Kafka => {
            let broker = shopflow_ingest::testing::kafka_broker();
            (Arc::new(KafkaLog::connect(broker.config()).unwrap()), None, Some(broker))
        }
    };
    for topic in Topic::ALL {
        log.ensure_topic(&event_topic_spec(topic, PARTITIONS)).await.unwrap();
    }
    TestLog { log, _dir: dir, _broker: broker }
}

pub async fn start_gateway(dir: &Path, latency_ms: u64) -> RunningGateway {
    Gateway::start(GatewayConfig { listen: "127.0.0.1:0".parse().unwrap(), data_dir: dir.to_path_buf(), latency_ms }).await.unwrap()
}

/// Fast retries, so tests of the retry budget take milliseconds.
pub fn worker_config(gateway_url: &str) -> WorkerConfig {
    WorkerConfig {
        gateway_url: gateway_url.to_owned(),
        group: format!("payments-{}", uuid::Uuid::new_v4().simple()),
        request_timeout_ms: 5_000,
        concurrency: 8,
        poll_max: 64,
        retry_initial_ms: 10,
        retry_max_ms: 100,
        retry_attempts: 5,
    }
}

pub fn charge_request(order: &str, user: &str, amount_minor: i64, token: &str) -> Envelope {
    Envelope::new(Event::ChargeRequested(ChargeRequested {
        order_id: Id::from(order),
        user_id: Id::from(user),
        amount: Money::new(amount_minor, "EUR"),
        token: token.into(),
    }))
}

pub fn refund_approved(order: &str, user: &str, refund: &str, payment: &str, amount_minor: i64) -> Envelope {
    Envelope::new(Event::RefundApproved(RefundApproved {
        order_id: Id::from(order),
        user_id: Id::from(user),
        refund_id: Id::from(refund),
        payment_id: Id::from(payment),
        amount: Money::new(amount_minor, "EUR"),
    }))
}

pub async fn append(log: &dyn EventLog, envelopes: &[Envelope]) -> Vec<Position> {
    log.append(shopflow_shopdata::records(envelopes)).await.unwrap()
}

/// Every record of `topic` up to its current end offsets.
pub async fn read_topic(log: &Arc<dyn EventLog>, topic: &str) -> Vec<Record> {
    let ends = log.end_offsets(topic).await.unwrap();
    let log = log.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let starts: Vec<Position> = (0..ends.len()).map(|p| Position::new(topic.as_str(), p as u32, 0)).collect();
        let mut reader = log.reader(&starts).unwrap();
        let mut next = vec![0u64; ends.len()];
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + DEADLINE;
        while next.iter().zip(&ends).any(|(n, e)| n < e) {
            assert!(std::time::Instant::now() < deadline, "reading {topic} back timed out");
            for r in reader.poll(1_000, Duration::from_millis(200)).unwrap() {
                if r.offset < ends[r.partition as usize] {
                    next[r.partition as usize] = r.offset + 1;
                    out.push(r);
                }
            }
        }
        out
    })
    .await
    .unwrap()
}

/// The events of `topic`, decoded (records that are not events are left out).
pub async fn read_events(log: &Arc<dyn EventLog>, topic: &str) -> Vec<(Record, Envelope)> {
    read_topic(log, topic)
        .await
        .into_iter()
        .filter_map(|r| {
            let e = Envelope::decode(r.value.as_deref()?).ok()?;
            Some((r, e))
        })
        .collect()
}

pub async fn end_offsets(log: &dyn EventLog, topic: Topic) -> BTreeMap<u32, u64> {
    log.end_offsets(topic.name()).await.unwrap().into_iter().enumerate().map(|(p, o)| (p as u32, o)).collect()
}

/// A worker running in the background.
pub struct RunningWorker {
    pub progress: watch::Receiver<WorkerProgress>,
    stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<Result<WorkerProgress, PaymentsError>>,
}

pub fn spawn_worker(log: Arc<dyn EventLog>, config: WorkerConfig) -> RunningWorker {
    let worker = PaymentWorker::new(log, config);
    let progress = worker.progress();
    let (stop, stopped) = watch::channel(false);
    RunningWorker { progress, stop, task: tokio::spawn(worker.run(stopped)) }
}

impl RunningWorker {
    /// Waits until the worker has committed everything `payments` holds now.
    pub async fn caught_up(&mut self, log: &dyn EventLog) {
        let ends = end_offsets(log, Topic::Payments).await;
        let wait = self.progress.wait_for(|p| ends.iter().all(|(k, end)| *end == 0 || p.committed.get(k).is_some_and(|c| c >= end)));
        tokio::time::timeout(DEADLINE, wait).await.expect("the worker did not catch up in time").unwrap();
    }

    pub async fn stop(self) -> WorkerProgress {
        self.stop.send(true).unwrap();
        tokio::time::timeout(DEADLINE, self.task).await.expect("the worker did not stop").unwrap().expect("the worker failed")
    }
}

/// A notifier running in the background.
pub struct RunningNotifier {
    pub progress: watch::Receiver<NotifierProgress>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<NotifierProgress, PaymentsError>>,
}

pub fn spawn_notifier(log: Arc<dyn EventLog>, config: NotifierConfig) -> RunningNotifier {
    let notifier = Notifier::new(log, config);
    let progress = notifier.progress();
    let (stop, stopped) = watch::channel(false);
    RunningNotifier { progress, stop, task: tokio::spawn(notifier.run(stopped)) }
}

impl RunningNotifier {
    pub async fn caught_up(&mut self, log: &dyn EventLog) {
        let ends = end_offsets(log, Topic::Decisions).await;
        let wait = self.progress.wait_for(|p| ends.iter().all(|(k, end)| *end == 0 || p.committed.get(k).is_some_and(|c| c >= end)));
        tokio::time::timeout(DEADLINE, wait).await.expect("the notifier did not catch up in time").unwrap();
    }

    pub async fn stop(self) -> NotifierProgress {
        self.stop.send(true).unwrap();
        tokio::time::timeout(DEADLINE, self.task).await.expect("the notifier did not stop").unwrap().expect("the notifier failed")
    }
}
