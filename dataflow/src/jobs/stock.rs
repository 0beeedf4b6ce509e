//! Stock per product and warehouse (seed 003 `inventory`), with the warehouse's name.

use differential_dataflow::VecCollection;
use differential_dataflow::lattice::Lattice;
use timely::progress::Timestamp;

use super::{left_join, BaseCollections};
use crate::views::{StockRow, WarehouseRow};

pub fn build<'scope, T: Timestamp + Lattice>(inputs: &BaseCollections<'scope, T>) -> VecCollection<'scope, T, StockRow> {
    let names = inputs.warehouses.clone().map(|(id, w): (_, WarehouseRow)| (id, w.name));
    left_join(
        inputs.stock.clone().map(|((product, warehouse), quantity)| (warehouse, (product, quantity))),
        names,
    )
    .map(|(warehouse_id, ((product_id, quantity), warehouse_name))| StockRow {
        product_id,
        warehouse_id,
        warehouse_name,
        quantity,
    })
}
