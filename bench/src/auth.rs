//! The `auth` suite: what signing in costs, and what checking an access token costs a read.
//!
//! One process: the embedded log, the real pipeline, and two real HTTP servers on the same
//! views (rate limits off on one, on with quotas above the offered load on the other).
//!
//! - **hash**: argon2id with OWASP's parameters alone, on one thread: the floor of a login.
//! - **login**: `POST /api/v1/auth/login` from one client, one after the other: hash verify,
//!   the session event made durable, and the pipeline's views passing it.
//! - **reads**: `GET /api/v1/products/{id}` from closed-loop clients, anonymous against with a
//!   customer's access token (signature, expiry and revocation checked per request), in
//!   alternating rounds so drift hits both alike; and with the token through the server that
//!   also applies the rate limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use shopflow_dataflow::pipeline::{self, PipelineConfig};
use shopflow_dataflow::views::Views;
use shopflow_events::Topic;
use shopflow_ingest::{EventLog, LogSettings, TopicSpec};
use shopflow_serving::gateway::RateConfig;
use shopflow_serving::{Application, ServingConfig};

use super::http::Connection;
use super::pipeline::Percentiles;

pub struct AuthConfig {
    pub clients: usize,
    pub round: Duration,
    pub rounds: usize,
    pub logins: usize,
    pub hashes: usize,
    pub products: usize,
    pub scratch: PathBuf,
}

impl AuthConfig {
    pub fn new(quick: bool, clients: usize, scratch: PathBuf) -> Self {
        Self {
            clients,
            round: Duration::from_secs(if quick { 1 } else { 2 }),
            rounds: if quick { 1 } else { 5 },
            logins: if quick { 20 } else { 200 },
            hashes: if quick { 5 } else { 30 },
            products: if quick { 200 } else { 2_000 },
            scratch,
        }
    }
}

#[derive(Serialize)]
pub struct AuthResult {
    pub argon2id_hash_ms: Percentiles,
    pub login_ms: Percentiles,
    pub login_samples: usize,
    pub clients: usize,
    pub round_secs: f64,
    /// Requests per second of each round, in the order run.
    pub anonymous_rps: Vec<f64>,
    pub jwt_rps: Vec<f64>,
    pub jwt_with_rate_limits_rps: Vec<f64>,
    pub anonymous_ms: Percentiles,
    pub jwt_ms: Percentiles,
    /// 1 − median(jwt) / median(anonymous), in percent: what the token check costs a read.
    pub jwt_overhead_pct: f64,
    /// The same with the rate limiter on as well.
    pub jwt_and_limits_overhead_pct: f64,
    /// The check alone, in process: signature, expiry, issuer, and the session lookup in the
    /// sessions view, per token, on one thread.
    pub token_check_us: f64,
    /// That check as a share of the server time an anonymous read costs at the measured
    /// throughput (cores / anonymous req/s), in percent.
    pub token_check_share_pct: f64,
    pub errors: u64,
}

pub async fn run(config: &AuthConfig) -> anyhow::Result<AuthResult> {
    let dir = config.scratch.join(format!("auth-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let settings = LogSettings { kafka: None, namespace: String::new(), partitions: 4, data_dir: dir.join("log") };
    let log = shopflow_ingest::open(&settings).await?;
    for topic in Topic::ALL {
        log.ensure_topic(&TopicSpec::new(topic.name(), if topic == Topic::Dlq { 1 } else { 4 })).await?;
    }
    for chunk in shopflow_shopdata::demo::records(config.products).chunks(1_000) {
        log.append(chunk.to_vec()).await?;
    }
    let views = Arc::new(Views::new());
    let pipeline_config =
        PipelineConfig { data_dir: dir.join("pipeline"), snapshot_interval_ms: 3_600_000, snapshot_on_stop: false, ..PipelineConfig::default() };
    let handle = {
        let (log, views) = (log.clone(), views.clone());
        tokio::task::spawn_blocking(move || pipeline::start(pipeline_config, log, Some(views))).await??
    };

    let serving: ServingConfig = super::http::serving_config();
    let serving_keys = serving.auth.clone();
    let mut limited = serving.clone();
    limited.gateway.rate_limits = true;
    // Quotas well above what the clients can offer: the limiter's bookkeeping is measured,
    // not its refusals.
    limited.gateway.per_ip = RateConfig::new(1_000_000, Duration::from_nanos(1_000));
    limited.gateway.per_user = RateConfig::new(1_000_000, Duration::from_nanos(1_000));
    let open = start(serving, log.clone(), views.clone()).await?;
    let guarded = start(limited, log.clone(), views.clone()).await?;

    let hash = hash_cost(config.hashes).await?;
    let client = reqwest::Client::new();
    let base = format!("http://{}", open.addr);
    let registered = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": "bench@example.com", "password": "bench-password-1"}))
        .send()
        .await?;
    anyhow::ensure!(registered.status().as_u16() == 201, "register: {}", registered.status());
    let (login, token) = logins(&client, &base, config.logins).await?;

    let ids: Vec<String> = loop {
        let ids: Vec<String> = views.products.snapshot().into_iter().map(|(id, _)| id.to_string()).collect();
        if ids.len() >= config.products {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // the demo catalog is being applied
    };
    let ids = Arc::new(ids);
    let header = format!("authorization: Bearer {token}\r\n");
    let (mut anonymous, mut jwt, mut limited_runs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut anonymous_h, mut jwt_h) = (histogram(), histogram());
    let mut errors = 0;
    // Warm-up round, not recorded.
    drive(open.addr, ids.clone(), String::new(), config.clients, config.round / 2).await?;
    for _ in 0..config.rounds {
        let a = drive(open.addr, ids.clone(), String::new(), config.clients, config.round).await?;
        let j = drive(open.addr, ids.clone(), header.clone(), config.clients, config.round).await?;
        let l = drive(guarded.addr, ids.clone(), header.clone(), config.clients, config.round).await?;
        anonymous.push(a.rps);
        jwt.push(j.rps);
        limited_runs.push(l.rps);
        anonymous_h.add(&a.latency).ok();
        jwt_h.add(&j.latency).ok();
        errors += a.errors + j.errors + l.errors;
    }
    let token_check_us = token_check_cost(&token, &views, &serving_keys)?;
    open.stop().await;
    guarded.stop().await;
    tokio::task::spawn_blocking(move || handle.stop()).await??;
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let read_cost_us = cores * 1e6 / median(&anonymous).max(1.0);
    let overhead = |with: &[f64]| ((1.0 - median(with) / median(&anonymous).max(1e-9)) * 1000.0).round() / 10.0;
    Ok(AuthResult {
        argon2id_hash_ms: hash,
        login_ms: percentiles_ms(&login),
        login_samples: config.logins,
        clients: config.clients,
        round_secs: config.round.as_secs_f64(),
        jwt_overhead_pct: overhead(&jwt),
        jwt_and_limits_overhead_pct: overhead(&limited_runs),
        token_check_us: (token_check_us * 100.0).round() / 100.0,
        token_check_share_pct: (token_check_us / read_cost_us * 1000.0).round() / 10.0,
        anonymous_rps: anonymous,
        jwt_rps: jwt,
        jwt_with_rate_limits_rps: limited_runs,
        anonymous_ms: percentiles_ms(&anonymous_h),
        jwt_ms: percentiles_ms(&jwt_h),
        errors,
    })
}

struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), shopflow_serving::ServingError>>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn start(config: ServingConfig, log: Arc<dyn EventLog>, views: Arc<Views>) -> anyhow::Result<Running> {
    let app = Application::build(config, log, views).await?;
    let addr = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Ok(Running { addr, stop, task })
}

/// Microseconds per access-token check, as `auth::authenticate` does it: verify the JWT, then
/// look its session up in the sessions view.
fn token_check_cost(token: &str, views: &Views, config: &shopflow_serving::AuthConfig) -> anyhow::Result<f64> {
    let keys = shopflow_serving::auth::KeyRing::from_config(config)?;
    const CHECKS: u32 = 100_000;
    let started = Instant::now();
    for _ in 0..CHECKS {
        let claims = keys.verify(std::hint::black_box(token)).map_err(|e| anyhow!("{e}"))?;
        let session = shopflow_events::Id::new(claims.sid).map_err(|e| anyhow!("{e}"))?;
        std::hint::black_box(views.sessions.get(&session));
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(CHECKS))
}

async fn hash_cost(n: usize) -> anyhow::Result<Percentiles> {
    let h = tokio::task::spawn_blocking(move || {
        let mut h = histogram();
        for i in 0..n {
            let started = Instant::now();
            shopflow_serving::auth::password::hash_blocking(&format!("bench-password-{i}")).expect("hashes");
            h.saturating_record(started.elapsed().as_micros() as u64);
        }
        h
    })
    .await?;
    Ok(percentiles_ms(&h))
}

/// `n` sign-ins one after the other; the latencies and the last access token.
async fn logins(client: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<(Histogram<u64>, String)> {
    let mut h = histogram();
    let mut token = String::new();
    let body = json!({"email": "bench@example.com", "password": "bench-password-1"});
    while h.len() < n as u64 {
        let started = Instant::now();
        let response = client.post(format!("{base}/api/v1/auth/login")).json(&body).send().await?;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        match status {
            200 => {
                h.saturating_record(started.elapsed().as_micros() as u64);
                token = answer["access_token"].as_str().context("access token")?.to_owned();
            }
            // The registration has not reached the views yet.
            401 if h.is_empty() => tokio::task::yield_now().await,
            other => anyhow::bail!("login: {other} {answer}"),
        }
    }
    Ok((h, token))
}

struct Round {
    rps: f64,
    latency: Histogram<u64>,
    errors: u64,
}

/// Closed-loop clients on a thread of their own (one core at most, as in `recommend`).
async fn drive(addr: SocketAddr, ids: Arc<Vec<String>>, header: String, clients: usize, length: Duration) -> anyhow::Result<Round> {
    let thread = std::thread::Builder::new().name("bench-load".into()).spawn(move || -> anyhow::Result<Round> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let end = Instant::now() + length;
            let tasks: Vec<_> = (0..clients)
                .map(|i| {
                    let (ids, header) = (ids.clone(), header.clone());
                    tokio::spawn(async move {
                        let mut rng = StdRng::seed_from_u64(i as u64);
                        let (mut h, mut errors) = (histogram(), 0u64);
                        let mut connection: Option<Connection> = None;
                        while Instant::now() < end {
                            let path = format!("/api/v1/products/{}", ids[rng.gen_range(0..ids.len())]);
                            let started = Instant::now();
                            let outcome = async {
                                if connection.is_none() {
                                    connection = Some(Connection::open(addr).await?);
                                }
                                let (status, keep) = connection.as_mut().expect("opened").get(&path, &header).await?;
                                if !keep {
                                    connection = None;
                                }
                                anyhow::ensure!(status == 200, "status {status}");
                                Ok::<_, anyhow::Error>(())
                            }
                            .await;
                            match outcome {
                                Ok(()) => h.saturating_record(started.elapsed().as_micros() as u64),
                                Err(_) => {
                                    errors += 1;
                                    connection = None;
                                }
                            }
                        }
                        (h, errors)
                    })
                })
                .collect();
            let mut round = Round { rps: 0.0, latency: histogram(), errors: 0 };
            for task in tasks {
                let (h, errors) = task.await.map_err(|_| anyhow!("a load client panicked"))?;
                round.latency.add(&h).ok();
                round.errors += errors;
            }
            round.rps = (round.latency.len() as f64 / length.as_secs_f64()).round();
            Ok(round)
        })
    })?;
    tokio::task::spawn_blocking(move || thread.join()).await?.map_err(|_| anyhow!("the load thread panicked"))?
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn percentiles_ms(h: &Histogram<u64>) -> Percentiles {
    Percentiles::of(h)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}
