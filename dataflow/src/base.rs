//! The base collections: what the per-partition state machine feeds into the dataflow. One
//! declaration (at the bottom) generates the `Changes` a fold produces, the
//! `BaseCollections` the jobs build on, and the input sessions that carry one into the other.
//! Adding a base collection is one line there.

use differential_dataflow::input::InputSession;
use differential_dataflow::VecCollection;
use shopflow_events::Id;
use timely::dataflow::Scope;
use timely::progress::Timestamp;

use crate::jobs::Epoch;
use crate::state::ProductBase;
use crate::views::{
    AccountRow, AddressRow, CartRow, OrderRow, PaymentMethodRow, PaymentRow, RequestRow, SessionRow, SynonymsRow, WarehouseRow,
};

macro_rules! base_collections {
    (
        plain { $( $(#[$doc:meta])* $field:ident : $data:ty, )* }
        windowed { $( $(#[$wdoc:meta])* $wfield:ident : $wdata:ty, )* }
    ) => {
        /// Changes to the base collections produced by applying records, plus the decisions
        /// the fold took (published to `decisions`).
        #[derive(Default, Debug)]
        pub struct Changes {
            $( $(#[$doc])* pub $field: Vec<($data, isize)>, )*
            // Windowed: (row, when it leaves the window, difference), differential's update order.
            $( $(#[$wdoc])* pub $wfield: Vec<($wdata, i64, isize)>, )*
            pub decisions: Vec<crate::state::Decision>,
        }

        impl Changes {
            pub fn is_empty(&self) -> bool {
                $( self.$field.is_empty() && )* $( self.$wfield.is_empty() && )* self.decisions.is_empty()
            }

            /// Sums the differences of equal rows and drops those that cancel: an order that
            /// moves from `pending` through two holds to `reserved` within one epoch enters
            /// the dataflow once, as its last version, not as three retractions and four
            /// insertions that every downstream operator and the publication would carry.
            pub fn consolidate(&mut self) {
                $( differential_dataflow::consolidation::consolidate(&mut self.$field); )*
                $( differential_dataflow::consolidation::consolidate_updates(&mut self.$wfield); )*
            }

            /// Rows of every base collection (the decisions are not rows).
            pub fn rows(&self) -> usize {
                0 $( + self.$field.len() )* $( + self.$wfield.len() )*
            }
        }

        /// The collections every job is built from.
        pub struct BaseCollections<'scope, T: Timestamp> {
            $( $(#[$doc])* pub $field: VecCollection<'scope, T, $data>, )*
            $( $(#[$wdoc])* pub $wfield: VecCollection<'scope, T, $wdata>, )*
        }

        /// One input session per base collection.
        pub(crate) struct Inputs {
            $( $field: InputSession<Epoch, $data, isize>, )*
            $( $wfield: InputSession<Epoch, $wdata, isize>, )*
        }

        impl Inputs {
            pub(crate) fn new() -> Self {
                Self { $( $field: InputSession::new(), )* $( $wfield: InputSession::new(), )* }
            }

            pub(crate) fn collections<'scope>(&mut self, scope: Scope<'scope, Epoch>) -> BaseCollections<'scope, Epoch> {
                BaseCollections {
                    $( $field: self.$field.to_collection(scope.clone()), )*
                    $( $wfield: self.$wfield.to_collection(scope.clone()), )*
                }
            }

            /// Moves `changes` into the sessions at the current epoch. A windowed change also
            /// schedules its retraction for the moment it leaves the window (event time); one
            /// already outside (an old event, or one replayed late) never enters.
            pub(crate) fn insert(&mut self, changes: &mut Changes) {
                $( for (data, diff) in changes.$field.drain(..) { self.$field.update(data, diff); } )*
                $(
                    let now = *self.$wfield.time();
                    for (data, leaves_at, diff) in changes.$wfield.drain(..) {
                        let leaves_at = u64::try_from(leaves_at).unwrap_or(0);
                        if leaves_at > now {
                            self.$wfield.update(data.clone(), diff);
                            self.$wfield.update_at(data, leaves_at, -diff);
                        }
                    }
                )*
            }

            pub(crate) fn advance_to(&mut self, epoch: Epoch) {
                $( self.$field.advance_to(epoch); )*
                $( self.$wfield.advance_to(epoch); )*
                $( self.$field.flush(); )*
                $( self.$wfield.flush(); )*
            }
        }
    };
}

base_collections! {
    plain {
        products: (Id, ProductBase),
        categories: (Id, String),
        brands: (Id, String),
        suppliers: (Id, String),
        warehouses: (Id, WarehouseRow),
        stock: ((Id, Id), i64),
        /// (user, product), the difference being the weight.
        interactions: (Id, Id),
        /// (user, product), the difference being units ordered.
        purchases: (Id, Id),
        /// First writes under an idempotency key, by event id.
        requests: (uuid::Uuid, RequestRow),
        /// Accounts, addresses and sessions by their keys, as the views show them.
        accounts: (Id, AccountRow),
        addresses: ((Id, Id), AddressRow),
        sessions: (Id, SessionRow),
        /// Search synonym sets by set id.
        synonyms: (Id, SynonymsRow),
        /// Cart lines by (user, product).
        carts: ((Id, Id), CartRow),
        /// Orders and their payments, by order id.
        orders: (Id, OrderRow),
        payments: (Id, PaymentRow),
        /// Tokenized cards by (user, token key).
        payment_methods: ((Id, Id), PaymentMethodRow),
        /// (product, warehouse) → (on hand, held).
        stock_levels: ((Id, Id), (i64, i64)),
        /// Products, the difference being units of paid orders (cancellations and full refunds
        /// taken back).
        sold: Id,
        /// (product, UTC day, currency), the difference being net revenue in minor units.
        revenue: (Id, Id, Id),
        /// Each partition's newest orders, the candidates of the latest-orders view.
        recent_orders: (Id, OrderRow),
    }
    windowed {
        /// Products, the difference being weight inside the trending window.
        trending: Id,
        /// Products, the difference being units sold within the last hour / day (event time).
        sold_hour: Id,
        sold_day: Id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str, b: &str) -> (Id, Id) {
        (Id::from(a), Id::from(b))
    }

    #[test]
    fn consolidation_keeps_the_net_change_of_each_row() {
        let mut changes = Changes::default();
        // p1 in w1 goes 5 → 4 → 3 within the epoch; p2 appears and goes again.
        changes.stock.extend([
            ((pair("p1", "w1"), 5), -1),
            ((pair("p1", "w1"), 4), 1),
            ((pair("p2", "w1"), 7), 1),
            ((pair("p1", "w1"), 4), -1),
            ((pair("p1", "w1"), 3), 1),
            ((pair("p2", "w1"), 7), -1),
        ]);
        changes.consolidate();
        assert_eq!(changes.stock, vec![((pair("p1", "w1"), 3), 1), ((pair("p1", "w1"), 5), -1)]);
        assert_eq!(changes.rows(), 2);
    }

    #[test]
    fn windowed_changes_sum_only_when_they_leave_the_window_together() {
        let mut changes = Changes::default();
        changes.sold_hour.extend([
            (Id::from("p1"), 1_000, 2),
            (Id::from("p1"), 1_000, 1),
            (Id::from("p1"), 2_000, 1),
            (Id::from("p2"), 1_000, 1),
            (Id::from("p2"), 1_000, -1),
        ]);
        changes.consolidate();
        assert_eq!(changes.sold_hour, vec![(Id::from("p1"), 1_000, 3), (Id::from("p1"), 2_000, 1)]);
    }
}
