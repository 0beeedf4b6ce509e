//! The commerce suite's Markdown section: every aim with its measured number and yes/no, then
//! the detail per phase.

use std::fmt::Write as _;

use super::orders::RateRun;
use super::{CommerceResult, AIM_DECIDED_PER_SEC, AIM_FRESH_P99_MS, AIM_POST_P99_MS, AIM_POST_RATE};

fn yes_no(met: bool) -> &'static str {
    if met {
        "**yes**"
    } else {
        "**no**"
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1} ms"))
}

fn map(m: &std::collections::BTreeMap<String, u64>) -> String {
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// The run at the aim's rate, if one was made.
fn headline(runs: &[RateRun]) -> Option<&RateRun> {
    runs.iter().find(|r| r.wait == "decision" && (r.target_rate - AIM_POST_RATE).abs() < 1.0)
}

pub(crate) fn markdown(r: &CommerceResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Suite `commerce` (issue 7)\n");
    let _ = writeln!(s, "Build profile: {}{}. The machine is shared: other processes' CPU during each phase is listed with it.\n",
        r.build_profile, if r.quick { " · **--quick sizes: not a measurement**" } else { "" });
    let _ = writeln!(s, "| aim | measured | met |\n|---|---|---|");
    for d in &r.decide {
        let _ = writeln!(s, "| orders decided in the dataflow ≥ {:.0}/s ({}) | {:.0}/s overall, steady {} | {} |",
            AIM_DECIDED_PER_SEC, d.backend, d.orders_per_sec, steady(d.steady_orders_per_sec), yes_no(d.orders_per_sec >= AIM_DECIDED_PER_SEC));
    }
    if let Some(o) = &r.orders {
        match headline(&o.runs) {
            Some(h) => {
                // A 201 still `reserved` (the bound passed before the payment) or a 202 is no decision.
                let undecided: u64 = h.outcomes.iter().filter(|(k, _)| k.starts_with("202") || k.as_str() == "reserved").map(|(_, v)| v).sum();
                let decided_all = h.statuses.get("201").copied().unwrap_or(0) == h.requests && undecided == 0;
                let _ = writeln!(s, "| `POST /orders?wait=decision` p99 ≤ {AIM_POST_P99_MS:.0} ms at {AIM_POST_RATE:.0}/s | p99 {:.1} ms (p50 {:.1} ms), {:.0}/s answered | {} |",
                    h.latency.p99_ms, h.latency.p50_ms, h.answered_rate,
                    yes_no(h.latency.p99_ms <= AIM_POST_P99_MS && decided_all && h.answered_rate >= 0.98 * AIM_POST_RATE));
                let _ = writeln!(s, "| top-sellers freshness p99 ≤ {AIM_FRESH_P99_MS:.0} ms (at {AIM_POST_RATE:.0}/s, in process / SSE) | {} / {} | {} |",
                    ms(h.freshness.view.p99_ms), ms(h.freshness.sse.p99_ms),
                    yes_no(h.freshness.view.p99_ms.is_some_and(|p| p <= AIM_FRESH_P99_MS) && h.freshness.sse.p99_ms.is_some_and(|p| p <= AIM_FRESH_P99_MS)));
            }
            None => {
                let _ = writeln!(s, "| `POST /orders?wait=decision` at {AIM_POST_RATE:.0}/s | not run at that rate | – |");
            }
        }
        if let Some(best) = o.runs.iter().filter(|r| r.wait == "decision" && r.latency.p99_ms <= AIM_POST_P99_MS).map(|r| r.target_rate).reduce(f64::max) {
            let _ = writeln!(s, "| (highest rate of the sweep with p99 ≤ {AIM_POST_P99_MS:.0} ms) | {best:.0}/s | |");
        }
    }
    s.push('\n');
    for e in &r.errors {
        let _ = writeln!(s, "- error: {e}");
    }

    for d in &r.decide {
        let _ = writeln!(s, "### Orders decided in the dataflow ({})\n", d.backend);
        let _ = writeln!(s, "{} orders ({} lines; 1–3 lines, Zipf(1.0) over {} products, every tenth product short of stock), {} customers, \
            pre-loaded with the catalog and stock ({} records, {:.1} s untimed); pipeline with {} workers, {} partitions per topic, \
            idle_tick {} ms, max_batch {}, epochs_in_flight {}, deadline_check {} ms, snapshots every {} ms. Timed from pipeline start (catalog and stock included) \
            until every order is `reserved` or `rejected` in the `orders` view.\n",
            d.orders, d.order_lines, d.products, d.customers, d.preloaded_records, d.load_secs, d.workers, d.partitions,
            d.idle_tick_ms, d.max_batch, d.epochs_in_flight, d.deadline_check_ms, d.snapshot_interval_ms);
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| pipeline time | {:.2} s (first decision after {:.2} s) |", d.pipeline_secs, d.first_decision_secs);
        let _ = writeln!(s, "| orders decided/s | {:.0} overall; between 10 % and 90 % decided: {} |", d.orders_per_sec, steady(d.steady_orders_per_sec));
        let _ = writeln!(s, "| outcome | {} reserved, {} rejected ({}) |", d.reserved, d.rejected, map(&d.rejected_by_reason));
        let _ = writeln!(s, "| source records consumed | {} ({} of them the saga's hold requests and answers) → {:.0} events/s |", d.source_records, d.saga_hold_records, d.events_per_sec);
        let _ = writeln!(s, "| other saga records written | {} (charge requests, decisions) → {:.0} records/s in all |", d.saga_other_records, d.all_records_per_sec);
        let _ = writeln!(s, "| CPU | {:.2} cores busy in this process; top threads: {} |", d.cpu_cores_busy, top_threads(&d.cpu_by_thread));
        if let Some(l) = &d.machine_load {
            let _ = writeln!(s, "| machine load | other processes: {:.2} cores{}; stolen by the hypervisor: {:.2} cores |", l.other_cores, l.broker_cores.map_or(String::new(), |b| format!("; broker {b:.2} cores")), l.steal_cores);
        }
        let _ = writeln!(s, "| peak RSS | {} |\n", d.peak_rss_mib.map_or("–".into(), |m| format!("{m:.0} MiB")));
    }

    if let Some(o) = &r.orders {
        let _ = writeln!(s, "### `POST /api/v1/orders?wait=decision` over HTTP, and top-sellers freshness\n");
        let _ = writeln!(s, "The whole shop in one process (embedded log, pipeline with {} workers, {} partitions, idle_tick {} ms and epochs_in_flight {}, gateway in test mode, payment worker, notifier, \
            HTTP server; rate limits off), {} products, {} customers (access tokens minted with the server's key). An open-loop generator on one thread \
            sends each request at its due time over up to 512 keep-alive connections, each with its own `Idempotency-Key` and payment token `tok_visa`; \
            latency is from the due time (waiting for a connection counts). `order_wait_max` {} ms: a `202` is an order not decided within it. \
            About {:.0} probe orders/s each buy one unit of a product nothing else buys; freshness is from that order's `payment.charge_succeeded` record \
            (envelope time, ms) until the top-sellers view has the unit (in process, `Views::on_change`) or an SSE client of \
            `/api/v1/top-sellers/stream?category=<probe category>` reads it. The last run repeats the highest rate with \
            `wait=reservation` (answered once the stock is held: the shop's own path without the payment worker and the simulated gateway). \
            Before the first run, an unmeasured {:.0} s run at the lowest rate warms the shop up (first connections, first allocations).\n",
            o.workers, o.partitions, o.idle_tick_ms, o.epochs_in_flight, o.products, o.customers, o.order_wait_max_ms, o.probes_per_sec, super::orders::WARM_UP_SECS);
        let _ = writeln!(s, "| wait | target/s | answered/s | p50 | p90 | p99 | max | service p99 | statuses | outcomes | fresh view p50 / p99 | fresh SSE p50 / p99 | answer→view p50 | CPU cores (this process) | other processes' cores (+ stolen by the hypervisor) |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for run in &o.runs {
            let f = &run.freshness;
            let _ = writeln!(s, "| {} | {:.0} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} | {} / {} | {} / {} | {} | {:.2} | {} |",
                run.wait, run.target_rate, run.answered_rate, run.latency.p50_ms, run.latency.p90_ms, run.latency.p99_ms, run.latency.max_ms,
                run.service.p99_ms, map(&run.statuses), map(&run.outcomes),
                ms(f.view.p50_ms), ms(f.view.p99_ms), ms(f.sse.p50_ms), ms(f.sse.p99_ms), ms(f.view_after_answer.p50_ms),
                run.cpu_cores_busy, run.machine_load.as_ref().map_or("–".into(), |l| format!("{:.2} (+ {:.2} stolen)", l.other_cores, l.steal_cores)));
        }
        s.push('\n');
        let _ = writeln!(s, "Where the time of orders answered `paid` went (p50 / p99, from event times, ms resolution):\n");
        let _ = writeln!(s, "| wait | target/s | sent → `order.placed` | `order.placed` → `charge_succeeded` (saga + worker + gateway) | `charge_succeeded` → answer read |\n|---|---|---|---|---|");
        for run in o.runs.iter().filter(|r| r.breakdown.placed_to_charged.count > 0) {
            let b = &run.breakdown;
            let _ = writeln!(s, "| {} | {:.0} | {} / {} | {} / {} | {} / {} |", run.wait, run.target_rate,
                ms(b.sent_to_placed.p50_ms), ms(b.sent_to_placed.p99_ms), ms(b.placed_to_charged.p50_ms), ms(b.placed_to_charged.p99_ms),
                ms(b.charged_to_answer.p50_ms), ms(b.charged_to_answer.p99_ms));
        }
        s.push('\n');
        if let Some(first) = o.runs.iter().find(|r| !r.timeline.hops.is_empty()) {
            let _ = writeln!(s, "The same orders hop by hop through the saga, from the append times of its records (p50 / p99, ms resolution):\n");
            let names: Vec<&str> = first.timeline.hops.iter().map(|(name, _)| name.as_str()).collect();
            let _ = writeln!(s, "| wait | target/s | {} |\n|---|---|{}", names.join(" | "), "---|".repeat(names.len()));
            for run in o.runs.iter().filter(|r| !r.timeline.hops.is_empty()) {
                let hops: Vec<String> = run.timeline.hops.iter().map(|(_, h)| format!("{} / {}", ms(h.p50_ms), ms(h.p99_ms))).collect();
                let _ = writeln!(s, "| {} | {:.0} | {} |", run.wait, run.target_rate, hops.join(" | "));
            }
            s.push('\n');
        }
        for run in &o.runs {
            let f = &run.freshness;
            let _ = writeln!(s, "- {} {:.0}/s: {} requests in {:.0} s; the saga's tail settled {:.1} s after the last answer; probes {} answered, {} answered paid, {} charged (missing: charge {}, view {}, SSE {}); send lag p99 {:.1} ms; top threads: {}{}",
                run.wait, run.target_rate, run.requests, run.duration_secs, run.settle_secs, f.probes_answered, f.probes_paid, f.probes_charged, f.missing_charge, f.missing_view, f.missing_sse,
                run.send_lag.p99_ms, top_threads(&run.cpu_by_thread),
                if run.error_samples.is_empty() { String::new() } else { format!("; errors: {}", run.error_samples.join(" · ")) });
        }
        s.push('\n');
    }
    s
}

fn top_threads(threads: &[(String, f64)]) -> String {
    threads.iter().take(5).map(|(n, c)| format!("{n} {c:.1} s")).collect::<Vec<_>>().join(", ")
}

/// The steady rate, or why there is none.
fn steady(rate: f64) -> String {
    if rate > 0.0 { format!("{rate:.0}/s") } else { "not measured (10–90 % decided within one sample)".into() }
}
