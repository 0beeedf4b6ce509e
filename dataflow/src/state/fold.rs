//! What every part's fold uses: upserts and sums emitted as differences, and decisions whose
//! identity derives from their cause.

use std::collections::HashMap;

use shopflow_events::{Envelope, Event, Id};

/// Sets (or, with `None`, removes) `key`, emitting the change as a retraction of the old
/// value and an insertion of the new one; nothing when the value is unchanged.
pub fn upsert<K: Clone + Eq + std::hash::Hash, V: Clone + PartialEq>(
    map: &mut HashMap<K, V>,
    key: K,
    value: Option<V>,
    out: &mut Vec<((K, V), isize)>,
) {
    let old = match &value {
        Some(v) => map.insert(key.clone(), v.clone()),
        None => map.remove(&key),
    };
    if old == value {
        return;
    }
    if let Some(old) = old {
        out.push(((key.clone(), old), -1));
    }
    if let Some(new) = value {
        out.push(((key, new), 1));
    }
}

/// Adds `delta` to a summed quantity, emitting the change as a difference.
pub fn add(map: &mut HashMap<(Id, Id), i64>, key: (Id, Id), delta: i64, out: &mut Vec<((Id, Id), isize)>) {
    if delta == 0 {
        return;
    }
    let total = map.entry(key.clone()).or_insert(0);
    *total += delta;
    if *total == 0 {
        map.remove(&key);
    }
    out.push((key, delta as isize));
}

/// Every entry of a map as an insertion.
pub fn rows<K: Clone, V: Clone>(map: &HashMap<K, V>) -> Vec<((K, V), isize)> {
    map.iter().map(|(k, v)| ((k.clone(), v.clone()), 1)).collect()
}

/// A decision about `cause`. Its id and time derive from the cause and the decision itself
/// (its type and JSON), so one cause may decide several things (a hold per product) and
/// replaying the log publishes the same decisions again (which consumers drop by id), never
/// new ones.
pub fn decision(cause: &Envelope, event: Event) -> Decision {
    let body = serde_json::to_vec(&event).expect("events serialise");
    let name = [cause.id.as_bytes().as_slice(), event.type_name().as_bytes(), &body].concat();
    let envelope = Envelope { v: shopflow_events::ENVELOPE_VERSION, id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &name), ts: cause.ts, request: None, event };
    Decision { envelope, event_json: body }
}

/// A decision the fold took: its envelope, and the event's JSON its id was derived from, kept
/// so that its record is written without serialising the event a second time (the two
/// serialisations were ~9 % of the fold's CPU in the decide benchmark).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    envelope: Envelope,
    /// `{"type":…,"data":…}`, as serde writes the event alone.
    event_json: Vec<u8>,
}

impl std::ops::Deref for Decision {
    type Target = Envelope;
    fn deref(&self) -> &Envelope {
        &self.envelope
    }
}

impl Decision {
    /// The record `OutRecord::of` would make of the envelope, with the same bytes.
    pub fn record(&self) -> shopflow_ingest::OutRecord {
        let e = &self.envelope;
        shopflow_ingest::OutRecord::keyed(e.topic().name(), e.key().as_str(), e.to_json_with(&self.event_json))
    }
}

/// A derived id (for refunds the saga starts itself): the same inputs, the same id.
pub fn derived_id(parts: &[&str]) -> Id {
    let name = parts.join("\n");
    Id::from(uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string().as_str())
}

/// Adds `delta` to a summed value under any key, emitting the change as a difference.
pub fn add_to<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, i64>, key: K, delta: i64, out: &mut Vec<(K, isize)>) {
    if delta == 0 {
        return;
    }
    let total = map.entry(key.clone()).or_insert(0);
    *total += delta;
    if *total == 0 {
        map.remove(&key);
    }
    out.push((key, delta as isize));
}

#[cfg(test)]
mod tests {
    use shopflow_events::types::ChargeFailed;
    use shopflow_ingest::OutRecord;

    use super::*;

    /// Consumers read the bytes, so the shortcut must write exactly what the envelope's derive
    /// writes, escapes and all.
    #[test]
    fn a_decisions_record_has_the_bytes_of_its_envelope() {
        let failed = |reason: &str| {
            Event::ChargeFailed(ChargeFailed { order_id: Id::from("o-1"), user_id: Id::from("u-1"), reason: reason.to_owned(), retryable: false })
        };
        let cause = Envelope { ts: -1, ..Envelope::new(failed("cause")) };
        for event in [failed("card_declined"), failed("a \"quoted\" line\nbreak \\ \u{1F600} \u{7}")] {
            let decided = decision(&cause, event);
            let (got, want) = (decided.record(), OutRecord::of(&decided));
            assert_eq!((&got.topic, &got.key, &got.partition), (&want.topic, &want.key, &want.partition));
            assert_eq!(String::from_utf8(got.value.unwrap()).unwrap(), String::from_utf8(want.value.unwrap()).unwrap());
        }
    }
}
