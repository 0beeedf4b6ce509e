//! The open-loop load generator of `POST /api/v1/orders?wait=decision` (or `reservation`).
//!
//! Request k is due at start + k / rate, whatever happened to the ones before it: a slow answer
//! never delays the schedule, and each latency is measured from the request's *due* time, so
//! time spent waiting for a free connection counts (no coordinated omission). Requests go out
//! over a pool of keep-alive connections from one thread of their own (one core at most for
//! the generator, as in the other HTTP suites); every request carries its own
//! `Idempotency-Key` and its customer's access token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::shop;
use crate::http::Connection;
use crate::pipeline::histogram;

/// Most requests in flight at once; beyond, a request waits for a connection (and that wait
/// is part of its latency).
const CONNECTIONS: usize = 512;
/// Error answers kept verbatim for the report.
const ERROR_SAMPLES: usize = 5;

/// One planned request.
pub(crate) struct Job {
    pub(crate) due: Duration,
    pub(crate) customer: usize,
    pub(crate) key: String,
    pub(crate) body: Vec<u8>,
    /// The probe product it orders, for freshness.
    pub(crate) probe: Option<u64>,
}

/// A probe order's answer (201, or 202 when not decided within the server's bound).
pub(crate) struct ProbeAnswer {
    pub(crate) probe: u64,
    pub(crate) order_id: String,
    pub(crate) status: String,
    /// Wall clock (µs since the epoch) when the answer arrived.
    pub(crate) answered_us: i64,
}

pub(crate) struct RunOutput {
    /// Due time until the whole answer was read.
    pub(crate) latency: Histogram<u64>,
    /// Send until the answer: what the server took, without waiting for a connection.
    pub(crate) service: Histogram<u64>,
    /// How late requests were sent against their due time (timer slack, the generator's CPU).
    pub(crate) send_lag: Histogram<u64>,
    pub(crate) statuses: BTreeMap<String, u64>,
    pub(crate) outcomes: BTreeMap<String, u64>,
    pub(crate) error_samples: Vec<String>,
    pub(crate) sent: u64,
    /// Start until the last request was sent / the last answer arrived.
    pub(crate) send_secs: f64,
    pub(crate) wall_secs: f64,
    pub(crate) probes: Vec<ProbeAnswer>,
    /// Every order answered 201 `paid`: (order id, sent, answered), wall clock µs.
    pub(crate) paid: Vec<(String, i64, i64)>,
}

pub(crate) fn wall_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or_default()
}

struct Answer {
    status: Result<u16, String>,
    body: Option<Value>,
    due: Instant,
    sent: Instant,
    done: Instant,
    answered_us: i64,
    sent_us: i64,
    probe: Option<u64>,
}

/// Runs the planned requests against `addr` on a thread of its own; returns once every
/// request has been answered (or failed).
pub(crate) async fn run(addr: SocketAddr, wait: &str, tokens: Arc<Vec<String>>, jobs: Vec<Job>) -> anyhow::Result<RunOutput> {
    let path: Arc<str> = format!("/api/v1/orders?wait={wait}").into();
    let thread = std::thread::Builder::new().name("bench-orders".into()).spawn(move || -> anyhow::Result<RunOutput> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(drive(addr, path, tokens, jobs))
    })?;
    tokio::task::spawn_blocking(move || thread.join()).await?.map_err(|_| anyhow!("the order load thread panicked"))?
}

async fn drive(addr: SocketAddr, path: Arc<str>, tokens: Arc<Vec<String>>, jobs: Vec<Job>) -> anyhow::Result<RunOutput> {
    let pool: Arc<Mutex<Vec<Connection>>> = Arc::new(Mutex::new(Vec::new()));
    let permits = Arc::new(Semaphore::new(CONNECTIONS));
    let mut send_lag = histogram();
    let sent = jobs.len() as u64;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(jobs.len());
    for job in jobs {
        let due = start + job.due;
        tokio::time::sleep_until(due).await;
        send_lag.saturating_record(Instant::now().saturating_duration_since(due.into_std()).as_micros() as u64);
        let (pool, permits, tokens, path) = (pool.clone(), permits.clone(), tokens.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let headers = format!("authorization: Bearer {}\r\nidempotency-key: {}\r\n", tokens[job.customer], job.key);
            let taken = pool.lock().expect("not poisoned").pop();
            let sent = Instant::now();
            let sent_us = wall_us();
            let mut connection = match taken {
                Some(c) => Ok(c),
                None => Connection::open(addr).await,
            };
            let status = match &mut connection {
                Ok(c) => c.post_json(&path, &headers, &job.body).await,
                Err(e) => Err(anyhow!("{e:#}")),
            };
            let done = Instant::now();
            let answered_us = wall_us();
            let (status, body) = match (status, connection) {
                (Ok((status, keep)), Ok(c)) => {
                    let body = serde_json::from_slice::<Value>(&c.body).ok();
                    if keep {
                        pool.lock().expect("not poisoned").push(c);
                    }
                    (Ok(status), body)
                }
                (Err(e), _) | (_, Err(e)) => (Err(format!("{e:#}")), None),
            };
            Answer { status, body, due: due.into_std(), sent, done, answered_us, sent_us, probe: job.probe }
        }));
    }
    let last_send = Instant::now();
    let start = start.into_std();
    let mut out = RunOutput {
        latency: histogram(),
        service: histogram(),
        send_lag,
        statuses: BTreeMap::new(),
        outcomes: BTreeMap::new(),
        error_samples: Vec::new(),
        sent,
        send_secs: last_send.duration_since(start).as_secs_f64(),
        wall_secs: 0.0,
        probes: Vec::new(),
        paid: Vec::new(),
    };
    let mut last_done = start;
    for task in tasks {
        let answer = task.await.map_err(|_| anyhow!("a request task panicked"))?;
        last_done = last_done.max(answer.done);
        let field = |name: &str| answer.body.as_ref().and_then(|b| b[name].as_str()).unwrap_or_default().to_owned();
        let key = match &answer.status {
            Ok(status) => status.to_string(),
            Err(e) => {
                if out.error_samples.len() < ERROR_SAMPLES {
                    out.error_samples.push(e.clone());
                }
                "error".to_owned()
            }
        };
        *out.statuses.entry(key).or_insert(0) += 1;
        match answer.status {
            Ok(201) => {
                out.latency.saturating_record(answer.done.duration_since(answer.due).as_micros() as u64);
                out.service.saturating_record(answer.done.duration_since(answer.sent).as_micros() as u64);
                *out.outcomes.entry(shop::outcome(&field("status"), &field("reason"))).or_insert(0) += 1;
                if field("status") == "paid" {
                    out.paid.push((field("order_id"), answer.sent_us, answer.answered_us));
                }
                if let Some(probe) = answer.probe {
                    out.probes.push(ProbeAnswer { probe, order_id: field("order_id"), status: field("status"), answered_us: answer.answered_us });
                }
            }
            Ok(202) => {
                // Not decided within the server's bound: its time still counts.
                out.latency.saturating_record(answer.done.duration_since(answer.due).as_micros() as u64);
                out.service.saturating_record(answer.done.duration_since(answer.sent).as_micros() as u64);
                *out.outcomes.entry(format!("202:{}", field("status"))).or_insert(0) += 1;
                if let Some(probe) = answer.probe {
                    out.probes.push(ProbeAnswer { probe, order_id: field("order_id"), status: field("status"), answered_us: answer.answered_us });
                }
            }
            Ok(other) => {
                if out.error_samples.len() < ERROR_SAMPLES {
                    out.error_samples.push(format!("{other}: {}", answer.body.map(|b| b.to_string()).unwrap_or_default()));
                }
            }
            Err(_) => {}
        }
    }
    out.wall_secs = last_done.duration_since(start).as_secs_f64();
    Ok(out)
}
