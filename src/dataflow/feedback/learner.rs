//! The learner: mini-batch `partial_fit` of the online logistic model on
//! labelled examples, each update gated on a holdout of recent labels, the
//! promoted ones sent to every worker as model versions.
//!
//! It runs on worker 0 and in event time: it handles the examples of a
//! time once every example of that time is in, in order of receipt, so
//! that the batches, the gate's verdicts and the time each version applies
//! from depend on the data alone. A batch is fitted when it fills (the
//! version applies from 1 ms after its last example) or when its first
//! example has waited `max_wait_ms` (from then on). While it waits the
//! learner holds the version stream back only to that deadline, never to
//! the batch's first example, so scoring is not held up by a batch that is
//! slow to fill.
//!
//! In a live run it keeps what it carries from one version to the next
//! (the batch it is filling, the replay buffer, the holdout, and where a
//! restart reads the feedback topic again) with each version it sends out
//! and, between versions, in its state file ([`super::store`]); on start
//! it goes on from there.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use differential_dataflow::Hashable;
use linfa::prelude::*;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::progress::frontier::MutableAntichain;

pub use super::gate::{judge, Verdict};
use super::ledger::Ledger;
use super::replay::{design, remember, with_replay};
use super::store::{self, Carried, GateResult, HeldOut, LearnerState, StoredVersion};
use super::{Counts, Example, LearnerSettings, Tallied};
use crate::dataflow::score::{ModelVersion, Scorer};
use crate::ensemble::Components;
use crate::event::EventId;
use crate::metrics::events::{Learned, LearnerBuffered};
use crate::metrics::worker;
use crate::models::online_logistic::OnlineLogistic;
use crate::pipeline::{Abort, PipelineError};

/// Fits the online model on `examples` (gathered on worker 0) and returns
/// the versions it promotes, on worker 0, each at the time it applies
/// from. `base` is the run's other versions (broadcast): from each one's
/// time, the learner updates that version instead.
pub fn learn<'scope>(
    examples: Stream<'scope, u64, Vec<Tallied>>,
    base: Stream<'scope, u64, Vec<ModelVersion>>,
    initial: Arc<Scorer>,
    settings: LearnerSettings,
    counts: Counts,
    abort: Abort,
    flush: Option<Arc<AtomicBool>>,
) -> Stream<'scope, u64, Vec<ModelVersion>> {
    // Only worker 0 gets examples: it alone keeps the learner's state.
    let lead = examples.scope().worker().index() == 0;
    examples.binary_frontier::<_, CapacityContainerBuilder<Vec<ModelVersion>>, _, _, _, _>(
        base,
        Exchange::new(|_: &Tallied| 0),
        Pipeline,
        "Learner",
        move |cap, _| {
            // Every worker follows the frontiers; only worker 0 gets
            // examples, so only it ever emits.
            let mut cap = Some(cap);
            let mut learner = Learner::new(initial, settings, counts, abort, lead);
            let mut examples: BTreeMap<u64, Vec<Example>> = BTreeMap::new();
            let mut bases: BTreeMap<u64, Vec<Scorer>> = BTreeMap::new();
            move |(input, ex_frontier), (base, base_frontier), output| {
                input.for_each(|_, data| {
                    for tallied in data.drain(..) {
                        match tallied {
                            Tallied::Example(e) => examples.entry(e.time).or_default().push(e),
                            Tallied::Counts(c) => learner.counts.borrow_mut().add(&c),
                        }
                    }
                });
                base.for_each(|_, data| {
                    for v in data.drain(..) {
                        bases.entry(v.from).or_default().push(v.scorer);
                    }
                });
                let Some(held) = cap.as_mut() else {
                    return;
                };
                let frontier = least(ex_frontier).min(least(base_frontier));
                let mut emit = |v: ModelVersion| output.session(&held.delayed(&v.from)).give(v);
                learner.advance(frontier, &mut examples, &mut bases, &mut emit);
                // `POST /flush`: fit what is buffered, from the time held;
                // labels still on their way when it came are waited for.
                let flushing = flush.as_ref().filter(|f| f.load(Ordering::Relaxed));
                if let Some(f) = flushing.filter(|_| !learner.batch.is_empty()) {
                    f.store(false, Ordering::Relaxed);
                    let now = learner.flush_time(*held.time());
                    learner.fit(now, &mut emit);
                }
                learner.settle(frontier);
                match frontier.min(learner.deadline.unwrap_or(u64::MAX)) {
                    u64::MAX => cap = None,
                    t => held.downgrade(&t),
                }
            }
        },
    )
}

/// The least time of a frontier; `u64::MAX` when it is empty.
fn least(frontier: &MutableAntichain<u64>) -> u64 {
    frontier
        .frontier()
        .iter()
        .copied()
        .min()
        .unwrap_or(u64::MAX)
}

/// A labelled example kept for the gate, with the scores of the models the
/// learner does not change.
struct Held {
    id: EventId,
    is_fraud: bool,
    values: Vec<f64>,
    fixed: Components,
}

/// The learner's state on worker 0.
struct Learner {
    settings: LearnerSettings,
    current: Arc<Scorer>,
    /// The version the current one was fitted from, while a gate may still
    /// find the current one worse than it.
    parent: Option<Arc<Scorer>>,
    /// Name of the version updates are numbered from, and how many.
    base_name: String,
    numbered: u64,
    batch: Vec<Example>,
    /// The batch's size as last reported to the metrics.
    reported: usize,
    deadline: Option<u64>,
    holdout: VecDeque<Held>,
    /// The most recent fraud examples learned from (at most
    /// `replay_positives`), fitted again with each batch.
    replay: VecDeque<Example>,
    counts: Counts,
    abort: Abort,
    /// The feedback topic's labels, closed as their examples are taken.
    ledger: Option<Arc<Ledger>>,
    /// Whether anything kept in the state file changed since it was
    /// written.
    changed: bool,
    /// The earliest time the next version may apply from: no earlier than
    /// the last one sent (sent after it on the same stream, it wins a tie)
    /// and after the last version from outside (which comes on another
    /// stream, so a tie with it would be decided by arrival).
    floor: u64,
}

impl Learner {
    fn new(
        initial: Arc<Scorer>,
        mut settings: LearnerSettings,
        counts: Counts,
        abort: Abort,
        lead: bool,
    ) -> Learner {
        if !lead {
            settings.store = None;
            settings.resume = Default::default();
        }
        // A run that resumes from a kept version numbers on from it.
        let name = initial.model_version.clone();
        let (base_name, numbered) = match name.rsplit_once("+online.") {
            Some((base, n)) if n.parse::<u64>().is_ok() => {
                (base.to_string(), n.parse().unwrap_or(0))
            }
            _ => (name, 0),
        };
        worker::emit(Learned::Numbered(numbered));
        let carried = settings.resume.carried.clone().unwrap_or_default();
        let mut learner = Learner {
            base_name,
            current: initial,
            parent: settings.resume.parent.clone(),
            numbered,
            abort,
            ledger: settings.resume.ledger.clone(),
            settings,
            batch: carried.batch.clone(),
            reported: 0,
            deadline: carried.deadline,
            holdout: VecDeque::new(),
            replay: carried.replay.iter().cloned().collect(),
            counts,
            changed: false,
            floor: 0,
        };
        for h in &carried.holdout {
            learner.hold(h.id.clone(), h.is_fraud, h.values.clone());
        }
        learner
    }

    /// What the learner carries on to its next version, now.
    fn carried(&self) -> Carried {
        Carried {
            labels: self.ledger.as_ref().map(|l| l.resume()).unwrap_or_default(),
            batch: self.batch.clone(),
            deadline: self.deadline,
            replay: self.replay.iter().cloned().collect(),
            holdout: self
                .holdout
                .iter()
                .map(|h| HeldOut {
                    id: h.id.clone(),
                    is_fraud: h.is_fraud,
                    values: h.values.clone(),
                })
                .collect(),
        }
    }

    /// After each activation, every time before `frontier` handled:
    /// closes the topic's labels that can no longer meet their transaction
    /// (none when the run drains: the next run reads them again), keeps
    /// the state when it changed, and reports the buffer.
    fn settle(&mut self, frontier: u64) {
        if let Some(ledger) = self.ledger.as_ref().filter(|_| frontier != u64::MAX) {
            self.changed |= ledger.expire(frontier);
        }
        self.keep_state();
        self.report_buffer();
    }

    /// Writes the state file when the run keeps versions and anything in
    /// it changed; once it is on disk, the topic's offsets it names may be
    /// committed.
    fn keep_state(&mut self) {
        let Some(dir) = self.settings.store.as_ref().filter(|_| self.changed) else {
            return;
        };
        self.changed = false;
        let state = LearnerState {
            format: store::FORMAT,
            version: self.current.model_version.clone(),
            carried: self.carried(),
        };
        match store::save_state(dir, &self.base_name, &state) {
            Ok(_) => self.kept(&state.carried),
            Err(e) => self
                .abort
                .fail(PipelineError::component("keeping the learner's state", e)),
        }
    }

    /// `carried` is on disk: the ledger may commit its offsets.
    fn kept(&self, carried: &Carried) {
        if let Some(ledger) = &self.ledger {
            ledger.kept(&carried.labels);
        }
    }

    /// Handles every time before `frontier` (all of them once it is
    /// `u64::MAX`), in order: versions from outside, then a batch whose
    /// wait ends (fitted on the version from outside, after it), then the
    /// examples, in order of receipt.
    fn advance(
        &mut self,
        frontier: u64,
        examples: &mut BTreeMap<u64, Vec<Example>>,
        bases: &mut BTreeMap<u64, Vec<Scorer>>,
        emit: &mut impl FnMut(ModelVersion),
    ) {
        loop {
            let next = [
                self.deadline,
                bases.keys().next().copied(),
                examples.keys().next().copied(),
            ];
            let Some(time) = next.into_iter().flatten().min() else {
                break;
            };
            if time >= frontier && frontier != u64::MAX {
                break;
            }
            if let Some(versions) = bases.remove(&time) {
                for scorer in versions {
                    self.rebase(time, scorer);
                }
                continue;
            }
            if self.deadline == Some(time) {
                self.fit(time, emit);
                continue;
            }
            let mut batch = examples.remove(&time).unwrap_or_default();
            batch.sort();
            for example in batch {
                self.take(example, emit);
            }
        }
    }

    /// Tells the metrics how many examples wait, when that changed (only
    /// worker 0's learner gets examples: the others never report).
    fn report_buffer(&mut self) {
        if self.batch.len() != self.reported {
            self.reported = self.batch.len();
            worker::emit(LearnerBuffered(self.reported));
        }
    }

    /// A version from outside (a reload, a switch) applying from `time`:
    /// later updates start from it, and apply after it.
    fn rebase(&mut self, time: u64, scorer: Scorer) {
        self.changed = true;
        self.floor = self.floor.max(time.saturating_add(1));
        self.base_name = scorer.model_version.clone();
        self.numbered = 0;
        worker::emit(Learned::Numbered(0));
        self.current = Arc::new(scorer);
        self.parent = None;
        let held: Vec<Held> = self.holdout.drain(..).collect();
        for h in held {
            self.hold(h.id, h.is_fraud, h.values);
        }
    }

    /// One example: to the holdout (one transaction in `holdout_every`, by
    /// its id) or to the batch; the later label of a transaction replaces
    /// the earlier.
    fn take(&mut self, e: Example, emit: &mut impl FnMut(ModelVersion)) {
        self.changed = true;
        if let Some(ledger) = &self.ledger {
            ledger.taken(e.seq);
        }
        let every = self.settings.holdout_every;
        if every > 0 && e.id.hashed().is_multiple_of(every) {
            self.holdout.retain(|h| h.id != e.id);
            self.hold(e.id, e.is_fraud, e.values.0.to_vec());
            while self.holdout.len() > self.settings.holdout {
                self.holdout.pop_front();
            }
            return;
        }
        let time = e.time;
        if let Some(same) = self.batch.iter_mut().find(|b| b.id == e.id) {
            *same = e;
        } else {
            self.batch.push(e);
        }
        self.deadline
            .get_or_insert(time.saturating_add(self.settings.max_wait_ms));
        if self.batch.len() >= self.settings.batch_size {
            self.fit(time.saturating_add(1), emit);
        }
    }

    fn hold(&mut self, id: EventId, is_fraud: bool, values: Vec<f64>) {
        let mut fixed = Vec::with_capacity(1);
        self.current.models.components_many(&[&values], &mut fixed);
        if let Some(fixed) = fixed.pop() {
            self.holdout.push_back(Held {
                id,
                is_fraud,
                values,
                fixed,
            });
        }
    }

    /// Fits the batch, gates the update and, when it passes, sends it out
    /// to apply from `from`.
    fn fit(&mut self, from: u64, emit: &mut impl FnMut(ModelVersion)) {
        self.changed = true;
        self.deadline = None;
        let batch = std::mem::take(&mut self.batch);
        if batch.is_empty() {
            return;
        }
        let rows = with_replay(&batch, &self.replay);
        let (x, y) = design(&rows, self.current.models.logistic.n_features());
        let fitted = self.settings.params.check_ref().ok().and_then(|p| {
            p.fit_with(
                Some(self.current.models.logistic.clone()),
                &DatasetBase::new(x, y),
            )
            .ok()
        });
        remember(&mut self.replay, &batch, self.settings.replay_positives);
        self.counts.borrow_mut().examples += batch.len() as u64;
        self.count(from, Update::Fitted);
        worker::emit(Learned::Fitted { batch: batch.len() });
        // A batch the model refuses (a value no finite score survives) is
        // counted as refused: nothing a label carries can stop the run.
        let Some(logistic) = fitted.filter(|m| m.check().is_ok()) else {
            self.count(from, Update::Refused);
            return;
        };
        self.roll_back_if_worse(from, emit);
        let verdict = self.gate(&logistic, &self.current.models.logistic);
        if !verdict.passed {
            self.count(from, Update::Refused);
            return;
        }
        self.count(from, Update::Promoted);
        let mut candidate = (*self.current).clone();
        candidate.models.logistic = logistic;
        let candidate = self.send(candidate, from, verdict, false, emit);
        self.parent = Some(std::mem::replace(&mut self.current, candidate));
    }

    /// When `POST /flush` fits the batch, with the operator holding
    /// `held`: no earlier than that, than the versions already sent, or
    /// than just after the batch's last example (a version applies after
    /// what it learned from).
    fn flush_time(&self, held: u64) -> u64 {
        let after = self.batch.iter().map(|e| e.time.saturating_add(1));
        after.fold(held.max(self.floor), u64::max)
    }

    /// Names `scorer` as the next version, keeps it (with its metadata)
    /// when the run has a store, and sends it out to apply from `from`, or
    /// from the floor when that is later (see [`Learner::floor`]).
    fn send(
        &mut self,
        mut scorer: Scorer,
        from: u64,
        verdict: Verdict,
        rollback: bool,
        emit: &mut impl FnMut(ModelVersion),
    ) -> Arc<Scorer> {
        let from = from.max(self.floor);
        self.floor = from;
        self.numbered += 1;
        worker::emit(Learned::Numbered(self.numbered));
        scorer.model_version = format!("{}+online.{}", self.base_name, self.numbered);
        let (store, announce) = (&self.settings.store, &self.settings.announce.0);
        if store.is_some() || announce.is_some() {
            let stored = StoredVersion {
                format: store::FORMAT,
                version: scorer.model_version.clone(),
                bundle: self.base_name.clone(),
                number: self.numbered,
                parent: self.current.model_version.clone(),
                from_ms: from,
                examples_seen: scorer.models.logistic.seen(),
                gate: GateResult {
                    pr_auc: verdict.pr_auc,
                    parent_pr_auc: verdict.parent_pr_auc,
                    holdout: self.holdout.len(),
                    rollback,
                },
                logistic: scorer.models.logistic.clone(),
                carried: Carried::default(),
            };
            self.keep_version(stored);
        }
        emit(ModelVersion {
            from,
            scorer: scorer.clone(),
        });
        Arc::new(scorer)
    }

    /// Keeps `stored` with what the learner carries on from it, when the
    /// run keeps versions, then announces it (without what is carried: the
    /// learner's own, and large with a full holdout).
    fn keep_version(&self, mut stored: StoredVersion) {
        if let Some(dir) = &self.settings.store {
            stored.carried = self.carried();
            // Kept first: an announced version is always on disk.
            match store::save(dir, &stored) {
                Ok(_) => self.kept(&stored.carried),
                Err(e) => self
                    .abort
                    .fail(PipelineError::component("keeping a model version", e)),
            }
            stored.carried = Carried::default();
        }
        if let Some(announce) = &self.settings.announce.0 {
            announce(&stored);
        }
    }

    /// When the current version, on today's holdout, is worse than the one
    /// it was fitted from by more than the margin, goes back to that one.
    fn roll_back_if_worse(&mut self, from: u64, emit: &mut impl FnMut(ModelVersion)) {
        let Some(parent) = self.parent.take() else {
            return;
        };
        let verdict = self.gate(&self.current.models.logistic, &parent.models.logistic);
        if verdict.passed {
            self.parent = Some(parent);
            return;
        }
        self.count(from, Update::RolledBack);
        // Kept with the restored version's PR-AUC first.
        let restored = Verdict {
            passed: true,
            pr_auc: verdict.parent_pr_auc,
            parent_pr_auc: verdict.pr_auc,
        };
        self.current = self.send((*parent).clone(), from, restored, true, emit);
    }

    /// Counts `what` in the totals and in the day of `from`.
    fn count(&self, from: u64, what: Update) {
        match what {
            Update::Fitted => {}
            Update::Promoted => worker::emit(Learned::Promoted),
            Update::Refused => worker::emit(Learned::Refused),
            Update::RolledBack => worker::emit(Learned::RolledBack),
        }
        let mut counts = self.counts.borrow_mut();
        let total = match what {
            Update::Fitted => &mut counts.updates,
            Update::Promoted => &mut counts.promoted,
            Update::Refused => &mut counts.refused,
            Update::RolledBack => &mut counts.rolled_back,
        };
        *total += 1;
        let day = counts.day(crate::eval::split::hour_of(from) / 24);
        let daily = match what {
            Update::Fitted => &mut day.updates,
            Update::Promoted => &mut day.promoted,
            Update::Refused => &mut day.refused,
            Update::RolledBack => &mut day.rolled_back,
        };
        *daily += 1;
    }

    /// Whether `candidate` may replace `current` on the holdout: see
    /// [`judge`].
    fn gate(&self, candidate: &OnlineLogistic, current: &OnlineLogistic) -> Verdict {
        let labels: Vec<bool> = self.holdout.iter().map(|h| h.is_fraud).collect();
        let weights = self.current.policy.weights;
        let scores = |model: &OnlineLogistic| -> Vec<f64> {
            self.holdout
                .iter()
                .map(|h| {
                    let mut c = h.fixed;
                    c.logistic = model.probability(&h.values);
                    weights.combine(&c)
                })
                .collect()
        };
        judge(
            &scores(candidate),
            &scores(current),
            &labels,
            self.settings.margin,
        )
    }
}

/// What the learner counts of an update.
#[derive(Clone, Copy)]
enum Update {
    Fitted,
    Promoted,
    Refused,
    RolledBack,
}
