//! The Kafka sink's operator on one worker (see the module above).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, InputCapability};
use timely::dataflow::Stream;
use timely::scheduling::Activator;

use super::confirm::Confirmations;
use super::Outbound;
use crate::kafka::context::ProducerCtx;
use crate::kafka::topics::cluster_topics;
use crate::kafka::KafkaError;
use crate::pipeline::{Abort, PipelineError};
use crate::sources::kafka::link::MAX_BACKLOG;
use crate::sources::kafka::seq::Numbering;
use crate::sources::kafka::{Guarantee, KafkaInput, Link};

/// Longest a transaction call may take before the run fails.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the end of a run waits for the brokers to acknowledge what was
/// sent; what is still unacknowledged then is not committed, so a restart
/// sends it again (nothing is lost).
const END_GRACE: Duration = Duration::from_secs(10);

/// The operator's state.
struct Writer {
    producer: ThreadedProducer<ProducerCtx>,
    input: Arc<KafkaInput>,
    link: Rc<Link>,
    abort: Abort,
    activator: Activator,
    peers: usize,
    /// Records waiting for the frontier to pass their time.
    stash: BTreeMap<u64, (Capability<u64>, Vec<Outbound>)>,
    /// At least once: frontiers that could be committed, each with when
    /// (µs), waiting for the watcher to find the output topics after it.
    unconfirmed: Confirmations,
    /// Times with messages sent and not yet acknowledged (exactly once: not
    /// yet committed), with how many.
    inflight: BTreeMap<u64, (Capability<u64>, usize)>,
    /// Exactly once: whether transactions were started, and one is open.
    txn_ready: bool,
    in_txn: bool,
    last_commit: Instant,
    /// When the input ended, while messages were still unacknowledged.
    ending_since: Option<Instant>,
    finished: bool,
    buf: Vec<u8>,
    /// The message key being sent, reused likewise.
    key: Vec<u8>,
}

pub(super) fn build<'scope>(
    outputs: Stream<'scope, u64, Vec<Outbound>>,
    input: Arc<KafkaInput>,
    link: Rc<Link>,
    abort: Abort,
) -> Result<Stream<'scope, u64, Vec<()>>, KafkaError> {
    let scope = outputs.scope();
    let producer = producer(&input, scope.index())?;
    let operator = outputs.unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        Pipeline,
        "KafkaSink",
        move |_, info| {
            producer
                .context()
                .waker
                .set(scope.worker().sync_activator_for(info.address.to_vec()));
            let mut w = Writer {
                producer,
                input,
                link,
                abort,
                activator: scope.activator_for(info.address.clone()),
                peers: scope.peers(),
                stash: BTreeMap::new(),
                inflight: BTreeMap::new(),
                unconfirmed: Confirmations::default(),
                txn_ready: false,
                in_txn: false,
                last_commit: Instant::now(),
                ending_since: None,
                finished: false,
                buf: Vec::new(),
                key: Vec::new(),
            };
            move |(data, frontier), _| {
                data.for_each(|cap, batch| w.stash(cap, batch));
                let front = frontier.frontier().first().copied();
                if let Err(e) = w.step(front) {
                    w.finished = true;
                    w.stash.clear();
                    w.inflight.clear();
                    w.abort.fail(PipelineError::component("Kafka sink", e));
                }
            }
        },
    );
    Ok(operator)
}

/// This worker's producer: idempotent, retrying without end while the
/// brokers are away (nothing is dropped for lateness); transactional with
/// a stable id per group, topic and worker for exactly once, so that a
/// restarted worker fences its predecessor.
fn producer(
    input: &KafkaInput,
    worker: usize,
) -> Result<ThreadedProducer<ProducerCtx>, KafkaError> {
    let s = &input.settings;
    let mut config = crate::kafka::producer_config(&s.brokers);
    config
        .set("message.timeout.ms", "0")
        .set("queue.buffering.max.messages", "1000000")
        .set("client.id", format!("fraudflow-{}-w{worker}-out", s.group));
    if s.guarantee == Guarantee::ExactlyOnce {
        config.set(
            "transactional.id",
            format!("fraudflow-{}-{}-w{worker}", s.group, s.topic),
        );
    }
    config
        .create_with_context(ProducerCtx::new(Arc::clone(&input.health)))
        .map_err(|e| KafkaError::client(format!("a producer for {}", s.brokers), e))
}

impl Writer {
    fn stash(&mut self, cap: InputCapability<u64>, batch: &mut Vec<Outbound>) {
        if let Some(cap) = cap.retain_least(0) {
            let time = *cap.time();
            self.stash
                .entry(time)
                .or_insert_with(|| (cap, Vec::new()))
                .1
                .append(batch);
        }
    }

    /// One activation: acknowledgements in, finished times out, and a
    /// commit when one is due or the input has ended.
    fn step(&mut self, front: Option<u64>) -> Result<(), KafkaError> {
        if self.finished {
            return Ok(());
        }
        if let Some(topic) = self.input.lost_output() {
            return Err(KafkaError::Other(format!(
                "output topic {topic:?} was deleted while running: the outputs written since \
                 it was last seen are not committed, so a restart writes them again"
            )));
        }
        self.acknowledge()?;
        let eos = self.input.settings.guarantee == Guarantee::ExactlyOnce;
        if eos && !self.in_txn && !self.open()? {
            return Ok(());
        }
        let until = front.unwrap_or(u64::MAX);
        self.send_before(until)?;
        let due = self.last_commit.elapsed() >= self.input.settings.commit_every;
        if due || front.is_none() {
            self.last_commit = Instant::now();
            if eos {
                self.commit_transaction(until, front.is_some())?;
                self.finished = front.is_none();
            } else {
                self.commit_delivered(front.is_none(), until);
            }
        }
        let backlog = self.inflight.values().map(|v| v.1).sum();
        if self.link.backlog.replace(backlog) > MAX_BACKLOG && backlog <= MAX_BACKLOG {
            // The source stopped reading for the backlog: it may read again.
            self.link.waker.wake();
        }
        let waiting = self.unconfirmed.waiting() > 0;
        if !self.inflight.is_empty() || !self.stash.is_empty() || waiting || front.is_none() {
            self.activator
                .activate_after(self.input.settings.commit_every);
        }
        Ok(())
    }

    /// At least once: commits what is acknowledged; at the end, once all
    /// is, or after [`END_GRACE`] (the brokers away), finishes.
    fn commit_delivered(&mut self, ended: bool, until: u64) {
        let done = self.inflight.keys().next().map_or(until, |&t| t.min(until));
        let since = *self.ending_since.get_or_insert_with(Instant::now);
        let given_up = ended && since.elapsed() >= END_GRACE;
        let last = ended && (self.inflight.is_empty() || given_up);
        // The last commit waits for its answer, unless the brokers are away.
        let wait = last && self.input.health.is_ok();
        if let Some(frontier) = self.confirmed(done, last) {
            self.link.commit(frontier, wait);
        }
        if !ended {
            self.ending_since = None;
        }
        if last {
            if given_up {
                self.input.health.report(
                    "producer",
                    format!("{} outputs unacknowledged at the end: not committed, sent again on restart", self.link.backlog.get()),
                );
            }
            self.inflight.clear();
            self.finished = true;
        }
    }

    /// What may be committed of `done`: the latest frontier noted before the
    /// watcher last found every output topic there (a broker may take
    /// writes to a deleted topic and drop them); at the end, `done` itself
    /// if a look now finds them. `None`: nothing yet.
    fn confirmed(&mut self, done: u64, last: bool) -> Option<u64> {
        if last {
            let began = crate::clock::now_micros();
            let topics = cluster_topics(self.link.consumer.client(), Duration::from_secs(5));
            let kept = topics.is_ok_and(|t| self.input.look_at_outputs(&t, began));
            return kept.then_some(done);
        }
        self.unconfirmed.note(crate::clock::now_micros(), done);
        self.unconfirmed
            .take(self.input.outputs_seen_us.load(Ordering::SeqCst))
    }

    /// Counts the deliveries reported; at least once, a time whose every
    /// message is acknowledged lets its capability go. A message the
    /// brokers refused for good ends the run (its offset stays
    /// uncommitted, so a restart sends it again).
    fn acknowledge(&mut self) -> Result<(), KafkaError> {
        let eos = self.input.settings.guarantee == Guarantee::ExactlyOnce;
        let deliveries = self.producer.context().take();
        if deliveries.iter().any(|d| d.1.is_none()) {
            // The brokers take messages again.
            self.input.health.clear("producer");
        }
        for (time, error) in deliveries {
            if let Some(e) = error {
                return Err(KafkaError::Other(format!(
                    "a message was not delivered: {e}"
                )));
            }
            if let Some(entry) = self.inflight.get_mut(&time) {
                entry.1 = entry.1.saturating_sub(1);
                if entry.1 == 0 && !eos {
                    self.inflight.remove(&time);
                }
            }
        }
        Ok(())
    }

    /// Sends every record of a time before `until`, in time then input
    /// order; muted ones (read again to rebuild state) are dropped.
    fn send_before(&mut self, until: u64) -> Result<(), KafkaError> {
        while let Some(entry) = self.stash.first_entry() {
            if *entry.key() >= until {
                break;
            }
            let (time, (cap, mut records)) = entry.remove_entry();
            records.sort_by_key(Outbound::seq);
            let mut sent = 0;
            let now = crate::clock::now_micros();
            let mut latencies = Vec::with_capacity(records.len());
            for out in &records {
                if Numbering::is_muted(out.seq(), self.peers) {
                    continue;
                }
                self.send(time, out)?;
                latencies.extend(self.count(out, now));
                sent += 1;
            }
            // One lock for the time's latencies, not one a message.
            self.input.stats.record(latencies.into_iter());
            if sent > 0 {
                self.inflight.entry(time).or_insert((cap, 0)).1 += sent;
            }
        }
        Ok(())
    }

    fn send(&mut self, time: u64, out: &Outbound) -> Result<(), KafkaError> {
        out.payload(&mut self.buf)
            .map_err(|e| KafkaError::Other(format!("writing an output as JSON: {e}")))?;
        out.key(&mut self.key);
        let topics = &self.input.settings.sinks;
        let topic = match out {
            Outbound::Alert(_) => &topics.anomalies,
            Outbound::Normal(_) => &topics.metrics,
            Outbound::Dead(_) => &topics.dead_letter,
        };
        let mut record = BaseRecord::with_opaque_to(topic, time as usize)
            .key(&self.key[..])
            .payload(&self.buf[..]);
        let mut waited = Duration::ZERO;
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((RdError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // The brokers are slow or away: wait for room, losing nothing.
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                    waited += Duration::from_millis(1);
                    if waited >= Duration::from_secs(1) {
                        self.input
                            .health
                            .report("producer", "send queue full: brokers slow or away");
                    }
                }
                Err((e, _)) => return Err(KafkaError::client(format!("sending to {topic}"), e)),
            }
        }
        Ok(())
    }

    /// Counts a sent output; its latency from receipt, if it has one.
    fn count(&self, out: &Outbound, now: u64) -> Option<u64> {
        let stats = &self.input.stats;
        let (counter, received) = match out {
            Outbound::Alert(o) => (&stats.alerts, Some(o.received_us)),
            Outbound::Normal(o) => (&stats.normal, Some(o.received_us)),
            Outbound::Dead(_) => (&stats.dead_letters, None),
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        received.map(|r| now.saturating_sub(r))
    }

    /// Exactly once: opens a transaction; `false` while the brokers cannot
    /// be reached to start using transactions (reported as health, tried
    /// again a second later, nothing sent meanwhile).
    fn open(&mut self) -> Result<bool, KafkaError> {
        if !self.txn_ready {
            if let Err(e) = self.producer.init_transactions(Duration::from_secs(5)) {
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
                    return Err(KafkaError::client("starting transactions", e));
                }
                self.input.health.report(
                    "transactions",
                    format!("cannot start transactions yet: {e}"),
                );
                self.activator.activate_after(Duration::from_secs(1));
                return Ok(false);
            }
            self.txn_ready = true;
            self.input.health.clear("transactions");
        }
        self.begin()?;
        Ok(true)
    }

    /// Exactly once: begins the next transaction.
    fn begin(&mut self) -> Result<(), KafkaError> {
        self.producer
            .begin_transaction()
            .map_err(|e| KafkaError::client("beginning a transaction", e))?;
        self.in_txn = true;
        Ok(())
    }

    /// Exactly once: commits the open transaction with the offsets placed
    /// before `until` (every output before it was sent in it), then lets
    /// go of the times it held; with `reopen`, begins the next.
    fn commit_transaction(&mut self, until: u64, reopen: bool) -> Result<(), KafkaError> {
        let offsets = self.link.release(until, false);
        if offsets.is_none() && self.inflight.is_empty() && reopen {
            return Ok(());
        }
        if let Some(list) = offsets {
            let group = self.link.consumer.group_metadata().ok_or_else(|| {
                KafkaError::Other("the consumer has no group metadata for a transaction".into())
            })?;
            self.producer
                .send_offsets_to_transaction(&list, &group, TXN_TIMEOUT)
                .map_err(|e| KafkaError::client("adding offsets to the transaction", e))?;
        }
        self.producer
            .commit_transaction(TXN_TIMEOUT)
            .map_err(|e| KafkaError::client("committing a transaction", e))?;
        self.inflight.clear();
        self.in_txn = false;
        if reopen {
            self.begin()?;
        }
        Ok(())
    }
}
