//! The Kafka tables of a dataflow file: `[source.kafka]`, its
//! `[source.kafka.partitions]` and `[sinks.kafka]`. Every field's doc
//! comment is repeated in `dataflows/README.md` (a test holds them
//! together).

use serde::Deserialize;

/// The delivery guarantee of a Kafka run.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Offsets committed once every output they produced is acknowledged:
    /// after a crash some outputs may be written again, none is lost.
    #[default]
    AtLeastOnce,
    /// Outputs and offsets committed in one transaction per worker: read
    /// with `isolation.level=read_committed`, each output appears once.
    ExactlyOnce,
}

/// `[source.kafka]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaTable {
    /// Bootstrap servers, `host:port,...`.
    pub brokers: String,
    /// The topic of raw events.
    #[serde(default = "defaults::topic")]
    pub topic: String,
    /// The consumer group: offsets are committed under it.
    #[serde(default = "defaults::group")]
    pub group: String,
    /// `"at-least-once"` or `"exactly-once"` (see docs/kafka.md).
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Milliseconds a partition that has nothing more to read may stay quiet before it stops holding the frontier back.
    #[serde(default = "defaults::idle_ms")]
    pub idle_ms: u64,
    /// Milliseconds between offset commits (exactly once: between transactions).
    #[serde(default = "defaults::commit_ms")]
    pub commit_ms: u64,
    /// Longest the broker may hold a fetch while it waits for new messages (librdkafka's `fetch.wait.max.ms`); a broker that holds it even when messages arrive meanwhile (tansu, librdkafka's mock) adds up to this to every event's latency, and a lower value costs more fetch requests while the topic is quiet.
    #[serde(default = "defaults::fetch_wait_ms")]
    pub fetch_wait_ms: u64,
    /// Most messages a worker reads in one activation.
    #[serde(default = "defaults::max_batch")]
    pub max_batch: usize,
    /// Seconds an event may be stamped after the later of the latest event time and the clock; later ones are dead letters (`time_too_far_ahead`).
    #[serde(default = "defaults::live_future_limit_seconds")]
    pub future_limit_seconds: u64,
    /// Seconds an event may be stamped before the latest event time; earlier ones are dead letters (`time_too_far_behind`).
    #[serde(default = "defaults::past_limit_seconds")]
    pub past_limit_seconds: u64,
    /// On start, read one velocity window again before the committed offsets to rebuild the velocity state, writing nothing for it.
    #[serde(default = "defaults::yes")]
    pub restore: bool,
    /// Create the topics that are missing, with the partition counts below.
    #[serde(default = "defaults::yes")]
    pub create_topics: bool,
    /// Address of the HTTP API (`/health`, `/ready`, `/models/reload`); process `p` of several listens on port + p.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// With several processes, seconds one of them may stop stepping (stopped, cut off from this one, or stuck) before the run ends as stalled.
    #[serde(default = "defaults::stall_timeout_seconds")]
    pub stall_timeout_seconds: u64,
    /// Partitions of each topic created.
    #[serde(default)]
    pub partitions: PartitionsTable,
}

/// `[source.kafka.partitions]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartitionsTable {
    /// Partitions of the raw events' topic.
    #[serde(default = "defaults::raw_events")]
    pub raw_events: i32,
    /// Partitions of the alerts' topic.
    #[serde(default = "defaults::anomalies")]
    pub anomalies: i32,
    /// Partitions of the analysts' labels' topic.
    #[serde(default = "defaults::feedback")]
    pub feedback: i32,
    /// Partitions of the normal traffic's topic.
    #[serde(default = "defaults::metrics")]
    pub metrics: i32,
    /// Partitions of the dead letters' topic.
    #[serde(default = "defaults::dead_letter")]
    pub dead_letter: i32,
    /// Partitions of the model updates' topic.
    #[serde(default = "defaults::model_updates")]
    pub model_updates: i32,
}

/// `[sinks.kafka]`
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinksTable {
    /// The topic of alerts (schemas/alert_v1.json).
    #[serde(default = "defaults::anomalies_topic")]
    pub anomalies: String,
    /// The topic of normal traffic (schemas/metrics_v1.json).
    #[serde(default = "defaults::metrics_topic")]
    pub metrics: String,
    /// The topic of dead letters (schemas/dlq_v1.json).
    #[serde(default = "defaults::dead_letter_topic")]
    pub dead_letter: String,
}

impl Default for PartitionsTable {
    fn default() -> Self {
        PartitionsTable {
            raw_events: defaults::raw_events(),
            anomalies: defaults::anomalies(),
            feedback: defaults::feedback(),
            metrics: defaults::metrics(),
            dead_letter: defaults::dead_letter(),
            model_updates: defaults::model_updates(),
        }
    }
}

impl Default for KafkaSinksTable {
    fn default() -> Self {
        KafkaSinksTable {
            anomalies: defaults::anomalies_topic(),
            metrics: defaults::metrics_topic(),
            dead_letter: defaults::dead_letter_topic(),
        }
    }
}

/// Defaults of the Kafka keys (the original system's topics and counts).
pub mod defaults {
    pub use super::super::defaults::{
        group, listen, live_future_limit_seconds, past_limit_seconds, stall_timeout_seconds, topic,
    };

    pub fn yes() -> bool {
        true
    }
    pub fn idle_ms() -> u64 {
        500
    }
    pub fn commit_ms() -> u64 {
        100
    }
    pub fn fetch_wait_ms() -> u64 {
        20
    }
    pub fn max_batch() -> usize {
        4_096
    }
    pub fn raw_events() -> i32 {
        crate::kafka::topics::default_spec("raw-events").partitions
    }
    pub fn anomalies() -> i32 {
        crate::kafka::topics::default_spec("anomalies").partitions
    }
    pub fn feedback() -> i32 {
        crate::kafka::topics::default_spec("feedback").partitions
    }
    pub fn metrics() -> i32 {
        crate::kafka::topics::default_spec("metrics").partitions
    }
    pub fn dead_letter() -> i32 {
        crate::kafka::topics::default_spec("dead-letter").partitions
    }
    pub fn model_updates() -> i32 {
        crate::kafka::topics::default_spec("model-updates").partitions
    }
    pub fn anomalies_topic() -> String {
        "anomalies".to_string()
    }
    pub fn metrics_topic() -> String {
        "metrics".to_string()
    }
    pub fn dead_letter_topic() -> String {
        "dead-letter".to_string()
    }
}
