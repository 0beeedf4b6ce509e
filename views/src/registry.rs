//! The registry of views: one line per view generates everything that used to be written by
//! hand in five places — the `ViewRow` publication enum, the `ViewUpdate` changelog record,
//! the table in `Views` and its share of `Views::apply`, the view's name (its changelog topic)
//! and the decoding of its changelog tombstones. A view's row type says what its key is by
//! implementing [`ViewRowType`]; keys say how they are written as changelog keys by
//! implementing [`ViewKey`].

use std::hash::Hash;

use serde::de::DeserializeOwned;
use serde::Serialize;
use shopflow_events::Id;

/// A view's primary key, and how it is written as a changelog record key.
pub trait ViewKey: Clone + Ord + Hash + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    fn to_bytes(&self) -> Vec<u8>;
    fn from_bytes(bytes: &[u8]) -> Option<Self>;
}

impl ViewKey for Id {
    fn to_bytes(&self) -> Vec<u8> {
        self.as_str().as_bytes().to_vec()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Id::new(std::str::from_utf8(bytes).ok()?).ok()
    }
}

/// Pair keys are `a/b`: ids never contain `/`.
impl ViewKey for (Id, Id) {
    fn to_bytes(&self) -> Vec<u8> {
        format!("{}/{}", self.0, self.1).into_bytes()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (a, b) = std::str::from_utf8(bytes).ok()?.split_once('/')?;
        Some((Id::new(a).ok()?, Id::new(b).ok()?))
    }
}

/// Triple keys are `a/b/c`.
impl ViewKey for (Id, Id, Id) {
    fn to_bytes(&self) -> Vec<u8> {
        format!("{}/{}/{}", self.0, self.1, self.2).into_bytes()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut parts = std::str::from_utf8(bytes).ok()?.splitn(3, '/');
        let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
        Some((Id::new(a).ok()?, Id::new(b).ok()?, Id::new(c).ok()?))
    }
}

impl ViewKey for uuid::Uuid {
    fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        uuid::Uuid::parse_str(std::str::from_utf8(bytes).ok()?).ok()
    }
}

/// A row of a view: it knows its key.
pub trait ViewRowType: Clone + Ord + Hash + std::fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    type Key: ViewKey;
    fn key(&self) -> Self::Key;
}

/// Declares every view. Per line: the variant name, the payload that flows through the
/// dataflow (a `Box` for wide rows, so that publication moves and sorts small values), the
/// row type, the `Views` field and the view name (also the changelog topic suffix).
macro_rules! views {
    ($( $variant:ident($payload:ty) => $row:ty, $field:ident, $name:literal; )*) => {
        /// A row of any view, so that all views flow through one publication operator.
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        pub enum ViewRow { $( $variant($payload), )* }

        /// One upsert to a view: the new row for a key, or `None` when the key left the view.
        /// This is also the changelog record format (`view` selects the topic).
        #[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "view", rename_all = "snake_case")]
        pub enum ViewUpdate { $( $variant { key: <$row as ViewRowType>::Key, row: Option<$row> }, )* }

        /// The view names, which are also the changelog topic suffixes.
        pub const VIEW_NAMES: [&str; [$( $name, )*].len()] = [$( $name, )*];

        /// One batch of upserts, split per view.
        #[derive(Default)]
        pub(crate) struct Batches {
            $( pub(crate) $field: Vec<(<$row as ViewRowType>::Key, Option<$row>)>, )*
        }

        /// The tables every view is kept in, one per view.
        #[derive(Default)]
        pub struct Tables {
            $( pub $field: crate::Table<<$row as ViewRowType>::Key, $row>, )*
        }

        impl Tables {
            pub(crate) fn apply_batches(&self, batches: Batches) {
                $( self.$field.apply(batches.$field); )*
            }
        }

        impl Batches {
            pub(crate) fn push(&mut self, update: ViewUpdate) {
                match update { $( ViewUpdate::$variant { key, row } => self.$field.push((key, row)), )* }
            }
        }

        impl ViewRow {
            /// A hash of the view and the key, by which publication exchanges rows between
            /// workers (one key's changes always meet at one worker). Only needs to agree
            /// between the workers of one build; changelog partitions use murmur2 instead.
            pub fn key_hash(&self) -> u64 {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::mem::discriminant(self).hash(&mut hasher);
                match self { $( ViewRow::$variant(r) => { let r: &$row = r; r.key().hash(&mut hasher) } )* }
                hasher.finish()
            }

            /// Whether two rows are for the same key of the same view.
            pub fn same_key(&self, other: &ViewRow) -> bool {
                match (self, other) {
                    $( (ViewRow::$variant(a), ViewRow::$variant(b)) => { let (a, b): (&$row, &$row) = (a, b); a.key() == b.key() } )*
                    #[allow(unreachable_patterns)]
                    _ => false,
                }
            }

            pub fn upsert(self) -> ViewUpdate {
                match self { $( ViewRow::$variant(r) => { let r = <$row>::from(r); ViewUpdate::$variant { key: r.key(), row: Some(r) } } )* }
            }

            pub fn tombstone(self) -> ViewUpdate {
                match self { $( ViewRow::$variant(r) => { let r: &$row = &r; ViewUpdate::$variant { key: r.key(), row: None } } )* }
            }
        }

        impl ViewUpdate {
            pub fn view_name(&self) -> &'static str {
                match self { $( ViewUpdate::$variant { .. } => $name, )* }
            }

            /// The compaction key in the changelog topic.
            pub fn key_bytes(&self) -> Vec<u8> {
                match self { $( ViewUpdate::$variant { key, .. } => ViewKey::to_bytes(key), )* }
            }

            /// The delete of `key` (as [`ViewUpdate::key_bytes`] wrote it) from the view named
            /// `view`: what a tombstone in `changelog.<view>` means. `None` for an unknown
            /// view or a key that is not a valid key of that view.
            pub fn tombstone_from(view: &str, key: &[u8]) -> Option<ViewUpdate> {
                match view {
                    $( $name => Some(ViewUpdate::$variant { key: ViewKey::from_bytes(key)?, row: None }), )*
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use views;
