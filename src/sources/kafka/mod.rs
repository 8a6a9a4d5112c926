//! The Kafka source: the partitions of the raw-events topic shared among
//! every worker of every process, read the way STYLE.md takes from
//! Materialize's Kafka source.
//!
//! - Partition `p` is read by worker `p mod peers`, assigned by hand (no
//!   group rebalances to pause for); a watcher thread per process looks
//!   up the topic's partitions every second, so a partition added while
//!   running is picked up.
//! - Each partition holds its own capability, downgraded only to what
//!   that partition has delivered: the latest time it placed an event at
//!   (more events of that time may follow, and must not be late). A
//!   partition that has nothing more to read (librdkafka says so with a
//!   partition end) and stays quiet for `idle_ms` stops holding the
//!   frontier back: it follows the run's watermark, the latest time any
//!   worker of any process placed an event at, plus one (see [`beacon`]).
//!   An event stamped behind its partition's capability is placed there,
//!   counted as late and scored, never dropped.
//! - A worker reads at most `max_batch` messages an activation, and is
//!   woken by librdkafka's callback when its queue turns non-empty, not by
//!   spinning; so it waits only once its queue is empty, which an empty
//!   poll alone does not tell (see [`Link::queued`]).
//! - Offsets are never committed automatically: the sinks commit a
//!   partition's offset once the outputs of every message up to it are
//!   delivered ([`ledger`]).
//! - On start, each partition is read again from one velocity window
//!   before its committed offset, by timestamp; the events before the
//!   committed offset rebuild the velocity state and are written nowhere
//!   ([`seq`]).

pub mod beacon;
pub mod ledger;
pub mod link;
mod reader;
pub mod seq;
pub mod watcher;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use timely::dataflow::{Scope, Stream};

use super::live::LiveInput;
use super::order::TimeLimits;
use super::{Parsed, SourceContext};
use crate::kafka::health::Health;
pub use crate::settings::Guarantee;
pub use link::Link;

/// The topics the sinks write to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkTopics {
    pub anomalies: String,
    pub metrics: String,
    pub dead_letter: String,
}

/// A Kafka run's settings, checked.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub guarantee: Guarantee,
    /// How long a partition with nothing more to read may hold the
    /// frontier back.
    pub idle: Duration,
    /// Between offset commits (exactly once: transactions).
    pub commit_every: Duration,
    /// Longest the broker may hold a fetch waiting for messages.
    pub fetch_wait: Duration,
    pub max_batch: usize,
    pub limits: TimeLimits,
    /// Event time (ms) read again before the committed offsets on start;
    /// `None`: start at the committed offsets.
    pub restore_ms: Option<u64>,
    pub sinks: SinkTopics,
    /// How long a process of the run may stop stepping before the run
    /// ends as stalled (`pipeline::stall`).
    pub stall_after: Duration,
}

/// What the workers of one process share.
#[derive(Debug)]
pub struct KafkaInput {
    pub settings: KafkaSettings,
    /// The run's watermark (the latest place of any worker of any process,
    /// plus one), which idle partitions and the model versions follow; its
    /// closing ends the run.
    pub hub: Arc<LiveInput>,
    pub health: Arc<Health>,
    /// This process's own latest place, plus one: what its beacon sends.
    pub own: AtomicU64,
    /// The topic's partitions, as the watcher last saw them (0: not yet).
    pub partitions: AtomicI32,
    /// Messages read (events and dead letters), not counting those read
    /// again to rebuild state.
    pub read: AtomicU64,
    pub late: AtomicU64,
    /// Events read again to rebuild the velocity state, written nowhere.
    pub replayed: AtomicU64,
    /// Messages sent to the alerts', normal traffic's and dead letters'
    /// topics, and the latency from receipt to the send.
    pub stats: Arc<crate::sinks::file::live::LiveStats>,
    /// When (µs since the epoch) the watcher last began a look that found
    /// every output topic there: outputs acknowledged before then are on
    /// their topics, and their offsets may be committed.
    pub outputs_seen_us: AtomicU64,
    /// An output topic that was there and is gone: the sinks end the run.
    pub lost_output: Mutex<Option<String>>,
    /// The output topics some look found there.
    seen_outputs: Mutex<HashSet<String>>,
}

impl KafkaInput {
    pub fn new(settings: KafkaSettings, process: usize, processes: usize) -> Arc<KafkaInput> {
        Arc::new(KafkaInput {
            hub: LiveInput::new(settings.limits, (process, processes), settings.stall_after),
            settings,
            health: Arc::new(Health::default()),
            own: AtomicU64::new(0),
            partitions: AtomicI32::new(0),
            read: AtomicU64::new(0),
            late: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            stats: Arc::default(),
            outputs_seen_us: AtomicU64::new(0),
            lost_output: Mutex::new(None),
            seen_outputs: Mutex::default(),
        })
    }

    /// Notes a place of this process's, and moves the watermark past it.
    pub fn placed(&self, latest: u64) {
        let past = latest.saturating_add(1);
        self.own.fetch_max(past, Ordering::SeqCst);
        self.hub.advance_to(past);
    }

    /// Moves the run's watermark to `to` (when later) and wakes the
    /// sources, so idle partitions follow it.
    pub fn advance(&self, to: u64) {
        self.hub.advance_to(to);
    }

    /// The topic now has `n` partitions.
    pub fn set_partitions(&self, n: i32) {
        if self.partitions.swap(n, Ordering::SeqCst) != n {
            self.hub.wake();
        }
    }

    /// The output topics this run writes to.
    pub fn output_topics(&self) -> [&str; 3] {
        let s = &self.settings.sinks;
        [&s.anomalies, &s.metrics, &s.dead_letter]
    }

    /// Looks for the output topics among the cluster's (`existing`, with
    /// their partition counts): when every one seen before is there, notes
    /// that outputs acknowledged before `began` (µs) are kept and says
    /// `true`; one that was there and is gone is noted as lost. A topic
    /// never seen is reported as health only.
    pub fn look_at_outputs(&self, existing: &HashMap<String, i32>, began: u64) -> bool {
        let topics = self.output_topics();
        let missing: Vec<&str> = (topics.iter().copied())
            .filter(|t| existing.get(*t).is_none_or(|&p| p == 0))
            .collect();
        let mut seen = self.seen_outputs.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(
            topics
                .iter()
                .filter(|t| !missing.iter().any(|m| m == *t))
                .map(|t| t.to_string()),
        );
        if let Some(topic) = missing.iter().find(|t| seen.contains(**t)) {
            *self.lost_output.lock().unwrap_or_else(|e| e.into_inner()) = Some(topic.to_string());
            self.health
                .report("outputs", format!("output topic {topic:?} was deleted"));
            return false;
        }
        self.outputs_seen_us.fetch_max(began, Ordering::SeqCst);
        match missing.first() {
            None => self.health.clear("outputs"),
            Some(topic) => self.health.report(
                "outputs",
                format!("output topic {topic:?} does not exist (yet)"),
            ),
        }
        true
    }

    /// The output topic found gone, if one was.
    pub fn lost_output(&self) -> Option<String> {
        self.lost_output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the run: sources drop their capabilities, the dataflow drains.
    pub fn close(&self) {
        self.hub.close();
    }

    pub fn is_closed(&self) -> bool {
        self.hub.is_closed()
    }
}

/// This worker's part of the Kafka source, reading through `link`'s
/// consumer.
pub fn kafka_source<'scope>(
    scope: Scope<'scope, u64>,
    input: Arc<KafkaInput>,
    link: std::rc::Rc<Link>,
    context: SourceContext,
) -> Stream<'scope, u64, Vec<Parsed>> {
    reader::build(scope, input, link, context)
}
