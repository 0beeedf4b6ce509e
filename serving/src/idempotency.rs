//! Idempotent writes: every mutating route accepts an `Idempotency-Key` header with the
//! semantics payment APIs made standard.
//!
//! - Same caller, same key, same request → the first answer (same `id`, `event_id` and
//!   consistency token), however often and through whichever replica it is repeated.
//! - Same caller, same key, a different request → `422 idempotency_key_reused`.
//! - A key is 1 to 255 visible ASCII characters, else `400 invalid_idempotency_key`.
//! - Keys are scoped per caller ([`caller_scope`]): two callers never share a key.
//! - Without the header a write behaves as it always did (no lookups, no waiting).
//!
//! The guarantee lives in the log and the pipeline, not in this process: the event id is
//! derived from (scope, key) ([`shopflow_events::idempotent_event_id`]), so every repeat is the
//! same event and the pipeline drops all but the first record that lands (for at least 24 h of
//! event time), publishing that first record's position and request fingerprint in
//! `views.requests`. Entity ids the server would mint (a product created without an id) are
//! derived from the event id too, so every repeat names the same entity.
//!
//! A keyed write is answered like this (the rules are here and in `write.rs`):
//! 1. the per-process answer cache, then `views.requests`: a known key answers at once, with
//!    the first answer (same fingerprint) or 422 (another fingerprint);
//! 2. otherwise the event is appended under the derived id, and the write waits (within
//!    `write_timeout`) until the views have passed its own record; the `views.requests` row
//!    then names the first record that landed (maybe a concurrent request's, through another
//!    replica), and the answer carries *its* position — or is 422 if it was a different
//!    request. No row (a topic without the requests view): the answer is our own position;
//! 3. if the views do not pass the record in time: `503 idempotency_pending` with
//!    `Retry-After`. The record is in the log; the retry gets the settled answer.
//!
//! The fingerprint is a SHA-256 over the caller's scope, the method, the matched route with
//! its (decoded) parameters and the canonical JSON of the body (keys sorted, no whitespace),
//! so formatting and key order do not make a repeat "different". The key itself is never
//! logged, nor any body content; the log lines say whether a write was keyed.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shopflow_views::RequestRow;
use shopflow_events::Id;
use shopflow_ingest::Position;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::token::ConsistencyToken;
use crate::write::Accepted;

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted, in characters (bytes: keys are ASCII).
pub const MAX_KEY_LEN: usize = 255;
/// How long this process remembers an answer. The pipeline keeps the first record of a key
/// for at least as long, which is what the guarantee rests on.
pub const ANSWER_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most answers this process remembers; beyond that the oldest go (the views still know them).
pub const ANSWER_CACHE_CAPACITY: usize = 10_000;

/// Scope of a caller without credentials (registration and other open routes).
const ANONYMOUS_SCOPE: &str = "anonymous";

/// Who a key belongs to: a stable name of the caller, never a credential. A signed-in caller
/// is their user id (proven by the access token, see `crate::auth`), so two users never share
/// a key and a user's key is the same through every replica; everyone else is anonymous.
pub fn caller_scope(parts: &Parts) -> String {
    scope_name(parts.extensions.get::<Caller>())
}

fn scope_name(caller: Option<&Caller>) -> String {
    match caller {
        Some(caller) => format!("user:{}", caller.user_id),
        None => ANONYMOUS_SCOPE.to_owned(),
    }
}

/// The key of a request, if it has one: `Ok(None)` without the header, 400 if it is empty,
/// longer than [`MAX_KEY_LEN`], not visible ASCII (`!`..`~`) or given more than once.
pub fn parse_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::InvalidIdempotencyKey("give the header once"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return Err(ApiError::InvalidIdempotencyKey("must not be empty"));
    }
    if bytes.len() > MAX_KEY_LEN {
        return Err(ApiError::InvalidIdempotencyKey("longer than 255 characters"));
    }
    if !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(ApiError::InvalidIdempotencyKey("only visible ASCII characters are allowed"));
    }
    Ok(Some(String::from_utf8(bytes.to_vec()).expect("visible ASCII is UTF-8")))
}

/// JSON with object keys sorted at every level and no whitespace: two bodies that parse to
/// the same value have the same canonical form, whatever their formatting or key order.
/// Written out rather than `Value::to_string`, which sorts keys only while no crate in the
/// build enables serde_json's `preserve_order`: a fingerprint must not change with a feature.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (key, value)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    write(value, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// What a request is, for comparing repeats: the route template and its decoded parameters
/// (`/api/v1/products/{id}`, `id=p-1`), so percent-encoding variants are the same target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub method: Method,
    pub route: String,
    pub params: Vec<(String, String)>,
}

/// Hex SHA-256 of the caller's scope, the target and the canonical body (`None`: a write
/// without a body). Every part is length-prefixed, so no two different requests share an
/// encoding.
pub fn fingerprint(scope: &str, target: &Target, body: Option<&Value>) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(scope.as_bytes());
    field(target.method.as_str().as_bytes());
    field(target.route.as_bytes());
    field(&(target.params.len() as u64).to_be_bytes());
    for (name, value) in &target.params {
        field(name.as_bytes());
        field(value.as_bytes());
    }
    match body {
        Some(body) => {
            field(b"body");
            field(canonical_json(body).as_bytes());
        }
        None => field(b"no body"),
    }
    crate::hex::hex(&hasher.finalize())
}

/// A write made under a key: the event id every repeat shares and the request's fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyed {
    pub scope: String,
    pub event_id: Uuid,
    pub fingerprint: String,
}

/// What the write path needs to know about a mutating request: nothing when it has no key.
/// Taken by body-less writes directly; writes with a body get it from `WriteJson`.
#[derive(Clone, Debug, Default)]
pub struct Write {
    keyed: Option<Keyed>,
}

impl Write {
    pub fn keyed(&self) -> Option<&Keyed> {
        self.keyed.as_ref()
    }

    /// The id of an entity the request creates without naming it. Under a key it is derived
    /// from the event id, so every repeat names the same entity; otherwise a fresh UUIDv7.
    pub fn mint_id(&self) -> Id {
        match &self.keyed {
            Some(keyed) => Id::from(keyed.event_id.to_string().as_str()),
            None => Id::generate(),
        }
    }
}

/// The part of a keyed request known before its body is read.
pub(crate) struct KeyedRequest {
    scope: String,
    event_id: Uuid,
    target: Target,
}

impl KeyedRequest {
    /// `Ok(None)` for a request without a key (and nothing else is looked at); 400 for a bad key.
    pub(crate) async fn from_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, ApiError> {
        let Some(key) = parse_key(&parts.headers)? else { return Ok(None) };
        let scope = caller_scope(parts);
        let event_id = shopflow_events::idempotent_event_id(&scope, &key);
        let route = match parts.extensions.get::<MatchedPath>() {
            Some(matched) => matched.as_str().to_owned(),
            None => parts.uri.path().to_owned(),
        };
        let params = match RawPathParams::from_request_parts(parts, state).await {
            Ok(params) => params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            // No parameters, or not UTF-8 (which the handler's own path extractor refuses).
            Err(_) => Vec::new(),
        };
        let target = Target { method: parts.method.clone(), route, params };
        Ok(Some(Self { scope, event_id, target }))
    }

    /// Completes the request with its parsed body (`None`: the route takes no body).
    pub(crate) fn finish(self, body: Option<&Value>) -> Write {
        let fingerprint = fingerprint(&self.scope, &self.target, body);
        Write { keyed: Some(Keyed { scope: self.scope, event_id: self.event_id, fingerprint }) }
    }
}

/// For writes without a body (`DELETE`): the key, if any, and the fingerprint of the target.
impl FromRequestParts<AppState> for Write {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(match KeyedRequest::from_parts(parts, state).await? {
            Some(keyed) => keyed.finish(None),
            None => Write::default(),
        })
    }
}

/// Whether a keyed write was answered before, and how.
pub(crate) enum Known {
    /// The first answer, to be given again.
    Answer(Accepted),
    /// The key was used for another request.
    Reused,
    /// Not known here (yet): append.
    Unknown,
}

/// Step 1 of the rules: this process's answers, then the first record the views know of.
/// `id` is what this request would answer with (the same for every faithful repeat).
pub(crate) fn known(state: &AppState, keyed: &Keyed, id: &str) -> Known {
    if let Some((fingerprint, answer)) = answers(state).get(&keyed.event_id) {
        return if fingerprint == keyed.fingerprint { Known::Answer(answer) } else { Known::Reused };
    }
    match state.views.requests.get(&keyed.event_id) {
        Some(row) if row.fingerprint == keyed.fingerprint => {
            let answer = first_answer(&row, id);
            answers(state).insert(keyed.event_id, keyed.fingerprint.clone(), answer.clone());
            Known::Answer(answer)
        }
        Some(_) => Known::Reused,
        None => Known::Unknown,
    }
}

/// Step 2, once the views have passed our own record at `own`: the first record that landed
/// decides the answer.
pub(crate) fn settle(state: &AppState, keyed: &Keyed, id: String, own: Vec<Position>) -> Result<Accepted, ApiError> {
    let answer = match state.views.requests.get(&keyed.event_id) {
        Some(row) if row.fingerprint == keyed.fingerprint => first_answer(&row, &id),
        Some(_) => return Err(ApiError::IdempotencyKeyReused),
        // A topic whose requests the pipeline does not track: our record is the answer.
        None => Accepted {
            id,
            event_id: keyed.event_id.to_string(),
            consistency_token: ConsistencyToken::new(own).to_string(),
        },
    };
    answers(state).insert(keyed.event_id, keyed.fingerprint.clone(), answer.clone());
    Ok(answer)
}

fn first_answer(row: &RequestRow, id: &str) -> Accepted {
    let position = Position::new(row.topic.clone(), row.partition, row.offset);
    Accepted {
        id: id.to_owned(),
        event_id: row.event_id.to_string(),
        consistency_token: ConsistencyToken::new(vec![position]).to_string(),
    }
}

/// Answers this process gave under a key, by event id (which stands for (scope, key)): a
/// shortcut for repeats, bounded in size and age. Correctness does not depend on it — the
/// views hold the first record of every key — so losing it (a restart, eviction) only costs
/// a lookup.
pub(crate) struct AnswerCache {
    capacity: usize,
    ttl: Duration,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    entries: HashMap<Uuid, CacheEntry>,
    /// Insertion order, which is also expiry order (one TTL for all).
    order: VecDeque<(Uuid, Instant)>,
}

struct CacheEntry {
    fingerprint: String,
    answer: Accepted,
    at: Instant,
}

impl AnswerCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self { capacity: capacity.max(1), ttl, inner: Mutex::new(CacheInner::default()) }
    }

    pub(crate) fn get(&self, event_id: &Uuid) -> Option<(String, Accepted)> {
        self.get_at(event_id, Instant::now())
    }

    /// `get` as of `now` (tests move the clock instead of sleeping).
    fn get_at(&self, event_id: &Uuid, now: Instant) -> Option<(String, Accepted)> {
        let mut inner = self.inner.lock();
        let entry = inner.entries.get(event_id)?;
        if now.saturating_duration_since(entry.at) >= self.ttl {
            inner.entries.remove(event_id);
            return None;
        }
        Some((entry.fingerprint.clone(), entry.answer.clone()))
    }

    /// Keeps the first answer for a key (a concurrent repeat's equal answer changes nothing).
    pub(crate) fn insert(&self, event_id: Uuid, fingerprint: String, answer: Accepted) {
        self.insert_at(event_id, fingerprint, answer, Instant::now());
    }

    fn insert_at(&self, event_id: Uuid, fingerprint: String, answer: Accepted, now: Instant) {
        let mut inner = self.inner.lock();
        let fresh = inner.entries.get(&event_id).is_some_and(|e| now.duration_since(e.at) < self.ttl);
        if !fresh {
            inner.entries.insert(event_id, CacheEntry { fingerprint, answer, at: now });
            inner.order.push_back((event_id, now));
        }
        while let Some(&(id, at)) = inner.order.front() {
            if inner.order.len() <= self.capacity && now.duration_since(at) < self.ttl {
                break;
            }
            inner.order.pop_front();
            // Only the entry this slot was pushed for (a re-inserted key has a newer slot).
            if inner.entries.get(&id).is_some_and(|e| e.at == at) {
                inner.entries.remove(&id);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().entries.len()
    }
}

/// Each server (each `AppState::new`) has its own cache, as separate replicas would.
fn answers(state: &AppState) -> &AnswerCache {
    &state.answers
}

/// A fresh per-server cache of first answers.
pub(crate) fn new_answer_cache() -> Arc<AnswerCache> {
    Arc::new(AnswerCache::new(ANSWER_CACHE_CAPACITY, ANSWER_TTL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn target(method: Method, route: &str, params: &[(&str, &str)]) -> Target {
        Target {
            method,
            route: route.to_owned(),
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn canonical_json_ignores_whitespace_and_key_order() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2, {"q": null, "p": "x"}], "x": true}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":true,"y":[1,2,{"p":"x","q":null}]},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(canonical_json(&a), r#"{"a":{"x":true,"y":[1,2,{"p":"x","q":null}]},"b":1}"#);
        // Array order and values are meaningful.
        assert_ne!(canonical_json(&json!([1, 2])), canonical_json(&json!([2, 1])));
        assert_ne!(canonical_json(&json!({"a": 1})), canonical_json(&json!({"a": "1"})));
        // Keys that need escaping stay unambiguous.
        assert_eq!(canonical_json(&json!({"a\"b": "c"})), r#"{"a\"b":"c"}"#);
    }

    #[test]
    fn fingerprints_depend_on_the_request_not_its_formatting() {
        let post = target(Method::POST, "/api/v1/stock/receipts", &[]);
        let one: Value = serde_json::from_str(r#"{"product_id":"p","warehouse_id":"w","quantity":5}"#).unwrap();
        let same: Value = serde_json::from_str("{ \"quantity\": 5,\n  \"warehouse_id\": \"w\", \"product_id\": \"p\" }").unwrap();
        let other = json!({"product_id": "p", "warehouse_id": "w", "quantity": 6});
        let fp = fingerprint("admin", &post, Some(&one));
        assert_eq!(fp.len(), 64);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(fp, fingerprint("admin", &post, Some(&same)));
        assert_ne!(fp, fingerprint("admin", &post, Some(&other)));
        assert_ne!(fp, fingerprint("anonymous", &post, Some(&one)), "the scope is part of it");
        assert_ne!(fp, fingerprint("admin", &target(Method::POST, "/api/v1/stock/adjustments", &[]), Some(&one)));

        let patch = |id: &str| target(Method::PATCH, "/api/v1/products/{id}", &[("id", id)]);
        let body = json!({"name": "x"});
        assert_eq!(fingerprint("admin", &patch("p-1"), Some(&body)), fingerprint("admin", &patch("p-1"), Some(&body)));
        assert_ne!(fingerprint("admin", &patch("p-1"), Some(&body)), fingerprint("admin", &patch("p-2"), Some(&body)));
        let delete = target(Method::DELETE, "/api/v1/products/{id}", &[("id", "p-1")]);
        assert_ne!(fingerprint("admin", &delete, None), fingerprint("admin", &delete, Some(&Value::Null)));
    }

    #[test]
    fn scopes_separate_callers() {
        let caller = |user: &str| Caller {
            user_id: Id::from(user),
            role: shopflow_events::types::Role::Customer,
            session_id: Id::from("s"),
        };
        let (a, b) = (caller("a"), caller("b"));
        assert_ne!(scope_name(Some(&a)), scope_name(Some(&b)));
        assert_ne!(scope_name(Some(&a)), scope_name(None));
        let key = "order-42";
        let first = shopflow_events::idempotent_event_id(&scope_name(Some(&a)), key);
        let anonymous = shopflow_events::idempotent_event_id(&scope_name(None), key);
        assert_ne!(first, anonymous);
        // Another session of the same user is the same scope.
        let other_session = Caller { session_id: Id::from("s2"), ..a.clone() };
        assert_eq!(first, shopflow_events::idempotent_event_id(&scope_name(Some(&other_session)), key), "stable");
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters_given_once() {
        let headers = |values: &[&[u8]]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(HEADER, HeaderValue::from_bytes(v).unwrap());
            }
            map
        };
        assert_eq!(parse_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(parse_key(&headers(&[b"abc-123_!~"])).unwrap().as_deref(), Some("abc-123_!~"));
        let longest = "k".repeat(MAX_KEY_LEN);
        assert_eq!(parse_key(&headers(&[longest.as_bytes()])).unwrap(), Some(longest));
        for bad in [&b""[..], "k".repeat(MAX_KEY_LEN + 1).as_bytes(), b"a b", b"a\tb", "caf\u{e9}".as_bytes()] {
            let error = parse_key(&headers(&[bad])).unwrap_err();
            assert_eq!(error.code(), "invalid_idempotency_key", "{bad:?}");
        }
        assert!(parse_key(&headers(&[b"a", b"b"])).is_err(), "repeated header");
    }

    #[test]
    fn minted_ids_follow_the_key() {
        let keyed = Keyed { scope: "admin".into(), event_id: Uuid::from_u128(7), fingerprint: "f".into() };
        let write = Write { keyed: Some(keyed) };
        assert_eq!(write.mint_id(), write.mint_id());
        assert_eq!(write.mint_id().as_str(), Uuid::from_u128(7).to_string());
        assert_ne!(Write::default().mint_id(), Write::default().mint_id());
    }

    fn answer(n: u64) -> Accepted {
        Accepted { id: format!("id-{n}"), event_id: format!("e-{n}"), consistency_token: format!("catalog:0:{n}") }
    }

    #[test]
    fn the_answer_cache_keeps_the_first_answer_bounded_in_size_and_age() {
        let cache = AnswerCache::new(3, Duration::from_secs(60));
        let id = |n: u128| Uuid::from_u128(n);
        cache.insert(id(1), "f1".into(), answer(1));
        cache.insert(id(1), "f1".into(), answer(99));
        assert_eq!(cache.get(&id(1)).unwrap().1.consistency_token, "catalog:0:1", "the first answer stays");
        for n in 2..=5 {
            cache.insert(id(n), format!("f{n}"), answer(n as u64));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&id(1)).is_none() && cache.get(&id(2)).is_none(), "the oldest went");
        assert_eq!(cache.get(&id(5)).unwrap().0, "f5");

        let expiring = AnswerCache::new(10, Duration::from_secs(24 * 3600));
        let t0 = Instant::now();
        expiring.insert_at(id(1), "f".into(), answer(1), t0);
        let day_later = t0 + Duration::from_secs(24 * 3600);
        assert!(expiring.get_at(&id(1), day_later - Duration::from_secs(1)).is_some(), "kept for the whole TTL");
        assert!(expiring.get_at(&id(1), day_later).is_none());
        expiring.insert_at(id(1), "g".into(), answer(2), day_later);
        assert_eq!(expiring.get_at(&id(1), day_later).unwrap().0, "g", "an expired key starts over");
        assert_eq!(expiring.len(), 1);
    }
}
