//! The demo catalog `shopflow up` loads on first start: a small shop with categories,
//! brands, suppliers, warehouses, products and stock, written as ordinary events.

use shopflow_events::types::{
    CartItemChanged, NamedEntityUpserted, ProductCreated, ProductViewed, StockReceived, WarehouseCreated,
};
use shopflow_events::{Envelope, Event, Id};
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

/// The category of demo product `i`.
pub fn category_of(i: usize) -> &'static str {
    CATEGORIES[i % CATEGORIES.len()].0
}

/// The id of demo warehouse `w` (0, 1 or 2).
pub fn warehouse_of(w: usize) -> &'static str {
    WAREHOUSES[w % WAREHOUSES.len()].0
}

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
        let (name, description) = crate::vocabulary::product_text(i);
        let product_id = Id::from(format!("demo-{i:04}").as_str());
        out.push(Envelope::new(Event::ProductCreated(ProductCreated {
            product_id: product_id.clone(),
            name,
            description,
            price: crate::demo_orders::price_of(i),
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
    out.extend(shoppers(products));
    out
}

/// Demo shoppers: each browses a few products of two favourite categories, with popularity
/// skewed towards the first products of a category, and some put one in the cart or order it
/// (the orders: [`crate::demo_orders`]).
/// Deterministic, so the demo looks the same on every first start.
fn shoppers(products: usize) -> Vec<Envelope> {
    let mut out = Vec::new();
    if products == 0 {
        return out;
    }
    let categories = CATEGORIES.len();
    let per_category = products.div_ceil(categories);
    // The product each ordering shopper (every third) looked at last: what they order.
    let mut ordered = Vec::new();
    for shopper in 0..60usize {
        let user_id = Id::from(format!("demo-user-{shopper:02}").as_str());
        let favourites = [shopper % categories, (shopper * 5 + 1) % categories];
        for step in 0..12usize {
            let category = favourites[step % 2];
            // Squaring skews towards popular items without randomness.
            let rank = ((step * 7 + shopper * 3) % per_category).pow(2) / per_category.max(1);
            let index = (rank * categories + category).min(products - 1);
            let product_id = Id::from(format!("demo-{index:04}").as_str());
            out.push(Envelope::new(Event::ProductViewed(ProductViewed { user_id: user_id.clone(), product_id: product_id.clone() })));
            if step % 5 == 4 {
                out.push(Envelope::new(Event::CartItemAdded(CartItemChanged { user_id: user_id.clone(), product_id: product_id.clone(), quantity: 1 })));
            }
            if step == 11 && shopper % 3 == 0 {
                ordered.push(index);
            }
        }
    }
    out.extend(crate::demo_orders::placements(products, |k| ordered[k]));
    out
}

pub fn records(products: usize) -> Vec<OutRecord> {
    crate::records(&events(products))
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
