//! The benchmark workload: realistic catalog and inventory events on a Zipf-distributed
//! product keyspace, built ahead of the timed part so generation never counts as pipeline time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use shopflow_events::types::{
    NamedEntityUpserted, ProductCreated, ProductUpdated, StockAdjusted, StockReceived,
    WarehouseCreated,
};
use shopflow_events::{Envelope, Event, Id, Money};
use shopflow_ingest::OutRecord;

const CATEGORIES: usize = 40;
const BRANDS: usize = 200;
const SUPPLIERS: usize = 30;
const WAREHOUSES: usize = 8;
/// Zipf exponent: a few best sellers take most stock movements, as in real shops.
const ZIPF_EXPONENT: f64 = 1.0;

fn product_id(i: u64) -> Id {
    Id::from(format!("p-{i:07}").as_str())
}

fn warehouse_id(i: usize) -> Id {
    Id::from(format!("wh-{i:02}").as_str())
}

use crate::record;

/// Generates the event stream for one benchmark run, deterministically from a seed.
pub struct Workload {
    products: u64,
    rng: StdRng,
    zipf: Zipf<f64>,
}

impl Workload {
    pub fn new(products: u64, seed: u64) -> Self {
        let products = products.max(1);
        Self {
            products,
            rng: StdRng::seed_from_u64(seed),
            zipf: Zipf::new(products, ZIPF_EXPONENT).expect("a positive keyspace and exponent"),
        }
    }

    pub fn products(&self) -> u64 {
        self.products
    }

    /// Categories, brands, suppliers and warehouses: what the catalog join needs.
    pub fn reference_data(&self) -> Vec<OutRecord> {
        let named = |prefix: &str, label: &str, i: usize| NamedEntityUpserted {
            id: Id::from(format!("{prefix}-{i:03}").as_str()),
            name: format!("{label} {i}"),
        };
        let mut out = Vec::new();
        out.extend((0..CATEGORIES).map(|i| {
            record(&Envelope::new(Event::CategoryUpserted(named(
                "cat", "Category", i,
            ))))
        }));
        out.extend((0..BRANDS).map(|i| {
            record(&Envelope::new(Event::BrandUpserted(named(
                "brand", "Brand", i,
            ))))
        }));
        out.extend((0..SUPPLIERS).map(|i| {
            record(&Envelope::new(Event::SupplierUpserted(named(
                "sup", "Supplier", i,
            ))))
        }));
        out.extend((0..WAREHOUSES).map(|i| {
            record(&Envelope::new(Event::WarehouseCreated(WarehouseCreated {
                warehouse_id: warehouse_id(i),
                name: format!("Warehouse {i}"),
                location: format!("LOC-{i:02}"),
            })))
        }));
        out
    }

    /// `product.created` for products `range`.
    pub fn product_created(&mut self, range: std::ops::Range<u64>) -> Vec<OutRecord> {
        range
            .map(|i| {
                let c = i as usize;
                let (name, description) = crate::vocabulary::product_text(c);
                record(&Envelope::new(Event::ProductCreated(ProductCreated {
                    product_id: product_id(i),
                    name: format!("{name} {i}"),
                    description: format!("{description} Item {i}, sturdy and well reviewed, in category {}.", c % CATEGORIES),
                    price: Money::new(self.rng.gen_range(199..250_000), "EUR"),
                    sku: format!("SKU-{i:08}"),
                    category_id: Id::from(format!("cat-{:03}", c % CATEGORIES).as_str()),
                    brand_id: Id::from(format!("brand-{:03}", (c * 7) % BRANDS).as_str()),
                    supplier_id: Id::from(format!("sup-{:03}", (c * 3) % SUPPLIERS).as_str()),
                })))
            })
            .collect()
    }

    /// `count` steady-state events: 75% stock received, 20% stock adjusted (mostly small
    /// corrections down, so a few are rejected as in production), 5% product price updates.
    pub fn mixed(&mut self, count: usize) -> Vec<OutRecord> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let product = product_id(self.zipf.sample(&mut self.rng) as u64 - 1);
            let warehouse = warehouse_id(self.rng.gen_range(0..WAREHOUSES));
            let roll: u32 = self.rng.gen_range(0..100);
            let event = if roll < 75 {
                Event::StockReceived(StockReceived {
                    product_id: product,
                    warehouse_id: warehouse,
                    quantity: self.rng.gen_range(1..=100),
                })
            } else if roll < 95 {
                let delta = match self.rng.gen_range(-8i64..=3) {
                    0 => -1,
                    d => d,
                };
                Event::StockAdjusted(StockAdjusted {
                    product_id: product,
                    warehouse_id: warehouse,
                    delta,
                    reason: "cycle count".to_owned(),
                })
            } else {
                Event::ProductUpdated(ProductUpdated {
                    product_id: product,
                    price: Some(Money::new(self.rng.gen_range(199..250_000), "EUR")),
                    ..Default::default()
                })
            };
            out.push(record(&Envelope::new(event)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_decode_and_validate() {
        let mut w = Workload::new(100, 7);
        let mut all = w.reference_data();
        all.extend(w.product_created(0..100));
        all.extend(w.mixed(1_000));
        for r in all {
            let e = Envelope::decode(r.value.as_deref().unwrap()).unwrap();
            assert_eq!(e.topic().name(), r.topic);
        }
    }
}
