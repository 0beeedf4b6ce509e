//! The demo catalog `shopflow up` loads on first start: a small shop with categories,
//! brands, suppliers, warehouses, products and stock, written as ordinary events.

use shopflow_events::types::{NamedEntityUpserted, ProductCreated, StockReceived, WarehouseCreated};
use shopflow_events::{Envelope, Event, Id, Money};
use shopflow_ingest::OutRecord;

const CATEGORIES: [(&str, &str); 6] = [
    ("kitchen", "Kitchen"),
    ("garden", "Garden"),
    ("audio", "Audio"),
    ("books", "Books"),
    ("outdoor", "Outdoor"),
    ("office", "Office"),
];
const BRANDS: [(&str, &str); 5] =
    [("acme", "Acme"), ("northwind", "Northwind"), ("globex", "Globex"), ("initech", "Initech"), ("umbrella", "Umbrella")];
const SUPPLIERS: [(&str, &str); 3] = [("sup-eu", "EuroSupply"), ("sup-us", "US Wholesale"), ("sup-asia", "Asia Direct")];
const WAREHOUSES: [(&str, &str, &str); 3] =
    [("wh-ber", "Berlin", "DE-BER"), ("wh-nyc", "New York", "US-NYC"), ("wh-sin", "Singapore", "SG-SIN")];
const NOUNS: [&str; 12] =
    ["Kettle", "Lamp", "Speaker", "Notebook", "Tent", "Chair", "Mug", "Headphones", "Backpack", "Planter", "Desk", "Novel"];
const ADJECTIVES: [&str; 8] = ["Classic", "Compact", "Deluxe", "Eco", "Pro", "Smart", "Travel", "Vintage"];

/// Every demo event, in the order they are written.
pub fn events(products: usize) -> Vec<Envelope> {
    let mut out = Vec::new();
    let named = |(id, name): (&str, &str)| NamedEntityUpserted { id: Id::from(id), name: name.to_owned() };
    out.extend(CATEGORIES.into_iter().map(|c| Envelope::new(Event::CategoryUpserted(named(c)))));
    out.extend(BRANDS.into_iter().map(|b| Envelope::new(Event::BrandUpserted(named(b)))));
    out.extend(SUPPLIERS.into_iter().map(|s| Envelope::new(Event::SupplierUpserted(named(s)))));
    out.extend(WAREHOUSES.into_iter().map(|(id, name, location)| {
        Envelope::new(Event::WarehouseCreated(WarehouseCreated {
            warehouse_id: Id::from(id),
            name: name.to_owned(),
            location: location.to_owned(),
        }))
    }));
    for i in 0..products {
        let noun = NOUNS[i % NOUNS.len()];
        let adjective = ADJECTIVES[(i / NOUNS.len()) % ADJECTIVES.len()];
        let product_id = Id::from(format!("demo-{i:04}").as_str());
        out.push(Envelope::new(Event::ProductCreated(ProductCreated {
            product_id: product_id.clone(),
            name: format!("{adjective} {noun}"),
            description: format!("A {} {} for everyday use.", adjective.to_lowercase(), noun.to_lowercase()),
            price: Money::new(499 + (i as i64 * 137) % 20_000, "EUR"),
            sku: format!("SKU-{i:05}"),
            category_id: Id::from(CATEGORIES[i % CATEGORIES.len()].0),
            brand_id: Id::from(BRANDS[(i * 7) % BRANDS.len()].0),
            supplier_id: Id::from(SUPPLIERS[(i * 3) % SUPPLIERS.len()].0),
        })));
        for (w, (warehouse, _, _)) in WAREHOUSES.iter().enumerate() {
            if (i + w) % 3 != 0 {
                out.push(Envelope::new(Event::StockReceived(StockReceived {
                    product_id: product_id.clone(),
                    warehouse_id: Id::from(*warehouse),
                    quantity: 5 + ((i * 31 + w * 17) % 60) as u32,
                })));
            }
        }
    }
    out
}

pub fn records(products: usize) -> Vec<OutRecord> {
    events(products)
        .into_iter()
        .map(|e| OutRecord::keyed(e.topic().name(), e.key().as_str(), e.to_json()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_demo_event_is_valid() {
        for envelope in super::events(50) {
            envelope.event.validate().unwrap();
        }
    }
}
