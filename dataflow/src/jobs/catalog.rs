//! The catalog view (seed 003, query 1): each product with its category, brand and supplier
//! names; its stock total over warehouses is filled in by the view layer from the stock view.
//! Joins are outer on the product side, so a product whose category arrives later is listed,
//! and named once the category is known.

use differential_dataflow::VecCollection;
use differential_dataflow::lattice::Lattice;
use timely::progress::Timestamp;

use super::{left_join, BaseCollections};
use crate::views::{ProductRow, Stars};

pub fn build<'scope, T: Timestamp + Lattice>(inputs: &BaseCollections<'scope, T>) -> VecCollection<'scope, T, ProductRow> {
    let with_category = left_join(
        inputs.products.clone().map(|(id, p)| (p.category_id.clone(), (id, p))),
        inputs.categories.clone(),
    );
    let with_brand = left_join(
        with_category.map(|(_, ((id, p), category))| (p.brand_id.clone(), (id, p, category))),
        inputs.brands.clone(),
    );
    let with_supplier = left_join(
        with_brand.map(|(_, ((id, p, category), brand))| (p.supplier_id.clone(), (id, p, category, brand))),
        inputs.suppliers.clone(),
    );
    with_supplier.map(|(_, ((id, p, category, brand), supplier))| ProductRow {
        product_id: id,
        name: p.name,
        description: p.description,
        price: p.price,
        sku: p.sku,
        category_id: p.category_id,
        category_name: category,
        brand_id: p.brand_id,
        brand_name: brand,
        supplier_id: p.supplier_id,
        supplier_name: supplier,
        // Kept current by the view layer from the stock view (see `Views::apply`), so a stock
        // movement does not re-emit the whole product row through the dataflow.
        stock: 0,
        created_at: p.created_at,
        rating_avg: Stars::mean(p.rating_sum, p.rating_count),
        rating_count: p.rating_count,
    })
}
