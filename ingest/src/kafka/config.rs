use std::time::Duration;

use rdkafka::ClientConfig;

/// How to reach the Kafka cluster, and where in it this deployment's topics live.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]`
    pub brokers: String,
    /// Topic prefix: logical topic `orders` is `{namespace}.orders` on the broker; `""` = none.
    /// Consumer group ids get the same prefix.
    pub namespace: String,
    pub client_id: String,
    /// Producer batching delay; small, because appends wait for their acks.
    pub linger: Duration,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// Replication factor for topics that `ensure_topic` creates; `-1` = the broker's default.
    pub replication_factor: i32,
    /// Bound on metadata, watermark and admin calls.
    pub request_timeout: Duration,
    /// Extra librdkafka properties applied to every client (security settings, tuning).
    pub overrides: Vec<(String, String)>,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            namespace: String::new(),
            client_id: "shopflow".into(),
            linger: Duration::from_millis(2),
            compression: "lz4".into(),
            replication_factor: -1,
            request_timeout: Duration::from_secs(10),
            overrides: Vec::new(),
        }
    }

    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// The broker-side name of a logical topic (or group id).
    pub fn qualify(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.namespace, name)
        }
    }

    /// The logical name of a broker-side topic, if it belongs to this namespace.
    pub fn unqualify<'a>(&self, full: &'a str) -> Option<&'a str> {
        if self.namespace.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(self.namespace.as_str())?
                .strip_prefix('.')
        }
    }

    pub(crate) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            .set("allow.auto.create.topics", "false");
        for (k, v) in &self.overrides {
            c.set(k, v);
        }
        c
    }

    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = self.client();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("compression.type", &self.compression)
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        for (k, v) in &self.overrides {
            c.set(k, v);
        }
        c
    }

    /// A consumer that never commits and never joins a group by itself: positions are the
    /// caller's business. librdkafka still wants a group id.
    pub(crate) fn assigned_consumer(&self) -> ClientConfig {
        let mut c = self.consumer(&format!("{}-reader", self.client_id));
        c.set("enable.auto.commit", "false");
        c
    }

    pub(crate) fn consumer(&self, group_id: &str) -> ClientConfig {
        let mut c = self.client();
        c.set("group.id", self.qualify(group_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100");
        for (k, v) in &self.overrides {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_prefix_and_strip() {
        let c = KafkaConfig::new("x").with_namespace("t1");
        assert_eq!(c.qualify("orders"), "t1.orders");
        assert_eq!(c.unqualify("t1.orders"), Some("orders"));
        assert_eq!(c.unqualify("t2.orders"), None);
        assert_eq!(c.unqualify("t1orders"), None);
        let c = KafkaConfig::new("x");
        assert_eq!(c.qualify("orders"), "orders");
        assert_eq!(c.unqualify("orders"), Some("orders"));
    }
}
