//! The Kafka source's operator on one worker (see the module above for
//! why it moves its frontier as it does).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, Stream};
use timely::scheduling::Activator;

use super::link::{self, Polled};
use super::seq::Numbering;
use super::{KafkaInput, Link};
use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::json_event::parse_event;
use crate::sources::order::{admit_live, Frontier};
use crate::sources::{Parsed, Runs, SourceContext, SourceCounts};

/// Longest wait between tries to reach the brokers.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest a broker call made while assigning partitions may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One partition read by this worker.
struct Part {
    cap: Capability<u64>,
    /// One past the latest time an event was placed at (the capability's
    /// time until then).
    hi: u64,
    /// Whether everything written to the partition has been read.
    at_end: bool,
    quiet_since: Instant,
    runs: Runs,
    /// Offsets below this are read again to rebuild state: muted.
    mute_below: i64,
    /// The partition's own latest event time, which the time limits are
    /// judged against: partitions are read interleaved in any order.
    frontier: Frontier,
}

/// The operator's state.
struct Reader {
    input: Arc<KafkaInput>,
    link: Rc<Link>,
    counts: Rc<SourceCounts>,
    /// Counts of muted events, kept apart from the run's.
    muted: SourceCounts,
    parts: BTreeMap<i32, Part>,
    discovery: Capability<u64>,
    numbering: Numbering,
    worker: usize,
    peers: usize,
    activator: Activator,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Whether this worker has taken its share of the partitions the topic
    /// had when it started: until then it holds the frontier where it is,
    /// or its first events would come after the others' and be late.
    started: bool,
    /// Messages read, placed late and read again in this activation, added
    /// to the run's counters once at its end.
    tally: Tally,
}

#[derive(Default)]
struct Tally {
    read: u64,
    late: u64,
    replayed: u64,
}

type Output<'a> = timely::dataflow::operators::generic::OutputBuilderSession<
    'a,
    u64,
    CapacityContainerBuilder<Vec<Parsed>>,
>;

pub(super) fn build<'scope>(
    scope: Scope<'scope, u64>,
    input: Arc<KafkaInput>,
    link: Rc<Link>,
    context: SourceContext,
) -> Stream<'scope, u64, Vec<Parsed>> {
    let (worker, peers) = (scope.index(), scope.peers());
    source::<_, CapacityContainerBuilder<Vec<Parsed>>, _, _>(
        scope,
        "KafkaSource",
        move |cap, info| {
            let activator = scope.activator_for(info.address.clone());
            link.waker
                .set(scope.worker().sync_activator_for(info.address.to_vec()));
            input
                .hub
                .register(scope.worker().sync_activator_for(info.address.to_vec()));
            input.hub.mark_started();
            let mut reader = Some(Reader {
                input,
                link,
                counts: context.counts,
                muted: SourceCounts::default(),
                parts: BTreeMap::new(),
                discovery: cap,
                numbering: Numbering::new(worker, peers),
                worker,
                peers,
                activator,
                retry_at: None,
                backoff: Duration::from_millis(100),
                started: false,
                tally: Tally::default(),
            });
            move |output| {
                let Some(r) = reader.as_mut() else { return };
                if r.input.is_closed() {
                    // Dropping every capability lets the dataflow drain.
                    reader = None;
                    return;
                }
                r.assign_new();
                let drained = r.read(output);
                r.downgrade();
                r.schedule(drained);
            }
        },
    )
}

impl Reader {
    /// Assigns the partitions of the topic that are this worker's and not
    /// yet read, each from where [`Reader::starts`] says.
    fn assign_new(&mut self) {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let known = self.input.partitions.load(Ordering::SeqCst);
        let new: Vec<i32> = (0..known)
            .filter(|p| *p as usize % self.peers == self.worker && !self.parts.contains_key(p))
            .collect();
        if new.is_empty() {
            self.started |= known > 0;
            return;
        }
        match self.starts(&new).and_then(|starts| self.assign(starts)) {
            Ok(()) => {
                self.started = true;
                self.retry_at = None;
                self.backoff = Duration::from_millis(100);
                self.input.health.clear("assign");
            }
            Err(e) => {
                self.input.health.report("assign", e.to_string());
                self.retry_at = Some(Instant::now() + self.backoff);
                self.activator.activate_after(self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Where to start each partition, and below which offset to mute:
    /// one velocity window before the committed offset (where the commit
    /// noted it began, or else where the brokers find that time), muted up
    /// to it; the beginning where nothing was committed.
    fn starts(&self, new: &[i32]) -> Result<Vec<(i32, Offset, i64)>, crate::kafka::KafkaError> {
        let committed = self.link.committed(new, CALL_TIMEOUT)?;
        let s = &self.input.settings;
        let restore = s.restore_ms;
        let probe = restore.map_or_else(Vec::new, |_| unnoted(&committed));
        let probed = link::event_times_at(&s.brokers, &s.topic, &probe, CALL_TIMEOUT)?;
        let mut lookup = TopicPartitionList::new();
        for (&p, c) in &committed {
            if let (Some(window), Some((_, noted))) = (restore, c) {
                let time = noted.time.or_else(|| probed.get(&p).copied());
                if let (None, Some(time)) = (noted.window_start, time) {
                    let from = time.saturating_sub(window) as i64;
                    let _ = lookup
                        .add_partition(&self.link.topic, p)
                        .set_offset(Offset::Offset(from));
                }
            }
        }
        let found = if lookup.count() > 0 {
            self.link
                .consumer
                .offsets_for_times(lookup, CALL_TIMEOUT)
                .map_err(|e| crate::kafka::KafkaError::client("looking up offsets by time", e))?
        } else {
            lookup
        };
        Ok(committed
            .into_iter()
            .map(|(p, c)| match c {
                None => (p, Offset::Beginning, -1),
                Some((offset, noted)) => {
                    let looked_up = || {
                        found
                            .find_partition(&self.link.topic, p)
                            .and_then(|e| e.offset().to_raw())
                    };
                    let back = noted
                        .window_start
                        .or_else(looked_up)
                        .filter(|&o| restore.is_some() && o >= 0 && o < offset);
                    (p, Offset::Offset(back.unwrap_or(offset)), offset)
                }
            })
            .collect())
    }

    fn assign(&mut self, starts: Vec<(i32, Offset, i64)>) -> Result<(), crate::kafka::KafkaError> {
        let mut list = TopicPartitionList::new();
        for &(p, start, _) in &starts {
            let _ = list.add_partition(&self.link.topic, p).set_offset(start);
        }
        self.link
            .consumer
            .incremental_assign(&list)
            .map_err(|e| crate::kafka::KafkaError::client("assigning partitions", e))?;
        let at = *self.discovery.time();
        for (p, _, mute_below) in starts {
            self.parts.insert(
                p,
                Part {
                    cap: self.discovery.delayed(&at),
                    hi: at,
                    at_end: false,
                    quiet_since: Instant::now(),
                    runs: Runs::default(),
                    mute_below,
                    frontier: Frontier::default(),
                },
            );
        }
        Ok(())
    }

    /// Reads at most `max_batch` messages; whether the queue was drained.
    fn read(&mut self, output: &mut Output<'_>) -> bool {
        let link = Rc::clone(&self.link);
        let now = Instant::now();
        let (clock, received) = (crate::clock::now_millis(), crate::clock::now_micros());
        if link.backlog.get() > super::link::MAX_BACKLOG {
            // The sink wakes this source once the backlog is back under.
            return true;
        }
        let (mut drained, mut reading) = (false, false);
        for _ in 0..self.input.settings.max_batch {
            match link.poll() {
                // Messages may wait behind it: waiting for the callback
                // now could be forever (see `Link::queued`).
                Polled::Served => continue,
                Polled::Empty => {
                    drained = true;
                    break;
                }
                Polled::Next(Ok(m)) => {
                    reading = true;
                    self.take(&m, now, (clock, received), output);
                }
                Polled::Next(Err(RdError::PartitionEOF(p))) => {
                    if let Some(part) = self.parts.get_mut(&p) {
                        part.at_end = true;
                        part.quiet_since = now;
                    }
                }
                Polled::Next(Err(e)) => {
                    reading = false;
                    self.input.health.report("consumer", e.to_string());
                }
            }
        }
        if reading {
            // A message since the last error: the consumer reads again.
            self.input.health.clear("consumer");
        }
        self.add_tally();
        for part in self.parts.values_mut() {
            part.runs
                .flush(|time, run| output.session(&part.cap.delayed(&time)).give_container(run));
        }
        drained
    }

    /// Adds this activation's counts to the run's.
    fn add_tally(&mut self) {
        let tally = std::mem::take(&mut self.tally);
        for (counter, n) in [
            (&self.input.read, tally.read),
            (&self.input.late, tally.late),
            (&self.input.replayed, tally.replayed),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// One message: parsed (or its dead letter), placed, and noted in the
    /// partition's ledger.
    fn take(
        &mut self,
        m: &BorrowedMessage<'_>,
        now: Instant,
        (clock, received): (u64, u64),
        output: &mut Output<'_>,
    ) {
        let (p, offset) = (m.partition(), m.offset());
        let Some(part) = self.parts.get_mut(&p) else {
            return;
        };
        part.at_end = false;
        part.quiet_since = now;
        let muted = offset < part.mute_below;
        let seq = self.numbering.next_in(order_of(m), muted);
        let payload = m.payload().unwrap_or_default();
        let where_ = || format!("kafka:{}/{p}@{offset}", m.topic());
        let limits = &self.input.settings.limits;
        let parsed: Parsed = match parse_event(payload, seq) {
            Ok(mut e) => {
                e.received_us = received;
                admit_live(&mut part.frontier, e, clock, limits, |_| where_())
            }
            Err(err) => Err(Box::new(DeadLetter::parse(
                err.code(),
                err.to_string(),
                payload,
                where_(),
                seq,
            ))),
        };
        let floor = *part.cap.time();
        let place = parsed.as_ref().map_or(floor, |e| e.time_ms.max(floor));
        let counts = if muted { &self.muted } else { &*self.counts };
        if muted {
            self.tally.replayed += 1;
        } else {
            counts.read(&parsed);
            self.tally.read += 1;
        }
        let late = part.runs.place(
            parsed,
            floor,
            counts,
            |t| t,
            |time, run| output.session(&part.cap.delayed(&time)).give_container(run),
        );
        if late && !muted {
            self.tally.late += 1;
        }
        part.hi = part.hi.max(place.saturating_add(1));
        self.link.record(p, offset, place);
    }

    /// Moves each partition's capability to what it has delivered, or, when
    /// it is idle, to the run's watermark.
    fn downgrade(&mut self) {
        let watermark = self.input.hub.watermark();
        let idle = self.input.settings.idle;
        let mut latest = None;
        for part in self.parts.values_mut() {
            let quiet = part.at_end && part.quiet_since.elapsed() >= idle;
            // Active, more events of its latest time may follow: hold there.
            let target = if quiet {
                part.hi.max(watermark)
            } else {
                part.hi.saturating_sub(1)
            };
            if target > *part.cap.time() {
                part.cap.downgrade(&target);
            }
            latest = latest.max(Some(part.hi));
        }
        if let Some(hi) = latest.filter(|&hi| hi > 0) {
            self.input.placed(hi - 1);
        }
        if self.started && watermark > *self.discovery.time() {
            self.discovery.downgrade(&watermark);
        }
    }

    /// Comes back at once when messages are left, or when a partition will
    /// turn idle; otherwise librdkafka's callback wakes it (the queue was
    /// left empty, so the next message to arrive fires it).
    fn schedule(&self, drained: bool) {
        if !drained {
            self.activator.activate();
            return;
        }
        let idle = self.input.settings.idle;
        let soonest = self
            .parts
            .values()
            .filter(|p| p.at_end && *p.cap.time() < p.hi.max(self.input.hub.watermark()))
            .map(|p| idle.saturating_sub(p.quiet_since.elapsed()))
            .min();
        if let Some(wait) = soonest {
            self.activator
                .activate_after(wait.max(Duration::from_millis(1)));
        }
    }
}

/// The last committed message of each partition whose commit noted
/// nothing (some brokers keep no commit metadata): its time is found from
/// the message instead.
fn unnoted(committed: &BTreeMap<i32, link::Committed>) -> Vec<(i32, i64)> {
    committed
        .iter()
        .filter_map(|(&p, c)| match c {
            Some((offset, noted)) if *noted == link::Noted::default() && *offset > 0 => {
                Some((p, offset - 1))
            }
            _ => None,
        })
        .collect()
}

/// The publisher's place for the message in the input order, if it gave
/// one ([`super::seq::ORDER_HEADER`]).
fn order_of(m: &BorrowedMessage<'_>) -> Option<u64> {
    let headers = m.headers()?;
    let header = headers.iter().find(|h| h.key == super::seq::ORDER_HEADER)?;
    std::str::from_utf8(header.value?).ok()?.parse().ok()
}
