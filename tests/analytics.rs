//! The ClickHouse sink as its own process: `shopflow sink clickhouse` killed with `kill -9`
//! while it is inserting under a steady load, three times, and restarted; afterwards
//! `SELECT count()` (no `FINAL`) of every table equals what the events give, exactly.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shopflow_analytics::sink::request_builder::Table;
use shopflow_events::{Envelope, Event, Topic};
use shopflow_ingest::{event_topic_spec, EventLog, KafkaLog};
use support::*;

/// ClickHouse: the shared chDB adapter of `scripts/test.sh`, or one started here.
struct ClickHouse {
    url: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl ClickHouse {
    fn get() -> Self {
        if let Ok(url) = std::env::var("SHOPFLOW_TEST_CLICKHOUSE") {
            return ClickHouse { url, child: None, _dir: None };
        }
        let python = std::env::var_os("SHOPFLOW_CHDB_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/shopflow/chdb-venv/bin/python")
        });
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/analytics/adapter/chdb_http.py"))
            .args(["--port", &port.to_string(), "--path"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("the chdb adapter starts (scripts/clickhouse.sh install)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the chdb adapter did not come up");
            std::thread::sleep(Duration::from_millis(50)); // probe interval
        }
        ClickHouse { url, child: Some(child), _dir: Some(dir) }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Rows per table that the events give (the plain answer, independent of the sink's code).
fn expected(events: &[Envelope]) -> BTreeMap<&'static str, u64> {
    let mut out: BTreeMap<&'static str, u64> = Table::ALL.iter().map(|t| (t.name(), 0)).collect();
    for e in events {
        *out.get_mut("events").unwrap() += 1;
        let table = match &e.event {
            Event::ProductCreated(_) => "products",
            Event::StockReceived(_) | Event::StockAdjusted(_) => "stock_moves",
            Event::CartItemAdded(_) => "cart_events",
            Event::OrderPlaced(o) => {
                *out.get_mut("order_lines").unwrap() += o.lines.len() as u64;
                "orders"
            }
            Event::OrderCancelled(_) => "orders",
            Event::ChargeRequested(_) | Event::ChargeSucceeded(_) => "payments",
            Event::ProductViewed(_) => "product_views",
            Event::SearchPerformed(_) => "searches",
            Event::RecommendationClicked(_) => "recommendation_clicks",
            other => panic!("the activity has no {}", other.type_name()),
        };
        *out.get_mut(table).unwrap() += 1;
    }
    out
}

async fn counts(client: &clickhouse::Client) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    for t in Table::ALL {
        out.insert(t.name(), client.query(&format!("SELECT count() FROM {}", t.name())).fetch_one::<u64>().await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_killed_with_sigkill_mid_batch_and_restarted_loses_and_doubles_nothing() {
    let broker = kafka_broker();
    let config = broker.config();
    let namespace = config.namespace.clone();
    let log: Arc<dyn EventLog> = Arc::new(KafkaLog::connect(config).unwrap());
    for topic in Topic::ALL {
        log.ensure_topic(&event_topic_spec(topic, 2)).await.unwrap();
    }
    let events = shopflow_shopdata::activity::Activity { shoppers: 300, days: 24, ..shopflow_shopdata::activity::Activity::new(1_763_942_400_000) }.events();
    let want = expected(&events);
    let total = events.len() as u64;

    let ch = ClickHouse::get();
    let database = format!("kill9_{}", uuid::Uuid::new_v4().simple());
    let settings = shopflow_analytics::AnalyticsSettings { database: database.clone(), ..Default::default() };
    let client = shopflow_analytics::client(&settings, &ch.url);
    let dir = tempfile::tempdir().unwrap();
    let args = ["sink", "clickhouse", "--kafka", broker.addr(), "--namespace", &namespace, "--url", &ch.url, "--database", &database];
    // Batches of ~1,500 events (two rows each on average): the sink is inserting most of the time.
    let env = [("SHOPFLOW_ANALYTICS__BATCH_MAX_ROWS", "3000"), ("SHOPFLOW_ANALYTICS__BATCH_MAX_WAIT_MS", "50")];

    // A steady load of ~2,000 events/s for ~10 s while the sink is killed three times.
    let records = shopflow_shopdata::records(&events);
    let load = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for chunk in records.chunks(200) {
                tick.tick().await;
                log.append(chunk.to_vec()).await.unwrap();
            }
        })
    };
    let mut landed_before = 0u64;
    for round in 0..3u64 {
        let sink = Shopflow::spawn_env(&args, &env, dir.path(), &format!("sink-{round}"));
        // Killed once it has inserted a few batches in this round, at a different phase each time.
        let deadline = Instant::now() + DEADLINE;
        loop {
            let landed: u64 = client.query("SELECT count() FROM events").fetch_one().await.unwrap_or(0);
            if landed >= (landed_before + 2_000).min(total) {
                landed_before = landed;
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: only {landed} of {total} landed: {}", sink.stderr_text());
            tokio::time::sleep(Duration::from_millis(20)).await; // probe interval
        }
        tokio::time::sleep(Duration::from_millis(37 * round)).await; // a different moment of the batch cycle
        sink.kill9();
    }
    load.await.unwrap();

    let sink = Shopflow::spawn_env(&args, &env, dir.path(), "sink-final");
    let deadline = Instant::now() + DEADLINE;
    let group = "analytics";
    'caught_up: loop {
        let mut done = true;
        for topic in Topic::ALL.into_iter().filter(|t| *t != Topic::Dlq) {
            let ends = log.end_offsets(topic.name()).await.unwrap();
            let committed = log.committed(group, topic.name()).await.unwrap();
            done &= ends.iter().zip(&committed).all(|(end, c)| *end == 0 || c.is_some_and(|c| c >= *end));
        }
        if done {
            break 'caught_up;
        }
        assert!(Instant::now() < deadline, "the restarted sink did not catch up: {}", sink.stderr_text());
        tokio::time::sleep(Duration::from_millis(100)).await; // probe interval
    }
    sink.terminate();
    assert_eq!(counts(&client).await, want, "SELECT count() per table equals the events exactly");
    let distinct: u64 = client.query("SELECT uniqExact(id) FROM events").fetch_one().await.unwrap();
    assert_eq!(distinct, total);
}
