//! The events that move the metrics: each says what happened, and its
//! `emit` is the one place that decides which series it moves.

use std::cell::Cell;
use std::rc::Rc;

use timely::dataflow::ProbeHandle;

use super::families::{Families, NO_REASON};
use super::worker::{self, WorkerEvent, WorkerMetrics};
use super::{Metrics, ProcessEvent};
use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::score::Outcome;
use crate::sources::SourceCounts;

/// Where an event's latency is measured: see [`super::STAGES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Parse = 0,
    Features = 1,
    Route = 2,
}

/// Events left a stage: the receipt times (µs since the epoch) of each.
pub struct StageLeft<I> {
    pub stage: Stage,
    pub received_us: I,
    pub now_us: u64,
}

impl<I: Iterator<Item = u64>> WorkerEvent for StageLeft<I> {
    fn emit(self, to: &mut WorkerMetrics) {
        let histogram = &to.stages[self.stage as usize];
        for r in self.received_us {
            histogram.observe(self.now_us.saturating_sub(r) as f64 / 1e6);
        }
    }
}

/// Outcomes routed: to the alerts (`alerts`) or to normal traffic. Those
/// `counted` refuses (a Kafka run's events read again to rebuild state,
/// which go nowhere) are left out.
pub struct Routed<'a, C> {
    pub outcomes: &'a [Outcome],
    pub alerts: bool,
    pub now_us: u64,
    pub counted: C,
}

impl<C: Fn(u64) -> bool> WorkerEvent for Routed<'_, C> {
    /// One pass over the batch for the counts and latencies; alerts (a
    /// small share) once more for their reasons.
    fn emit(self, to: &mut WorkerMetrics) {
        let counted = &self.counted;
        let outcomes = || self.outcomes.iter().filter(|o| counted(o.seq));
        let histogram = &to.stages[Stage::Route as usize];
        let (mut n, mut total_us, mut last_us) = (0u64, 0u64, None);
        for o in outcomes() {
            let latency_us = self.now_us.saturating_sub(o.received_us);
            histogram.observe(latency_us as f64 / 1e6);
            (n, total_us, last_us) = (n + 1, total_us + latency_us, Some(latency_us));
        }
        let Some(last_us) = last_us else {
            return;
        };
        to.latency_ms_total.inc_by(total_us as f64 / 1e3);
        to.last_latency_ms.set(last_us as f64 / 1e3);
        if !self.alerts {
            to.normal.inc_by(n);
            return;
        }
        to.anomaly.inc_by(n);
        for o in outcomes() {
            let first = o.alert.as_deref().and_then(|a| a.reasons.first());
            to.alerts(first.map_or(NO_REASON, |r| r.feature.as_str()))
                .inc();
        }
    }
}

/// Dead letters made, by any stage; those `counted` refuses are left
/// out (see [`Routed`]).
pub struct DeadLettered<'a, C> {
    pub letters: &'a [Box<DeadLetter>],
    pub counted: C,
}

impl<C: Fn(u64) -> bool> WorkerEvent for DeadLettered<'_, C> {
    fn emit(self, to: &mut WorkerMetrics) {
        for d in self.letters.iter().filter(|d| (self.counted)(d.seq)) {
            to.dlq.inc();
            to.dead_letters(&d.code).inc();
        }
    }
}

/// A version came into force on this process (reported by its first
/// worker): `first` for the one a run starts with.
pub struct ModelInForce<'a> {
    pub version: &'a str,
    pub first: bool,
    pub unix_seconds: f64,
}

impl WorkerEvent for ModelInForce<'_> {
    fn emit(self, to: &mut WorkerMetrics) {
        to.process().emit(self);
    }
}

impl ProcessEvent for ModelInForce<'_> {
    fn emit(self, m: &Metrics) {
        let f = &m.families;
        // The new series first, then the old one gone: a scrape between
        // the two sees both, never neither.
        let mut in_force = f.in_force.lock().unwrap_or_else(|e| e.into_inner());
        f.model_info.with_label_values(&[self.version]).set(1);
        let before = in_force.replace(self.version.to_string());
        if let Some(old) = before.filter(|old| old != self.version) {
            let _ = f.model_info.remove_label_values(&[&old]);
        }
        f.model_promoted.set(self.unix_seconds);
        if !self.first {
            f.model_versions.inc();
        }
    }
}

/// The alert threshold in force changed (or was first set).
pub struct ThresholdInForce(pub f64);

impl WorkerEvent for ThresholdInForce {
    fn emit(self, to: &mut WorkerMetrics) {
        to.process().families.threshold.set(self.0);
    }
}

/// What the feedback join made of labels on one shard.
#[derive(Clone, Copy, Debug, Default)]
pub struct LabelsTallied {
    pub received: u64,
    pub matched: u64,
    pub unmatched: u64,
    pub duplicate: u64,
}

impl WorkerEvent for LabelsTallied {
    fn emit(self, to: &mut WorkerMetrics) {
        let f = &to.process().families;
        f.online_received.inc_by(self.received);
        f.online_accepted.inc_by(self.matched);
        f.online_skipped.inc_by(self.unmatched);
        f.feedback_duplicate.inc_by(self.duplicate);
    }
}

/// What the learner did with one update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A mini-batch of this many examples fitted.
    Fitted {
        batch: usize,
    },
    Promoted,
    Refused,
    RolledBack,
    /// The online model's version is now `BUNDLE+online.N` (0: the bundle,
    /// or a version from outside that later updates number from).
    Numbered(u64),
}

impl WorkerEvent for Learned {
    fn emit(self, to: &mut WorkerMetrics) {
        let f = &to.process().families;
        match self {
            Learned::Fitted { batch } => {
                f.online_updates.inc();
                f.online_last_batch.set(batch as i64);
            }
            Learned::Promoted => f.promotion_pass.inc(),
            Learned::Refused => f.promotion_fail.inc(),
            Learned::RolledBack => f.promotion_rollback.inc(),
            Learned::Numbered(n) => f.online_update_count.set(n as i64),
        }
    }
}

/// Examples waiting in the learner for its next fit.
pub struct LearnerBuffered(pub usize);

impl WorkerEvent for LearnerBuffered {
    fn emit(self, to: &mut WorkerMetrics) {
        to.process().families.online_buffer.set(self.0 as i64);
    }
}

/// `POST /feedback` was called.
pub struct FeedbackRequest;

impl ProcessEvent for FeedbackRequest {
    fn emit(self, m: &Metrics) {
        m.families.feedback_requests.inc();
    }
}

/// A message on the feedback topic that is not a label was skipped.
pub struct UnreadableLabel;

impl ProcessEvent for UnreadableLabel {
    fn emit(self, m: &Metrics) {
        m.families.feedback_unreadable.inc();
    }
}

/// What became of an accepted label (or of labels the outbox published).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKept {
    /// Sent to the feedback topic, or handed to the dataflow: this many.
    Published(u64),
    /// Not published at once: kept in the outbox for the broker's return.
    InOutbox,
    /// Could not be kept at all (answered 503).
    Refused,
}

impl ProcessEvent for LabelKept {
    fn emit(self, m: &Metrics) {
        let f = &m.families;
        match self {
            LabelKept::Published(n) => f.feedback_published.inc_by(n),
            LabelKept::InOutbox | LabelKept::Refused => f.feedback_publish_errors.inc(),
        }
    }
}

/// What a scrape reads off the process at the time: the brokers' health
/// and lag, and the outbox (Kafka runs).
pub struct Scraped<'a> {
    /// Kafka runs: whether the brokers answer, and each partition's lag.
    pub kafka: Option<(bool, &'a [(i32, i64)])>,
    /// Labels in the outbox (Kafka runs with feedback).
    pub outbox: Option<usize>,
}

impl ProcessEvent for Scraped<'_> {
    fn emit(self, m: &Metrics) {
        let Some(k) = &m.families.kafka else { return };
        if let Some((up, lags)) = self.kafka {
            k.up.set(i64::from(up));
            for (partition, lag) in lags {
                let lag = (*lag).max(0);
                k.lag.with_label_values(&[&partition.to_string()]).set(lag);
            }
        }
        if let Some(n) = self.outbox {
            k.outbox.set(n as i64);
        }
    }
}

/// Reads a source's own counts (events read, parsed, late) into this
/// worker's series at each flush.
pub fn watch_source(counts: Rc<SourceCounts>) {
    let mut before = (0u64, 0u64, 0u64);
    worker::watch(move |f: &Families, w| {
        let now = (
            counts.events_in.get(),
            counts.valid.get(),
            counts.late.get(),
        );
        let one = [w];
        f.events_in
            .with_label_values(&one)
            .inc_by(now.0.saturating_sub(before.0));
        f.events_valid
            .with_label_values(&one)
            .inc_by(now.1.saturating_sub(before.1));
        f.late
            .with_label_values(&one)
            .inc_by(now.2.saturating_sub(before.2));
        before = now;
    });
}

/// Reads the worker's event-time frontier (what `done` has seen finish)
/// and its delay behind the clock into its series at each flush; an ended
/// dataflow leaves them as they were.
pub fn watch_frontier(done: ProbeHandle<u64>) {
    worker::watch(move |f: &Families, w| {
        let Some(t) = done.with_frontier(|f| f.iter().next().copied()) else {
            return;
        };
        let delay_ms = match t {
            0 => 0,
            t => crate::clock::now_millis().saturating_sub(t),
        };
        f.frontier.with_label_values(&[w]).set(t as f64);
        f.frontier_delay
            .with_label_values(&[w])
            .set(delay_ms as f64 / 1e3);
    });
}

/// Which state a cell measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Records in a velocity window.
    Velocity,
    /// Features and labels in the feedback join's windows.
    FeedbackJoin,
}

/// A cell for the records a window holds, read into this worker's gauge
/// of `state` at each flush (several cells add up; without metric handles
/// nobody reads it).
pub fn state_gauge(state: State) -> Rc<Cell<usize>> {
    let cell = Rc::new(Cell::new(0));
    let held = Rc::clone(&cell);
    let mut before = 0i64;
    worker::watch(move |f: &Families, w| {
        let gauge = match state {
            State::Velocity => &f.velocity_state,
            State::FeedbackJoin => &f.join_state,
        };
        let now = held.get() as i64;
        gauge.with_label_values(&[w]).add(now - before);
        before = now;
    });
    cell
}
