//! Latency with one client and throughput with N, the same way for every engine: one client
//! runs `samples` queries one after another; N clients run queries for `duration`, each
//! starting the next when the last answered (closed loop).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use shopflow_views::Views;

use super::pg::Postgres;

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub qps: f64,
    /// p99 at N clients.
    pub p99_ms_loaded: f64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

fn latency(single: &Histogram<u64>, loaded: &Histogram<u64>, count: u64, duration: Duration) -> Latency {
    Latency { p50_ms: ms(single, 0.5), p99_ms: ms(single, 0.99), qps: count as f64 / duration.as_secs_f64(), p99_ms_loaded: ms(loaded, 0.99) }
}

/// A search in this process (blocking calls on OS threads).
pub fn blocking(search: &(impl Fn(&str) -> usize + Sync), queries: &[String], samples: usize, clients: usize, duration: Duration) -> Latency {
    let mut single = histogram();
    for q in queries.iter().cycle().take(samples) {
        let started = Instant::now();
        std::hint::black_box(search(q));
        single.record(started.elapsed().as_micros() as u64).ok();
    }
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let results: Vec<(u64, Histogram<u64>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut h = histogram();
                    let mut n = 0;
                    for q in queries.iter().cycle().skip(c * 37) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let t = Instant::now();
                        std::hint::black_box(search(q));
                        h.record(t.elapsed().as_micros() as u64).ok();
                        n += 1;
                    }
                    (n, h)
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    let elapsed = started.elapsed();
    let mut loaded = histogram();
    let mut count = 0;
    for (n, h) in results {
        count += n;
        loaded.add(h).ok();
    }
    latency(&single, &loaded, count, elapsed)
}

/// The real server on an embedded log, its own index over `views`, synced.
pub struct HttpServer {
    pub base: String,
    log: Arc<dyn shopflow_ingest::EventLog>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn http_server(views: Arc<Views>) -> anyhow::Result<HttpServer> {
    let dir = tempfile::tempdir()?;
    let log: Arc<dyn shopflow_ingest::EventLog> = Arc::new(shopflow_ingest::EmbeddedLog::open(&dir.path().join("log"))?);
    for topic in shopflow_events::Topic::ALL {
        log.ensure_topic(&shopflow_ingest::TopicSpec::new(topic.name(), 4)).await?;
    }
    let config = shopflow_serving::ServingConfig {
        listen: "127.0.0.1:0".parse()?,
        // A throwaway signing key: this suite signs nobody in.
        auth: shopflow_serving::AuthConfig { key: Some(uuid::Uuid::new_v4().to_string().repeat(2)), ..Default::default() },
        // The load comes from one address; the limits are not what this measures.
        gateway: shopflow_serving::GatewayConfig { rate_limits: false, ..Default::default() },
        ..Default::default()
    };
    let app = shopflow_serving::Application::build(config, log.clone(), views).await?;
    let base = format!("http://{}", app.local_addr());
    let search = app.state().search.clone();
    search.sync();
    search.wait_synced().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    Ok(HttpServer { base, log, stop: Some(stop), _dir: dir })
}

impl HttpServer {
    /// Returns once the server has written every `search.performed` of the previous run: the
    /// interactions topic did not grow for 100 ms. So the one-client samples of a class do not
    /// run while the log writer still appends the thousands of events of the previous class's
    /// 16-client run (a quiet server, as in process).
    pub async fn settled(&self) -> anyhow::Result<()> {
        let topic = shopflow_events::Topic::Interactions.name();
        let mut last = self.log.end_offsets(topic).await?;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.log.end_offsets(topic).await?;
            if now == last {
                return Ok(());
            }
            last = now;
        }
    }
}

fn url(base: &str, query: &str) -> String {
    let encoded: String = query
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    format!("{base}/api/v1/products/search?limit=10&q={encoded}")
}

pub async fn http(server: &HttpServer, queries: &[String], samples: usize, clients: usize, duration: Duration) -> anyhow::Result<Latency> {
    let base = server.base.as_str();
    server.settled().await?;
    let client = reqwest::Client::new();
    let mut single = histogram();
    for q in queries.iter().cycle().take(samples) {
        let started = Instant::now();
        let response = client.get(url(base, q)).send().await?;
        anyhow::ensure!(response.status().is_success(), "{}", response.status());
        response.bytes().await?;
        single.record(started.elapsed().as_micros() as u64).ok();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, base, queries) = (stop.clone(), base.to_owned(), queries.to_vec());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut h = histogram();
                let mut n = 0u64;
                for q in queries.iter().cycle().skip(c * 37) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let t = Instant::now();
                    if let Ok(response) = client.get(url(&base, q)).send().await {
                        let _ = response.bytes().await;
                    }
                    h.record(t.elapsed().as_micros() as u64).ok();
                    n += 1;
                }
                (n, h)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut loaded = histogram();
    let mut count = 0;
    for worker in workers {
        let (n, h) = worker.await?;
        count += n;
        loaded.add(h).ok();
    }
    Ok(latency(&single, &loaded, count, started.elapsed()))
}

pub async fn postgres(pg: &Postgres, queries: &[String], samples: usize, clients: usize, duration: Duration) -> anyhow::Result<Latency> {
    let client = pg.connect().await?;
    let statement = Postgres::prepare(&client).await?;
    let mut single = histogram();
    for q in queries.iter().cycle().take(samples) {
        let started = Instant::now();
        Postgres::search(&client, &statement, q).await?;
        single.record(started.elapsed().as_micros() as u64).ok();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut connections = Vec::new();
    for _ in 0..clients {
        let client = pg.connect().await?;
        let statement = Postgres::prepare(&client).await?;
        connections.push((client, statement));
    }
    let started = Instant::now();
    let workers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(c, (client, statement))| {
            let (stop, queries) = (stop.clone(), queries.to_vec());
            tokio::spawn(async move {
                let mut h = histogram();
                let mut n = 0u64;
                for q in queries.iter().cycle().skip(c * 37) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let t = Instant::now();
                    let _ = Postgres::search(&client, &statement, q).await;
                    h.record(t.elapsed().as_micros() as u64).ok();
                    n += 1;
                }
                (n, h)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut loaded = histogram();
    let mut count = 0;
    for worker in workers {
        let (n, h) = worker.await?;
        count += n;
        loaded.add(h).ok();
    }
    Ok(latency(&single, &loaded, count, started.elapsed()))
}
