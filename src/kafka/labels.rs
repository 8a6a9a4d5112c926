//! The `feedback` topic into the dataflow: in a Kafka run the labels that
//! any process accepted over HTTP are published there ([`super::publish`]),
//! and process 0 reads every partition of it and hands each label to its
//! [`LiveLabels`], which place it at the live frontier. One reader keeps
//! the labels' order of receipt the topic's, whichever process took them.
//!
//! The reader is assigned every partition (no group rebalance to wait
//! for), each from where the learner's kept state says
//! ([`crate::dataflow::feedback::ledger`]): per partition, `end` (the
//! offset after the last label handed over) and `again` (the offsets
//! before it whose effect is not kept). It starts at the first of `again`,
//! or at `end`, and hands over a label in `again` or at or past `end`;
//! any other label's effect is in the kept state (fitted into the version,
//! or its example in the batch or the holdout kept with it, or it waited
//! out the join's retention without meeting its transaction), so it is
//! skipped. A label is open, and stays in `again`, from the moment it is
//! handed over until the learner takes its example or has handled every
//! time through its placing plus the retention; so a crash at any point
//! leaves no label unread, and a label read twice is applied once. (One
//! read again meets its transaction only if the restart brings that into
//! the join again: the join's features are not kept, see
//! `docs/feedback.md`.) A partition no kept state names starts from the
//! group's committed offset (the earliest when there is none); a topic
//! deleted and made again, its offsets starting over below `end`, is not
//! noticed: its labels are skipped until they pass `end`.
//!
//! The offsets committed under the group `GROUP-feedback` are the start
//! offsets of the newest kept state, after it is on disk: never past a
//! label whose effect is not kept. The reader does not read them back
//! while the kept state names the partition; they are there for the tools
//! that watch a group's lag, and for a partition the kept state does not
//! name.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::publish::{PublishError, Publisher};
use super::{client_config, KafkaError};
use crate::dataflow::feedback::body::parse_feedback;
use crate::dataflow::feedback::ledger::{Ledger, TopicPlace};
use crate::dataflow::feedback::live::LiveLabels;
use crate::event::EventId;
use crate::metrics::events::UnreadableLabel;

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

/// Reads every partition of `FEEDBACK_TOPIC` on `brokers`, each from
/// where the ledger of `labels` says (the offset committed under
/// `GROUP-feedback` where it names none), into `labels` until `stop` is
/// set or the run closes. A message that is not a label (not published by
/// fraudflow) is skipped, counted (`fraudflow_feedback_unreadable_total`)
/// and, the first few times, said on stderr with its place and why.
pub fn follow(
    brokers: &str,
    group: &str,
    labels: Arc<LiveLabels>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, KafkaError> {
    let consumer: BaseConsumer = client_config(brokers)
        .set("group.id", format!("{group}-feedback"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        // Labels are few and people wait on them: reconnect soon after the
        // broker is back.
        .set("reconnect.backoff.max.ms", "1000")
        .create()
        .map_err(|e| KafkaError::client(format!("connecting to {brokers}"), e))?;
    let thread = std::thread::Builder::new()
        .name("feedback-topic".to_string())
        .spawn(move || read(&consumer, &labels, &stop));
    thread.map_err(|e| KafkaError::Other(format!("starting the feedback topic's reader: {e}")))
}

/// The reader's thread: hands the topic's labels over until `stop`,
/// committing the offsets of each state the learner keeps.
fn read(consumer: &BaseConsumer, labels: &LiveLabels, stop: &AtomicBool) {
    let ledger = labels.ledger().map(Arc::as_ref);
    // Every partition, assigned (no group rebalance to wait for), once the
    // topic is there.
    while !stop.load(Ordering::Relaxed) && assign_all(consumer, ledger).is_err() {
        std::thread::sleep(Duration::from_millis(500));
    }
    let (mut committed, mut unreadable) = (0, 0u64);
    while !stop.load(Ordering::Relaxed) {
        commit_kept(consumer, ledger, &mut committed, CommitMode::Async);
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let place = TopicPlace {
            partition: message.partition(),
            offset: message.offset(),
        };
        let label = match parse_feedback(message.payload().unwrap_or_default()) {
            Ok(label) => label,
            Err(why) => {
                skipped(place, &why, &mut unreadable);
                continue;
            }
        };
        if ledger.is_some_and(|l| !l.admit(place)) {
            continue; // its effect is kept already
        }
        let id = EventId::Named(label.transaction_id.into_boxed_str());
        if !hand_over(labels, id, label.is_fraud, place, stop) {
            break;
        }
    }
    // The run is closing: the states the learner keeps as it drains.
    while !stop.load(Ordering::Relaxed) {
        commit_kept(consumer, ledger, &mut committed, CommitMode::Async);
        std::thread::sleep(Duration::from_millis(100));
    }
    commit_kept(consumer, ledger, &mut committed, CommitMode::Sync);
}

/// Messages not labels said on stderr, the first ones: the counter
/// counts every one.
const SAID_UNREADABLE: u64 = 10;

/// Counts a message on the topic that is not a label, and says so.
fn skipped(place: TopicPlace, why: &dyn std::fmt::Display, unreadable: &mut u64) {
    crate::metrics::emit(UnreadableLabel);
    *unreadable += 1;
    if *unreadable <= SAID_UNREADABLE {
        let TopicPlace { partition, offset } = place;
        eprintln!(
            "feedback topic: the message at partition {partition}, offset {offset} is not a label, skipped: {why}{}",
            if *unreadable == SAID_UNREADABLE { " (further ones are counted in fraudflow_feedback_unreadable_total, not said)" } else { "" }
        );
    }
}

/// Commits the start offsets of the newest state the learner kept, when
/// one was kept since the `committed`th. A failed commit is tried again
/// with the next state kept: the offsets read from are the kept state's.
fn commit_kept(
    consumer: &BaseConsumer,
    ledger: Option<&Ledger>,
    committed: &mut u64,
    mode: CommitMode,
) {
    let Some((count, offsets)) = ledger.and_then(|l| l.kept_since(*committed)) else {
        return;
    };
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        let _ = list.add_partition_offset(FEEDBACK_TOPIC, partition, Offset::Offset(offset));
    }
    if list.count() == 0 || consumer.commit(&list, mode).is_ok() {
        *committed = count;
    }
}

/// Assigns every partition of the topic, each from where the ledger says,
/// or else from the group's committed offset (the earliest when none is).
fn assign_all(
    consumer: &BaseConsumer,
    ledger: Option<&Ledger>,
) -> Result<(), rdkafka::error::KafkaError> {
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
    for p in 0..partitions as i32 {
        let start = ledger.and_then(|l| l.start(p));
        list.add_partition_offset(
            FEEDBACK_TOPIC,
            p,
            start.map_or(Offset::Stored, Offset::Offset),
        )?;
    }
    consumer.assign(&list)
}

/// Hands one label over, waiting while too many wait; `false` once the
/// run is stopping.
fn hand_over(
    labels: &LiveLabels,
    id: EventId,
    is_fraud: bool,
    place: TopicPlace,
    stop: &AtomicBool,
) -> bool {
    loop {
        match labels.push_from(id.clone(), is_fraud, Some(place)) {
            Ok(()) => return true,
            Err(0) => return false,
            Err(_) if stop.load(Ordering::Relaxed) => return false,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
