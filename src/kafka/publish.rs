//! Analysts' labels to the `feedback` topic, durably: each is published
//! and acknowledged by the broker, or kept in the [`Outbox`] (synced to
//! disk) when the broker cannot take it; either way it is durable when
//! [`Publisher::accept`] returns. [`Publisher::drain`] publishes what the
//! outbox holds, oldest first, once the broker is back; while it holds
//! anything, new labels queue behind it, so the topic keeps the order in
//! which they were accepted.
//!
//! Sends are one at a time, each waiting for its acknowledgement: labels
//! come at the pace of people, and order matters more than throughput.
//! The producer is not idempotent (a message that timed out may still be
//! written, then published again from the outbox): labels are delivered
//! at least once, and the feedback join counts a duplicate and keeps the
//! last label.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext,
    ThreadedProducer,
};
use rdkafka::ClientContext;

use super::outbox::{Outbox, OutboxError};
use super::{client_config, KafkaError};
use crate::dataflow::feedback::settings::Announce;
use crate::dataflow::feedback::store::StoredVersion;
use crate::metrics::events::LabelKept;

/// Where an accepted label went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// The broker acknowledged it.
    Published,
    /// The outbox holds it until the broker takes it.
    Outbox,
}

/// Labels to a topic, through the outbox when needed.
pub struct Publisher {
    producer: Mutex<BaseProducer<Acks>>,
    topic: String,
    outbox: Outbox,
    timeout: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("outbox", &self.outbox)
            .finish()
    }
}

/// Counts the broker's acknowledgements and refusals.
#[derive(Default)]
struct Acks {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = match result {
            Ok(_) => &self.delivered,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

impl Publisher {
    /// A publisher to `topic` on `brokers`, with its outbox at `outbox`
    /// (what a previous run left there is published first); a send not
    /// acknowledged within `timeout` goes to the outbox.
    pub fn new(
        brokers: &str,
        topic: &str,
        outbox: &Path,
        timeout: Duration,
    ) -> Result<Publisher, PublishError> {
        let producer = client_config(brokers)
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
            .set("linger.ms", "0")
            .set("reconnect.backoff.max.ms", "1000")
            .create_with_context(Acks::default())
            .map_err(|e| KafkaError::client(format!("connecting to {brokers}"), e))?;
        Ok(Publisher {
            producer: Mutex::new(producer),
            topic: topic.to_string(),
            outbox: Outbox::open(outbox)?,
            timeout,
        })
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Publishes `payload` keyed by `key`, or keeps it in the outbox:
    /// either way it is durable when this returns `Ok`. Blocks up to the
    /// timeout (call it off the async runtime).
    pub fn accept(&self, key: &str, payload: &[u8]) -> Result<Kept, OutboxError> {
        let producer = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        if self.outbox.is_empty() && self.send(&producer, key, payload) {
            return Ok(Kept::Published);
        }
        let line = encode(key, payload);
        self.outbox.append(&line)?;
        Ok(Kept::Outbox)
    }

    /// Publishes the outbox's messages, oldest first, until one is not
    /// acknowledged; drops those published. How many were.
    pub fn drain(&self) -> Result<usize, OutboxError> {
        let producer = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        let pending = self.outbox.pending();
        let (mut sent, mut published) = (0, 0);
        for line in &pending {
            let Some((key, payload)) = decode(line) else {
                sent += 1; // not ours to read: never acknowledged as a label
                continue;
            };
            if !self.send(&producer, &key, payload) {
                break;
            }
            sent += 1;
            published += 1;
        }
        if sent > 0 {
            self.outbox.drop_first(sent)?;
            crate::metrics::emit(LabelKept::Published(published));
        }
        Ok(sent)
    }

    /// Sends one message and waits for its acknowledgement.
    fn send(&self, producer: &BaseProducer<Acks>, key: &str, payload: &[u8]) -> bool {
        let acks = producer.context();
        let before = acks.delivered.load(Ordering::Relaxed);
        let record = BaseRecord::to(&self.topic).key(key).payload(payload);
        if producer.send(record).is_err() {
            return false;
        }
        // The message times out inside librdkafka after `timeout`; the
        // margin lets that refusal arrive.
        let flushed = producer.flush(self.timeout + Duration::from_millis(500));
        producer.poll(Duration::ZERO);
        flushed.is_ok() && acks.delivered.load(Ordering::Relaxed) > before
    }
}

/// The topic the learner's versions are announced on.
pub const MODEL_UPDATES_TOPIC: &str = "model-updates";

/// Announces the learner's versions on [`MODEL_UPDATES_TOPIC`], keyed by
/// the version's name, each its kept metadata as JSON (the online model
/// included): queued without blocking the learner, and flushed for up to
/// 5 s when the run ends. Best effort: a version is durable in the models
/// directory before it is announced, so a broker that is down loses only
/// the announcement.
pub fn version_announcer(brokers: &str) -> Result<Announce, KafkaError> {
    // Idempotent: a retried send keeps its place, so versions arrive in
    // the order they were sent.
    let producer: ThreadedProducer<DefaultProducerContext> = super::producer_config(brokers)
        .create()
        .map_err(|e| KafkaError::client(format!("connecting to {brokers}"), e))?;
    let producer = Flushed(producer);
    let announce = move |v: &StoredVersion| {
        let Ok(json) = serde_json::to_vec(v) else {
            return;
        };
        let record = BaseRecord::to(MODEL_UPDATES_TOPIC)
            .key(&v.version)
            .payload(&json);
        // A full queue drops the announcement: never the learner's wait.
        let _ = producer.0.send(record);
    };
    Ok(Announce(Some(std::sync::Arc::new(announce))))
}

/// A producer that flushes what it holds when dropped.
struct Flushed(ThreadedProducer<DefaultProducerContext>);

impl Drop for Flushed {
    fn drop(&mut self) {
        let _ = self.0.flush(Duration::from_secs(5));
    }
}

/// An outbox line: the key, a tab, the payload (neither holds a newline).
/// The key is escaped (`\\`, `\t`, `\n`), so that the message is published
/// under the very key a direct send would use: a label's partition is its
/// transaction's, whichever way it went.
fn encode(key: &str, payload: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(key.len() + 1 + payload.len());
    for c in key.chars() {
        match c {
            '\\' => line.extend_from_slice(b"\\\\"),
            '\t' => line.extend_from_slice(b"\\t"),
            '\n' => line.extend_from_slice(b"\\n"),
            c => line.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    line.push(b'\t');
    line.extend(payload.iter().map(|b| if *b == b'\n' { b' ' } else { *b }));
    line
}

fn decode(line: &[u8]) -> Option<(String, &[u8])> {
    let tab = line.iter().position(|b| *b == b'\t')?;
    let escaped = std::str::from_utf8(&line[..tab]).ok()?;
    let mut key = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        key.push(match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('t') => '\t',
                Some('n') => '\n',
                Some(other) => other,
                None => '\\',
            },
            (c, false) => c,
        });
    }
    Some((key, &line[tab + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::mocking::MockCluster;

    fn read_all(brokers: &str, topic: &str, n: usize) -> Vec<(String, String)> {
        let consumer: BaseConsumer = client_config(brokers)
            .set("group.id", "publish-test")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while out.len() < n && std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let text =
                    |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or(b"")).into_owned();
                out.push((text(m.key()), text(m.payload())));
            }
        }
        out
    }

    #[test]
    fn labels_accepted_while_the_broker_is_down_are_published_in_order_when_it_returns() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("feedback", 1, 1).unwrap();
        let brokers = cluster.bootstrap_servers();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feedback.outbox");
        let publisher =
            Publisher::new(&brokers, "feedback", &path, Duration::from_millis(1500)).unwrap();
        assert_eq!(publisher.accept("t1", b"one").unwrap(), Kept::Published);
        cluster.broker_down(1).unwrap();
        assert_eq!(publisher.accept("t2", b"two").unwrap(), Kept::Outbox);
        // Queued behind it, whatever the broker does meanwhile.
        assert_eq!(publisher.accept("t3", b"three").unwrap(), Kept::Outbox);
        assert_eq!(publisher.drain().unwrap(), 0, "the broker is still down");
        // A restart finds the outbox as it was.
        drop(publisher);
        let publisher =
            Publisher::new(&brokers, "feedback", &path, Duration::from_millis(1500)).unwrap();
        assert_eq!(publisher.outbox().pending().len(), 2);
        cluster.broker_up(1).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !publisher.outbox().is_empty() {
            publisher.drain().unwrap();
            assert!(std::time::Instant::now() < deadline, "never drained");
        }
        assert_eq!(publisher.accept("t4", b"four").unwrap(), Kept::Published);
        let got = read_all(&brokers, "feedback", 4);
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        // At least once: a send that timed out may have been written too.
        let mut firsts = keys.clone();
        firsts.dedup();
        assert_eq!(firsts, ["t1", "t2", "t3", "t4"], "{got:?}");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn outbox_lines_keep_key_and_payload() {
        let line = encode("t\t1", b"{\"a\":\n1}");
        assert_eq!(
            decode(&line),
            Some(("t\t1".to_string(), &b"{\"a\": 1}"[..]))
        );
        for key in ["k\\t", "a\\", "\n\t\\", "plain", ""] {
            assert_eq!(decode(&encode(key, b"p")).unwrap().0, key, "{key:?}");
        }
        assert_eq!(decode(b"no tab"), None);
    }
}
