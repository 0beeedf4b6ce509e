//! `Idempotency-Key` over HTTP on real ports.
//!
//! Two kinds of tests:
//! - against a real shop: the embedded log in a temporary directory, the real pipeline, and two
//!   servers ("replicas") writing to the same log — one answering from the pipeline's own views,
//!   the other from views a replica tails from the pipeline's changelogs — each with its own
//!   process-local answer cache;
//! - against the in-memory log of `support` with a pipeline stand-in that keeps the pipeline's
//!   promise for keyed writes (the first record of an event id wins, later ones are dropped,
//!   the first one's position and fingerprint go to `views.requests`): these pin down the
//!   serving side's rules on their own.
//!
//! Tests marked `NEEDS THE PIPELINE PART` depend on the real pipeline publishing
//! `views.requests` (and its changelog); the others pass on the serving side alone.

mod support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use async_trait::async_trait;
use futures::future::join_all;
use reqwest::header::HeaderValue;
use serde_json::{json, Value};
use shopflow_views::{RequestRow, ViewUpdate, Views};
use shopflow_events::{idempotent_event_id, Envelope};
use shopflow_ingest::{EventLog, LogError, LogReader, OutRecord, Position, TopicSpec};
use shopflow_serving::ServingConfig;
use support::shop::{RealPipeline, Server};
use support::{apply_like_pipeline, report, spawn_app_with, Appended, TestApp};

static ADMIN_TOKEN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| support::admin_token(&support::test_config()));
const KEY: &str = "idempotency-key";

/// One HTTP answer, everything a client could compare.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    token_header: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Result<Self> {
        let status = response.status().as_u16();
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap_or("?").to_owned());
        let token_header = header("x-consistency-token");
        let retry_after = header("retry-after");
        let body = response.json().await.context("a JSON body")?;
        Ok(Self { status, token_header, retry_after, body })
    }

    fn token(&self) -> &str {
        self.body["consistency_token"].as_str().unwrap_or_default()
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    fn expect(self, status: u16) -> Result<Self> {
        ensure!(self.status == status, "expected {status}, got {self:?}");
        if status == 202 {
            ensure!(self.token_header.as_deref() == Some(self.token()), "header and body token differ: {self:?}");
        }
        Ok(self)
    }

    fn expect_error(self, status: u16, code: &str) -> Result<Self> {
        ensure!(self.status == status && self.code() == code, "expected {status} {code}, got {self:?}");
        Ok(self)
    }
}

/// Sends a write to `base` as the admin, with `key` as `Idempotency-Key` when given.
async fn send(
    client: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Result<Answer> {
    let mut request = client.request(method, format!("{base}{path}")).bearer_auth(&*ADMIN_TOKEN);
    if let Some(key) = key {
        request = request.header(KEY, key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    Answer::of(request.send().await?).await
}

async fn post(client: &reqwest::Client, base: &str, path: &str, key: Option<&str>, body: &Value) -> Result<Answer> {
    send(client, base, reqwest::Method::POST, path, key, Some(body)).await
}

fn receipt(product: &str, quantity: u32) -> Value {
    json!({"product_id": product, "warehouse_id": "wh-1", "quantity": quantity})
}

fn position_of(token: &str) -> Result<Position> {
    let token: shopflow_serving::ConsistencyToken = token.parse()?;
    ensure!(token.positions().len() == 1, "one position expected in {token}");
    Ok(token.positions()[0].clone())
}

// ---------------------------------------------------------------------------------------------
// A real shop: embedded log, real pipeline, two servers.

/// Fault injector around a real log: `append` performs the real append, then, while
/// `slow_acks` is above zero, holds the acknowledgement back for `delay` (the record is
/// durable, the writer does not know it yet — an append "timeout" that still landed).
struct SlowAcks {
    inner: Arc<dyn EventLog>,
    slow_acks: AtomicUsize,
    delay: Duration,
}

#[async_trait]
impl EventLog for SlowAcks {
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
        let positions = self.inner.append(records).await?;
        let slow = self.slow_acks.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if slow {
            tokio::time::sleep(self.delay).await;
        }
        Ok(positions)
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        self.inner.end_offsets(topic).await
    }

    fn reader(&self, from: &[Position]) -> Result<Box<dyn LogReader>, LogError> {
        self.inner.reader(from)
    }
}

/// `servers[0]` answers from the pipeline's views, `servers[1]` from a replica's. Fields drop
/// in order: the servers are told to stop before the pipeline is joined.
struct Shop {
    servers: Vec<Server>,
    acks: Arc<SlowAcks>,
    real: RealPipeline,
    client: reqwest::Client,
}

impl Shop {
    async fn start(write_timeout: Duration) -> Shop {
        let real = RealPipeline::start().await;
        let acks = Arc::new(SlowAcks { inner: real.log.clone(), slow_acks: AtomicUsize::new(0), delay: write_timeout * 3 });
        let serving = ServingConfig { write_timeout, ..RealPipeline::serving_config() };
        let servers = vec![
            Server::start(serving.clone(), acks.clone(), real.views.clone()).await,
            Server::start(serving, acks.clone(), real.replica_views.clone()).await,
        ];
        Shop { servers, acks, real, client: reqwest::Client::new() }
    }

    fn base(&self, server: usize) -> &str {
        &self.servers[server].base
    }

    async fn post(&self, server: usize, path: &str, key: Option<&str>, body: &Value) -> Result<Answer> {
        post(&self.client, self.base(server), path, key, body).await
    }

    /// A product's total stock, read through `server` with `token` (strong read).
    async fn stock(&self, server: usize, product: &str, token: &str) -> Result<i64> {
        let response = self
            .client
            .get(format!("{}/api/v1/products/{product}/stock", self.base(server)))
            .header("x-consistency-token", token)
            .send()
            .await?;
        ensure!(response.status() == 200, "stock read: {}", response.status());
        let body: Value = response.json().await?;
        body["total"].as_i64().context("total")
    }

    /// Every position in `topic` holding a record of `event_id`, in log order.
    async fn records_of(&self, topic: &str, event_id: uuid::Uuid) -> Result<Vec<Position>> {
        let log = self.real.log.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let ends = futures::executor::block_on(log.end_offsets(&topic))?;
            let from: Vec<Position> = (0..ends.len() as u32).map(|p| Position::new(topic.clone(), p, 0)).collect();
            let mut reader = log.reader(&from)?;
            let (total, mut read, mut found) = (ends.iter().sum::<u64>(), 0, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(10);
            while read < total {
                ensure!(Instant::now() < deadline, "read {read} of {total} records of {topic}");
                for record in reader.poll(10_000, Duration::from_millis(100))? {
                    read += 1;
                    let envelope = Envelope::decode(record.value.as_deref().unwrap_or_default())?;
                    if envelope.id == event_id {
                        found.push(Position::new(topic.clone(), record.partition, record.offset));
                    }
                }
            }
            found.sort();
            Ok(found)
        })
        .await?
    }

    async fn stop(mut self) {
        for server in self.servers.drain(..) {
            server.stop().await;
        }
        drop(self.real);
    }
}

/// NEEDS THE PIPELINE PART (`views.requests` in the pipeline's views and in the replica's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_repeats_through_two_replicas_get_one_answer_and_apply_once() -> Result<()> {
    let shop = Shop::start(Duration::from_secs(10)).await;
    let key = "receipt-2024-0001";
    let body = receipt("p-fifty", 5);
    let answers = join_all((0..50).map(|i| shop.post(i % 2, "/api/v1/stock/receipts", Some(key), &body))).await;
    let answers: Vec<Answer> = answers.into_iter().collect::<Result<_>>()?;
    let first = answers[0].clone().expect(202)?;
    for (i, answer) in answers.iter().enumerate() {
        ensure!(answer == &first, "answer {i} differs:\n{answer:?}\nvs\n{first:?}");
    }
    let event_id = idempotent_event_id(&support::admin_scope(), key);
    ensure!(first.body["event_id"] == event_id.to_string(), "{first:?}");
    ensure!(first.body["id"] == event_id.to_string(), "a receipt's id is its event id: {first:?}");

    // The answer names the first record of the event that landed, whichever request wrote it.
    let records = shop.records_of("inventory", event_id).await?;
    ensure!(!records.is_empty() && records.len() <= 50, "{} records", records.len());
    ensure!(position_of(first.token())? == records[0], "{} vs first record {:?}", first.token(), records[0]);

    // Received once, as both replicas read it with the token.
    for server in 0..2 {
        let stock = shop.stock(server, "p-fifty", first.token()).await?;
        ensure!(stock == 5, "server {server}: stock {stock}, not 5");
    }
    // And a late repeat, on either replica, still gets the same answer.
    for server in 0..2 {
        let again = shop.post(server, "/api/v1/stock/receipts", Some(key), &body).await?;
        ensure!(again == first, "late repeat on server {server}: {again:?}");
    }
    shop.stop().await;
    Ok(())
}

/// On the server that answered first, the refusal comes from its own answers; on the other
/// replica it comes from the first record the views know of — NEEDS THE PIPELINE PART.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_body_is_refused_on_every_replica() -> Result<()> {
    let shop = Shop::start(Duration::from_secs(10)).await;
    let key = "receipt-reused";
    let first = shop.post(0, "/api/v1/stock/receipts", Some(key), &receipt("p-reuse", 5)).await?.expect(202)?;

    // Same replica (its answer cache).
    shop.post(0, "/api/v1/stock/receipts", Some(key), &receipt("p-reuse", 7))
        .await?
        .expect_error(422, "idempotency_key_reused")?;
    // The other replica, which never saw the key (the views' first record).
    shop.post(1, "/api/v1/stock/receipts", Some(key), &receipt("p-reuse", 7))
        .await?
        .expect_error(422, "idempotency_key_reused")?;
    // The same key on another route is another request too.
    shop.post(1, "/api/v1/warehouses", Some(key), &json!({"name": "Depot"}))
        .await?
        .expect_error(422, "idempotency_key_reused")?;
    // The faithful repeat still gets the first answer, through either replica.
    for server in [1, 0] {
        let again = shop.post(server, "/api/v1/stock/receipts", Some(key), &receipt("p-reuse", 5)).await?;
        ensure!(again == first, "server {server}: {again:?} vs {first:?}");
    }
    // Only the first request was applied.
    let stock = shop.stock(1, "p-reuse", first.token()).await?;
    ensure!(stock == 5, "stock {stock}");
    shop.stop().await;
    Ok(())
}

/// The append lands but its acknowledgement comes after `write_timeout`: the client sees 503
/// and retries with the same key. The token check NEEDS THE PIPELINE PART; "received once"
/// holds already (the pipeline drops a repeated event id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_an_append_timeout_that_landed_gets_the_first_records_answer() -> Result<()> {
    let shop = Shop::start(Duration::from_millis(500)).await;
    let key = "receipt-after-timeout";
    let body = receipt("p-timeout", 5);

    shop.acks.slow_acks.store(1, Ordering::SeqCst);
    let failed = shop.post(0, "/api/v1/stock/receipts", Some(key), &body).await?.expect_error(503, "log_unavailable")?;
    ensure!(failed.retry_after.as_deref() == Some("1"), "{failed:?}");
    let event_id = idempotent_event_id(&support::admin_scope(), key);
    let landed = shop.records_of("inventory", event_id).await?;
    ensure!(landed.len() == 1, "the timed-out append landed: {landed:?}");

    // The client retries (through the other replica, as a load balancer might).
    let retry = shop.post(1, "/api/v1/stock/receipts", Some(key), &body).await?.expect(202)?;
    ensure!(retry.body["event_id"] == event_id.to_string(), "{retry:?}");
    ensure!(position_of(retry.token())? == landed[0], "the answer is the landed record's: {retry:?} vs {landed:?}");
    let again = shop.post(0, "/api/v1/stock/receipts", Some(key), &body).await?;
    ensure!(again == retry, "{again:?} vs {retry:?}");
    for server in 0..2 {
        let stock = shop.stock(server, "p-timeout", retry.token()).await?;
        ensure!(stock == 5, "server {server}: stock {stock}, received twice?");
    }
    shop.stop().await;
    Ok(())
}

/// Keyed writes that create entities name the same entity on every repeat. The repeat through
/// the other replica NEEDS THE PIPELINE PART.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_created_under_a_key_gets_one_id_derived_from_the_key() -> Result<()> {
    let shop = Shop::start(Duration::from_secs(10)).await;
    let key = "create-trail-shoe";
    let first = shop.post(0, "/api/v1/products", Some(key), &support::product_body()).await?.expect(202)?;
    let event_id = idempotent_event_id(&support::admin_scope(), key);
    ensure!(first.body["id"] == event_id.to_string(), "the minted product id is the key's: {first:?}");
    for server in [0, 1] {
        let again = shop.post(server, "/api/v1/products", Some(key), &support::product_body()).await?;
        ensure!(again == first, "server {server}: {again:?}");
    }
    let response = shop
        .client
        .get(format!("{}/api/v1/products/{}", shop.base(1), event_id))
        .header("x-consistency-token", first.token())
        .send()
        .await?;
    ensure!(response.status() == 200, "{}", response.status());
    // A repeat may have been written again (the replica's views had not seen the first record
    // yet); the answer still names the first record, and there is one product.
    let records = shop.records_of("catalog", event_id).await?;
    ensure!(!records.is_empty() && position_of(first.token())? == records[0], "{records:?} vs {first:?}");
    let list: Value = shop
        .client
        .get(format!("{}/api/v1/products?limit=10", shop.base(0)))
        .header("x-consistency-token", records.last().map(|p| format!("{}:{}:{}", p.topic, p.partition, p.offset)).unwrap_or_default())
        .send()
        .await?
        .json()
        .await?;
    let count = list["items"].as_array().map_or(0, |items| items.len());
    ensure!(count == 1, "one product: {list}");
    shop.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_a_key_behave_as_before() -> Result<()> {
    let shop = Shop::start(Duration::from_secs(10)).await;
    let body = receipt("p-unkeyed", 5);
    let one = shop.post(0, "/api/v1/stock/receipts", None, &body).await?.expect(202)?;
    let two = shop.post(1, "/api/v1/stock/receipts", None, &body).await?.expect(202)?;
    ensure!(one.body["event_id"] != two.body["event_id"], "two writes, two events: {one:?} {two:?}");
    ensure!(one.token() != two.token());
    let (a, b) = (position_of(one.token())?, position_of(two.token())?);
    let token = if a.offset > b.offset { one.token() } else { two.token() };
    let stock = shop.stock(0, "p-unkeyed", token).await?;
    ensure!(stock == 10, "two receipts of 5 apply twice: {stock}");
    shop.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The serving side's rules, against the in-memory log and a pipeline stand-in.

/// What the stand-in does with keyed writes.
#[derive(Clone)]
struct StandIn {
    /// While set, records are queued, not applied (the views stand still).
    hold: Arc<AtomicBool>,
    /// While set, keyed writes get no `views.requests` row (a topic the view does not track).
    untracked: Arc<AtomicBool>,
}

/// Takes over the app's append notifications and applies them as the pipeline would: by event
/// id, first record wins; the first record of a keyed write is published to `views.requests`.
fn stand_in(app: &mut TestApp, views: Arc<Views>) -> StandIn {
    let mut appended = std::mem::replace(&mut app.appended, tokio::sync::mpsc::unbounded_channel().1);
    let control = StandIn { hold: Arc::new(AtomicBool::new(false)), untracked: Arc::new(AtomicBool::new(false)) };
    let StandIn { hold, untracked } = control.clone();
    tokio::spawn(async move {
        let (mut covered, mut seen, mut queue) = (HashMap::new(), HashSet::new(), VecDeque::<Appended>::new());
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            tokio::select! {
                next = appended.recv() => match next {
                    Some(record) => queue.push_back(record),
                    None => break,
                },
                _ = tick.tick() => {}
            }
            if hold.load(Ordering::SeqCst) {
                continue;
            }
            while let Some(record) = queue.pop_front() {
                let envelope = &record.envelope;
                if !seen.insert(envelope.id) {
                    let p = &record.position;
                    covered.insert((p.topic.clone(), p.partition), p.offset + 1);
                    report(&views, &covered);
                    continue;
                }
                if let Some(fingerprint) = envelope.request.clone().filter(|_| !untracked.load(Ordering::SeqCst)) {
                    let p = &record.position;
                    views.apply([ViewUpdate::Request {
                        key: envelope.id,
                        row: Some(RequestRow {
                            event_id: envelope.id,
                            fingerprint,
                            topic: p.topic.clone(),
                            partition: p.partition,
                            offset: p.offset,
                            ts: envelope.ts,
                        }),
                    }]);
                }
                apply_like_pipeline(&views, &record, &mut covered);
            }
        }
    });
    control
}

async fn spawn_with_stand_in(write_timeout: Duration) -> (TestApp, StandIn) {
    let mut app = spawn_app_with(|config| config.write_timeout = write_timeout).await;
    let views = app.views.clone();
    let control = stand_in(&mut app, views);
    (app, control)
}

/// Another server on the same log and views, with its own (empty) answer cache.
async fn second_server(app: &TestApp) -> Server {
    Server::start(support::test_config(), app.log.clone(), app.views.clone()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_all_get_the_answer_of_the_first_record() -> Result<()> {
    let (app, _stand_in) = spawn_with_stand_in(Duration::from_secs(10)).await;
    let other = second_server(&app).await;
    let body = receipt("p-standin", 5);
    let bases = [app.base.clone(), other.base.clone()];
    let answers = join_all((0..20).map(|i| post(&app.client, &bases[i % 2], "/api/v1/stock/receipts", Some("k-1"), &body))).await;
    let answers: Vec<Answer> = answers.into_iter().collect::<Result<_>>()?;
    let first = answers[0].clone().expect(202)?;
    ensure!(answers.iter().all(|a| a == &first), "{answers:#?}");
    let partition = shopflow_events::partition_for(b"p-standin", support::PARTITIONS);
    ensure!(first.token() == format!("inventory:{partition}:0"), "the first record's position: {first:?}");
    let stock = app.views.stock.get(&("p-standin".into(), "wh-1".into())).context("stock row")?;
    ensure!(stock.quantity == 5, "{stock:?}");
    other.stop().await;
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_reused_key_is_refused_from_the_cache_and_from_the_views() -> Result<()> {
    let (app, _stand_in) = spawn_with_stand_in(Duration::from_secs(10)).await;
    let fresh = second_server(&app).await;
    let path = "/api/v1/stock/receipts";
    let first = post(&app.client, &app.base, path, Some("k-2"), &receipt("p-r", 5)).await?.expect(202)?;
    // The answering server's cache, and a server that only has the views.
    for base in [&app.base, &fresh.base] {
        post(&app.client, base, path, Some("k-2"), &receipt("p-r", 6)).await?.expect_error(422, "idempotency_key_reused")?;
        let again = post(&app.client, base, path, Some("k-2"), &receipt("p-r", 5)).await?;
        ensure!(again == first, "{again:?} vs {first:?}");
    }
    // Formatting and key order are not a different request.
    let reordered = app
        .client
        .post(format!("{}{path}", fresh.base))
        .bearer_auth(&*ADMIN_TOKEN)
        .header(KEY, "k-2")
        .header("content-type", "application/json")
        .body("{ \"quantity\": 5,\n  \"warehouse_id\": \"wh-1\",  \"product_id\": \"p-r\" }")
        .send()
        .await?;
    let reordered = Answer::of(reordered).await?;
    ensure!(reordered == first, "{reordered:?}");
    // Another caller's key of the same name is another key.
    let anonymous = app
        .client
        .post(app.url("/api/v1/interactions"))
        .header(KEY, "k-2")
        .json(&json!({"type": "product.viewed", "user_id": "u-1", "product_id": "p-r"}))
        .send()
        .await?;
    let anonymous = Answer::of(anonymous).await?.expect(202)?;
    ensure!(anonymous.body["event_id"] == idempotent_event_id("anonymous", "k-2").to_string(), "{anonymous:?}");
    ensure!(anonymous.body["event_id"] != first.body["event_id"]);
    fresh.stop().await;
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_write_the_views_do_not_settle_in_time_is_pending_and_the_retry_gets_the_first_answer() -> Result<()> {
    let (app, stand_in) = spawn_with_stand_in(Duration::from_millis(300)).await;
    stand_in.hold.store(true, Ordering::SeqCst);
    let body = receipt("p-pending", 5);
    let pending = post(&app.client, &app.base, "/api/v1/stock/receipts", Some("k-3"), &body)
        .await?
        .expect_error(503, "idempotency_pending")?;
    ensure!(pending.retry_after.as_deref() == Some("1"), "{pending:?}");
    stand_in.hold.store(false, Ordering::SeqCst);
    let retry = post(&app.client, &app.base, "/api/v1/stock/receipts", Some("k-3"), &body).await?.expect(202)?;
    let partition = shopflow_events::partition_for(b"p-pending", support::PARTITIONS);
    ensure!(retry.token() == format!("inventory:{partition}:0"), "the first (pending) record's position: {retry:?}");
    ensure!(app.views.stock.get(&("p-pending".into(), "wh-1".into())).context("stock")?.quantity == 5);
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn keyed_writes_waiting_for_the_views_count_against_the_waiter_cap() -> Result<()> {
    // No room for a waiter: a keyed write that would have to wait for the views is answered
    // pending without waiting (the write timeout is 10 minutes, and the views are held); its
    // record is in the log, and the retry once the views have passed it gets the answer.
    let mut app = spawn_app_with(|config| {
        config.write_timeout = Duration::from_secs(600);
        config.max_consistency_waiters = 0;
    })
    .await;
    let views = app.views.clone();
    let stand_in = stand_in(&mut app, views);
    stand_in.hold.store(true, Ordering::SeqCst);
    let body = receipt("p-capped", 2);
    let pending = tokio::time::timeout(Duration::from_secs(60), post(&app.client, &app.base, "/api/v1/stock/receipts", Some("k-cap"), &body))
        .await
        .context("the capped write waited for the views instead of answering")??;
    pending.expect_error(503, "idempotency_pending")?;
    stand_in.hold.store(false, Ordering::SeqCst);
    // Released, the stand-in applies the held record; until it has, the retry is pending too.
    let mut progress = app.views.progress.subscribe();
    let mut retry = post(&app.client, &app.base, "/api/v1/stock/receipts", Some("k-cap"), &body).await?;
    while retry.status == 503 {
        progress.changed().await?;
        retry = post(&app.client, &app.base, "/api/v1/stock/receipts", Some("k-cap"), &body).await?;
    }
    retry.expect(202)?;
    ensure!(app.views.stock.get(&("p-capped".into(), "wh-1".into())).context("stock")?.quantity == 2, "received once");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_keyed_write_on_a_topic_without_the_requests_view_answers_with_its_own_record() -> Result<()> {
    let (app, stand_in) = spawn_with_stand_in(Duration::from_secs(10)).await;
    stand_in.untracked.store(true, Ordering::SeqCst);
    let body = json!({"type": "search.performed", "user_id": "u-9", "query": "kettle"});
    let first = app
        .client
        .post(app.url("/api/v1/interactions"))
        .header(KEY, "k-4")
        .json(&body)
        .send()
        .await?;
    let first = Answer::of(first).await?.expect(202)?;
    let partition = shopflow_events::partition_for(b"u-9", support::PARTITIONS);
    ensure!(first.token() == format!("interactions:{partition}:0"), "{first:?}");
    let again = Answer::of(app.client.post(app.url("/api/v1/interactions")).header(KEY, "k-4").json(&body).send().await?).await?;
    ensure!(again == first, "{again:?}");
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn every_mutating_route_takes_a_key() -> Result<()> {
    let (app, _stand_in) = spawn_with_stand_in(Duration::from_secs(10)).await;
    use reqwest::Method;
    let routes: Vec<(Method, &str, Option<Value>, Option<Value>)> = vec![
        (Method::POST, "/api/v1/products", Some(support::product_body()), Some(json!({"name": "x", "price": {"amount_minor": 1, "currency": "EUR"}, "category_id": "c", "brand_id": "b", "supplier_id": "s"}))),
        (Method::PATCH, "/api/v1/products/p-1", Some(json!({"name": "New"})), Some(json!({"name": "Newer"}))),
        (Method::DELETE, "/api/v1/products/p-1", None, None),
        (Method::POST, "/api/v1/categories", Some(json!({"name": "Shoes"})), Some(json!({"name": "Boots"}))),
        (Method::POST, "/api/v1/brands", Some(json!({"id": "acme", "name": "Acme"})), Some(json!({"id": "acme", "name": "ACME"}))),
        (Method::POST, "/api/v1/suppliers", Some(json!({"name": "Sup"})), Some(json!({"name": "Sup 2"}))),
        (Method::POST, "/api/v1/warehouses", Some(json!({"name": "Depot"})), Some(json!({"name": "Depot 2"}))),
        (Method::POST, "/api/v1/stock/receipts", Some(receipt("p-1", 3)), Some(receipt("p-1", 4))),
        (Method::POST, "/api/v1/stock/adjustments", Some(json!({"product_id": "p-1", "warehouse_id": "wh-1", "delta": -1})), Some(json!({"product_id": "p-1", "warehouse_id": "wh-1", "delta": -2}))),
        (Method::POST, "/api/v1/interactions", Some(json!({"type": "product.viewed", "user_id": "u-1", "product_id": "p-1"})), Some(json!({"type": "product.viewed", "user_id": "u-1", "product_id": "p-2"}))),
    ];
    for (i, (method, path, body, other_body)) in routes.into_iter().enumerate() {
        let key = format!("route-{i}");
        let first = send(&app.client, &app.base, method.clone(), path, Some(&key), body.as_ref()).await?.expect(202)?;
        let again = send(&app.client, &app.base, method.clone(), path, Some(&key), body.as_ref()).await?;
        ensure!(again == first, "{method} {path}: {again:?} vs {first:?}");
        ensure!(first.body["event_id"] == idempotent_event_id(&support::admin_scope(), &key).to_string(), "{method} {path}: {first:?}");
        if let Some(other_body) = other_body {
            send(&app.client, &app.base, method.clone(), path, Some(&key), Some(&other_body))
                .await?
                .expect_error(422, "idempotency_key_reused")
                .with_context(|| format!("{method} {path}"))?;
        } else {
            // A body-less write differs by its path.
            send(&app.client, &app.base, method.clone(), "/api/v1/products/p-2", Some(&key), None)
                .await?
                .expect_error(422, "idempotency_key_reused")
                .with_context(|| format!("{method} {path}"))?;
        }
    }
    app.stop().await;
    Ok(())
}

#[tokio::test]
async fn malformed_keys_are_refused_before_anything_is_written() -> Result<()> {
    let mut app = spawn_app_with(|config| config.write_timeout = Duration::from_millis(300)).await;
    let url = app.url("/api/v1/stock/receipts");
    let bad: Vec<HeaderValue> = vec![
        HeaderValue::from_str(&"k".repeat(256))?,
        HeaderValue::from_bytes(b"tab\there")?,
        HeaderValue::from_bytes(b"a key")?,
        HeaderValue::from_static(""),
        HeaderValue::from_bytes("caf\u{e9}".as_bytes())?,
    ];
    for value in bad {
        let response = app.client.post(&url).bearer_auth(&*ADMIN_TOKEN).header(KEY, value.clone()).json(&receipt("p", 1)).send().await?;
        Answer::of(response).await?.expect_error(400, "invalid_idempotency_key").with_context(|| format!("{value:?}"))?;
    }
    // Twice in one request.
    let twice = app
        .client
        .delete(app.url("/api/v1/products/p-1"))
        .bearer_auth(&*ADMIN_TOKEN)
        .header(KEY, "a")
        .header(KEY, "b")
        .send()
        .await?;
    Answer::of(twice).await?.expect_error(400, "invalid_idempotency_key")?;
    // Authorisation is still checked first.
    let anonymous = app.client.post(&url).header(KEY, "tab\there").json(&receipt("p", 1)).send().await?;
    Answer::of(anonymous).await?.expect_error(401, "unauthorized")?;
    ensure!(app.appended.try_recv().is_err(), "nothing was appended");

    // The longest key is fine (its write waits for views nobody fills here: pending).
    let longest = app.client.post(&url).bearer_auth(&*ADMIN_TOKEN).header(KEY, "k".repeat(255)).json(&receipt("p", 1));
    let appended = app.appended.recv();
    let (response, record) = tokio::join!(longest.send(), appended);
    let record = record.context("appended")?;
    ensure!(record.envelope.id == idempotent_event_id(&support::admin_scope(), &"k".repeat(255)));
    ensure!(record.envelope.request.is_some(), "the fingerprint travels with the event");
    let status = response?.status();
    ensure!(status == 503, "no pipeline here, so the write stays pending: {status}");
    app.stop().await;
    Ok(())
}
