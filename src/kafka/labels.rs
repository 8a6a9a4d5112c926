//! The `feedback` topic into the dataflow: in a Kafka run the labels that
//! any process accepted over HTTP are published there ([`super::publish`]),
//! and process 0 reads every partition of it and hands each label to its
//! [`LiveLabels`], which place it at the live frontier. One reader keeps
//! the labels' order of receipt the topic's, whichever process took them.
//!
//! The reader is assigned every partition (no group rebalance to wait
//! for) and commits its offsets under the group `GROUP-feedback` as the
//! labels are handed over: a label handed over just before a crash stays
//! on the topic, but is not read again.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::publish::{PublishError, Publisher};
use super::{client_config, KafkaError};
use crate::dataflow::feedback::body::parse_feedback;
use crate::dataflow::feedback::live::LiveLabels;
use crate::event::EventId;

/// The topic analysts' labels are published on.
pub const FEEDBACK_TOPIC: &str = "feedback";

/// How long a label waits for the broker's acknowledgement before it goes
/// to the outbox.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// A Kafka run's labels: the publisher this process's server hands them
/// to, its outbox drained in the background, and (process 0) the topic's
/// reader into the dataflow.
pub struct FeedbackTopic {
    pub publisher: Arc<Publisher>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FeedbackTopic {
    /// Starts publishing through the outbox at `outbox`, and when `labels`
    /// are given (process 0), reading the topic into them.
    pub fn start(
        brokers: &str,
        group: &str,
        outbox: &Path,
        labels: Option<Arc<LiveLabels>>,
    ) -> Result<FeedbackTopic, PublishError> {
        let publisher = Arc::new(Publisher::new(
            brokers,
            FEEDBACK_TOPIC,
            outbox,
            PUBLISH_TIMEOUT,
        )?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = vec![drain(Arc::clone(&publisher), Arc::clone(&stop))?];
        if let Some(labels) = labels {
            threads.push(follow(brokers, group, labels, Arc::clone(&stop))?);
        }
        Ok(FeedbackTopic {
            publisher,
            stop,
            threads,
        })
    }

    /// Stops the threads (the outbox keeps what it holds for the next run).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Publishes what the outbox holds whenever it holds anything, until
/// `stop`.
fn drain(publisher: Arc<Publisher>, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, KafkaError> {
    let thread = std::thread::Builder::new()
        .name("feedback-outbox".to_string())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !publisher.outbox().is_empty() {
                    // A failure to rewrite the outbox leaves it whole: the
                    // next round publishes those lines again.
                    let _ = publisher.drain();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    thread.map_err(|e| KafkaError::Other(format!("starting the feedback outbox's publisher: {e}")))
}

/// Reads every partition of `FEEDBACK_TOPIC` on `brokers`, from the
/// offsets committed under `GROUP-feedback`, into `labels` until `stop` is
/// set or the run closes. A message that is not a label (not published by
/// fraudflow) is skipped.
pub fn follow(
    brokers: &str,
    group: &str,
    labels: Arc<LiveLabels>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, KafkaError> {
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", format!("{group}-feedback"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        // Labels are few and people wait on them: reconnect soon after the
        // broker is back.
        .set("reconnect.backoff.max.ms", "1000")
        .create()
        .map_err(|e| KafkaError::client(format!("connecting to {brokers}"), e))?;
    let thread = std::thread::Builder::new()
        .name("feedback-topic".to_string())
        .spawn(move || {
            // Every partition, assigned (no group rebalance to wait for),
            // once the topic is there.
            while !stop.load(Ordering::Relaxed) && assign_all(&consumer).is_err() {
                std::thread::sleep(Duration::from_millis(500));
            }
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let Some(label) = message.payload().and_then(|p| parse_feedback(p).ok()) else {
                    continue;
                };
                let id = EventId::Named(label.transaction_id.into_boxed_str());
                if !hand_over(&labels, id, label.is_fraud, &stop) {
                    return;
                }
            }
        });
    thread.map_err(|e| KafkaError::Other(format!("starting the feedback topic's reader: {e}")))
}

/// Assigns every partition of the topic, each from the group's committed
/// offset (the earliest when none is).
fn assign_all(consumer: &BaseConsumer) -> Result<(), rdkafka::error::KafkaError> {
    let metadata = consumer.fetch_metadata(Some(FEEDBACK_TOPIC), Duration::from_secs(5))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == FEEDBACK_TOPIC && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(rdkafka::error::KafkaError::Subscription(format!(
            "no partitions of {FEEDBACK_TOPIC} yet"
        )));
    }
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(FEEDBACK_TOPIC, p as i32, Offset::Stored)?;
    }
    consumer.assign(&list)
}

/// Hands one label over, waiting while too many wait; `false` once the
/// run is stopping.
fn hand_over(labels: &LiveLabels, id: EventId, is_fraud: bool, stop: &AtomicBool) -> bool {
    loop {
        match labels.push(id.clone(), is_fraud) {
            Ok(()) => return true,
            Err(0) => return false,
            Err(_) if stop.load(Ordering::Relaxed) => return false,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
