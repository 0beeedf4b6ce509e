//! The `recommend` suite: latency of `GET /api/v1/recommend/user/{id}` under load, served by
//! the real HTTP server from views and a model built in-process.
//!
//! Setup (untimed): a synthetic shop (products in categories, users whose interactions follow
//! a Zipf popularity with a taste for a few categories), an NMF fitted on its user × product
//! matrix with the recommender crate, the serving model built from it in a [`ModelSlot`], and
//! [`Views`] filled directly with the shop's rows. The pipeline is not involved: this suite
//! measures the read path only (fold-in, filtering, trending fill, JSON, HTTP).
//!
//! Load: a fixed number of closed-loop clients on keep-alive connections, on a thread of
//! their own in this process, ask for random users (known ones, and a share of cold-start
//! users the model knows nothing about) for a fixed time after a short warm-up.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};
use shopflow_dataflow::pipeline::SOURCE_TOPICS;
use shopflow_dataflow::views::{
    InteractionRow, ProductRow, ProgressReport, PurchaseRow, StockRow, TrendingRow, ViewUpdate,
    Views,
};
use shopflow_events::{Id, Money};
use shopflow_recommender::store::SIMILAR_K;
use shopflow_recommender::{Interactions, Nmf, ServingModel};
use shopflow_serving::{Application, ModelSlot, ServingConfig};
use super::http::Connection;

use super::machine::ThreadCpu;
use super::pipeline::Percentiles;
use shopflow_recommender::adapter::ModelAdapter;
use shopflow_ingest::LogSettings;

/// Zipf exponent of product popularity (globally and within a category).
const ZIPF_EXPONENT: f64 = 1.0;
/// Categories a user mostly shops in; gives the matrix the structure NMF is for.
const FAVOURITE_CATEGORIES: usize = 2;
/// Share of a user's interactions within their favourite categories.
const FAVOURITE_SHARE: f64 = 0.75;
/// Share of products sold out in every warehouse (the rest are in stock).
const SOLD_OUT_SHARE: f64 = 0.05;
const WAREHOUSES: usize = 4;
/// Items per answer: the endpoint's default `limit`; shorter answers are counted.
const LIMIT: usize = 10;
/// A request slower than this counts as an error (and its connection is dropped).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Latencies above this are clamped in the histogram (µs).
const HISTOGRAM_MAX_US: u64 = 60_000_000;
/// Error messages kept for the report; the count covers all.
const ERROR_SAMPLES: usize = 5;

#[derive(Clone, Debug)]
pub struct RecommendConfig {
    pub products: usize,
    pub categories: usize,
    pub users: usize,
    /// Mean interactions per user (uniform between half and one and a half times this).
    pub interactions_per_user: usize,
    pub rank: usize,
    pub iterations: usize,
    /// Concurrent closed-loop clients (one keep-alive connection each).
    pub clients: usize,
    /// Measured load time, after `warmup`.
    pub duration: Duration,
    /// Load before the measurement starts (connections, caches, allocator); not recorded.
    pub warmup: Duration,
    /// Share of requests for users the shop has never seen (cold start: trending only).
    pub cold_share: f64,
    /// The embedded log the server is built with lives here (reads never touch it).
    pub scratch: PathBuf,
}

impl RecommendConfig {
    pub fn new(quick: bool, clients: usize, duration: Option<f64>, scratch: PathBuf) -> Self {
        // --quick checks that the suite works end to end; its numbers are not for the aim.
        let (products, users, iterations) = if quick {
            (500, 1_000, 20)
        } else {
            (2_000, 5_000, 50)
        };
        Self {
            products,
            categories: if quick { 10 } else { 25 },
            users,
            interactions_per_user: 20,
            rank: 32,
            iterations,
            clients,
            duration: Duration::from_secs_f64(duration.unwrap_or(if quick { 2.0 } else { 10.0 })),
            warmup: Duration::from_secs_f64(if quick { 0.3 } else { 1.0 }),
            cold_share: 0.1,
            scratch,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RecommendResult {
    pub shop: ShopFacts,
    pub model: ModelFacts,
    pub clients: usize,
    pub cold_share: f64,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    /// Requests started within the measured time.
    pub requests: u64,
    pub requests_per_sec: f64,
    /// Every measured request (known and cold users), send until the whole body arrived.
    pub latency: Percentiles,
    pub latency_known_users: Percentiles,
    pub latency_cold_users: Percentiles,
    /// Failed requests over the whole run, warm-up included: transport errors, timeouts,
    /// non-200 answers, bodies that are not a recommendation answer.
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Measured answers by their `source` field (`model`, `model+trending`, `trending`).
    pub sources: BTreeMap<String, u64>,
    /// Share of measured answers with at least one model item (`model` or `model+trending`).
    pub model_share: f64,
    /// Share of measured answers entirely from trending.
    pub trending_share: f64,
    /// Measured answers of a known user that came entirely from trending.
    pub known_users_answered_by_trending: u64,
    /// Measured answers with fewer than `limit` (10) items.
    pub short_answers: u64,
    /// CPU seconds per thread during the load (warm-up included): `tokio-runtime-worker` is
    /// the server, `bench-load` the load generator.
    pub cpu_by_thread: Vec<(String, f64)>,
    /// Process CPU seconds ÷ wall seconds during the load.
    pub cpu_cores_busy: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ShopFacts {
    pub products: usize,
    pub categories: usize,
    pub users: usize,
    pub warehouses: usize,
    /// Distinct (user, product) pairs = interaction view rows = matrix non-zeros.
    pub interaction_rows: usize,
    pub purchase_rows: usize,
    pub sold_out_products: usize,
    pub trending_rows: usize,
    pub generate_secs: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ModelFacts {
    pub rank: usize,
    pub iterations: usize,
    pub converged: bool,
    pub fit_secs: f64,
    /// Serving model (similar items precomputed) from the fitted NMF.
    pub build_secs: f64,
}

/// The synthetic shop: dense indices, turned into ids and rows at the edges.
struct Shop {
    /// Category of each product.
    category: Vec<usize>,
    /// Units per (product, warehouse).
    stock: Vec<[i64; WAREHOUSES]>,
    /// Summed interaction weight per (user, product).
    interactions: HashMap<(usize, usize), i64>,
    /// Units bought per (user, product).
    purchases: HashMap<(usize, usize), i64>,
    /// Price in cents per product.
    price: Vec<i64>,
}

fn product_id(p: usize) -> Id {
    Id::from(format!("p-{p:05}").as_str())
}

fn user_id(u: usize) -> String {
    format!("u-{u:05}")
}

fn category_id(c: usize) -> Id {
    Id::from(format!("cat-{c:02}").as_str())
}

/// Users with a taste: most interactions in a couple of favourite categories, by Zipf
/// popularity within the category, the rest by global Zipf popularity. Weights as the
/// pipeline's defaults: view 1, cart add 3, purchase 5 per unit.
fn generate(config: &RecommendConfig, seed: u64) -> Shop {
    let mut rng = StdRng::seed_from_u64(seed);
    let (n, c) = (config.products, config.categories.max(1));
    // Popularity rank → product: shuffled, so best sellers are spread over the categories.
    let mut by_popularity: Vec<usize> = (0..n).collect();
    by_popularity.shuffle(&mut rng);
    let category: Vec<usize> = (0..n).map(|p| p % c).collect();
    let mut in_category: Vec<Vec<usize>> = vec![Vec::new(); c];
    for &p in &by_popularity {
        in_category[category[p]].push(p);
    }
    let global = Zipf::new(n as u64, ZIPF_EXPONENT).expect("products > 0");
    let local: Vec<Zipf<f64>> = in_category
        .iter()
        .map(|ps| Zipf::new(ps.len().max(1) as u64, ZIPF_EXPONENT).expect("a category"))
        .collect();

    let mut interactions = HashMap::new();
    let mut purchases = HashMap::new();
    let mean = config.interactions_per_user.max(2);
    for u in 0..config.users {
        let favourites: Vec<usize> = (0..FAVOURITE_CATEGORIES)
            .map(|_| rng.gen_range(0..c))
            .collect();
        for _ in 0..rng.gen_range(mean / 2..=mean + mean / 2) {
            let p = if rng.gen_bool(FAVOURITE_SHARE) {
                let fav = favourites[rng.gen_range(0..favourites.len())];
                let ps = &in_category[fav];
                if ps.is_empty() {
                    continue;
                }
                ps[local[fav].sample(&mut rng) as usize - 1]
            } else {
                by_popularity[global.sample(&mut rng) as usize - 1]
            };
            let kind: f64 = rng.gen();
            let weight = if kind < 0.80 {
                1
            } else if kind < 0.92 {
                3
            } else {
                *purchases.entry((u, p)).or_insert(0) += 1;
                5
            };
            *interactions.entry((u, p)).or_insert(0) += weight;
        }
    }
    let stock = (0..n)
        .map(|_| {
            if rng.gen_bool(SOLD_OUT_SHARE) {
                return [0; WAREHOUSES];
            }
            let mut s: [i64; WAREHOUSES] = std::array::from_fn(|_| rng.gen_range(0..200));
            // In stock means some units somewhere, so the sold-out share is exactly the one
            // drawn above.
            if s.iter().all(|q| *q == 0) {
                s[0] = 1;
            }
            s
        })
        .collect();
    let price = (0..n).map(|_| rng.gen_range(199..50_000)).collect();
    Shop {
        category,
        stock,
        interactions,
        purchases,
        price,
    }
}

/// The shop as view rows, applied in one batch (stock totals are derived by `apply`).
fn fill_views(views: &Views, shop: &Shop) -> (usize, usize) {
    let n = shop.category.len();
    let mut updates = Vec::new();
    for p in 0..n {
        let id = product_id(p);
        let c = shop.category[p];
        let row = ProductRow {
            product_id: id.clone(),
            name: format!("Product {p}"),
            description: format!(
                "A well-liked item of category {c}, made to last and easy to recommend."
            ),
            price: Money::new(shop.price[p], "EUR"),
            sku: format!("SKU-{p:06}"),
            category_id: category_id(c),
            category_name: Some(format!("Category {c}")),
            brand_id: Id::from(format!("brand-{:03}", p % 97).as_str()),
            brand_name: Some(format!("Brand {}", p % 97)),
            supplier_id: Id::from(format!("sup-{:02}", p % 13).as_str()),
            supplier_name: Some(format!("Supplier {}", p % 13)),
            stock: 0,
            created_at: 0,
            rating_avg: None,
            rating_count: 0,
        };
        updates.push(ViewUpdate::Product {
            key: id.clone(),
            row: Some(row),
        });
        for (w, quantity) in shop.stock[p].iter().enumerate() {
            let warehouse = Id::from(format!("wh-{w}").as_str());
            let row = StockRow {
                product_id: id.clone(),
                warehouse_id: warehouse.clone(),
                warehouse_name: Some(format!("Warehouse {w}")),
                quantity: *quantity,
            };
            updates.push(ViewUpdate::Stock {
                key: (id.clone(), warehouse),
                row: Some(row),
            });
        }
    }
    let mut score = vec![0i64; n];
    for (&(u, p), &weight) in &shop.interactions {
        score[p] += weight;
        let (user, product) = (Id::from(user_id(u).as_str()), product_id(p));
        let row = InteractionRow {
            user_id: user.clone(),
            product_id: product.clone(),
            weight,
        };
        updates.push(ViewUpdate::Interaction {
            key: (user, product),
            row: Some(row),
        });
    }
    for (&(u, p), &quantity) in &shop.purchases {
        let (user, product) = (Id::from(user_id(u).as_str()), product_id(p));
        let row = PurchaseRow {
            user_id: user.clone(),
            product_id: product.clone(),
            quantity,
        };
        updates.push(ViewUpdate::Purchase {
            key: (user, product),
            row: Some(row),
        });
    }
    // Trending over the whole history: every product anyone interacted with.
    let mut trending = 0;
    for (p, &s) in score.iter().enumerate().filter(|(_, s)| **s > 0) {
        let row = TrendingRow {
            product_id: product_id(p),
            category_id: Some(category_id(shop.category[p])),
            score: s,
        };
        updates.push(ViewUpdate::Trending {
            key: product_id(p),
            row: Some(row),
        });
        trending += 1;
    }
    views.apply(updates);
    // The views are complete up to now; reads without a consistency token do not wait for
    // progress, but the lag headers are computed from it as in production.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    views.progress.report(ProgressReport {
        worker: 0,
        peers: 1,
        frontier: now_ms,
        offsets: vec![],
    });
    (
        trending,
        shop.stock
            .iter()
            .filter(|s| s.iter().all(|q| *q <= 0))
            .count(),
    )
}

/// Fits NMF on the weighted user × product matrix (as `shopflow train --from-log` does, with
/// its default regularisation) and builds the serving model from it.
fn fit_model(config: &RecommendConfig, shop: &Shop) -> anyhow::Result<(ServingModel, ModelFacts)> {
    let x = Interactions::from_triplets(
        config.users,
        config.products,
        shop.interactions
            .iter()
            .map(|(&(u, p), &w)| (u, p, w as f64)),
    )
    .context("building the interaction matrix")?;
    let params = Nmf::params(config.rank)
        .max_iter(config.iterations)
        .alpha(0.01)
        .tol(1e-4)
        .seed(0);
    let valid = linfa::ParamGuard::check(params).context("invalid hyperparameters")?;
    let started = Instant::now();
    let nmf = valid
        .fit_with_progress(&x, |_, _| {})
        .context("fitting NMF")?;
    let fit_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let item_ids = (0..config.products)
        .map(|p| product_id(p).to_string())
        .collect();
    let model = ServingModel::from_nmf(1, &nmf, &valid, item_ids, SIMILAR_K)
        .context("building the serving model")?;
    let facts = ModelFacts {
        rank: config.rank,
        iterations: nmf.n_iter(),
        converged: nmf.converged(),
        fit_secs: round3(fit_secs),
        build_secs: round3(started.elapsed().as_secs_f64()),
    };
    Ok((model, facts))
}

pub async fn run(config: &RecommendConfig) -> anyhow::Result<RecommendResult> {
    tracing::info!(
        products = config.products,
        users = config.users,
        clients = config.clients,
        secs = config.duration.as_secs_f64(),
        "recommend suite"
    );
    anyhow::ensure!(config.clients > 0, "--clients must be positive");
    anyhow::ensure!(
        config.products > 0 && config.users > 0,
        "the shop needs products and users"
    );

    // Generation and fitting are CPU-bound: off the async workers.
    let setup = config.clone();
    let (shop, generate_secs, model, model_facts) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let shop = generate(&setup, 3);
        let generate_secs = started.elapsed().as_secs_f64();
        fit_model(&setup, &shop).map(|(model, facts)| (shop, generate_secs, model, facts))
    })
    .await??;
    tracing::info!(
        fit_secs = model_facts.fit_secs,
        iterations = model_facts.iterations,
        "model fitted"
    );

    let views = Arc::new(Views::new());
    let (trending_rows, sold_out) = fill_views(&views, &shop);
    let shop_facts = ShopFacts {
        products: config.products,
        categories: config.categories,
        users: config.users,
        warehouses: WAREHOUSES,
        interaction_rows: shop.interactions.len(),
        purchase_rows: shop.purchases.len(),
        sold_out_products: sold_out,
        trending_rows,
        generate_secs: round3(generate_secs),
    };
    let slot = Arc::new(ModelSlot::new());
    slot.set(Some(Box::new(ModelAdapter::new(model))));

    // The server needs a log for writes and lag headers; recommendation reads never touch it.
    let dir = config.scratch.join(format!(
        "recommend-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let log = shopflow_ingest::open(&LogSettings {
        kafka: None,
        namespace: String::new(),
        partitions: 1,
        data_dir: dir.clone(),
    })
    .await?;
    let serving = ServingConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        // A throwaway signing key: this suite signs nobody in.
        auth: shopflow_serving::AuthConfig { key: Some(uuid::Uuid::new_v4().to_string().repeat(2)), ..Default::default() },
        // The load comes from one address; the limits are not what this measures.
        gateway: shopflow_serving::GatewayConfig { rate_limits: false, ..Default::default() },
        source_topics: SOURCE_TOPICS.iter().map(|t| t.name().to_owned()).collect(),
        ..Default::default()
    };
    let app = Application::build(serving, log.clone(), views.clone())
        .await?
        .with_models(slot);
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Bound already: connections made before the accept loop runs wait in the backlog.
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let plan = LoadPlan {
        addr,
        users: (0..config.users).map(user_id).collect(),
        cold_share: config.cold_share,
        clients: config.clients,
        warmup: config.warmup,
        duration: config.duration,
    };
    let load = drive(plan).await;
    let _ = stop.send(());
    let served = server.await;
    drop(log);
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove the recommend suite's scratch directory");
    }
    let load = load?;
    served
        .context("the server task panicked")?
        .context("the server failed")?;

    let s = &load.stats;
    let count = |name: &str| s.sources.get(name).copied().unwrap_or(0);
    let share = |n: u64| {
        if s.requests > 0 {
            round3(n as f64 / s.requests as f64)
        } else {
            0.0
        }
    };
    let result = RecommendResult {
        shop: shop_facts,
        model: model_facts,
        clients: config.clients,
        cold_share: config.cold_share,
        warmup_secs: config.warmup.as_secs_f64(),
        duration_secs: config.duration.as_secs_f64(),
        requests: s.requests,
        requests_per_sec: (s.requests as f64 / config.duration.as_secs_f64()).round(),
        latency: Percentiles::of(&s.all),
        latency_known_users: Percentiles::of(&s.known),
        latency_cold_users: Percentiles::of(&s.cold),
        errors: s.errors,
        error_samples: s.error_samples.clone(),
        model_share: share(count("model") + count("model+trending")),
        trending_share: share(count("trending")),
        sources: s.sources.clone(),
        known_users_answered_by_trending: s.known_by_trending,
        short_answers: s.short_answers,
        cpu_by_thread: load.cpu_by_thread,
        cpu_cores_busy: load.cpu_cores_busy,
    };
    tracing::info!(
        requests_per_sec = result.requests_per_sec,
        p50_ms = result.latency.p50_ms,
        p99_ms = result.latency.p99_ms,
        errors = result.errors,
        model_share = result.model_share,
        "recommend measured"
    );
    Ok(result)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

struct LoadPlan {
    addr: SocketAddr,
    users: Vec<String>,
    cold_share: f64,
    clients: usize,
    warmup: Duration,
    duration: Duration,
}

struct LoadOutcome {
    stats: ClientStats,
    cpu_by_thread: Vec<(String, f64)>,
    cpu_cores_busy: f64,
}

/// Runs the clients on a thread of their own with a single-threaded runtime: the server keeps
/// the multi-threaded runtime it has in production, and the load generator can take at most
/// one core's worth of CPU from it (its share is reported per thread).
async fn drive(plan: LoadPlan) -> anyhow::Result<LoadOutcome> {
    let thread = std::thread::Builder::new()
        .name("bench-load".into())
        .spawn(move || -> anyhow::Result<LoadOutcome> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let plan = Arc::new(plan);
                // Sampled here, not by the caller: this thread's CPU is lost once it ends.
                let cpu_before = ThreadCpu::sample();
                let began = Instant::now();
                let measure_from = began + plan.warmup;
                let end = measure_from + plan.duration;
                let tasks: Vec<_> = (0..plan.clients)
                    .map(|i| tokio::spawn(client(i, plan.clone(), measure_from, end)))
                    .collect();
                let mut stats = ClientStats::new();
                for task in tasks {
                    stats.merge(task.await.context("a load client panicked")?);
                }
                let wall = began.elapsed().as_secs_f64();
                let cpu_by_thread = ThreadCpu::sample().since(&cpu_before);
                let busy = cpu_by_thread.iter().map(|(_, s)| s).sum::<f64>() / wall.max(1e-9);
                Ok(LoadOutcome {
                    stats,
                    cpu_by_thread,
                    cpu_cores_busy: (busy * 100.0).round() / 100.0,
                })
            })
        })
        .context("starting the load thread")?;
    // Joining blocks until the fixed-duration load is over, so it waits on the blocking pool.
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow!("the load thread panicked"))?
}

struct ClientStats {
    all: Histogram<u64>,
    known: Histogram<u64>,
    cold: Histogram<u64>,
    requests: u64,
    errors: u64,
    error_samples: Vec<String>,
    sources: BTreeMap<String, u64>,
    known_by_trending: u64,
    short_answers: u64,
}

impl ClientStats {
    fn new() -> Self {
        let h =
            || Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("valid histogram bounds");
        Self {
            all: h(),
            known: h(),
            cold: h(),
            requests: 0,
            errors: 0,
            error_samples: Vec::new(),
            sources: BTreeMap::new(),
            known_by_trending: 0,
            short_answers: 0,
        }
    }

    fn merge(&mut self, other: ClientStats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.all.add(&other.all);
        let _ = self.known.add(&other.known);
        let _ = self.cold.add(&other.cold);
        self.requests += other.requests;
        self.errors += other.errors;
        for e in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&e) {
                self.error_samples.push(e);
            }
        }
        for (k, v) in other.sources {
            *self.sources.entry(k).or_insert(0) += v;
        }
        self.known_by_trending += other.known_by_trending;
        self.short_answers += other.short_answers;
    }

    fn error(&mut self, e: anyhow::Error) {
        self.errors += 1;
        let text = format!("{e:#}");
        if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&text) {
            self.error_samples.push(text);
        }
    }
}

/// The part of an answer the suite checks.
#[derive(Deserialize)]
struct Answer {
    source: String,
    items: Vec<serde::de::IgnoredAny>,
}

/// One closed-loop client: sends its next request as soon as the previous answer is in.
async fn client(
    index: usize,
    plan: Arc<LoadPlan>,
    measure_from: Instant,
    end: Instant,
) -> ClientStats {
    let mut rng = StdRng::seed_from_u64(0x5eed_0000 + index as u64);
    let mut stats = ClientStats::new();
    let mut connection: Option<Connection> = None;
    let mut path = String::with_capacity(64);
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let cold = rng.gen_bool(plan.cold_share);
        path.clear();
        if cold {
            // Never a known user: known ids start with `u-`.
            let _ = write!(path, "/api/v1/recommend/user/cold-{}", rng.gen::<u32>());
        } else {
            let _ = write!(
                path,
                "/api/v1/recommend/user/{}",
                plan.users[rng.gen_range(0..plan.users.len())]
            );
        }
        let answer =
            match tokio::time::timeout(REQUEST_TIMEOUT, request(&mut connection, plan.addr, &path))
                .await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    connection = None;
                    stats.error(e.context(path.clone()));
                    continue;
                }
                Err(_) => {
                    connection = None;
                    stats.error(anyhow!("{path}: no answer within {REQUEST_TIMEOUT:?}"));
                    continue;
                }
            };
        let micros = started.elapsed().as_micros() as u64;
        if started < measure_from {
            continue;
        }
        stats.requests += 1;
        stats.all.saturating_record(micros);
        if cold {
            stats.cold.saturating_record(micros);
        } else {
            stats.known.saturating_record(micros);
            stats.known_by_trending += u64::from(answer.source == "trending");
        }
        stats.short_answers += u64::from(answer.items.len() < LIMIT);
        *stats.sources.entry(answer.source).or_insert(0) += 1;
    }
    stats
}

/// One GET on the client's connection (opened first if there is none); a connection the
/// server closes is forgotten so the next request opens a new one.
async fn request(
    connection: &mut Option<Connection>,
    addr: SocketAddr,
    path: &str,
) -> anyhow::Result<Answer> {
    if connection.is_none() {
        *connection = Some(Connection::open(addr).await?);
    }
    let conn = connection.as_mut().expect("opened above");
    let (status, keep_alive) = conn.get(path, "").await?;
    let answer = if status == 200 {
        serde_json::from_slice(&conn.body).context("not a recommendation answer")
    } else {
        let text = String::from_utf8_lossy(&conn.body[..conn.body.len().min(200)]).into_owned();
        Err(anyhow!("status {status}: {text}"))
    };
    if !keep_alive {
        *connection = None;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shop_has_tastes_stock_and_purchases() {
        let config = RecommendConfig::new(true, 1, None, PathBuf::from("unused"));
        let shop = generate(&config, 1);
        let users: std::collections::HashSet<usize> =
            shop.interactions.keys().map(|(u, _)| *u).collect();
        assert_eq!(users.len(), config.users);
        let mean = shop.interactions.values().count() as f64 / config.users as f64;
        assert!(
            (8.0..=30.0).contains(&mean),
            "{mean} distinct products per user"
        );
        assert!(!shop.purchases.is_empty());
        let sold_out = shop
            .stock
            .iter()
            .filter(|s| s.iter().all(|q| *q == 0))
            .count();
        assert!(
            sold_out > 0 && sold_out < config.products / 5,
            "{sold_out} sold out"
        );
        let views = Views::new();
        let (trending, _) = fill_views(&views, &shop);
        assert_eq!(views.products.len(), config.products);
        assert!(trending > 0);
        let row = views.products.get(&product_id(0)).unwrap();
        assert_eq!(row.stock, shop.stock[0].iter().sum::<i64>());
        assert!(!views
            .user_interactions(&Id::from(user_id(0).as_str()))
            .is_empty());
    }
}
