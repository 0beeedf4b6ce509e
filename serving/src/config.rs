//! Serving configuration, loadable by the binary from a file or the environment (serde).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::auth::AuthConfig;
pub use crate::gateway::GatewayConfig;

/// How the serving layer listens, waits and authorises.
///
/// Durations are written as integer milliseconds or as a string with a unit
/// (`"250ms"`, `"5s"`, `"2m"`), so TOML files and environment variables stay readable.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServingConfig {
    /// Address to bind; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Upper bound of a consistency-token wait; a client may ask for less, never more.
    #[serde(with = "duration")]
    pub read_wait_max: Duration,
    /// How long a write may wait for the log to make its record durable before 503.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Accounts and sessions: the JWT signing keys and token lifetimes.
    pub auth: AuthConfig,
    /// Rate limits, login throttling, request timeout, CORS.
    pub gateway: GatewayConfig,
    /// How often the background task asks the log for its end offsets (lag headers).
    #[serde(with = "duration")]
    pub end_offset_poll: Duration,
    /// The topics the views are computed from: their lag is what `X-View-Lag-Records` sums,
    /// `/readyz` waits for the views to catch up with them, and a consistency token naming
    /// any other topic is refused with 400 (no view would ever pass it).
    pub source_topics: Vec<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Most reads that may wait for a consistency token at once; one more gets
    /// `503 too_many_waiters` with `Retry-After` instead of joining the wait.
    pub max_consistency_waiters: usize,
    /// Where this server keeps its search index (reopened and synced with the views at
    /// start). `None`: in memory, rebuilt from the views at every start. Never shared
    /// between servers: each builds its own from the views it follows.
    pub search_dir: Option<PathBuf>,
    /// How long catalog changes gather before the search index commits them (searchable
    /// after about this plus the commit).
    #[serde(with = "duration")]
    pub search_commit_interval: Duration,
    /// Carts, orders, payments and the live (SSE) views.
    pub commerce: CommerceConfig,
}

/// Carts, orders, payments and live views.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommerceConfig {
    /// The payment gateway runs in test mode: orders may name its fixed test tokens
    /// (`tok_visa`, `tok_chargeDeclined`...) besides the caller's own payment methods.
    pub payment_test_mode: bool,
    /// Longest `POST /orders?wait=decision|reservation` waits for the order's status before
    /// answering with what it has.
    #[serde(with = "duration")]
    pub order_wait_max: Duration,
    /// Most live streams (SSE) this process keeps open at once; one more gets
    /// `503 too_many_streams`.
    pub max_live_streams: usize,
    /// How often an idle live stream sends a keep-alive comment.
    #[serde(with = "duration")]
    pub live_keep_alive: Duration,
}

impl Default for CommerceConfig {
    fn default() -> Self {
        Self {
            payment_test_mode: true,
            order_wait_max: Duration::from_secs(10),
            max_live_streams: 1024,
            live_keep_alive: Duration::from_secs(15),
        }
    }
}

impl Default for ServingConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            read_wait_max: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            auth: AuthConfig::default(),
            gateway: GatewayConfig::default(),
            end_offset_poll: Duration::from_millis(500),
            // What the pipeline's jobs read, so a token from any write a view reflects is
            // accepted (the binary sets the same list explicitly).
            source_topics: shopflow_views::SOURCE_TOPICS.iter().map(|t| t.name().to_owned()).collect(),
            max_body_bytes: 64 * 1024,
            max_consistency_waiters: 1024,
            search_dir: None,
            search_commit_interval: Duration::from_millis(100),
            commerce: CommerceConfig::default(),
        }
    }
}

// Hand-written so that no key reaches a log line through `{:?}` (`AuthConfig` redacts too).
impl fmt::Debug for ServingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingConfig")
            .field("listen", &self.listen)
            .field("read_wait_max", &self.read_wait_max)
            .field("write_timeout", &self.write_timeout)
            .field("auth", &self.auth)
            .field("gateway", &self.gateway)
            .field("end_offset_poll", &self.end_offset_poll)
            .field("source_topics", &self.source_topics)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_consistency_waiters", &self.max_consistency_waiters)
            .field("search_dir", &self.search_dir)
            .field("search_commit_interval", &self.search_commit_interval)
            .field("commerce", &self.commerce)
            .finish()
    }
}

/// Parses `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"30d"` or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}"))?;
    let millis = match unit.trim() {
        "" | "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        "d" => number.checked_mul(86_400_000),
        _ => return Err(format!("invalid duration unit in {text:?} (use ms, s, m, h or d)")),
    };
    millis.map(Duration::from_millis).ok_or_else(|| format!("duration {text:?} is too large"))
}

pub(crate) mod duration {
    use std::time::Duration;

    use serde::{de, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("milliseconds or a string like \"250ms\", \"5s\", \"2m\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_millis(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v).map(Duration::from_millis).map_err(|_| E::custom("duration must not be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                super::parse_duration(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("40"), Ok(Duration::from_millis(40)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("5w").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn loads_from_json_with_defaults_for_missing_fields() {
        let config: ServingConfig = serde_json::from_str(
            r#"{"listen":"0.0.0.0:9000","read_wait_max":"2s","end_offset_poll":100,"auth":{"key":"s3cret-s3cret-s3cret-s3cret-s3cret!"}}"#,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.read_wait_max, Duration::from_secs(2));
        assert_eq!(config.end_offset_poll, Duration::from_millis(100));
        assert_eq!(config.max_body_bytes, ServingConfig::default().max_body_bytes);
        assert_eq!(config.max_consistency_waiters, 1024);
        let capped: ServingConfig = serde_json::from_str(r#"{"max_consistency_waiters":2}"#).unwrap();
        assert_eq!(capped.max_consistency_waiters, 2);
        assert!(serde_json::from_str::<ServingConfig>(r#"{"bogus":1}"#).is_err());
        assert!(config.commerce.payment_test_mode, "test mode is on by default");
        let commerce: ServingConfig = serde_json::from_str(
            r#"{"commerce":{"payment_test_mode":false,"order_wait_max":"2s","max_live_streams":3}}"#,
        )
        .unwrap();
        assert!(!commerce.commerce.payment_test_mode);
        assert_eq!(commerce.commerce.order_wait_max, Duration::from_secs(2));
        assert_eq!(commerce.commerce.max_live_streams, 3);
        assert_eq!(commerce.commerce.live_keep_alive, CommerceConfig::default().live_keep_alive);
    }

    #[test]
    fn by_default_every_topic_the_pipeline_reads_is_a_source_topic() {
        let topics = ServingConfig::default().source_topics;
        for topic in shopflow_views::SOURCE_TOPICS {
            assert!(topics.iter().any(|t| t == topic.name()), "{topics:?} lacks {}", topic.name());
        }
    }

    #[test]
    fn debug_output_redacts_the_signing_keys() {
        let mut config = ServingConfig::default();
        config.auth.key = Some("s3cret".into());
        config.auth.previous_keys = vec!["0ld-s3cret".into()];
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(!debug.contains("0ld"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
