//! The commerce suite's shop: catalog, stock, customers and orders, deterministic from a seed,
//! plus the pure helpers the phases share (the open-loop schedule, exact percentiles, how an
//! answer is classified).
//!
//! Orders are realistic rather than uniform: 1–3 lines (60/30/10 %), a Zipf(1.0) choice of
//! product (a few best sellers take most lines, as in `shopdata::Workload`), mostly one unit.
//! Every tenth product is short of stock (`SHORT_UNITS`), so the best sellers among them run
//! out early and a share of orders is rejected `out_of_stock`: the saga's refusal path is
//! measured too, not only the happy one.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use shopflow_events::types::{
    AddressAdded, NamedEntityUpserted, OrderLine, OrderPlaced, ProductCreated, Role, StockReceived, UserRegistered,
    WarehouseCreated,
};
use shopflow_events::{Envelope, Event, Id, Money};
use shopflow_ingest::OutRecord;
use shopflow_shopdata::record;

const CATEGORIES: u64 = 20;
const BRANDS: u64 = 50;
const SUPPLIERS: u64 = 10;
const WAREHOUSES: u64 = 2;
/// Units of a short product (one warehouse): gone after a few dozen orders of a best seller.
pub(crate) const SHORT_UNITS: u32 = 50;
/// Units of every other product, per warehouse: never the limit.
const PLENTY_UNITS: u32 = 1_000_000;
/// Units of a freshness probe product: it is ordered once.
const PROBE_UNITS: u32 = 5;
/// Probe products per probe category: the live ranking of a category shows at most 100.
pub(crate) const PROBES_PER_CATEGORY: u64 = 50;
/// A valid argon2id PHC string: customers are written as events (no login is measured here),
/// and the pipeline only checks the hash's form.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
pub(crate) const ADDRESS: &str = "home";
/// The gateway's test card that always succeeds.
pub(crate) const PAY_TOKEN: &str = "tok_visa";

pub(crate) fn product_id(i: u64) -> Id {
    Id::from(format!("cp-{i:05}").as_str())
}

pub(crate) fn probe_id(i: u64) -> Id {
    Id::from(format!("probe-{i:05}").as_str())
}

pub(crate) fn probe_category(i: u64) -> String {
    format!("probe-cat-{:03}", i / PROBES_PER_CATEGORY)
}

pub(crate) fn is_probe(product: &Id) -> bool {
    product.as_str().starts_with("probe-")
}

fn is_short(i: u64) -> bool {
    i % 10 == 3
}

fn price(i: u64) -> i64 {
    499 + (i as i64 * 37) % 10_000
}

pub(crate) fn customer_email(i: u64) -> String {
    format!("shopper{i}@bench.example")
}

/// The shop of one run.
pub(crate) struct Shop {
    pub(crate) products: u64,
    pub(crate) probes: u64,
    pub(crate) customers: u64,
    rng: StdRng,
    zipf: Zipf<f64>,
}

impl Shop {
    pub(crate) fn new(products: u64, probes: u64, customers: u64, seed: u64) -> Self {
        let products = products.max(3);
        Self {
            products,
            probes,
            customers: customers.max(1),
            rng: StdRng::seed_from_u64(seed),
            zipf: Zipf::new(products, 1.0).expect("a positive keyspace"),
        }
    }

    /// Categories (the shop's and the probes'), brands, suppliers, warehouses.
    pub(crate) fn reference_data(&self) -> Vec<OutRecord> {
        let named = |id: String| NamedEntityUpserted { name: format!("Bench {id}"), id: Id::from(id.as_str()) };
        let mut out: Vec<Event> = Vec::new();
        out.extend((0..CATEGORIES).map(|i| Event::CategoryUpserted(named(format!("ccat-{i:02}")))));
        out.extend((0..self.probes.div_ceil(PROBES_PER_CATEGORY)).map(|c| Event::CategoryUpserted(named(probe_category(c * PROBES_PER_CATEGORY)))));
        out.extend((0..BRANDS).map(|i| Event::BrandUpserted(named(format!("cbrand-{i:02}")))));
        out.extend((0..SUPPLIERS).map(|i| Event::SupplierUpserted(named(format!("csup-{i:02}")))));
        out.extend((0..WAREHOUSES).map(|i| {
            Event::WarehouseCreated(WarehouseCreated {
                warehouse_id: Id::from(format!("cwh-{i}").as_str()),
                name: format!("Warehouse {i}"),
                location: format!("LOC-{i}"),
            })
        }));
        out.into_iter().map(|e| record(&Envelope::new(e))).collect()
    }

    /// `product.created` for every product and probe, then their stock.
    pub(crate) fn catalog_and_stock(&self) -> Vec<OutRecord> {
        let created = |product_id: Id, i: u64, category: String| {
            Event::ProductCreated(ProductCreated {
                product_id,
                name: format!("Bench product {i}"),
                description: String::new(),
                price: Money::new(price(i), "EUR"),
                sku: format!("SKU-{i:06}"),
                category_id: Id::from(category.as_str()),
                brand_id: Id::from(format!("cbrand-{:02}", i % BRANDS).as_str()),
                supplier_id: Id::from(format!("csup-{:02}", i % SUPPLIERS).as_str()),
            })
        };
        let received = |product_id: Id, w: u64, quantity: u32| {
            Event::StockReceived(StockReceived { product_id, warehouse_id: Id::from(format!("cwh-{w}").as_str()), quantity })
        };
        let mut out = Vec::new();
        for i in 0..self.products {
            out.push(created(product_id(i), i, format!("ccat-{:02}", i % CATEGORIES)));
        }
        for i in 0..self.probes {
            out.push(created(probe_id(i), i, probe_category(i)));
        }
        for i in 0..self.products {
            if is_short(i) {
                out.push(received(product_id(i), 0, SHORT_UNITS));
            } else {
                out.extend((0..WAREHOUSES).map(|w| received(product_id(i), w, PLENTY_UNITS)));
            }
        }
        out.extend((0..self.probes).map(|i| received(probe_id(i), 0, PROBE_UNITS)));
        out.into_iter().map(|e| record(&Envelope::new(e))).collect()
    }

    /// Every customer's `user.registered` and default address.
    pub(crate) fn customer_records(&self) -> Vec<OutRecord> {
        let mut out = Vec::new();
        for i in 0..self.customers {
            let user_id = customer_id(i);
            out.push(Event::UserRegistered(UserRegistered {
                user_id: user_id.clone(),
                email: customer_email(i),
                name: format!("Shopper {i}"),
                phone: String::new(),
                password_hash: HASH.into(),
                role: Role::Customer,
            }));
            out.push(Event::AddressAdded(AddressAdded {
                address_id: ADDRESS.into(),
                user_id,
                street: format!("{i} Bench Street"),
                city: "Rotterdam".into(),
                state: String::new(),
                country: "NL".into(),
                zip: String::new(),
                is_default: true,
            }));
        }
        out.into_iter().map(|e| record(&Envelope::new(e))).collect()
    }

    /// A random customer.
    pub(crate) fn customer(&mut self) -> u64 {
        self.rng.gen_range(0..self.customers)
    }

    /// One order's lines: 1–3 distinct products (Zipf), 1–3 units each (mostly 1).
    pub(crate) fn lines(&mut self) -> Vec<(u64, u32)> {
        let count = match self.rng.gen_range(0..10) {
            0..=5 => 1,
            6..=8 => 2,
            _ => 3,
        };
        let mut lines: Vec<(u64, u32)> = Vec::with_capacity(count);
        while lines.len() < count {
            let product = self.zipf.sample(&mut self.rng) as u64 - 1;
            if lines.iter().any(|(p, _)| *p == product) {
                continue;
            }
            let units = match self.rng.gen_range(0..10) {
                0..=6 => 1,
                7..=8 => 2,
                _ => 3,
            };
            lines.push((product, units));
        }
        lines
    }

    /// The `order.placed` event of order `n`, as `POST /orders` would write it.
    pub(crate) fn order_placed(&mut self, n: u64) -> OutRecord {
        let user_id = customer_id(self.customer());
        let lines = self
            .lines()
            .into_iter()
            .map(|(p, quantity)| OrderLine { product_id: product_id(p), quantity, unit_price: Money::new(price(p), "EUR") })
            .collect();
        record(&Envelope::new(Event::OrderPlaced(OrderPlaced {
            order_id: Id::from(format!("o-{n:08}").as_str()),
            user_id,
            lines,
            address_id: ADDRESS.into(),
            idempotency_key: format!("bench-order-{n}"),
            payment_token: PAY_TOKEN.into(),
            from_cart: false,
        })))
    }
}

pub(crate) fn customer_id(i: u64) -> Id {
    shopflow_events::user_id_for_email(&customer_email(i))
}

/// The body of `POST /api/v1/orders` for these lines of regular products.
pub(crate) fn order_body(lines: &[(u64, u32)]) -> Vec<u8> {
    let lines: Vec<serde_json::Value> = lines
        .iter()
        .map(|(p, q)| serde_json::json!({"product_id": product_id(*p).as_str(), "quantity": q}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"lines": lines, "payment_method": PAY_TOKEN})).expect("serialises")
}

/// The body of a probe order: one unit of probe product `i`.
pub(crate) fn probe_body(i: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "lines": [{"product_id": probe_id(i).as_str(), "quantity": 1}],
        "payment_method": PAY_TOKEN,
    }))
    .expect("serialises")
}

/// When request `k` of an open-loop run at `rate` per second is due, after the run's start.
/// Absolute, so a late send never shifts the ones after it (no coordinated omission).
pub(crate) fn due(k: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(k as f64 / rate)
}

/// Requests in a run of `secs` at `rate`.
pub(crate) fn requests(rate: f64, secs: f64) -> u64 {
    (rate * secs).round().max(1.0) as u64
}

/// Every how many requests one is a freshness probe, for about `probes_per_sec` probes.
pub(crate) fn probe_every(rate: f64, probes_per_sec: f64) -> u64 {
    (rate / probes_per_sec.max(1e-9)).round().max(1.0) as u64
}

/// The exact nearest-rank percentile (`q` in 0..=1) of unsorted samples; `None` when empty.
/// For the few hundred freshness samples, where a histogram's buckets would only blur, and
/// which may be negative (a view ahead of an answer).
pub(crate) fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// How an answer counts in the outcome mix: the status, and for a rejection its reason
/// without the product (`out_of_stock:cp-00003` → `rejected:out_of_stock`).
pub(crate) fn outcome(status: &str, reason: &str) -> String {
    match (status, reason.split(':').next().unwrap_or_default()) {
        (status, "") => status.to_owned(),
        (status, kind) => format!("{status}:{kind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_absolute_and_evenly_spaced() {
        assert_eq!(due(0, 2_000.0), Duration::ZERO);
        assert_eq!(due(2_000, 2_000.0), Duration::from_secs(1));
        assert_eq!(due(1, 2_000.0), Duration::from_micros(500));
        assert_eq!(due(3, 2_000.0) - due(2, 2_000.0), Duration::from_micros(500));
        assert_eq!(requests(2_000.0, 10.0), 20_000);
        assert_eq!(requests(0.01, 1.0), 1);
    }

    #[test]
    fn probes_come_at_about_the_asked_rate() {
        assert_eq!(probe_every(2_000.0, 25.0), 80);
        assert_eq!(probe_every(10.0, 25.0), 1);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.5), Some(50.0));
        assert_eq!(percentile(&samples, 0.99), Some(99.0));
        assert_eq!(percentile(&samples, 1.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&[3.0, -1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn outcomes_drop_the_product_from_the_reason() {
        assert_eq!(outcome("rejected", "out_of_stock:cp-00003"), "rejected:out_of_stock");
        assert_eq!(outcome("paid", ""), "paid");
        assert_eq!(outcome("rejected", "card_declined"), "rejected:card_declined");
    }

    #[test]
    fn orders_have_one_to_three_distinct_lines() {
        let mut shop = Shop::new(100, 10, 10, 7);
        for _ in 0..1_000 {
            let lines = shop.lines();
            assert!((1..=3).contains(&lines.len()));
            let mut products: Vec<u64> = lines.iter().map(|l| l.0).collect();
            products.dedup();
            products.sort_unstable();
            products.dedup();
            assert_eq!(products.len(), lines.len());
            assert!(lines.iter().all(|(p, q)| *p < 100 && (1..=3).contains(q)));
        }
    }

    #[test]
    fn probes_fill_categories_of_at_most_fifty() {
        assert_eq!(probe_category(0), probe_category(49));
        assert_ne!(probe_category(49), probe_category(50));
        assert!(is_probe(&probe_id(3)));
        assert!(!is_probe(&product_id(3)));
    }
}
