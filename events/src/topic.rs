use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The topics of the design. Views' changelogs and the remap are named by the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    Catalog,
    Inventory,
    Users,
    Carts,
    Orders,
    Payments,
    Interactions,
    Decisions,
    Dlq,
}

impl Topic {
    pub const ALL: [Topic; 9] = [
        Topic::Catalog,
        Topic::Inventory,
        Topic::Users,
        Topic::Carts,
        Topic::Orders,
        Topic::Payments,
        Topic::Interactions,
        Topic::Decisions,
        Topic::Dlq,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Catalog => "catalog",
            Topic::Inventory => "inventory",
            Topic::Users => "users",
            Topic::Carts => "carts",
            Topic::Orders => "orders",
            Topic::Payments => "payments",
            Topic::Interactions => "interactions",
            Topic::Decisions => "decisions",
            Topic::Dlq => "dlq",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
