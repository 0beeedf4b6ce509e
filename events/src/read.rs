//! Reading an [`Envelope`] in one pass. serde's derive, for the envelope's `flatten`ed event,
//! buffered every field of the object into an intermediate tree (a string allocated per key and
//! per value) and then read the event again from that tree: in the pipeline's profile, decoding
//! envelopes cost twice what parsing them does. Here the fixed fields are read as they come,
//! and the event's body goes straight into its type once `type` has been read, which is the
//! order this crate writes (`{"v","id","ts","request","type","data"}`). Only a body that comes
//! before its `type` (another writer's order) is buffered, as a JSON value.

use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::{Envelope, Event};

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    V,
    Id,
    Ts,
    Request,
    Type,
    Data,
    #[serde(other)]
    Other,
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event envelope")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let (mut v, mut id, mut ts, mut request) = (None, None, None, None);
        let mut tag: Option<String> = None;
        let mut event: Option<Event> = None;
        let mut early: Option<serde_json::Value> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::V => v = Some(map.next_value()?),
                Field::Id => id = Some(map.next_value()?),
                Field::Ts => ts = Some(map.next_value()?),
                Field::Request => request = map.next_value()?,
                Field::Type => tag = Some(map.next_value()?),
                Field::Data => match &tag {
                    Some(tag) => event = Some(map.next_value_seed(Body(tag))?),
                    None => early = Some(map.next_value()?),
                },
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let tag = tag.ok_or_else(|| de::Error::missing_field("type"))?;
        let event = match event {
            Some(event) => event,
            // The body came first, or not at all: the derive reads (or refuses) it as always.
            None => {
                let mut tagged = serde_json::Map::new();
                tagged.insert("type".into(), serde_json::Value::String(tag));
                if let Some(body) = early {
                    tagged.insert("data".into(), body);
                }
                Event::deserialize(serde_json::Value::Object(tagged)).map_err(de::Error::custom)?
            }
        };
        Ok(Envelope {
            v: v.ok_or_else(|| de::Error::missing_field("v"))?,
            id: id.ok_or_else(|| de::Error::missing_field("id"))?,
            ts: ts.ok_or_else(|| de::Error::missing_field("ts"))?,
            request,
            event,
        })
    }
}

/// The event whose `type` is known, read from its body.
struct Body<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = Event;

    fn deserialize<D: Deserializer<'de>>(self, data: D) -> Result<Event, D::Error> {
        Event::deserialize(Tagged { tag: self.0, data })
    }
}

/// `{"type": tag, "data": <data>}` as the derived (adjacently tagged) `Event` reads it: the tag
/// first, so the derive reads the body straight from `data` without buffering it.
struct Tagged<'a, D> {
    tag: &'a str,
    data: D,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tagged<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        visitor.visit_map(TaggedFields { tag: Some(self.tag), data: Some(self.data), next: 0 })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct TaggedFields<'a, D> {
    tag: Option<&'a str>,
    data: Option<D>,
    next: u8,
}

impl<'de, D: Deserializer<'de>> MapAccess<'de> for TaggedFields<'_, D> {
    type Error = D::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, D::Error> {
        let key = match self.next {
            0 => "type",
            1 => "data",
            _ => return Ok(None),
        };
        self.next += 1;
        seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, D::Error> {
        if let Some(tag) = self.tag.take() {
            return seed.deserialize(StrDeserializer::new(tag));
        }
        match self.data.take() {
            Some(data) => seed.deserialize(data),
            None => Err(de::Error::custom("the event was read already")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{OrderLine, OrderPlaced};
    use crate::Money;

    fn order_placed() -> Envelope {
        let line = OrderLine { product_id: "p".into(), quantity: 2, unit_price: Money::new(100, "EUR") };
        let placed = OrderPlaced {
            order_id: "o".into(),
            user_id: "u".into(),
            lines: vec![line],
            address_id: "a".into(),
            idempotency_key: "k".into(),
            payment_token: "tok_visa".into(),
            from_cart: false,
        };
        Envelope { request: Some("fingerprint".into()), ..Envelope::new(Event::OrderPlaced(placed)) }
    }

    fn placed_json() -> serde_json::Value {
        serde_json::to_value(order_placed()).unwrap()
    }

    #[test]
    fn an_envelope_reads_back_what_was_written_whatever_the_order_of_its_fields() {
        let envelope = order_placed();
        let written = envelope.to_json();
        assert_eq!(serde_json::from_slice::<Envelope>(&written).unwrap(), envelope);

        // Body before type, and an unknown field: read alike.
        let value = serde_json::to_value(&envelope).unwrap();
        let object = value.as_object().unwrap();
        let mut reordered = String::from("{\"extra\":[1,{\"a\":2}],\"data\":");
        reordered.push_str(&object["data"].to_string());
        for key in ["ts", "type", "request", "id", "v"] {
            reordered.push_str(&format!(",\"{key}\":{}", object[key]));
        }
        reordered.push('}');
        assert_eq!(serde_json::from_str::<Envelope>(&reordered).unwrap(), envelope);
    }

    #[test]
    fn a_missing_or_unknown_part_is_refused_with_its_name() {
        let mut value = placed_json();
        value.as_object_mut().unwrap().remove("data");
        let error = serde_json::from_value::<Envelope>(value).unwrap_err().to_string();
        assert!(error.contains("data"), "{error}");

        let mut value = placed_json();
        value.as_object_mut().unwrap().remove("ts");
        let error = serde_json::from_value::<Envelope>(value).unwrap_err().to_string();
        assert!(error.contains("ts"), "{error}");

        let mut value = placed_json();
        value["type"] = "order.teleported".into();
        let error = serde_json::from_value::<Envelope>(value).unwrap_err().to_string();
        assert!(error.contains("order.teleported"), "{error}");

        let mut value = placed_json();
        value["data"]["lines"][0]["quantity"] = "many".into();
        assert!(serde_json::from_value::<Envelope>(value).is_err());
    }
}
