//! Test support: an in-memory event log (a unit-test double of `EventLog`; the real backends
//! are tested end to end elsewhere), a pipeline stand-in that applies appended events to the
//! views, and `spawn_app` on port 0.

#![allow(dead_code)]

pub mod commerce;
pub mod shop;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use shopflow_views::{ProductRow, ProgressReport, StockRow, ViewUpdate, Views, WarehouseRow};
use shopflow_events::{partition_for, Envelope, Event, Id, Money};
use shopflow_ingest::{EventLog, LogError, LogReader, OutRecord, Position, TopicSpec};
use shopflow_events::types::Role;
use shopflow_serving::auth::KeyRing;
use shopflow_serving::{AppState, Application, Card, CardVault, ModelSlot, ServingConfig, TokenizedCard, VaultError};
use tokio::sync::mpsc;

pub const PARTITIONS: u32 = 4;

/// Appended records, as the test sees them.
#[derive(Clone, Debug)]
pub struct Appended {
    pub position: Position,
    pub envelope: Envelope,
}

/// Every topic exists with `PARTITIONS` partitions; appends are announced on a channel so a
/// test can react to a write instead of sleeping.
pub struct MemLog {
    ends: Mutex<HashMap<String, Vec<u64>>>,
    available: AtomicBool,
    appended: mpsc::UnboundedSender<Appended>,
}

impl MemLog {
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Appended>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let log = Self { ends: Mutex::new(HashMap::new()), available: AtomicBool::new(true), appended: tx };
        (Arc::new(log), rx)
    }

    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), LogError> {
        if self.available.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(LogError::Unavailable("test log switched off".into()))
        }
    }
}

#[async_trait]
impl EventLog for MemLog {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ensure_topic(&self, _: &TopicSpec) -> Result<(), LogError> {
        Ok(())
    }

    async fn partitions(&self, _: &str) -> Result<u32, LogError> {
        Ok(PARTITIONS)
    }

    async fn append(&self, records: Vec<OutRecord>) -> Result<Vec<Position>, LogError> {
        self.check()?;
        let mut ends = self.ends.lock();
        let mut positions = Vec::new();
        for record in records {
            let partition = record.partition.unwrap_or_else(|| partition_for(&record.key, PARTITIONS));
            let slot = ends.entry(record.topic.clone()).or_insert_with(|| vec![0; PARTITIONS as usize]);
            let position = Position::new(record.topic.clone(), partition, slot[partition as usize]);
            slot[partition as usize] += 1;
            let envelope = Envelope::decode(record.value.as_deref().unwrap_or_default())
                .map_err(|e| LogError::Invalid(e.to_string()))?;
            let _ = self.appended.send(Appended { position: position.clone(), envelope });
            positions.push(position);
        }
        Ok(positions)
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>, LogError> {
        self.check()?;
        Ok(self.ends.lock().get(topic).cloned().unwrap_or_else(|| vec![0; PARTITIONS as usize]))
    }

    fn reader(&self, _: &[Position]) -> Result<Box<dyn LogReader>, LogError> {
        Err(LogError::Invalid("the test log has no readers".into()))
    }
}

pub struct TestApp {
    pub base: String,
    pub log: Arc<MemLog>,
    pub appended: mpsc::UnboundedReceiver<Appended>,
    pub views: Arc<Views>,
    pub client: reqwest::Client,
    pub admin_token: Option<String>,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request with the admin token, when the app has one.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.admin_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Signals the graceful stop without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Graceful stop; returns once the server task has finished.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut ServingConfig)) -> TestApp {
    spawn(configure, None, None).await
}

/// An app serving recommendations from `models`, which the test promotes and rolls back.
pub async fn spawn_app_with_models(models: Arc<ModelSlot>) -> TestApp {
    spawn(|_| {}, Some(models), None).await
}

/// An app tokenizing cards through `vault`.
pub async fn spawn_app_with_vault(configure: impl FnOnce(&mut ServingConfig), vault: Arc<dyn CardVault>) -> TestApp {
    spawn(configure, None, Some(vault)).await
}

/// A card vault as a gateway's test mode has it: the token names the brand and last four
/// digits, `4000000000000002` is declined; every call is counted.
#[derive(Default)]
pub struct TestVault {
    pub calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl CardVault for TestVault {
    async fn tokenize(&self, user: &Id, card: &Card) -> Result<TokenizedCard, VaultError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if card.number == "4000000000000002" {
            return Err(VaultError::Refused("card_declined".into()));
        }
        let brand = if card.number.starts_with('4') { "visa" } else { "mastercard" };
        Ok(TokenizedCard {
            token: format!("tok_{brand}_{}_{user}", card.last4()),
            last4: card.last4().to_owned(),
            brand: brand.to_owned(),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
        })
    }
}

/// The signing key of every test server: servers of one test trust each other's tokens,
/// as replicas of one deployment do.
pub const TEST_KEY: &str = "serving-tests-signing-key-not-a-secret";
/// The admin of [`admin_token`]; idempotency keys are scoped by it.
pub const ADMIN_USER: &str = "admin-1";

/// A serving configuration for tests: port 0 and the test signing key.
pub fn test_config() -> ServingConfig {
    let mut config = ServingConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServingConfig::default() };
    config.auth.key = Some(TEST_KEY.to_owned());
    config
}

/// The idempotency scope of [`admin_token`]'s caller.
pub fn admin_scope() -> String {
    format!("user:{ADMIN_USER}")
}

/// An access token of the admin role signed with `config`'s key (its session need not exist:
/// only revoked sessions are refused).
pub fn admin_token(config: &ServingConfig) -> String {
    token_for(config, ADMIN_USER, Role::Admin)
}

pub fn token_for(config: &ServingConfig, user: &str, role: Role) -> String {
    let keys = KeyRing::from_config(&config.auth).expect("test key");
    keys.issue(&Id::new(user).unwrap(), role, &Id::generate())
}

async fn spawn(configure: impl FnOnce(&mut ServingConfig), models: Option<Arc<ModelSlot>>, vault: Option<Arc<dyn CardVault>>) -> TestApp {
    let mut config = test_config();
    configure(&mut config);
    let admin_token = Some(admin_token(&config));
    let (log, appended) = MemLog::new();
    let views = Arc::new(Views::new());
    let mut app = Application::build(config, log.clone(), views.clone()).await.expect("build app");
    if let Some(models) = models {
        app = app.with_models(models);
    }
    if let Some(vault) = vault {
        app = app.with_card_vault(vault);
    }
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .expect("server");
    });
    TestApp {
        base,
        log,
        appended,
        views,
        client: reqwest::Client::new(),
        admin_token,
        state,
        stop: Some(stop),
        server: Some(server),
    }
}

pub fn now_ms() -> u64 {
    shopflow_serving::lag::now_ms()
}

/// Stands in for the pipeline: turns one appended event into view updates (the subset of the
/// real jobs' logic these tests need), applies them, then reports progress past its offset.
pub fn apply_like_pipeline(views: &Views, appended: &Appended, covered: &mut HashMap<(String, u32), u64>) {
    match &appended.envelope.event {
        Event::ProductCreated(p) => views.apply([ViewUpdate::Product {
            key: p.product_id.clone(),
            row: Some(ProductRow {
                product_id: p.product_id.clone(),
                name: p.name.clone(),
                description: p.description.clone(),
                price: p.price.clone(),
                sku: p.sku.clone(),
                category_id: p.category_id.clone(),
                category_name: None,
                brand_id: p.brand_id.clone(),
                brand_name: None,
                supplier_id: p.supplier_id.clone(),
                supplier_name: None,
                stock: 0,
                created_at: appended.envelope.ts,
                rating_avg: None,
                rating_count: 0,
            }),
        }]),
        Event::ProductUpdated(p) => {
            if let Some(mut row) = views.products.get(&p.product_id) {
                if let Some(v) = &p.name { row.name = v.clone(); }
                if let Some(v) = &p.description { row.description = v.clone(); }
                if let Some(v) = &p.price { row.price = v.clone(); }
                if let Some(v) = &p.category_id { row.category_id = v.clone(); }
                if let Some(v) = &p.brand_id { row.brand_id = v.clone(); }
                views.apply([ViewUpdate::Product { key: p.product_id.clone(), row: Some(row) }]);
            }
        }
        Event::ProductDeleted(p) => views.apply([ViewUpdate::Product { key: p.product_id.clone(), row: None }]),
        Event::SynonymsSet(s) => views.apply([ViewUpdate::Synonyms {
            key: s.set_id.clone(),
            row: Some(shopflow_views::SynonymsRow { set_id: s.set_id.clone(), groups: s.groups.clone() }),
        }]),
        Event::WarehouseCreated(w) => views.apply([ViewUpdate::Warehouse {
            key: w.warehouse_id.clone(),
            row: Some(WarehouseRow { warehouse_id: w.warehouse_id.clone(), name: w.name.clone(), location: w.location.clone() }),
        }]),
        Event::StockReceived(s) => {
            let key = (s.product_id.clone(), s.warehouse_id.clone());
            let quantity = views.stock.get(&key).map_or(0, |r| r.quantity) + i64::from(s.quantity);
            views.apply([ViewUpdate::Stock {
                key,
                row: Some(StockRow {
                    product_id: s.product_id.clone(),
                    warehouse_id: s.warehouse_id.clone(),
                    warehouse_name: views.warehouses.get(&s.warehouse_id).map(|w| w.name),
                    quantity,
                }),
            }])
        }
        _ => {}
    }
    let p = &appended.position;
    covered.insert((p.topic.clone(), p.partition), p.offset + 1);
    report(views, covered);
}

/// Reports the views complete up to now, with `covered` as the next unread offsets. The
/// frontier strictly increases per report, as a worker's would (`Progress` ignores a report
/// that does not advance it, and several may fall in one millisecond here).
pub fn report(views: &Views, covered: &HashMap<(String, u32), u64>) {
    let frontier = now_ms().max(views.progress.frontier() + 1);
    views.progress.report(ProgressReport {
        worker: 0,
        peers: 1,
        frontier,
        offsets: covered.iter().map(|((t, p), o)| Position::new(t.clone(), *p, *o)).collect(),
    });
}

pub fn product_row(id: &str, category: &str, brand: &str) -> ProductRow {
    ProductRow {
        product_id: Id::new(id).unwrap(),
        name: format!("product {id}"),
        description: String::new(),
        price: Money::new(1999, "EUR"),
        sku: String::new(),
        category_id: Id::new(category).unwrap(),
        category_name: Some(format!("category {category}")),
        brand_id: Id::new(brand).unwrap(),
        brand_name: Some(format!("brand {brand}")),
        supplier_id: Id::new("sup-1").unwrap(),
        supplier_name: None,
        stock: 0,
        created_at: 0,
        rating_avg: None,
        rating_count: 0,
    }
}

pub fn product_body() -> serde_json::Value {
    serde_json::json!({
        "name": "Trail shoe",
        "description": "light",
        "price": {"amount_minor": 12900, "currency": "EUR"},
        "sku": "TS-1",
        "category_id": "cat-shoes",
        "brand_id": "brand-acme",
        "supplier_id": "sup-1"
    })
}
