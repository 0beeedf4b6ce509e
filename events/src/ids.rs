//! Identifiers and money: the two value types every event shares.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use crate::ValidationError;

/// Longest identifier we accept; long enough for a UUID with a prefix, short enough to key on.
pub const MAX_ID_LEN: usize = 64;

/// An entity identifier: 1..=64 characters of `[A-Za-z0-9_.:-]`.
///
/// Ids are strings, not UUIDs, so that imported catalogs keep their own SKUs and ids while the
/// write path mints UUIDv7 ids for new entities.
///
/// Shared, not owned: an id is cloned wherever a row is keyed, emitted or published (the
/// pipeline's rows carry several each, cloned at every step), and a clone of an `Arc<str>` is
/// a reference count where a `String`'s was an allocation and a copy. Ids never change.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(transparent)]
pub struct Id(Arc<str>);

impl Id {
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        validate_id(&value)?;
        Ok(Self(Arc::from(value)))
    }

    /// A fresh time-ordered id (UUIDv7), so ids sort roughly by creation time.
    pub fn generate() -> Self {
        Self(Arc::from(uuid::Uuid::now_v7().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn check(&self, field: &'static str) -> Result<(), ValidationError> {
        validate_id(&self.0).map_err(|e| e.at(field))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Id {
    /// Unchecked conversion for literals in code and tests; input from the outside goes
    /// through [`Id::new`] or event validation.
    fn from(value: &str) -> Self {
        Self(Arc::from(value))
    }
}

/// A string on the wire, as before.
impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Read straight into the shared string: one allocation (serde's own `Arc<str>` reads a
/// `Box<str>` first and copies it).
impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id string")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Id, E> {
                Ok(Id(Arc::from(value)))
            }
        }
        deserializer.deserialize_str(IdVisitor)
    }
}

fn validate_id(value: &str) -> Result<(), ValidationError> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(ValidationError::new(
            "",
            format!("must be 1 to {MAX_ID_LEN} characters long"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err(ValidationError::new(
            "",
            "may contain only letters, digits and _ - . :",
        ));
    }
    Ok(())
}

/// An amount of money in integer minor units (cents) of an ISO 4217 currency.
/// Never a float: sums of prices must be exact.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Money {
    /// Amount in minor units, e.g. 1999 for 19.99.
    pub amount_minor: i64,
    /// ISO 4217 code, three upper-case letters.
    #[cfg_attr(feature = "utoipa", schema(pattern = "^[A-Z]{3}$", example = "EUR"))]
    pub currency: String,
}

/// Written by hand rather than derived: the derive would say "a string", and the id rules
/// (length, alphabet) belong in the document so that clients and fuzzers see them.
#[cfg(feature = "utoipa")]
mod id_schema {
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
    use utoipa::openapi::RefOr;

    use super::{Id, MAX_ID_LEN};

    impl utoipa::PartialSchema for Id {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_ID_LEN))
                .pattern(Some("^[A-Za-z0-9_.:-]{1,64}$"))
                .description(Some("An entity id: 1 to 64 characters of letters, digits and _ - . :"))
                .examples(["0190d3f2-7c1e-7a4b-9f00-3c2d1e0f9a11"])
                .into()
        }
    }

    impl utoipa::ToSchema for Id {}
}

impl Money {
    pub fn new(amount_minor: i64, currency: &str) -> Self {
        Self { amount_minor, currency: currency.to_owned() }
    }

    pub(crate) fn check_positive(&self, field: &'static str) -> Result<(), ValidationError> {
        if self.amount_minor <= 0 {
            return Err(ValidationError::new(field, "must be greater than zero"));
        }
        self.check_non_negative(field)
    }

    pub(crate) fn check_non_negative(&self, field: &'static str) -> Result<(), ValidationError> {
        if self.amount_minor < 0 {
            return Err(ValidationError::new(field, "must not be negative"));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ValidationError::new(
                field,
                "currency must be a three-letter upper-case ISO 4217 code",
            ));
        }
        Ok(())
    }
}
