//! What the Kafka source and sinks of one worker share: the consumer and
//! the ledger of every partition it reads. The sinks of a worker write the
//! outputs of exactly the events its source read (features and scores are
//! computed where events are read), so the worker alone knows when a
//! partition's offsets may be committed.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};

use super::ledger::{Ledger, WindowIndex};
use super::KafkaInput;
use crate::kafka::context::{ConsumerCtx, Waker};
use crate::kafka::KafkaError;

/// Offset commits carry the latest time placed up to them and the offset
/// one velocity window before it, so that a restart knows where to read
/// again from: `t=<ms>;w=<offset>`.
pub const TIME_KEY: &str = "t=";
/// See [`TIME_KEY`].
pub const WINDOW_KEY: &str = ";w=";

/// What a commit noted, read back on a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Noted {
    /// The latest time placed up to the committed offset.
    pub time: Option<u64>,
    /// The offset to read again from.
    pub window_start: Option<i64>,
}

impl Noted {
    /// Reads a commit's metadata; what it cannot read is `None`.
    ///
    /// ```
    /// use fraudflow::sources::kafka::link::Noted;
    ///
    /// let noted = Noted::parse("t=7200000;w=42");
    /// assert_eq!((noted.time, noted.window_start), (Some(7_200_000), Some(42)));
    /// assert_eq!(Noted::parse("something else"), Noted::default());
    /// ```
    pub fn parse(metadata: &str) -> Noted {
        let Some(rest) = metadata.strip_prefix(TIME_KEY) else {
            return Noted::default();
        };
        let (time, window) = rest.split_once(WINDOW_KEY).unwrap_or((rest, ""));
        Noted {
            time: time.parse().ok(),
            window_start: window.parse().ok(),
        }
    }
}

/// Most messages a worker's sinks may have unacknowledged before its
/// source stops reading (brokers slow or away: nothing is dropped, the
/// source waits).
pub const MAX_BACKLOG: usize = 200_000;

/// What one [`Link::poll`] found.
pub enum Polled<'a> {
    /// A message, a partition's end or an error.
    Next(KafkaResult<BorrowedMessage<'a>>),
    /// An event librdkafka served itself (statistics, a commit's result):
    /// more may wait behind it.
    Served,
    /// Nothing: the queue is empty, and the next operation to arrive
    /// fires the queue callback.
    Empty,
}

/// A partition's latest released `(offset, time)`, and whether it was
/// sent since.
type Released = ((i64, u64), bool);

/// A partition's committed offset and what was noted with it, if any.
pub type Committed = Option<(i64, Noted)>;

/// One worker's consumer and ledgers.
pub struct Link {
    pub consumer: BaseConsumer<ConsumerCtx>,
    pub topic: String,
    /// Wakes this worker's source (librdkafka's queue callback).
    pub waker: Waker,
    /// Messages the sinks have sent and not yet seen acknowledged: the
    /// source reads nothing while there are more than [`MAX_BACKLOG`].
    pub backlog: Cell<usize>,
    ledgers: RefCell<BTreeMap<i32, Ledger>>,
    /// Where each partition's stretches of event time began (with a restore
    /// window).
    windows: RefCell<BTreeMap<i32, WindowIndex>>,
    restore_ms: Option<u64>,
    /// The latest released `(offset, time)` of each partition, and whether
    /// it was sent since.
    released: RefCell<BTreeMap<i32, Released>>,
}

impl Link {
    /// This worker's consumer: no automatic commits, partition ends
    /// reported, transactions' aborted messages skipped.
    pub fn new(input: &KafkaInput, worker: usize) -> Result<Rc<Link>, KafkaError> {
        let s = &input.settings;
        let mut config = crate::kafka::client_config(&s.brokers);
        config
            .set("group.id", &s.group)
            .set("client.id", format!("fraudflow-{}-w{worker}", s.group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", s.fetch_wait.as_millis().to_string())
            .set("fetch.message.max.bytes", "16777216")
            // Each partition's lag, for `/metrics` (kafka::context).
            .set("statistics.interval.ms", "1000");
        let context = ConsumerCtx::new(Arc::clone(&input.health));
        let mut consumer: BaseConsumer<ConsumerCtx> = config
            .create_with_context(context)
            .map_err(|e| KafkaError::client(format!("a consumer for {}", s.brokers), e))?;
        let waker = Waker::default();
        let wake = waker.clone();
        consumer.set_nonempty_callback(move || wake.wake());
        Ok(Rc::new(Link {
            consumer,
            topic: s.topic.clone(),
            waker,
            backlog: Cell::new(0),
            ledgers: RefCell::new(BTreeMap::new()),
            windows: RefCell::new(BTreeMap::new()),
            restore_ms: s.restore_ms,
            released: RefCell::new(BTreeMap::new()),
        }))
    }

    /// The next operation of this consumer's queue, without waiting.
    pub fn poll(&self) -> Polled<'_> {
        match self.consumer.poll(Duration::ZERO) {
            Some(next) => Polled::Next(next),
            None if self.queued() > 0 => Polled::Served,
            None => Polled::Empty,
        }
    }

    /// Operations waiting in this consumer's queue: messages, partition
    /// ends, errors and librdkafka's own events (statistics, commit
    /// results), all of which reach it (`group.id` forwards the main queue
    /// there, and manually assigned partitions' fetches too).
    ///
    /// Why: `BaseConsumer::poll` with a zero timeout answers `None` both
    /// when the queue is empty and when it served one of librdkafka's own
    /// events (statistics every second, an asynchronous commit's result),
    /// and messages may wait behind that event. The queue callback fires
    /// only when the queue turns from empty to non-empty, so a reader that
    /// took such a `None` for "drained" and waited for the callback would
    /// wait forever. Only an empty queue guarantees the callback.
    pub fn queued(&self) -> usize {
        use rdkafka::bindings as rd;
        // SAFETY: the client outlives this call (it is `self.consumer`'s);
        // the queue handle is a new reference of our own, destroyed before
        // returning (NULL when the client has no consumer group queue).
        unsafe {
            let queue = rd::rd_kafka_queue_get_consumer(self.consumer.client().native_ptr());
            if queue.is_null() {
                return 0;
            }
            let n = rd::rd_kafka_queue_length(queue);
            rd::rd_kafka_queue_destroy(queue);
            n
        }
    }

    /// Notes that the message at `offset` of `partition` was placed at
    /// logical time `time`.
    pub fn record(&self, partition: i32, offset: i64, time: u64) {
        self.ledgers
            .borrow_mut()
            .entry(partition)
            .or_default()
            .record(offset, time);
        if let Some(window) = self.restore_ms {
            self.windows
                .borrow_mut()
                .entry(partition)
                .or_insert_with(|| WindowIndex::new(window))
                .record(offset, time);
        }
    }

    /// Releases, in every partition, the offsets whose outputs are all at
    /// times before `frontier`; returns the offsets to commit, each with
    /// the latest time placed up to it (see [`TIME_KEY`]), or `None` when
    /// nothing moved (or, with `again`, nothing was ever released).
    pub fn release(&self, frontier: u64, again: bool) -> Option<TopicPartitionList> {
        let mut released = self.released.borrow_mut();
        for (&partition, ledger) in self.ledgers.borrow_mut().iter_mut() {
            if let Some(done) = ledger.release(frontier) {
                released.insert(partition, (done, false));
            }
        }
        let mut list = TopicPartitionList::new();
        for (&partition, ((offset, time), sent)) in released.iter_mut() {
            if !*sent || again {
                let mut e = list.add_partition(&self.topic, partition);
                // An offset taken from a message is valid.
                let _ = e.set_offset(Offset::Offset(*offset));
                let start = self
                    .windows
                    .borrow()
                    .get(&partition)
                    .and_then(|w| w.start(*time));
                e.set_metadata(match start {
                    Some(w) => format!("{TIME_KEY}{time}{WINDOW_KEY}{w}"),
                    None => format!("{TIME_KEY}{time}"),
                });
                *sent = true;
            }
        }
        (list.count() > 0).then_some(list)
    }

    /// At least once: commits what the sinks have delivered before
    /// `frontier`. Asynchronous, except the last (`last`), which waits.
    /// A failed commit is sent again with the next.
    pub fn commit(&self, frontier: u64, last: bool) {
        let failures = &self.consumer.context().commit_failures;
        let again = failures.swap(0, std::sync::atomic::Ordering::Relaxed) > 0 || last;
        let Some(list) = self.release(frontier, again) else {
            return;
        };
        let mode = if last {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        if let Err(e) = self.consumer.commit(&list, mode) {
            self.consumer
                .context()
                .health
                .report("commit", format!("committing offsets failed: {e}"));
            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The committed offsets of `partitions`, each with the time noted
    /// with it (`None`: nothing committed yet).
    pub fn committed(
        &self,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<BTreeMap<i32, Committed>, KafkaError> {
        let mut list = TopicPartitionList::new();
        for &p in partitions {
            list.add_partition(&self.topic, p);
        }
        let found = self
            .consumer
            .committed_offsets(list, timeout)
            .map_err(|e| {
                KafkaError::client(format!("the committed offsets of {}", self.topic), e)
            })?;
        Ok(found
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some((o, Noted::parse(e.metadata()))),
                    _ => None,
                };
                (e.partition(), offset)
            })
            .collect())
    }
}

/// The event time of the message at each (partition, offset) of `topic`,
/// read by one consumer of its own: the event's own time, or the message's
/// timestamp when it holds no event. For brokers that keep no commit
/// metadata, a restart finds where its velocity window began from it.
/// A partition is left out when its message cannot be read within
/// `timeout` (gone by retention, or a transaction's marker, say).
pub fn event_times_at(
    brokers: &str,
    topic: &str,
    at: &[(i32, i64)],
    timeout: Duration,
) -> Result<BTreeMap<i32, u64>, KafkaError> {
    use rdkafka::Message;
    let mut times = BTreeMap::new();
    if at.is_empty() {
        return Ok(times);
    }
    // A group is required to consume, though this one commits nothing.
    let consumer: BaseConsumer = crate::kafka::client_config(brokers)
        .set("group.id", "fraudflow-restore-probe")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("fetch.message.max.bytes", "16777216")
        .create()
        .map_err(|e| KafkaError::client(format!("a consumer for {brokers}"), e))?;
    let mut list = TopicPartitionList::new();
    for &(p, offset) in at {
        let _ = list
            .add_partition(topic, p)
            .set_offset(Offset::Offset(offset));
    }
    consumer
        .assign(&list)
        .map_err(|e| KafkaError::client(format!("reading {topic} at {at:?}"), e))?;
    let mut waiting: BTreeMap<i32, i64> = at.iter().copied().collect();
    let deadline = std::time::Instant::now() + timeout;
    while !waiting.is_empty() && std::time::Instant::now() < deadline {
        let m = match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => m,
            // Nothing at or after it.
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                waiting.remove(&p);
                continue;
            }
            _ => continue,
        };
        let p = m.partition();
        if waiting.get(&p).is_none_or(|&offset| m.offset() < offset) {
            continue;
        }
        waiting.remove(&p);
        let own = m
            .payload()
            .and_then(|bytes| crate::dataflow::json_event::parse_event(bytes, 0).ok())
            .map(|e| e.time_ms);
        let stamped = m
            .timestamp()
            .to_millis()
            .and_then(|t| u64::try_from(t).ok());
        if let Some(time) = own.or(stamped) {
            times.insert(p, time);
        }
    }
    Ok(times)
}
