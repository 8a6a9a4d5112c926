//! The callbacks librdkafka makes on its own threads: errors and commits
//! become health, deliveries are queued for the sink that sent them, and
//! either wakes the timely operator that waits on it instead of letting it
//! spin.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientContext, TopicPartitionList};
use timely::scheduling::SyncActivator;

use super::health::Health;

/// Wakes one operator from any thread, once it has registered.
#[derive(Clone, Debug, Default)]
pub struct Waker(Arc<Mutex<Option<SyncActivator>>>);

impl Waker {
    /// The operator to wake from now on.
    pub fn set(&self, activator: SyncActivator) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(activator);
    }

    /// Schedules the operator; nothing when none registered or the
    /// dataflow is gone.
    pub fn wake(&self) {
        if let Some(a) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = a.activate();
        }
    }
}

/// A consumer's context: client errors and commit results as health.
pub struct ConsumerCtx {
    pub health: Arc<Health>,
    /// Commits that failed (the next round sends them again).
    pub commit_failures: AtomicU64,
}

impl ConsumerCtx {
    pub fn new(health: Arc<Health>) -> ConsumerCtx {
        ConsumerCtx {
            health,
            commit_failures: AtomicU64::new(0),
        }
    }
}

impl ClientContext for ConsumerCtx {
    /// librdkafka's statistics (every `statistics.interval.ms`, set on the
    /// sources' consumers): each assigned partition's lag, for `/metrics`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for topic in statistics.topics.values() {
            for (partition, p) in &topic.partitions {
                // -1 is librdkafka's unassigned partition; a lag of -1 is
                // not known yet.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.health.set_lag(*partition, p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: RdError, reason: &str) {
        // The end of a partition is news, not trouble (the source reads it
        // from its queue).
        if error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            self.health
                .report("consumer", format!("{reason} ({error})"));
        }
    }
}

impl ConsumerContext for ConsumerCtx {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        match result {
            Ok(()) => self.health.clear("commit"),
            Err(e) => {
                self.commit_failures.fetch_add(1, Ordering::Relaxed);
                self.health
                    .report("commit", format!("committing offsets failed: {e}"));
            }
        }
    }
}

/// A delivery report: the logical time of the output, and the error when
/// the broker did not take it.
pub type Delivery = (u64, Option<String>);

/// A producer's context: each delivery, by the logical time it was sent
/// with, queued for the sink, which it wakes.
pub struct ProducerCtx {
    pub health: Arc<Health>,
    pub waker: Waker,
    deliveries: Mutex<Vec<Delivery>>,
}

impl ProducerCtx {
    pub fn new(health: Arc<Health>) -> ProducerCtx {
        ProducerCtx {
            health,
            waker: Waker::default(),
            deliveries: Mutex::new(Vec::new()),
        }
    }

    /// The deliveries reported since the last call.
    pub fn take(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.deliveries.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ClientContext for ProducerCtx {
    fn error(&self, error: RdError, reason: &str) {
        self.health
            .report("producer", format!("{reason} ({error})"));
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, time: usize) {
        let error = match result {
            Ok(_) => None,
            Err((e, m)) => Some(format!("to {} partition {}: {e}", m.topic(), m.partition())),
        };
        let mut queue = self.deliveries.lock().unwrap_or_else(|e| e.into_inner());
        let was_empty = queue.is_empty();
        queue.push((time as u64, error));
        drop(queue);
        // The sink takes the whole queue when it runs: one wake for the
        // first delivery since then is enough.
        if was_empty {
            self.waker.wake();
        }
    }
}
