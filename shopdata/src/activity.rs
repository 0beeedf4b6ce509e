//! Timestamped shopper activity over the demo catalog, for analytics: `days` days of
//! sessions by `shoppers` shoppers — product views, searches (some finding nothing),
//! recommendation clicks, cart adds, orders with payments, cancellations, and the stock moves
//! that orders cause (so some products run out). Deterministic for a seed, and every event
//! has its own millisecond, so time-ordered analyses have no ties.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopflow_events::types::*;
use shopflow_events::{Envelope, Event, Id, Money};

use crate::demo::{category_of, warehouse_of};

const DAY_MS: i64 = 86_400_000;
const QUERIES: [&str; 6] = ["kettle", "lamp", "tent", "speaker", "mug", "chair"];
const MISSES: [&str; 4] = ["unicorn saddle", "Flux capacitor", "moon boots", "typewriter ribbon"];

#[derive(Clone, Debug)]
pub struct Activity {
    pub products: usize,
    pub shoppers: usize,
    pub days: u32,
    pub seed: u64,
    /// Midnight (UTC, ms) of the first day.
    pub start_ms: i64,
    /// Also emit the catalog (categories, products, initial stock) the day before.
    pub with_catalog: bool,
}

impl Activity {
    pub fn new(start_ms: i64) -> Self {
        Self { products: 60, shoppers: 40, days: 28, seed: 7, start_ms: start_ms - start_ms.rem_euclid(DAY_MS), with_catalog: true }
    }

    pub fn events(&self) -> Vec<Envelope> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut out = Vec::new();
        let mut clock = Clock { last: self.start_ms - DAY_MS };
        let price = |i: usize| 499 + (i as i64 * 137) % 20_000;
        if self.with_catalog {
            for i in 0..self.products {
                let product_id = product(i);
                let ev = Event::ProductCreated(ProductCreated {
                    product_id: product_id.clone(),
                    name: crate::vocabulary::product_text(i).0,
                    description: String::new(),
                    price: Money::new(price(i), "EUR"),
                    sku: format!("SKU-{i:05}"),
                    category_id: Id::from(category_of(i)),
                    brand_id: Id::from("acme"),
                    supplier_id: Id::from("sup-eu"),
                });
                out.push(at(ev, clock.tick(&mut rng, self.start_ms - DAY_MS)));
                for w in 0..3 {
                    let ev = Event::StockReceived(StockReceived {
                        product_id: product_id.clone(),
                        warehouse_id: Id::from(warehouse_of(w)),
                        quantity: 3 + (i % 5) as u32,
                    });
                    out.push(at(ev, clock.tick(&mut rng, self.start_ms - DAY_MS)));
                }
            }
        }
        let mut orders = 0usize;
        for day in 0..i64::from(self.days) {
            for s in 0..self.shoppers {
                // Shoppers visit on about half of the days, some far more often than others.
                if rng.gen_range(0..100) >= 15 + (s * 70 / self.shoppers.max(1)) {
                    continue;
                }
                let user = Id::from(format!("demo-user-{s:02}").as_str());
                let session = self.start_ms + day * DAY_MS + rng.gen_range(0..20) * 3_600_000;
                let mut viewed = Vec::new();
                for _ in 0..rng.gen_range(1..5) {
                    let i = skewed(&mut rng, self.products);
                    viewed.push(i);
                    out.push(at(Event::ProductViewed(ProductViewed { user_id: user.clone(), product_id: product(i) }), clock.tick(&mut rng, session)));
                }
                if rng.gen_bool(0.4) {
                    let (query, results) = if rng.gen_bool(0.3) {
                        (MISSES[rng.gen_range(0..MISSES.len())], 0)
                    } else {
                        (QUERIES[rng.gen_range(0..QUERIES.len())], rng.gen_range(1..20))
                    };
                    out.push(at(Event::SearchPerformed(SearchPerformed { user_id: user.clone(), query: query.into(), results }), clock.tick(&mut rng, session)));
                }
                if rng.gen_bool(0.25) {
                    let i = skewed(&mut rng, self.products);
                    out.push(at(
                        Event::RecommendationClicked(RecommendationClicked { user_id: user.clone(), product_id: product(i), source: "similar".into() }),
                        clock.tick(&mut rng, session),
                    ));
                }
                if !rng.gen_bool(0.5) {
                    continue;
                }
                let carted: Vec<usize> = viewed.iter().copied().take(rng.gen_range(1..=2)).collect();
                for &i in &carted {
                    out.push(at(Event::CartItemAdded(CartItemChanged { user_id: user.clone(), product_id: product(i), quantity: 1 }), clock.tick(&mut rng, session)));
                }
                if !rng.gen_bool(0.6) {
                    continue;
                }
                orders += 1;
                let order_id = Id::from(format!("order-{orders:05}").as_str());
                let lines: Vec<OrderLine> = carted
                    .iter()
                    .map(|&i| OrderLine { product_id: product(i), quantity: rng.gen_range(1..3), unit_price: Money::new(price(i), "EUR") })
                    .collect();
                let total: i64 = lines.iter().map(|l| i64::from(l.quantity) * l.unit_price.amount_minor).sum();
                out.push(at(
                    Event::OrderPlaced(OrderPlaced {
                        order_id: order_id.clone(),
                        user_id: user.clone(),
                        lines: lines.clone(),
                        address_id: Id::from("addr-1"),
                        idempotency_key: format!("k-{orders}"),
                        payment_token: format!("tok_{s:02}"),
                        from_cart: false,
                    }),
                    clock.tick(&mut rng, session),
                ));
                out.push(at(
                    Event::ChargeRequested(ChargeRequested {
                        order_id: order_id.clone(),
                        user_id: user.clone(),
                        amount: Money::new(total, "EUR"),
                        token: format!("tok_{s:02}"),
                    }),
                    clock.tick(&mut rng, session),
                ));
                out.push(at(
                    Event::ChargeSucceeded(ChargeSucceeded {
                        order_id: order_id.clone(),
                        user_id: user.clone(),
                        payment_id: Id::from(format!("pay-{orders:05}").as_str()),
                        amount: Money::new(total, "EUR"),
                        authorization_code: "AUTH".into(),
                    }),
                    clock.tick(&mut rng, session),
                ));
                for l in &lines {
                    out.push(at(
                        Event::StockAdjusted(StockAdjusted {
                            product_id: l.product_id.clone(),
                            warehouse_id: Id::from(warehouse_of(0)),
                            delta: -i64::from(l.quantity),
                            reason: "shipped".into(),
                        }),
                        clock.tick(&mut rng, session),
                    ));
                }
                if rng.gen_bool(0.1) {
                    out.push(at(
                        Event::OrderCancelled(OrderCancelled { order_id, user_id: user.clone(), reason: "changed mind".into() }),
                        clock.tick(&mut rng, session),
                    ));
                }
            }
        }
        out
    }
}

fn product(i: usize) -> Id {
    Id::from(format!("demo-{i:04}").as_str())
}

/// Popular products first: the square of a uniform draw.
fn skewed(rng: &mut StdRng, products: usize) -> usize {
    let u: f64 = rng.gen();
    ((u * u) * products as f64) as usize % products.max(1)
}

fn at(event: Event, ts: i64) -> Envelope {
    let mut envelope = Envelope::new(event);
    envelope.ts = ts;
    envelope
}

/// Hands out strictly increasing timestamps, never before a session's start.
struct Clock {
    last: i64,
}

impl Clock {
    fn tick(&mut self, rng: &mut StdRng, not_before: i64) -> i64 {
        self.last = (self.last + 1).max(not_before) + rng.gen_range(0..30_000);
        self.last
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn activity_is_valid_deterministic_and_strictly_timed() {
        let a = super::Activity::new(1_700_000_000_000).events();
        let b = super::Activity::new(1_700_000_000_000).events();
        assert_eq!(a.iter().map(|e| (e.ts, e.event.clone())).collect::<Vec<_>>(), b.iter().map(|e| (e.ts, e.event.clone())).collect::<Vec<_>>());
        assert!(a.windows(2).all(|w| w[0].ts < w[1].ts));
        assert!(a.iter().any(|e| matches!(e.event, shopflow_events::Event::OrderPlaced(_))));
        for e in &a {
            e.event.validate().unwrap();
        }
    }
}
