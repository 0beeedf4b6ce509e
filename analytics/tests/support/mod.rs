//! What the analytics integration tests share: a chDB adapter process (the shared one from
//! `scripts/test.sh`, or one of a test's own that it can stop and start), a Kafka log in a
//! namespace of its own on the test broker, and a sink running in the background.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shopflow_analytics::{AnalyticsSettings, ClickHouseService, ClickHouseSink, Progress};
use shopflow_events::{Envelope, Topic};
use shopflow_ingest::{event_topic_spec, EventLog, KafkaLog, OutRecord};
use tokio::sync::watch;

pub const DEADLINE: Duration = Duration::from_secs(120);

/// A chDB adapter started by the test: stop it, start it again on the same port and data.
pub struct Adapter {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

fn python() -> PathBuf {
    std::env::var_os("SHOPFLOW_CHDB_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/shopflow/chdb-venv/bin/python")
    })
}

fn adapter_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("adapter/chdb_http.py")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// True once the adapter answers `/ping`.
pub fn pings(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.contains("Ok.")
}

impl Adapter {
    pub fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = Adapter { port: free_port(), dir: tmp.path().to_path_buf(), child: None, _tmp: Some(tmp) };
        a.restart();
        a
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(python())
            .arg(adapter_script())
            .args(["--port", &self.port.to_string(), "--path"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the chdb adapter (scripts/clickhouse.sh install)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !pings(self.port) {
            assert!(Instant::now() < deadline, "the chdb adapter did not come up on {}", self.port);
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the chdb adapter exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(50)); // probe interval
        }
    }

    /// SIGKILL: ClickHouse gone at once, mid-request or not.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shared adapter of `scripts/test.sh`, or a private one when run alone.
pub enum ClickHouse {
    Shared(String),
    Own(Adapter),
}

impl ClickHouse {
    pub fn get() -> Self {
        match std::env::var("SHOPFLOW_TEST_CLICKHOUSE") {
            Ok(url) if !url.is_empty() => ClickHouse::Shared(url),
            _ => ClickHouse::Own(Adapter::start()),
        }
    }

    pub fn url(&self) -> String {
        match self {
            ClickHouse::Shared(url) => url.clone(),
            ClickHouse::Own(a) => a.url(),
        }
    }
}

/// Settings for a test: its own database, small batches so a test sees many of them.
pub fn settings() -> AnalyticsSettings {
    AnalyticsSettings {
        database: format!("t_{}", uuid::Uuid::new_v4().simple()),
        batch_max_rows: 2_000,
        batch_max_wait_ms: 100,
        max_pending_records: 20_000,
        poll_max: 1_000,
        retry_initial_ms: 50,
        retry_max_ms: 1_000,
        ..AnalyticsSettings::default()
    }
}

pub async fn service(url: &str, settings: &AnalyticsSettings) -> ClickHouseService {
    let client = shopflow_analytics::client(settings, url);
    shopflow_analytics::migrations::migrate(&client, &settings.database).await.expect("migrate");
    ClickHouseService::new(client)
}

/// A Kafka log in a namespace of its own, with every event topic (2 partitions each).
pub struct Log {
    pub log: Arc<dyn EventLog>,
    _broker: shopflow_ingest::testing::BrokerHandle,
}

pub async fn kafka_log() -> Log {
    let broker = shopflow_ingest::testing::kafka_broker();
    let log: Arc<dyn EventLog> = Arc::new(KafkaLog::connect(broker.config()).unwrap());
    for topic in Topic::ALL {
        log.ensure_topic(&event_topic_spec(topic, 2)).await.unwrap();
    }
    Log { log, _broker: broker }
}

pub fn records(events: &[Envelope]) -> Vec<OutRecord> {
    shopflow_shopdata::records(events)
}

/// A sink running in the background until the returned handle says stop.
pub struct Running {
    pub progress: watch::Receiver<Progress>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<Progress, shopflow_analytics::AnalyticsError>>,
}

pub fn spawn_sink(log: Arc<dyn EventLog>, service: ClickHouseService, settings: AnalyticsSettings) -> Running {
    let sink = ClickHouseSink::new(log, service, settings);
    let progress = sink.progress();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(sink.run(stopped));
    Running { progress, stop, task }
}

impl Running {
    /// Waits until the sink has committed everything up to the log's current end.
    pub async fn caught_up(&mut self, log: &dyn EventLog) {
        let mut ends = std::collections::BTreeMap::new();
        for topic in shopflow_analytics::sink::source_topics() {
            for (p, end) in log.end_offsets(topic.name()).await.unwrap().into_iter().enumerate() {
                if end > 0 {
                    ends.insert((topic, p as u32), end);
                }
            }
        }
        let wait = self.progress.wait_for(|p| ends.iter().all(|(k, end)| p.committed.get(k).is_some_and(|c| c >= end)));
        tokio::time::timeout(DEADLINE, wait).await.expect("the sink did not catch up in time").unwrap();
    }

    pub async fn stop(self) -> Progress {
        self.stop.send(true).unwrap();
        tokio::time::timeout(DEADLINE, self.task).await.expect("the sink did not stop").unwrap().expect("the sink failed")
    }
}

pub async fn count(service: &ClickHouseService, table: &str) -> u64 {
    service.client().query(&format!("SELECT count() FROM {table}")).fetch_one::<u64>().await.unwrap()
}

/// How many rows each table should hold for these events: the plain Rust answer.
pub fn expected_counts(events: &[Envelope]) -> std::collections::BTreeMap<&'static str, u64> {
    use shopflow_events::Event::*;
    let mut out: std::collections::BTreeMap<&'static str, u64> = shopflow_analytics::sink::request_builder::Table::ALL
        .iter()
        .map(|t| (t.name(), 0))
        .collect();
    for e in events {
        *out.get_mut("events").unwrap() += 1;
        let table = match &e.event {
            ProductCreated(_) | ProductUpdated(_) | ProductDeleted(_) => "products",
            StockReceived(_) | StockAdjusted(_) => "stock_moves",
            UserRegistered(_) | ProfileUpdated(_) | AddressAdded(_) | RoleChanged(_) | SessionStarted(_) | SessionRefreshed(_)
            | SessionRevoked(_) => "users",
            CartItemAdded(_) | CartItemRemoved(_) | CartQuantitySet(_) | CartCleared(_) => "cart_events",
            OrderPlaced(o) => {
                *out.get_mut("order_lines").unwrap() += o.lines.len() as u64;
                "orders"
            }
            OrderCancelled(_) | OrderStatusChanged(_) => "orders",
            PaymentMethodTokenized(_) | ChargeRequested(_) | ChargeSucceeded(_) | ChargeFailed(_) | PaymentRefunded(_)
            | PaymentSubmitted(_) | RefundRequested(_) | RefundApproved(_) | RefundFailed(_) => "payments",
            ProductViewed(_) => "product_views",
            SearchPerformed(_) => "searches",
            RecommendationClicked(_) => "recommendation_clicks",
            ReservationAccepted(_) | OrderConfirmed(_) | OrderRejected(_) | OrderExpired(_) | CancellationAccepted(_)
            | OrderShipped(_) | OrderDelivered(_) | RefundCompleted(_) | StockAdjustmentRejected(_) | HoldRequested(_)
            | HoldDecided(_) | HoldReleased(_) | HoldCommitted(_) => "decisions",
            PaymentDeadline(_) => continue,
            CategoryUpserted(_) | BrandUpserted(_) | SupplierUpserted(_) | ReviewPosted(_) | WarehouseCreated(_) | SynonymsSet(_) => continue,
        };
        *out.get_mut(table).unwrap() += 1;
    }
    out
}

/// `SELECT count()` (no `FINAL`) of every table.
pub async fn counts(service: &ClickHouseService) -> std::collections::BTreeMap<&'static str, u64> {
    let mut out = std::collections::BTreeMap::new();
    for t in shopflow_analytics::sink::request_builder::Table::ALL {
        out.insert(t.name(), count(service, t.name()).await);
    }
    out
}

/// Appends records at a steady rate (chunks every `every`) from a task.
pub fn steady_load(log: Arc<dyn EventLog>, records: Vec<OutRecord>, chunk: usize, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        for c in records.chunks(chunk) {
            tick.tick().await;
            log.append(c.to_vec()).await.expect("append");
        }
    })
}
