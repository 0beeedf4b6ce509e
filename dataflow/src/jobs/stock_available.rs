//! Stock available per product and warehouse: on hand, held by orders, and their difference
//! (what a new order can get), as the inventory partitions decide them.

use differential_dataflow::lattice::Lattice;
use differential_dataflow::VecCollection;
use timely::progress::Timestamp;

use super::BaseCollections;
use crate::views::StockAvailableRow;

pub fn build<'scope, T: Timestamp + Lattice>(inputs: &BaseCollections<'scope, T>) -> VecCollection<'scope, T, StockAvailableRow> {
    inputs.stock_levels.clone().map(|((product_id, warehouse_id), (on_hand, held))| StockAvailableRow {
        product_id,
        warehouse_id,
        on_hand,
        held,
        available: on_hand - held,
    })
}
