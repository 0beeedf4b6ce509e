//! Top-sellers freshness after an order, from probe orders: each probe buys one unit of a
//! product nothing else buys, so "the top-sellers view reflects this order" is simply "that
//! product has units". Seen two ways:
//!
//! - in process: a `Views::on_change` listener notes when the product first has units in the
//!   top-sellers view (the instant serving could first answer it);
//! - over HTTP: `GET /api/v1/top-sellers/stream?category=<probe category>` (SSE), the instant
//!   the client reads the ranking that first lists the product.
//!
//! Both are measured from the payment worker's `payment.charge_succeeded` record, by its
//! envelope time (the `paid` entry of the order's status history): stamped (ms, wall clock)
//! when the gateway's answer came back, just before the worker appends it. So the times include the worker's durable append, and the ms
//! stamp can make them up to 1 ms longer than they were.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use shopflow_dataflow::views::Views;
use shopflow_events::types::OrderStatus;
use shopflow_events::Id;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::load::{wall_us, ProbeAnswer};
use super::shop::{is_probe, percentile, probe_id};

/// First time (wall clock, µs) each probe product was seen with units.
#[derive(Clone, Default)]
pub(crate) struct SeenAt(Arc<Mutex<HashMap<Id, i64>>>);

impl SeenAt {
    fn note(&self, product: &Id, at: i64) {
        self.0.lock().expect("not poisoned").entry(product.clone()).or_insert(at);
    }

    pub(crate) fn get(&self, product: &Id) -> Option<i64> {
        self.0.lock().expect("not poisoned").get(product).copied()
    }

    /// Notes probe products as the top-sellers view first shows them, on every publication.
    pub(crate) fn follow_views(&self, views: &Arc<Views>) {
        let (weak, seen) = (Arc::downgrade(views), self.clone());
        views.on_change(Box::new(move |changed| {
            let Some(views) = weak.upgrade() else { return };
            let at = wall_us();
            for product in changed.products.iter().filter(|p| is_probe(p)) {
                if views.top_sellers.get(product).is_some_and(|row| row.units > 0) {
                    seen.note(product, at);
                }
            }
        }));
    }
}

/// Follows one live ranking until the task is aborted, noting each product it lists.
pub(crate) async fn follow_stream(addr: SocketAddr, category: String, seen: SeenAt) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut io = BufReader::new(stream);
    let request = format!(
        "GET /api/v1/top-sellers/stream?category={category}&limit=100 HTTP/1.1\r\nhost: shopflow\r\naccept: text/event-stream\r\n\r\n"
    );
    io.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    io.read_line(&mut line).await?;
    if !line.contains(" 200 ") {
        bail!("top-sellers stream: {}", line.trim());
    }
    let mut chunked = false;
    loop {
        line.clear();
        io.read_line(&mut line).await?;
        if line.trim().is_empty() {
            break;
        }
        chunked |= line.to_ascii_lowercase().starts_with("transfer-encoding: chunked");
    }
    let mut pending = Vec::new();
    let mut chunk = Vec::new();
    loop {
        // The body: chunked (HTTP/1.1 streaming) or, failing that, read as it comes.
        if chunked {
            line.clear();
            if io.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or_default(), 16).context("chunk size")?;
            if size == 0 {
                return Ok(());
            }
            chunk.resize(size + 2, 0);
            io.read_exact(&mut chunk).await?;
            chunk.truncate(size);
        } else {
            chunk.resize(16 * 1024, 0);
            let n = io.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            chunk.truncate(n);
        }
        let at = wall_us();
        pending.extend_from_slice(&chunk);
        while let Some(end) = find(&pending, b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            for product in ranking_products(&event) {
                seen.note(&product, at);
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The products (with units) of one SSE `ranking` event.
pub(crate) fn ranking_products(event: &[u8]) -> Vec<Id> {
    let text = String::from_utf8_lossy(event);
    let data: String = text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect();
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&data) else { return Vec::new() };
    value["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["units"].as_i64().unwrap_or(0) > 0)
                .filter_map(|i| i["product_id"].as_str().map(Id::from))
                .collect()
        })
        .unwrap_or_default()
}

/// When each order was placed and paid (ms, event time: the `order.placed` written by the
/// server, the `payment.charge_succeeded` written by the payment worker), from the orders
/// view's status history.
pub(crate) fn placed_and_paid(views: &Views, order_id: &str) -> Option<(i64, Option<i64>)> {
    let row = views.orders.get(&Id::from(order_id))?;
    let paid = row.history.iter().find(|h| h.status == OrderStatus::Paid).map(|h| h.at);
    Some((row.placed_at, paid))
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stat {
    pub count: usize,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Stat {
    pub(crate) fn of(samples_ms: &[f64]) -> Self {
        let r = |v: Option<f64>| v.map(|v| (v * 100.0).round() / 100.0);
        Self {
            count: samples_ms.len(),
            p50_ms: r(percentile(samples_ms, 0.5)),
            p90_ms: r(percentile(samples_ms, 0.9)),
            p99_ms: r(percentile(samples_ms, 0.99)),
            max_ms: r(percentile(samples_ms, 1.0)),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FreshnessResult {
    /// Probe orders answered (201 or 202); of them answered `paid`; of them whose charge
    /// succeeded by the end of the run's settling (the ones measured).
    pub probes_answered: usize,
    pub probes_paid: usize,
    pub probes_charged: usize,
    /// charge_succeeded record → the top-sellers view has the unit (in process).
    pub view: Stat,
    /// charge_succeeded record → an SSE client of the category's live ranking reads it.
    pub sse: Stat,
    /// The `201 paid` answer → the view has it: negative when the view had it first (the
    /// orders view and the top sellers change in the same publication).
    pub view_after_answer: Stat,
    /// Probes without a charge record; charged probes never seen in the view / on the stream.
    pub missing_charge: usize,
    pub missing_view: usize,
    pub missing_sse: usize,
}

pub(crate) fn summarise(probes: &[ProbeAnswer], views: &Views, view: &SeenAt, sse: &SeenAt) -> FreshnessResult {
    let mut out = FreshnessResult { probes_answered: probes.len(), ..Default::default() };
    let (mut v, mut s, mut a) = (Vec::new(), Vec::new(), Vec::new());
    // Every probe whose charge succeeded counts, whatever its answer said (under overload
    // the answer may come before the payment: `202`, or `201 reserved`).
    for p in probes {
        let product = probe_id(p.probe);
        let seen_view = view.get(&product);
        if p.status == "paid" {
            out.probes_paid += 1;
            if let Some(at) = seen_view {
                a.push((at - p.answered_us) as f64 / 1000.0);
            }
        }
        let Some(charged_ms) = placed_and_paid(views, &p.order_id).and_then(|(_, paid)| paid) else {
            out.missing_charge += 1;
            continue;
        };
        out.probes_charged += 1;
        let charged_us = charged_ms * 1000;
        match seen_view {
            Some(at) => v.push((at - charged_us) as f64 / 1000.0),
            None => out.missing_view += 1,
        }
        match sse.get(&product) {
            Some(at) => s.push((at - charged_us) as f64 / 1000.0),
            None => out.missing_sse += 1,
        }
    }
    out.view = Stat::of(&v);
    out.sse = Stat::of(&s);
    out.view_after_answer = Stat::of(&a);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ranking_event_lists_its_products_with_units() {
        let event = b"event: ranking\nid: 7\ndata: {\"window\":\"all\",\"category\":\"c\",\"items\":[{\"product_id\":\"probe-00001\",\"category_id\":\"c\",\"units\":1},{\"product_id\":\"probe-00002\",\"units\":0}]}\n\n";
        assert_eq!(ranking_products(event), vec![Id::from("probe-00001")]);
        assert!(ranking_products(b": keep-alive\n\n").is_empty());
    }

    #[test]
    fn stats_of_no_samples_are_empty() {
        let s = Stat::of(&[]);
        assert_eq!(s.count, 0);
        assert_eq!(s.p99_ms, None);
        assert_eq!(Stat::of(&[1.0, 2.0]).p50_ms, Some(1.0));
    }
}
