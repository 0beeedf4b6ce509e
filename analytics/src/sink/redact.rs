//! What of an event's JSON may be kept in ClickHouse's raw `events` table. The log holds
//! secrets and personal data that analysts do not need and must not get: password hashes,
//! refresh-token digests, client IP addresses, names, phone numbers, streets, payment
//! authorization codes, and e-mail addresses (kept only as their keyed hash, `email_hash`).

use serde_json::Value;
use shopflow_events::{Event, Topic};

/// Fields dropped from `data`, wherever they occur.
const DROPPED: &[&str] =
    &["password_hash", "refresh_hash", "presented_hash", "client_ip", "name", "phone", "street", "zip", "authorization_code"];

/// Whether an event may carry what [`DROPPED`] names: everything on the users and payments
/// topics, and payment outcomes wherever they are (the saga keeps them on `orders`, keyed by
/// the order's user, so a topic alone does not say).
pub fn holds_secrets(event: &Event) -> bool {
    matches!(event.topic(), Topic::Users | Topic::Payments) || event.type_name().starts_with("payment.")
}

/// The payload to store: the record verbatim for events with nothing to hide, else the JSON
/// with the fields above removed and `email` replaced by `email_hash`.
pub(crate) fn payload(event: &Event, bytes: &[u8], email_hash: impl Fn(&str) -> String) -> String {
    if !holds_secrets(event) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
        return String::new(); // decoded fine a moment ago; never store what could not be redacted
    };
    if let Some(data) = value.get_mut("data").and_then(Value::as_object_mut) {
        for key in DROPPED {
            data.remove(*key);
        }
        if let Some(Value::String(email)) = data.remove("email") {
            data.insert("email_hash".into(), Value::String(email_hash(&email)));
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_personal_data_are_taken_out_of_user_payloads() {
        let raw = br#"{"v":1,"id":"0192f0c4-5e5e-7000-8000-000000000000","ts":1,"type":"user.registered","data":{"user_id":"u1","email":"a@b.c","name":"Ann","phone":"555","password_hash":"$argon2id$x","role":"customer"}}"#;
        let event = shopflow_events::Envelope::decode(raw).unwrap().event;
        let out = payload(&event, raw, |e| format!("h({e})"));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["data"], serde_json::json!({"user_id": "u1", "email_hash": "h(a@b.c)", "role": "customer"}));
    }

    #[test]
    fn a_payment_outcome_on_the_orders_topic_loses_its_authorization_code() {
        let raw = br#"{"v":1,"id":"0192f0c4-5e5e-7000-8000-000000000000","ts":1,"type":"payment.charge_succeeded","data":{"order_id":"o1","user_id":"u1","payment_id":"ch_1","amount":{"amount_minor":100,"currency":"EUR"},"authorization_code":"SECRET"}}"#;
        let event = shopflow_events::Envelope::decode(raw).unwrap().event;
        assert_eq!(event.topic(), Topic::Orders);
        let out = payload(&event, raw, |e| e.to_string());
        assert!(!out.contains("SECRET") && out.contains("ch_1"), "{out}");
        let placed = br#"{"v":1,"id":"0192f0c4-5e5e-7000-8000-000000000001","ts":1,"type":"order.cancelled","data":{"order_id":"o1","user_id":"u1","reason":"x"}}"#;
        let event = shopflow_events::Envelope::decode(placed).unwrap().event;
        assert_eq!(payload(&event, placed, |e| e.to_string()), String::from_utf8_lossy(placed));
    }
}
