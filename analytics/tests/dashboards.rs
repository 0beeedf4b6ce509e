//! Every dashboard query against a plain Rust computation over the same events.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shopflow_analytics::dashboards::{self, ResultTable};
use shopflow_events::{Envelope, Event};
use support::*;

const DAY_MS: i64 = 86_400_000;

/// `YYYY-MM-DD` of a UTC day number (days since 1970-01-01).
fn date(days: i64) -> String {
    let (y, m, d) = shopflow_events::utc_date(days * DAY_MS);
    format!("{y:04}-{m:02}-{d:02}")
}

fn day(ts: i64) -> i64 {
    ts.div_euclid(DAY_MS)
}

fn money(minor: i64) -> String {
    format!("{:.2}", minor as f64 / 100.0)
}

/// Compares cell by cell: numbers within `tolerance`, everything else exactly.
fn assert_table(name: &str, got: &ResultTable, expected: &[Vec<String>], tolerance: f64) {
    assert_eq!(got.rows.len(), expected.len(), "{name}: rows\n got {:?}\nwant {:?}", got.rows, expected);
    assert!(!expected.is_empty(), "{name}: the test data must give this dashboard rows");
    for (i, (g, e)) in got.rows.iter().zip(expected).enumerate() {
        assert_eq!(g.len(), e.len(), "{name} row {i}: {g:?} vs {e:?}");
        for (a, b) in g.iter().zip(e) {
            match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => assert!((x - y).abs() <= tolerance, "{name} row {i}: {g:?} vs {e:?}"),
                _ => assert_eq!(a, b, "{name} row {i}: {g:?} vs {e:?}"),
            }
        }
    }
}

fn placed(events: &[Envelope]) -> impl Iterator<Item = (i64, &shopflow_events::types::OrderPlaced)> {
    events.iter().filter_map(|e| match &e.event {
        Event::OrderPlaced(o) => Some((e.ts, o)),
        _ => None,
    })
}

fn total(o: &shopflow_events::types::OrderPlaced) -> i64 {
    o.lines.iter().map(|l| i64::from(l.quantity) * l.unit_price.amount_minor).sum()
}

fn expected(name: &str, events: &[Envelope]) -> (Vec<Vec<String>>, f64) {
    let s = |x: &dyn ToString| x.to_string();
    match name {
        "revenue_per_day" => {
            let mut by_day: BTreeMap<i64, i64> = BTreeMap::new();
            for (ts, o) in placed(events) {
                *by_day.entry(day(ts)).or_default() += total(o);
            }
            (by_day.into_iter().map(|(d, m)| vec![date(d), money(m)]).collect(), 1e-9)
        }
        "revenue_per_category" => {
            let mut latest: HashMap<String, (i64, String)> = HashMap::new();
            for e in events {
                let (product, category) = match &e.event {
                    Event::ProductCreated(p) => (p.product_id.to_string(), Some(p.category_id.to_string())),
                    Event::ProductUpdated(p) => (p.product_id.to_string(), p.category_id.as_ref().map(ToString::to_string)),
                    _ => continue,
                };
                if let Some(c) = category {
                    let slot = latest.entry(product).or_insert((i64::MIN, String::new()));
                    if e.ts > slot.0 {
                        *slot = (e.ts, c);
                    }
                }
            }
            let mut revenue: HashMap<String, i64> = HashMap::new();
            for (_, o) in placed(events) {
                for l in &o.lines {
                    let c = latest.get(l.product_id.as_str()).map_or("unknown".to_string(), |(_, c)| c.clone());
                    *revenue.entry(c).or_default() += i64::from(l.quantity) * l.unit_price.amount_minor;
                }
            }
            let mut rows: Vec<(String, i64)> = revenue.into_iter().collect();
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            (rows.into_iter().map(|(c, m)| vec![c, money(m)]).collect(), 1e-9)
        }
        "orders_per_hour" => {
            let mut by_hour: BTreeMap<i64, u64> = BTreeMap::new();
            for (ts, _) in placed(events) {
                *by_hour.entry(ts.div_euclid(3_600_000)).or_default() += 1;
            }
            let hour = |h: i64| format!("{} {:02}:00:00", date(h.div_euclid(24)), h.rem_euclid(24));
            (by_hour.into_iter().map(|(h, n)| vec![hour(h), s(&n)]).collect(), 0.0)
        }
        "average_order_value" => {
            let mut by_day: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            for (ts, o) in placed(events) {
                let slot = by_day.entry(day(ts)).or_default();
                slot.0 += total(o);
                slot.1 += 1;
            }
            // Both sides round to cents; allow the last cent for how halves are rounded.
            (by_day.into_iter().map(|(d, (sum, n))| vec![date(d), format!("{:.2}", sum as f64 / 100.0 / n as f64)]).collect(), 0.0101)
        }
        "funnel" => {
            // windowFunnel's own walk: events in time order; a step-1 event opens a chain;
            // a step-k event extends the latest chain at step k-1 whose start is within the
            // window; the level is the highest step any chain reached.
            let mut per_user: BTreeMap<String, Vec<(i64, usize)>> = BTreeMap::new();
            for e in events {
                let (user, step) = match &e.event {
                    Event::ProductViewed(v) => (v.user_id.to_string(), 1),
                    Event::CartItemAdded(c) => (c.user_id.to_string(), 2),
                    Event::OrderPlaced(o) => (o.user_id.to_string(), 3),
                    _ => continue,
                };
                per_user.entry(user).or_default().push((e.ts, step));
            }
            let mut reached = [0u64; 3];
            for steps in per_user.values_mut() {
                steps.sort();
                let mut starts: [Option<i64>; 3] = [None; 3];
                for &(ts, step) in steps.iter() {
                    if step == 1 {
                        starts[0] = Some(ts);
                    } else if let Some(start) = starts[step - 2] {
                        if ts - start <= DAY_MS {
                            starts[step - 1] = Some(start);
                        }
                    }
                }
                let level = starts.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
                for r in reached.iter_mut().take(level) {
                    *r += 1;
                }
            }
            let names = ["viewed", "added to cart", "ordered"];
            (names.iter().zip(reached).filter(|(_, n)| *n > 0).map(|(name, n)| vec![s(name), s(&n)]).collect(), 0.0)
        }
        "retention" => {
            let first = placed(events).map(|(ts, _)| day(ts)).min().unwrap();
            let mut weeks: HashMap<String, BTreeSet<i64>> = HashMap::new();
            for (ts, o) in placed(events) {
                weeks.entry(o.user_id.to_string()).or_default().insert((day(ts) - first) / 7);
            }
            let mut buyers = [0u64; 4];
            for w in weeks.values() {
                if w.contains(&0) {
                    buyers[0] += 1;
                    for (k, b) in buyers.iter_mut().enumerate().skip(1) {
                        *b += u64::from(w.contains(&(k as i64)));
                    }
                }
            }
            (buyers.iter().enumerate().map(|(i, n)| vec![format!("week {}", i + 1), s(n)]).collect(), 0.0)
        }
        "top_products" => {
            let mut per: HashMap<String, (u64, i64)> = HashMap::new();
            for (_, o) in placed(events) {
                for l in &o.lines {
                    let slot = per.entry(l.product_id.to_string()).or_default();
                    slot.0 += u64::from(l.quantity);
                    slot.1 += i64::from(l.quantity) * l.unit_price.amount_minor;
                }
            }
            let mut rows: Vec<_> = per.into_iter().collect();
            rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
            (rows.into_iter().take(10).map(|(p, (u, m))| vec![p, s(&u), money(m)]).collect(), 1e-9)
        }
        "stock_outs" => {
            let mut level: HashMap<String, i64> = HashMap::new();
            let mut outs: HashMap<String, u64> = HashMap::new();
            // The activity's timestamps are unique, so time order is the log order here.
            let mut moves: Vec<(i64, String, i64)> = events
                .iter()
                .filter_map(|e| match &e.event {
                    Event::StockReceived(m) => Some((e.ts, format!("{} @ {}", m.product_id, m.warehouse_id), i64::from(m.quantity))),
                    Event::StockAdjusted(m) => Some((e.ts, format!("{} @ {}", m.product_id, m.warehouse_id), m.delta)),
                    _ => None,
                })
                .collect();
            moves.sort();
            for (_, item, delta) in moves {
                let l = level.entry(item.clone()).or_default();
                *l += delta;
                if *l <= 0 {
                    *outs.entry(item).or_default() += 1;
                }
            }
            let mut rows: Vec<_> = outs.into_iter().collect();
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            (rows.into_iter().take(20).map(|(i, n)| vec![i, s(&n)]).collect(), 0.0)
        }
        "searches_without_results" => {
            let mut per: HashMap<String, u64> = HashMap::new();
            for e in events {
                if let Event::SearchPerformed(q) = &e.event {
                    if q.results == 0 {
                        *per.entry(q.query.trim_matches(' ').to_ascii_lowercase()).or_default() += 1;
                    }
                }
            }
            let mut rows: Vec<_> = per.into_iter().collect();
            rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            (rows.into_iter().take(20).map(|(q, n)| vec![q, s(&n)]).collect(), 0.0)
        }
        "recommendation_click_through" => {
            let mut per: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
            for e in events {
                match &e.event {
                    Event::ProductViewed(_) => per.entry(day(e.ts)).or_default().0 += 1,
                    Event::RecommendationClicked(_) => per.entry(day(e.ts)).or_default().1 += 1,
                    _ => {}
                }
            }
            let rows = per
                .into_iter()
                .map(|(d, (v, c))| {
                    let ctr = if v == 0 { 0.0 } else { c as f64 / v as f64 };
                    vec![date(d), format!("{ctr:.4}"), s(&v), s(&c)]
                })
                .collect();
            (rows, 0.000_101)
        }
        other => panic!("no Rust computation for dashboard {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_equals_a_plain_rust_computation_over_the_same_events() {
    let ch = ClickHouse::get();
    let settings = settings();
    let service = service(&ch.url(), &settings).await;
    let log = kafka_log().await;
    let events = shopflow_shopdata::activity::Activity { shoppers: 60, days: 28, ..shopflow_shopdata::activity::Activity::new(1_763_942_400_000) }.events();
    log.log.append(records(&events)).await.unwrap();
    let mut sink = spawn_sink(log.log.clone(), service.clone(), settings.clone());
    sink.caught_up(&*log.log).await;
    sink.stop().await;

    let all = dashboards::all();
    assert_eq!(all.len(), 10);
    for d in &all {
        let got = dashboards::run(service.client(), &settings.database, d).await.unwrap();
        let (want, tolerance) = expected(d.name, &events);
        assert_table(d.name, &got, &want, tolerance);
    }

    // The /dashboard page's table holds the time-series dashboards with the database filled
    // in (the page sends none) and `t` in Unix seconds; each runs as stored.
    let stored: Vec<(String, String)> =
        service.client().query("SELECT name, query FROM dashboards ORDER BY name").fetch_all().await.unwrap();
    let time: Vec<&str> = all.iter().filter(|d| d.chart == dashboards::Chart::Time).map(|d| d.name).collect();
    assert_eq!(stored.len(), time.len());
    for (name, query) in &stored {
        assert!(time.contains(&name.as_str()) && query.contains(&format!("`{}`.", settings.database)) && !query.contains("{db:"));
        let first: i32 = service.client().query(&format!("SELECT t FROM ({query}) ORDER BY t LIMIT 1")).fetch_one().await.unwrap();
        assert!(i64::from(first) * 1000 >= 1_763_942_400_000, "{name}: t is Unix seconds");
    }
}
