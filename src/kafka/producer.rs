//! Publishing to one topic with nothing dropped: a full producer queue is
//! waited out, and every message the broker refuses, or leaves without an
//! acknowledgement at the end, is counted as failed and the first reason
//! kept. `fraudflow replay` publishes files through it, and `fraudflow demo
//! --brokers` its generated traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::replay::Message;
use super::topics::{default_spec, ensure_topics, partition_count};
use super::{producer_config, KafkaError};
use crate::sources::kafka::seq::ORDER_HEADER;

/// Counts the broker's acknowledgements.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Deliveries {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(why);
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, _)) => self.fail(err.to_string()),
        }
    }
}

/// What the broker made of the messages sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Messages refused, by the producer or the broker, or left without an
    /// acknowledgement at the end.
    pub failed: u64,
    /// The first failure's reason.
    pub first_failure: Option<String>,
}

/// A producer of one topic that counts what the broker acknowledged.
pub struct TopicWriter {
    producer: BaseProducer<Deliveries>,
    topic: String,
    timeout: Duration,
}

impl TopicWriter {
    /// A writer of `topic` on `brokers`, creating the topic (with its
    /// default partition count) when it is missing; a message may wait
    /// `timeout` for its acknowledgement.
    pub fn connect(brokers: &str, topic: &str, timeout: Duration) -> Result<Self, KafkaError> {
        ensure_topics(brokers, &[default_spec(topic)], timeout)?;
        let producer = producer_config(brokers)
            .set("message.timeout.ms", timeout.as_millis().to_string())
            .create_with_context(Deliveries::default())
            .map_err(|e| KafkaError::client(format!("connecting to {brokers}"), e))?;
        Ok(TopicWriter {
            producer,
            topic: topic.to_string(),
            timeout,
        })
    }

    /// Queues `message`, waiting while the producer's queue is full; a
    /// message the producer refuses outright (too large) is counted as
    /// failed. A file's messages give their `order` in it, which travels
    /// in the [`ORDER_HEADER`] header, so that events of one time keep the
    /// file's order in the pipeline whichever partitions they took; live
    /// traffic has no such order and gives none.
    pub fn send(&self, message: &Message, order: Option<u64>) {
        let mut record = BaseRecord::<str, [u8]>::to(&self.topic).payload(&message.payload[..]);
        if let Some(order) = order {
            let order = order.to_string();
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: ORDER_HEADER,
                value: Some(&order),
            }));
        }
        if let Some(key) = &message.key {
            record = record.key(key.as_str());
        }
        if let Some(ms) = message.timestamp_ms {
            record = record.timestamp(ms);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((err, _)) => {
                    let what = format!("a message of {} bytes: {err}", message.payload.len());
                    self.producer.context().fail(what);
                    return;
                }
            }
        }
    }

    /// How many messages were ever written to the topic: the sum of its
    /// partitions' end offsets (messages since deleted by retention
    /// included), so numbers counted on from it are new to the topic.
    pub fn end_offsets(&self) -> Result<u64, KafkaError> {
        let client = self.producer.client();
        let what = || format!("reading the end offsets of topic {}", self.topic);
        let partitions = partition_count(client, &self.topic, self.timeout)?.unwrap_or(0);
        let mut total = 0u64;
        for p in 0..partitions {
            let (_, high) = client
                .fetch_watermarks(&self.topic, p, self.timeout)
                .map_err(|e| KafkaError::client(what(), e))?;
            total += high.max(0) as u64;
        }
        Ok(total)
    }

    /// Serves acknowledgements for up to `wait`.
    pub fn poll(&self, wait: Duration) {
        self.producer.poll(wait);
    }

    /// Waits for the acknowledgement of every message sent; those still
    /// without one after the timeout (and a margin) count as failed.
    pub fn finish(self) -> Delivered {
        let producer = &self.producer;
        if producer
            .flush(self.timeout + Duration::from_secs(5))
            .is_err()
        {
            for _ in 0..producer.in_flight_count().max(0) {
                let why = "no acknowledgement from the broker in time".to_string();
                producer.context().fail(why);
            }
        }
        producer.poll(Duration::ZERO);
        let context = producer.context();
        let first_failure = context.first_failure.lock();
        Delivered {
            delivered: context.delivered.load(Ordering::Relaxed),
            failed: context.failed.load(Ordering::Relaxed),
            first_failure: first_failure.unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}
