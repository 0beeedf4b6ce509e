//! The views as the serving layer reads them. No timely or differential inside: the pipeline
//! (`shopflow-dataflow`) fills them in one process, a read replica (`replica`) fills them from
//! the changelogs (`changelog`) in scale-out mode, and `shopflow-serving` only depends on this.
//!
//! Materialized views as the serving layer sees them: in-memory tables keyed by primary key,
//! updated a whole epoch at a time, plus the progress that says which log offsets they reflect.
//!
//! The same store is filled by the pipeline's workers in one-process mode and by a read
//! replica tailing the changelog topics in scale-out mode.

pub mod changelog;
mod commerce;
mod progress;
pub mod registry;
pub mod replica;
mod rows;
pub mod sink;
mod table;

pub use progress::{Progress, ProgressReport, WaitError};
pub use registry::{ViewKey, ViewRowType};
pub use rows::{AccountRow, AddressRow, SessionRow, SynonymsRow, InteractionRow, ProductRow, PurchaseRow, RequestRow, Stars, StockRow, TopSellerRow, TrendingRow, WarehouseRow};
pub use commerce::{
    utc_day, CartRow, LatestOrderRow, OrderHold, OrderRow, PaymentMethodRow, PaymentRow, RefundEntry, RevenueRow,
    StatusChange, StockAvailableRow, UserOrderRow,
};
pub use table::Table;

// The registry: one line per view (see `registry` and the crate docs' recipe).
registry::views! {
    Product(Box<ProductRow>) => ProductRow, products, "products";
    Stock(StockRow) => StockRow, stock, "stock";
    Warehouse(WarehouseRow) => WarehouseRow, warehouses, "warehouses";
    Interaction(InteractionRow) => InteractionRow, interactions, "interactions";
    Purchase(PurchaseRow) => PurchaseRow, purchases, "purchases";
    Trending(TrendingRow) => TrendingRow, trending, "trending";
    Request(RequestRow) => RequestRow, requests, "requests";
    TopSeller(TopSellerRow) => TopSellerRow, top_sellers, "top_sellers";
    Account(AccountRow) => AccountRow, accounts, "accounts";
    Address(AddressRow) => AddressRow, addresses, "addresses";
    Session(SessionRow) => SessionRow, sessions, "sessions";
    Synonyms(SynonymsRow) => SynonymsRow, synonyms, "synonyms";
    Cart(CartRow) => CartRow, carts, "carts";
    Order(Box<OrderRow>) => OrderRow, orders, "orders";
    UserOrder(UserOrderRow) => UserOrderRow, user_orders, "user_orders";
    Payment(Box<PaymentRow>) => PaymentRow, payments, "payments";
    PaymentMethod(PaymentMethodRow) => PaymentMethodRow, payment_methods, "payment_methods";
    StockAvailable(StockAvailableRow) => StockAvailableRow, stock_available, "stock_available";
    TopSellerHour(TopSellerRow) => TopSellerRow, top_sellers_hour, "top_sellers_hour";
    TopSellerDay(TopSellerRow) => TopSellerRow, top_sellers_day, "top_sellers_day";
    LatestOrder(LatestOrderRow) => LatestOrderRow, latest_orders, "latest_orders";
    Revenue(RevenueRow) => RevenueRow, revenue, "revenue";
}

/// The key under which a payment method whose token is not a valid id is stored: a digest of
/// the token (tokens are not secrets, but they are opaque).
pub(crate) fn token_key(token: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut hasher);
    format!("tok-{:016x}", hasher.finish())
}

use shopflow_events::{Id, Topic};

/// The source topics the pipeline's jobs read: the topics whose offsets the views' progress
/// covers (and consistency tokens may name).
pub const SOURCE_TOPICS: [Topic; 6] =
    [Topic::Catalog, Topic::Inventory, Topic::Users, Topic::Interactions, Topic::Carts, Topic::Orders];

/// Every view the serving layer answers from: the registry's tables (reached through
/// `Deref`, e.g. `views.products`) plus the progress that says which offsets they reflect.
#[derive(Default)]
pub struct Views {
    tables: Tables,
    pub progress: Progress,
    /// Held for the whole of `apply`: several workers publish concurrently, and a product's
    /// stock total is computed from the stock table and written into the product table. Two
    /// batches interleaving between the read and the write could leave a stale total last.
    applying: parking_lot::Mutex<()>,
    /// Told what changed, inside `apply` (so before the progress that covers the change is
    /// reported): how a derived index (search) follows the catalog.
    listeners: parking_lot::RwLock<Vec<ChangeListener>>,
}

/// What one applied batch changed, as listeners are told (the tables are already updated).
pub struct Changed<'a> {
    /// Products whose catalog row, stock total or top-seller units changed.
    pub products: &'a [Id],
    /// Whether a synonym set changed.
    pub synonyms: bool,
    /// Orders whose row changed (live order events).
    pub orders: &'a [Id],
    /// Whether any top-sellers ranking (all time, hour, day) changed (the live ranking).
    pub rankings: bool,
}

pub type ChangeListener = Box<dyn Fn(&Changed<'_>) + Send + Sync>;

impl std::ops::Deref for Views {
    type Target = Tables;
    fn deref(&self) -> &Tables {
        &self.tables
    }
}

impl Views {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one batch of upserts (an epoch's worth from one worker).
    pub fn apply(&self, updates: impl IntoIterator<Item = ViewUpdate>) {
        let _applying = self.applying.lock();
        let mut batches = Batches::default();
        for update in updates {
            batches.push(update);
        }
        // A product's stock total is the sum of its stock rows: recomputed here for every
        // product whose row or stock changed, instead of joining it in the dataflow.
        let mut touched: Vec<Id> = batches.products.iter().map(|(k, _)| k.clone()).collect();
        touched.extend(batches.stock.iter().map(|((product, _), _)| product.clone()));
        touched.sort();
        touched.dedup();
        let ranked: Vec<Id> = batches.top_sellers.iter().map(|(k, _)| k.clone()).collect();
        let synonyms = !batches.synonyms.is_empty();
        let mut orders: Vec<Id> = batches.orders.iter().map(|(k, _)| k.clone()).collect();
        orders.sort();
        orders.dedup();
        let rankings = !(batches.top_sellers.is_empty() && batches.top_sellers_hour.is_empty() && batches.top_sellers_day.is_empty());
        self.tables.apply_batches(batches);
        for product in &touched {
            let total = self.stock.range(first_key_range(product)).iter().map(|s| s.quantity).sum();
            self.products.modify(product, |row| row.stock = total);
        }
        let listeners = self.listeners.read();
        let changed = synonyms || rankings || !(touched.is_empty() && ranked.is_empty() && orders.is_empty());
        if changed && !listeners.is_empty() {
            touched.extend(ranked);
            touched.sort();
            touched.dedup();
            let changed = Changed { products: &touched, synonyms, orders: &orders, rankings };
            for listener in listeners.iter() {
                listener(&changed);
            }
        }
    }

    /// Registers `listener` for every later `apply` that changes products or synonyms (see
    /// [`Changed`]). What is already in the views is not replayed to it: read the tables
    /// after registering, so nothing falls between the two.
    pub fn on_change(&self, listener: ChangeListener) {
        self.listeners.write().push(listener);
    }

    /// One user's interactions (their row of the interaction matrix), by product id.
    pub fn user_interactions(&self, user: &Id) -> Vec<InteractionRow> {
        self.interactions.range(first_key_range(user))
    }

    /// One user's cart lines, by product id.
    pub fn user_cart(&self, user: &Id) -> Vec<CartRow> {
        self.carts.range(first_key_range(user))
    }

    /// One user's orders, newest first.
    pub fn user_order_list(&self, user: &Id) -> Vec<UserOrderRow> {
        let mut rows = self.user_orders.range(first_key_range(user));
        rows.sort_by(|a, b| b.placed_at.cmp(&a.placed_at).then_with(|| b.order_id.cmp(&a.order_id)));
        rows
    }

    /// One user's payment methods.
    pub fn user_payment_methods(&self, user: &Id) -> Vec<PaymentMethodRow> {
        self.payment_methods.range(first_key_range(user))
    }

    /// Stock available of one product, per warehouse.
    pub fn product_available(&self, product: &Id) -> Vec<StockAvailableRow> {
        self.stock_available.range(first_key_range(product))
    }

    /// The products a user has ordered.
    pub fn user_purchases(&self, user: &Id) -> Vec<PurchaseRow> {
        self.purchases.range(first_key_range(user))
    }
}

/// A range of pair keys.
type PairRange = (std::ops::Bound<(Id, Id)>, std::ops::Bound<(Id, Id)>);

/// Every (first, _) key: from (first, "") up to, not including, the next possible id.
fn first_key_range(user: &Id) -> PairRange {
    use std::ops::Bound;
    let start = Bound::Included((user.clone(), Id::default()));
    // Ids are ASCII without NUL, so appending one gives the least id greater than every
    // (user, product) pair of this user.
    let end = Bound::Excluded((Id::from(format!("{user}\u{0}").as_str()), Id::default()));
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str) -> ProductRow {
        ProductRow::sample(id, "p")
    }

    #[test]
    fn the_stock_total_is_right_when_workers_publish_concurrently() {
        let views = std::sync::Arc::new(Views::new());
        views.apply([ViewUpdate::Product { key: "p".into(), row: Some(product("p")) }]);
        // Each worker owns one warehouse row of the same product and raises it step by step.
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let views = views.clone();
                std::thread::spawn(move || {
                    let warehouse = Id::from(format!("w{w}").as_str());
                    for quantity in 1..=2_000 {
                        let row = StockRow { product_id: "p".into(), warehouse_id: warehouse.clone(), warehouse_name: None, quantity };
                        views.apply([ViewUpdate::Stock { key: ("p".into(), warehouse.clone()), row: Some(row) }]);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(views.products.get(&"p".into()).unwrap().stock, 4 * 2_000);
    }
}
