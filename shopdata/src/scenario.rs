//! A deterministic stream of catalog and inventory events that exercises every upsert path:
//! names arriving after the products that use them, partial updates, deletes, stock moves,
//! adjustments that must be rejected, and producer-style duplicates (same event id twice).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopflow_events::types::*;
use shopflow_events::{Envelope, Event, Id, Money};

pub fn events(seed: u64, products: usize, moves: usize) -> Vec<Envelope> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let named = |id: String, name: String| NamedEntityUpserted { id: Id::from(id.as_str()), name };
    for w in 0..3 {
        out.push(Envelope::new(Event::WarehouseCreated(WarehouseCreated {
            warehouse_id: Id::from(format!("w{w}").as_str()),
            name: format!("Warehouse {w}"),
            location: String::new(),
        })));
    }
    for c in 0..4 {
        out.push(Envelope::new(Event::CategoryUpserted(named(format!("c{c}"), format!("Category {c}")))));
    }
    out.push(Envelope::new(Event::BrandUpserted(named("b0".into(), "Brand 0".into()))));
    for p in 0..products {
        out.push(Envelope::new(Event::ProductCreated(ProductCreated {
            product_id: Id::from(format!("p{p}").as_str()),
            name: format!("Product {p}"),
            description: String::new(),
            price: Money::new(100 + p as i64, "EUR"),
            sku: String::new(),
            category_id: Id::from(format!("c{}", p % 5).as_str()), // c4 never gets a name
            brand_id: Id::from(format!("b{}", p % 2).as_str()),    // b1 is named later
            supplier_id: Id::from("s0"),
        })));
    }
    for i in 0..moves {
        let product = Id::from(format!("p{}", rng.gen_range(0..products)).as_str());
        let warehouse = Id::from(format!("w{}", rng.gen_range(0..3)).as_str());
        let event = match rng.gen_range(0..10) {
            0..=5 => Event::StockReceived(StockReceived { product_id: product, warehouse_id: warehouse, quantity: rng.gen_range(1..50) }),
            6 | 7 => Event::StockAdjusted(StockAdjusted { product_id: product, warehouse_id: warehouse, delta: -rng.gen_range(1..40), reason: "count".into() }),
            8 => Event::ProductUpdated(ProductUpdated { product_id: product, price: Some(Money::new(rng.gen_range(1..10_000), "EUR")), ..Default::default() }),
            _ => Event::ProductUpdated(ProductUpdated { product_id: product, name: Some(format!("Renamed {i}")), ..Default::default() }),
        };
        out.push(Envelope::new(event));
        if i % 97 == 0 {
            let duplicate = out.last().unwrap().clone();
            out.push(duplicate);
        }
    }
    out.push(Envelope::new(Event::BrandUpserted(named("b1".into(), "Brand 1".into()))));
    out.push(Envelope::new(Event::SupplierUpserted(named("s0".into(), "Supplier 0".into()))));
    for p in (0..products).step_by(7) {
        out.push(Envelope::new(Event::ProductDeleted(ProductDeleted { product_id: Id::from(format!("p{p}").as_str()) })));
    }
    out
}

pub use crate::records;
