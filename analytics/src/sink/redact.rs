//! What of an event's JSON may be kept in ClickHouse's raw `events` table. The log holds
//! secrets and personal data that analysts do not need and must not get: password hashes,
//! refresh-token digests, client IP addresses, names, phone numbers, streets, payment
//! authorization codes, and e-mail addresses (kept only as their keyed hash, `email_hash`).

use serde_json::Value;
use shopflow_events::Topic;

/// Fields dropped from `data`, wherever they occur.
const DROPPED: &[&str] =
    &["password_hash", "refresh_hash", "presented_hash", "client_ip", "name", "phone", "street", "zip", "authorization_code"];

/// The payload to store: the record verbatim for topics with nothing to hide, else the JSON
/// with the fields above removed and `email` replaced by `email_hash`.
pub(crate) fn payload(topic: Topic, bytes: &[u8], email_hash: impl Fn(&str) -> String) -> String {
    if !matches!(topic, Topic::Users | Topic::Payments) {
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
        let out = payload(Topic::Users, raw, |e| format!("h({e})"));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["data"], serde_json::json!({"user_id": "u1", "email_hash": "h(a@b.c)", "role": "customer"}));
        assert_eq!(payload(Topic::Catalog, b"{\"x\":1}", |e| e.to_string()), "{\"x\":1}");
    }
}
