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
pub fn decision(cause: &Envelope, event: Event) -> Envelope {
    let body = serde_json::to_vec(&event).expect("events serialise");
    let name = [cause.id.as_bytes().as_slice(), event.type_name().as_bytes(), &body].concat();
    Envelope { v: shopflow_events::ENVELOPE_VERSION, id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &name), ts: cause.ts, request: None, event }
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
