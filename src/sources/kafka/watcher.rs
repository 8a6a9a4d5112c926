//! One thread per process that watches the brokers: it creates the topics
//! that are missing (once), then looks up the raw-events topic's
//! partitions every second (every commit interval when shorter), so that
//! a partition added while running is read, and reports brokers it cannot
//! reach as health, with backoff, until the run closes.
//!
//! It also looks for the output topics. A broker may take writes to a
//! topic deleted while running and drop them (tansu 0.6 does), so an
//! acknowledgement alone does not say an output is kept: the sinks commit
//! only offsets whose outputs were acknowledged before a look that found
//! every output topic seen so far still there
//! ([`KafkaInput::look_at_outputs`]), and one that was there and is gone
//! ends the run, naming it; a restart then writes again what came after
//! the last such look. A topic never seen (one a broker makes on the first
//! write to it, or that is missing) holds nothing back: it is reported as
//! health.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::KafkaInput;
use crate::kafka::context::ConsumerCtx;
use crate::kafka::topics::cluster_topics;
use crate::kafka::KafkaError;

/// Between looks at the topics when all is well (at most: every commit
/// interval when that is shorter).
const EVERY: Duration = Duration::from_secs(1);
/// Longest wait between tries when the brokers cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What to make before watching: topics and their partition counts
/// (empty: make nothing).
pub type Bootstrap = Box<dyn FnMut() -> Result<(), KafkaError> + Send>;

/// Starts the watcher; it ends soon after the input closes.
pub fn start(
    input: Arc<KafkaInput>,
    mut bootstrap: Bootstrap,
) -> Result<JoinHandle<()>, KafkaError> {
    let config = crate::kafka::client_config(&input.settings.brokers);
    let client: BaseConsumer<ConsumerCtx> = config
        .create_with_context(ConsumerCtx::new(Arc::clone(&input.health)))
        .map_err(|e| KafkaError::client("a metadata client", e))?;
    std::thread::Builder::new()
        .name("kafka-watcher".into())
        .spawn(move || {
            let mut made = false;
            let mut wait = Duration::from_millis(100);
            while !input.is_closed() {
                let began = crate::clock::now_micros();
                let step = if made { Ok(()) } else { bootstrap() };
                let looked = step.and_then(|()| {
                    made = true;
                    // One metadata request for the input's partitions and
                    // the outputs' presence.
                    let topics = cluster_topics(client.client(), Duration::from_secs(5))?;
                    input.look_at_outputs(&topics, began);
                    partitions(&topics, &input.settings.topic)
                });
                match looked {
                    Ok(n) => {
                        input.health.clear("brokers");
                        input.set_partitions(n);
                        // Commits wait for a look: one each commit interval.
                        wait = EVERY.min(input.settings.commit_every);
                    }
                    Err(e) => {
                        input.health.report("brokers", e.to_string());
                        wait = (wait * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
                    }
                }
                sleep_unless_closed(&input, wait);
            }
        })
        .map_err(|e| KafkaError::Other(format!("starting the watcher thread: {e}")))
}

/// The topic's partition count among the cluster's topics (asked of every
/// topic's metadata, so that the watcher never creates the topic on a
/// broker that creates topics on first mention); an error when it does not
/// exist or has none.
fn partitions(topics: &HashMap<String, i32>, topic: &str) -> Result<i32, KafkaError> {
    topics
        .get(topic)
        .copied()
        .filter(|&n| n > 0)
        .ok_or_else(|| KafkaError::Other(format!("topic {topic:?} does not exist")))
}

fn sleep_unless_closed(input: &KafkaInput, wait: Duration) {
    let until = Instant::now() + wait;
    while !input.is_closed() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
