//! Materialized views as the serving layer sees them: in-memory tables keyed by primary key,
//! updated a whole epoch at a time, plus the progress that says which log offsets they reflect.
//!
//! The same store is filled by the pipeline's workers in one-process mode and by a read
//! replica tailing the changelog topics in scale-out mode.

mod progress;
mod rows;
mod table;

pub use progress::{Progress, ProgressReport, WaitError};
pub use rows::{ProductRow, StockRow, ViewUpdate, WarehouseRow};
pub use table::Table;

use shopflow_events::Id;

/// Every view the serving layer answers from.
#[derive(Default)]
pub struct Views {
    pub products: Table<Id, ProductRow>,
    pub stock: Table<(Id, Id), StockRow>,
    pub warehouses: Table<Id, WarehouseRow>,
    pub progress: Progress,
}

impl Views {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one batch of upserts (an epoch's worth from one worker).
    pub fn apply(&self, updates: impl IntoIterator<Item = ViewUpdate>) {
        let mut products = Vec::new();
        let mut stock = Vec::new();
        let mut warehouses = Vec::new();
        for update in updates {
            match update {
                ViewUpdate::Product { key, row } => products.push((key, row)),
                ViewUpdate::Stock { key, row } => stock.push((key, row)),
                ViewUpdate::Warehouse { key, row } => warehouses.push((key, row)),
            }
        }
        self.products.apply(products);
        self.stock.apply(stock);
        self.warehouses.apply(warehouses);
    }
}
