//! Phase `orders`: `POST /api/v1/orders?wait=decision` over HTTP at fixed rates (a short sweep
//! up to the aim's 2,000 orders/s), against the whole shop in this process, with top-sellers
//! freshness measured from the probe orders mixed into each run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fresh::{self, FreshnessResult, SeenAt, Stat};
use super::load::{self, Job};
use super::shop::{self, probe_category, Shop, PROBES_PER_CATEGORY};
use super::stack::Stack;
use super::timeline::{self, Timeline};
use super::CommerceConfig;
use crate::machine::{MachineCpu, ThreadCpu};
use crate::pipeline::{process_cpu, source_targets, Percentiles, PhaseLoad};
use shopflow_events::Topic;

#[derive(Debug, Serialize, Deserialize)]
pub struct RateRun {
    /// `decision` (the aim's), or `reservation`: the same orders answered once the stock is
    /// held, without the payment's round trip through the worker and the simulated gateway.
    pub wait: String,
    pub target_rate: f64,
    pub duration_secs: f64,
    pub requests: u64,
    /// Requests sent ÷ time from start to the last send.
    pub sent_rate: f64,
    /// Answers ÷ time from start to the last answer.
    pub answered_rate: f64,
    /// From each request's due time (coordinated omission included), 201 and 202 answers.
    pub latency: Percentiles,
    /// From the actual send (without waiting for a connection).
    pub service: Percentiles,
    pub send_lag: Percentiles,
    /// By HTTP status (`error`: no answer).
    pub statuses: BTreeMap<String, u64>,
    /// 201 by order status (and reason), 202 as `202:<status>`.
    pub outcomes: BTreeMap<String, u64>,
    pub error_samples: Vec<String>,
    pub probes: u64,
    /// After the last answer, until the saga's records stopped (payments still queued at the
    /// gateway, notifications): the backlog the run left.
    pub settle_secs: f64,
    /// Where the time of an order answered `paid` went, by event times (ms resolution).
    pub breakdown: Breakdown,
    /// The same orders, hop by hop through the saga (from the log's append times).
    #[serde(default)]
    pub timeline: Timeline,
    pub freshness: FreshnessResult,
    pub cpu_by_thread: Vec<(String, f64)>,
    pub cpu_cores_busy: f64,
    pub machine_load: Option<PhaseLoad>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OrdersResult {
    pub products: u64,
    pub customers: u64,
    pub workers: usize,
    pub partitions: u32,
    pub probes_per_sec: f64,
    pub order_wait_max_ms: u64,
    pub idle_tick_ms: u64,
    #[serde(default)]
    pub epochs_in_flight: usize,
    pub deadline_check_ms: u64,
    pub runs: Vec<RateRun>,
}

pub(crate) async fn run(config: &CommerceConfig) -> anyhow::Result<OrdersResult> {
    // The sweep with `wait=decision`, then the highest rate once more with
    // `wait=reservation`, which separates the shop's own path from the payment's.
    let mut waits: Vec<(&'static str, f64)> = config.rates.iter().map(|&r| ("decision", r)).collect();
    if let Some(top) = config.rates.iter().copied().reduce(f64::max) {
        waits.push(("reservation", top));
    }
    // A short unmeasured run first, at the lowest rate: the first orders of a fresh shop pay
    // once for what later ones find ready (connections to the gateway, the payment worker's
    // first poll, first allocations of every view), and that is not the steady latency.
    let warm_up = config.rates.iter().copied().reduce(f64::min).map(|rate| ("decision", rate, WARM_UP_SECS, true));
    let measured = waits.into_iter().map(|(wait, rate)| (wait, rate, config.duration.as_secs_f64(), false));
    // Probe products for every run, each ordered once.
    let plans: Vec<Plan> = warm_up
        .into_iter()
        .chain(measured)
        .map(|(wait, rate, secs, warm_up)| {
            let requests = shop::requests(rate, secs);
            let every = shop::probe_every(rate, config.probes_per_sec);
            Plan { wait, rate, requests, probes: requests.div_ceil(every), warm_up }
        })
        .collect();
    let probes: u64 = plans.iter().map(|p| p.probes).sum();
    let mut shop = Shop::new(config.products, probes, config.customers, 0x0de5);
    let stack = Stack::start(config, &shop).await?;
    let view_seen = SeenAt::default();
    view_seen.follow_views(&stack.views);
    let outcome = sweep(config, &stack, &mut shop, &plans, &view_seen).await;
    let result = outcome.map(|runs| OrdersResult {
        products: config.products,
        customers: config.customers,
        workers: config.workers,
        partitions: config.partitions,
        probes_per_sec: config.probes_per_sec,
        order_wait_max_ms: stack.serving.commerce.order_wait_max.as_millis() as u64,
        idle_tick_ms: stack.pipeline.idle_tick_ms,
        epochs_in_flight: stack.pipeline.epochs_in_flight,
        deadline_check_ms: stack.pipeline.deadline_check_ms,
        runs,
    });
    stack.stop().await?;
    result
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Breakdown {
    /// Request sent → the server's `order.placed` (HTTP, checks, the event made).
    pub sent_to_placed: Stat,
    /// `order.placed` → the worker's `payment.charge_succeeded`: the saga's hold round trips
    /// through the log, the charge request, the worker and the gateway.
    pub placed_to_charged: Stat,
    /// `payment.charge_succeeded` → the answer read by the client: the pipeline folding it,
    /// the orders view, the waiting request woken, the HTTP answer.
    pub charged_to_answer: Stat,
}

fn breakdown(paid: &[(String, i64, i64)], views: &shopflow_dataflow::views::Views) -> Breakdown {
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for (order, sent_us, answered_us) in paid {
        let Some((placed, Some(charged))) = fresh::placed_and_paid(views, order) else { continue };
        a.push((placed * 1000 - sent_us) as f64 / 1000.0);
        b.push((charged - placed) as f64);
        c.push((answered_us - charged * 1000) as f64 / 1000.0);
    }
    Breakdown { sent_to_placed: Stat::of(&a), placed_to_charged: Stat::of(&b), charged_to_answer: Stat::of(&c) }
}

struct Plan {
    wait: &'static str,
    rate: f64,
    requests: u64,
    probes: u64,
    /// Run, settled and discarded.
    warm_up: bool,
}

/// Length of the unmeasured first run.
pub(crate) const WARM_UP_SECS: f64 = 3.0;

async fn sweep(config: &CommerceConfig, stack: &Stack, shop: &mut Shop, plans: &[Plan], view_seen: &SeenAt) -> anyhow::Result<Vec<RateRun>> {
    let tokens = Arc::new(stack.tokens.clone());
    let mut runs = Vec::new();
    let mut probe_base = 0u64;
    for (index, &Plan { wait, rate, requests, probes, warm_up }) in plans.iter().enumerate() {
        let every = shop::probe_every(rate, config.probes_per_sec);
        // Built before the clock starts, so generation never delays a send.
        let jobs: Vec<Job> = (0..requests)
            .map(|k| {
                let probe = (k % every == 0).then(|| probe_base + k / every);
                let body = match probe {
                    Some(p) => shop::probe_body(p),
                    None => shop::order_body(&shop.lines()),
                };
                Job { due: shop::due(k, rate), customer: shop.customer() as usize, key: format!("bench-{index}-{k}"), body, probe }
            })
            .collect();
        // One live ranking per probe category of this run, connected before the run starts.
        let sse_seen = SeenAt::default();
        let first_category = probe_base / PROBES_PER_CATEGORY;
        let last_category = (probe_base + probes.max(1) - 1) / PROBES_PER_CATEGORY;
        let streams: Vec<_> = (first_category..=last_category)
            .map(|c| tokio::spawn(fresh::follow_stream(stack.addr, probe_category(c * PROBES_PER_CATEGORY), sse_seen.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;

        tracing::info!(wait, rate, requests, probes, "commerce order run");
        let from = timeline::mark(stack.log.as_ref()).await?;
        let before = MachineCpu::sample(None);
        let cpu_before = ThreadCpu::sample();
        let out = load::run(stack.addr, wait, tokens.clone(), jobs).await?;
        let cpu_by_thread = ThreadCpu::sample().since(&cpu_before);
        let machine_load = match (before, MachineCpu::sample(None)) {
            (Some(b), Some(a)) => Some(PhaseLoad::between(format!("commerce-orders-{wait}-{rate}"), &b, &a, false)),
            _ => None,
        };
        // The saga's tail (payments queued behind the gateway, their view changes) still
        // counts for freshness, and must not spill into the next run.
        let settle_secs = settle(stack, config.timeout).await?;
        for s in streams {
            if s.is_finished() {
                if let Ok(Err(e)) = s.await {
                    tracing::warn!(error = format!("{e:#}"), "a top-sellers stream failed");
                }
            } else {
                s.abort();
            }
        }
        let freshness = fresh::summarise(&out.probes, &stack.views, view_seen, &sse_seen);
        let breakdown = breakdown(&out.paid, &stack.views);
        let timeline = timeline::measure(stack.log.as_ref(), from, &out.paid).await?;
        let run = RateRun {
            wait: wait.to_owned(),
            target_rate: rate,
            duration_secs: config.duration.as_secs_f64(),
            requests,
            sent_rate: out.sent as f64 / out.send_secs.max(1e-9),
            answered_rate: out.sent as f64 / out.wall_secs.max(1e-9),
            latency: Percentiles::of(&out.latency),
            service: Percentiles::of(&out.service),
            send_lag: Percentiles::of(&out.send_lag),
            statuses: out.statuses,
            outcomes: out.outcomes,
            error_samples: out.error_samples,
            probes,
            settle_secs,
            breakdown,
            timeline,
            freshness,
            cpu_cores_busy: process_cpu(&cpu_by_thread) / out.wall_secs.max(1e-9),
            cpu_by_thread,
            machine_load,
        };
        tracing::info!(wait, rate, warm_up, p50_ms = run.latency.p50_ms, p99_ms = run.latency.p99_ms, answered_rate = run.answered_rate.round(),
            fresh_p99_ms = ?run.freshness.view.p99_ms, "commerce order run measured");
        probe_base += probes;
        if warm_up {
            continue;
        }
        runs.push(run);
    }
    Ok(runs)
}

/// Waits until the log is quiet (no record appended to `orders`, `inventory`, `payments` or
/// `decisions` for a second) and the views passed every source record; returns how long.
async fn settle(stack: &Stack, timeout: Duration) -> anyhow::Result<f64> {
    let started = std::time::Instant::now();
    let topics = [Topic::Orders, Topic::Inventory, Topic::Payments, Topic::Decisions];
    let mut last = None;
    loop {
        let mut ends = Vec::new();
        for topic in topics {
            ends.push(stack.log.end_offsets(topic.name()).await?);
        }
        let targets = source_targets(stack.log.as_ref()).await?;
        if last.as_ref() == Some(&ends) && stack.views.progress.has_passed(&targets) {
            return Ok(started.elapsed().as_secs_f64() - 1.0);
        }
        anyhow::ensure!(started.elapsed() < timeout, "the saga did not come to rest within {timeout:?}");
        last = Some(ends);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
