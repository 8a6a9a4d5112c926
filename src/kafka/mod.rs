//! Kafka: what the live source, the sinks, topic bootstrap and
//! `fraudflow replay` share: client settings and typed errors.
//!
//! Messages on every topic are keyed by account (`user_id`), and producers
//! partition keys with murmur2, as the Java client does, so that one
//! account's messages land in one partition whichever client wrote them.

pub mod context;
pub mod health;
pub mod labels;
pub mod outbox;
pub mod producer;
pub mod publish;
pub mod replay;
pub mod topics;

use rdkafka::ClientConfig;

/// A Kafka client's settings for `brokers` (`host:port,...`), common to
/// every client fraudflow makes.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Say little on stderr: broker trouble is reported as health.
        .set("log_level", "3")
        .set("socket.keepalive.enable", "true");
    config
}

/// A producer's settings: keyed messages partitioned as Java's client
/// does, and idempotent, so a retried send is written once.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.max.bytes", "16777216");
    config
}

/// A failure of a Kafka client, naming what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka: {what}: {source}")]
    Client {
        what: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("Kafka: {0}")]
    Other(String),
}

impl KafkaError {
    /// Wraps a client error with what was being done.
    pub fn client(what: impl Into<String>, source: rdkafka::error::KafkaError) -> KafkaError {
        KafkaError::Client {
            what: what.into(),
            source,
        }
    }
}
