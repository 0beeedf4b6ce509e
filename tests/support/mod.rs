//! Whole-system test support: the real `shopflow` binary as child processes on real ports,
//! a real Kafka-protocol broker, and HTTP helpers.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[allow(unused_imports)]
pub use shopflow_shopdata::scenario;

#[allow(unused_imports)]
pub use shopflow_ingest::testing::{kafka_broker, unique_namespace, BrokerHandle};

/// The signing key every process of a test deployment shares (set through the environment,
/// as an operator would), so tests can mint an admin's access token.
pub const TEST_KEY: &str = "system-tests-signing-key-not-a-secret-0001";

/// An admin's access token for [`TEST_KEY`] (its session need not exist: only revoked
/// sessions are refused).
pub fn admin_token() -> String {
    let config = shopflow_serving::AuthConfig { key: Some(TEST_KEY.to_owned()), ..Default::default() };
    let keys = shopflow_serving::auth::KeyRing::from_config(&config).expect("test key");
    keys.issue(&shopflow_events::Id::from("system-test-admin"), shopflow_events::types::Role::Admin, &shopflow_events::Id::generate())
}

/// Generous: CI machines are slow and builds may be running beside the tests.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One `shopflow` process. Dropping it kills it.
pub struct Shopflow {
    child: Option<Child>,
    pub base: String,
    pub stderr: PathBuf,
}

impl Shopflow {
    /// `shopflow <args>` with `--listen` on a free port; waits until `/healthz` answers.
    pub async fn start_http(args: &[&str], log_dir: &Path) -> Shopflow {
        Shopflow::start_http_env(args, &[], log_dir).await
    }

    pub async fn start_http_env(args: &[&str], env: &[(&str, &str)], log_dir: &Path) -> Shopflow {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--listen", &listen]);
        let mut process = Shopflow::spawn_env(&all, env, log_dir, &format!("http-{port}"));
        process.base = format!("http://{listen}");
        process.wait_healthy().await;
        process
    }

    /// `shopflow <args>` with no HTTP (a pipeline process).
    pub fn spawn(args: &[&str], log_dir: &Path, name: &str) -> Shopflow {
        Shopflow::spawn_env(args, &[], log_dir, name)
    }

    pub fn spawn_env(args: &[&str], env: &[(&str, &str)], log_dir: &Path, name: &str) -> Shopflow {
        std::fs::create_dir_all(log_dir).unwrap();
        let stderr = log_dir.join(format!("{name}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_shopflow"))
            .current_dir(log_dir)
            .args(args)
            .env("RUST_LOG", "info,rdkafka=warn")
            .env("SHOPFLOW_SERVING__AUTH__KEY", TEST_KEY)
            // These tests load one address hard; the limits have their own tests.
            .env("SHOPFLOW_SERVING__GATEWAY__RATE_LIMITS", "false")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("the shopflow binary starts");
        Shopflow { child: Some(child), base: String::new(), stderr }
    }

    async fn wait_healthy(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "shopflow did not become healthy: {}", self.stderr_text());
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("shopflow exited with {status}: {}", self.stderr_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // probe interval
        }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILL: no shutdown hooks, no final snapshot.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let status = child.wait().unwrap();
            assert!(status.success(), "shopflow exited with {status}: {}", std::fs::read_to_string(&self.stderr).unwrap_or_default());
        }
    }
}

impl Drop for Shopflow {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client that signs every request as the admin.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", admin_token());
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().expect("ASCII"));
    reqwest::Client::builder().timeout(Duration::from_secs(30)).default_headers(headers).build().unwrap()
}

/// GET with a consistency token, retrying while the views have not caught up (each try
/// already waits server-side up to the configured bound).
pub async fn get_consistent(base: &str, path: &str, token: &str) -> Value {
    let (status, body) = get_consistent_status(base, path, token).await;
    assert!((200..300).contains(&status), "unexpected answer {status}: {body}");
    body
}

/// Posts JSON; `None` when no answer came (the server is down or died mid-request).
pub async fn try_post(base: &str, path: &str, body: &Value) -> Option<(u16, Value)> {
    let response = client().post(format!("{base}{path}")).json(body).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Posts JSON and returns (status, body).
pub async fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let response = client().post(format!("{base}{path}")).json(body).send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every product, walking the cursor pages.
pub async fn all_products(base: &str, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/products?limit=200&cursor={c}"),
            None => "/api/v1/products?limit=200".to_owned(),
        };
        let page = get_consistent(base, &path, token).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

/// Products and every product's per-warehouse stock: the views a comparison looks at.
pub async fn dump_views(base: &str, token: &str) -> (Vec<Value>, Vec<Value>) {
    let products = all_products(base, token).await;
    let mut stock = Vec::new();
    for p in &products {
        let id = p["product_id"].as_str().unwrap();
        stock.push(get_consistent(base, &format!("/api/v1/products/{id}/stock"), token).await);
    }
    (products, stock)
}

pub fn product_body(name: &str, category: &str) -> Value {
    serde_json::json!({
        "name": name,
        "price": {"amount_minor": 1250, "currency": "EUR"},
        "category_id": category,
        "brand_id": "acme",
        "supplier_id": "sup-eu"
    })
}

/// The last record of every non-empty partition of `topics`: what has been written to them.
pub async fn last_positions(log: &dyn shopflow_ingest::EventLog, topics: &[&str]) -> Vec<shopflow_ingest::Position> {
    let mut positions = Vec::new();
    for topic in topics {
        for (partition, end) in log.end_offsets(topic).await.unwrap().into_iter().enumerate() {
            if end > 0 {
                positions.push(shopflow_ingest::Position::new(*topic, partition as u32, end - 1));
            }
        }
    }
    positions
}

/// The token covering every position: the highest offset per topic partition.
pub fn token_for(positions: &[shopflow_ingest::Position]) -> String {
    let mut max = std::collections::BTreeMap::new();
    for p in positions {
        let entry = max.entry((p.topic.clone(), p.partition)).or_insert(p.offset);
        *entry = (*entry).max(p.offset);
    }
    let positions = max.into_iter().map(|((t, p), o)| shopflow_ingest::Position::new(t, p, o)).collect();
    shopflow_serving::ConsistencyToken::new(positions).to_string()
}

/// Merges tokens (as returned by writes) into one covering them all.
pub fn merge_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> String {
    let positions: Vec<shopflow_ingest::Position> = tokens
        .into_iter()
        .flat_map(|t| t.split(','))
        .map(|part| {
            let mut it = part.rsplitn(3, ':');
            let offset = it.next().unwrap().parse().unwrap();
            let partition = it.next().unwrap().parse().unwrap();
            shopflow_ingest::Position::new(it.next().unwrap(), partition, offset)
        })
        .collect();
    token_for(&positions)
}

/// Sends a request with an optional JSON body; `(status, body)`, the body `Null` if not JSON.
pub async fn send(method: reqwest::Method, base: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut request = client().request(method, format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// PATCHes JSON and returns (status, body).
pub async fn patch(base: &str, path: &str, body: &Value) -> (u16, Value) {
    send(reqwest::Method::PATCH, base, path, Some(body)).await
}

/// DELETE; returns (status, body).
pub async fn delete(base: &str, path: &str) -> (u16, Value) {
    send(reqwest::Method::DELETE, base, path, None).await
}

/// GET with a consistency token, retrying while the views have not caught up, whatever the
/// final status (e.g. a 404 for something deleted before the token): (status, body).
pub async fn get_consistent_status(base: &str, path: &str, token: &str) -> (u16, Value) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = client()
            .get(format!("{base}{path}"))
            .header("x-consistency-token", token)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("a JSON body");
        if body["error"]["code"] != "consistency_timeout" {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "views never reached token {token}");
    }
}

/// A customer's access token for [`TEST_KEY`] (the account must exist for writes that need
/// it, e.g. an address).
pub fn customer_token(user_id: &str) -> String {
    let config = shopflow_serving::AuthConfig { key: Some(TEST_KEY.to_owned()), ..Default::default() };
    let keys = shopflow_serving::auth::KeyRing::from_config(&config).expect("test key");
    keys.issue(&shopflow_events::Id::from(user_id), shopflow_events::types::Role::Customer, &shopflow_events::Id::generate())
}

/// The log of a test's namespace on the shared broker, with every topic created (4 partitions,
/// the dead letters 1), as `up --kafka` would find it.
pub async fn kafka_log(broker: &BrokerHandle, namespace: &str) -> std::sync::Arc<dyn shopflow_ingest::EventLog> {
    use shopflow_events::Topic;
    use shopflow_ingest::EventLog;
    let log = shopflow_ingest::KafkaLog::connect(shopflow_ingest::KafkaConfig::new(broker.addr()).with_namespace(namespace)).unwrap();
    for topic in Topic::ALL {
        let partitions = if topic == Topic::Dlq { 1 } else { 4 };
        log.ensure_topic(&shopflow_ingest::TopicSpec::new(topic.name(), partitions)).await.unwrap();
    }
    std::sync::Arc::new(log)
}
