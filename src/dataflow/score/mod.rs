//! Scoring and routing: every event's ensemble score and component scores;
//! events at or above the threshold become alerts with their reasons, the
//! rest are normal traffic.
//!
//! A loaded bundle is checked so that every finite event scores finitely;
//! should a score still not be finite (a NaN would rank nowhere and alert
//! never), the event goes to the dead-letter sink with the code
//! `unscorable` rather than vanish, so that events in = routed + dead
//! letters holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::progress::frontier::{Antichain, MutableAntichain};

mod route;

use super::dead_letter::DeadLetter;
use super::threshold::ThresholdChange;
use super::FeatureRow;
use crate::ensemble::{Components, Models, Policy, Reason};
use crate::event::EventId;
use crate::features::Contract;
use crate::metrics::events::ThresholdInForce;
use route::route;

/// What scoring needs: the models, the policy and what names them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scorer {
    pub models: Models,
    pub policy: Policy,
    pub contract: Contract,
    pub model_version: String,
}

/// A model version and the event time from which it scores: events at
/// earlier times keep the version before it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// Event time (milliseconds) from which this version applies.
    pub from: u64,
    pub scorer: Scorer,
}

/// What changes how events are scored and routed from an event time on:
/// a model version, or the alert threshold (the adaptive threshold's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// Boxed: a version holds whole models, a threshold a number.
    Version(Box<ModelVersion>),
    Threshold(ThresholdChange),
}

/// Every event's outcome: what evaluation, the scores file and the counts
/// read. Small, so that all of them can meet on one worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub id: EventId,
    pub seq: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Where the source placed the event (see `FeatureRow::place_ms`).
    pub place_ms: u64,
    pub step: Option<u32>,
    /// The origin account: outputs are keyed by it.
    pub account: crate::paysim::AccountId,
    /// The ground truth, when the event carried one.
    pub is_fraud: Option<bool>,
    pub amount: f64,
    pub components: Components,
    pub score: f64,
    /// The score the baseline (the frozen bundle) gives the event, when
    /// the run compares against one (a backtest with feedback).
    pub frozen: Option<f64>,
    /// The threshold in force at the event's place.
    pub threshold: f64,
    /// The alert, when the score reached the threshold (boxed: rare).
    pub alert: Option<Box<Alert>>,
    /// Microseconds from the source reading the event to its routing.
    pub latency_us: u64,
    /// When the source read the event (µs since the Unix epoch).
    pub received_us: u64,
}

/// An alert, as the anomalies sink writes it (schemas/alert_v1.json).
///
/// Serialized by hand: in JSON `step` and `is_fraud` are left out when
/// absent, as the schema has them; between processes (bincode, which is not
/// self-describing) every field is always written, or the reader would
/// misread all that follows.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Alert {
    pub event_id: String,
    pub seq: u64,
    /// Event time, RFC 3339 (PaySim: step hours after the epoch).
    pub event_time: String,
    #[serde(default)]
    pub step: Option<u32>,
    pub amount: f64,
    pub score: f64,
    pub threshold: f64,
    pub scores: Components,
    pub reasons: Vec<Reason>,
    pub model_version: String,
    pub contract: Contract,
    /// The event's own label, when it carried one (backtests): never used
    /// to score.
    #[serde(default)]
    pub is_fraud: Option<bool>,
}

impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let human = serializer.is_human_readable();
        let mut s = serializer.serialize_struct("Alert", 12)?;
        s.serialize_field("event_id", &self.event_id)?;
        s.serialize_field("seq", &self.seq)?;
        s.serialize_field("event_time", &self.event_time)?;
        match self.step {
            None if human => s.skip_field("step")?,
            step => s.serialize_field("step", &step)?,
        }
        s.serialize_field("amount", &self.amount)?;
        s.serialize_field("score", &self.score)?;
        s.serialize_field("threshold", &self.threshold)?;
        s.serialize_field("scores", &self.scores)?;
        s.serialize_field("reasons", &self.reasons)?;
        s.serialize_field("model_version", &self.model_version)?;
        s.serialize_field("contract", &self.contract)?;
        match self.is_fraud {
            None if human => s.skip_field("is_fraud")?,
            label => s.serialize_field("is_fraud", &label)?,
        }
        s.end()
    }
}

/// The dead-letter code of an event that no finite score could be given.
pub const UNSCORABLE: &str = "unscorable";

/// Whose component scores scoring gives: see [`score_and_route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// Every event's: an output writes them all (live traffic, a
    /// backtest's `--scores`, its HTML report's samples).
    Every,
    /// Alerts' only: a model that the policy (and the baseline's) gives no
    /// weight is run for alerts alone, and a normal event's outcome holds
    /// NaN for it. Its score could not have changed the event's.
    Alerts,
}

/// What scoring and routing return.
pub struct Routed<'scope> {
    /// Outcomes with their alert.
    pub anomalies: Stream<'scope, u64, Vec<Outcome>>,
    /// Outcomes below the threshold.
    pub normal: Stream<'scope, u64, Vec<Outcome>>,
    /// Events without a finite score: dead letters with code
    /// [`UNSCORABLE`], stage `score`.
    pub dead: Stream<'scope, u64, Vec<Box<DeadLetter>>>,
}

/// Scores each row with the model version in force at its time and routes
/// it: returns the anomalies (outcomes with their alert), the normal
/// traffic and the unscorable events. Runs where the rows are, without
/// exchange.
///
/// `changes` (model versions and thresholds) must reach every worker
/// (broadcast): each applies from its time on, so which version scores an
/// event, and which threshold routes it, depend on the event's place in
/// event time alone (`place_ms`, which may be later than the logical time
/// it travels at), never on the number of workers. Rows wait only while a
/// change for their place may still arrive; `initial` scores and routes
/// everything before the first change (its policy's threshold until a
/// threshold change). With a `baseline`, every outcome also carries the
/// score that version would have given it (`frozen`). `shown` says whose
/// component scores must be given.
pub fn score_and_route<'scope>(
    rows: Stream<'scope, u64, Vec<FeatureRow>>,
    changes: Stream<'scope, u64, Vec<Change>>,
    (initial, baseline): (Arc<Scorer>, Option<Arc<Scorer>>),
    shown: Shown,
) -> Routed<'scope> {
    let mut builder = OperatorBuilder::new("Score".to_owned(), rows.scope());
    let (output, scored) = builder.new_output();
    let mut output = OutputBuilder::<_, CapacityContainerBuilder<Vec<Scored>>>::from(output);
    let mut rows_in = builder.new_input(rows, Pipeline);
    // Changes change what a row scores, never when it may be sent: every
    // output goes at a row's own time. So the changes hold no output back,
    // and a loop from the outputs back to them (the feedback loop, the
    // adaptive threshold) ends once the rows do.
    let no_path: Vec<(usize, Antichain<u64>)> = Vec::new();
    let mut changes_in = builder.new_input_connection(changes, Pipeline, no_path);
    builder.build(move |_| {
        let initial = Version::of(initial, baseline.as_deref());
        let mut scoring = Scoring {
            initial,
            baseline,
            known: BTreeMap::new(),
            thresholds: BTreeMap::new(),
            waiting: BTreeMap::new(),
            components: Vec::new(),
            shown,
        };
        move |frontiers| {
            let (row_frontier, version_frontier) = (&frontiers[0], &frontiers[1]);
            let mut output = output.activate();
            changes_in.for_each(|_, data| scoring.change(data.drain(..)));
            let mut ready = Vec::new();
            rows_in.for_each(|cap, data| {
                if let Some(cap) = cap.retain_least(0) {
                    scoring.admit(cap, data, version_frontier, &mut ready);
                }
            });
            scoring.release(version_frontier, &mut ready);
            for (cap, mut data) in ready {
                let mut session = output.session(&cap);
                scoring.score(&mut data, |s| session.give(s));
            }
            scoring.forget(row_frontier);
        }
    });
    let (outcomes, dead): (Stream<'scope, u64, Vec<Outcome>>, _) = scored.ok_err(|r| r);
    // Routing, not an error: both sides are whole outcomes, moved.
    #[allow(clippy::result_large_err)]
    let (anomalies, normal) =
        outcomes.ok_err(|o: Outcome| if o.alert.is_some() { Ok(o) } else { Err(o) });
    Routed {
        anomalies,
        normal,
        dead,
    }
}

type Scored = Result<Outcome, Box<DeadLetter>>;

/// The scoring operator's state: versions by the time they apply from,
/// and rows waiting for the version frontier to pass the latest of their
/// places.
struct Scoring {
    initial: Version,
    baseline: Option<Arc<Scorer>>,
    known: BTreeMap<u64, Version>,
    /// Thresholds by the time they apply from (none: each version's own).
    thresholds: BTreeMap<u64, f64>,
    waiting: BTreeMap<u64, Waiting>,
    components: Vec<Components>,
    shown: Shown,
}

impl Scoring {
    fn change(&mut self, changes: impl Iterator<Item = Change>) {
        for change in changes {
            match change {
                Change::Version(v) => {
                    let ModelVersion { from, scorer } = *v;
                    let version = Version::of(Arc::new(scorer), self.baseline.as_deref());
                    self.known.insert(from, version);
                }
                Change::Threshold(t) => {
                    crate::metrics::worker::emit(ThresholdInForce(t.threshold));
                    self.thresholds.insert(t.from, t.threshold);
                }
            }
        }
    }

    /// Rows that may score now go to `ready`; the others wait.
    fn admit(
        &mut self,
        cap: Capability<u64>,
        data: &mut Vec<FeatureRow>,
        versions: &MutableAntichain<u64>,
        ready: &mut Vec<(Capability<u64>, Vec<FeatureRow>)>,
    ) {
        let latest = data.iter().map(|r| r.place_ms).max().unwrap_or(0);
        if versions.less_equal(&latest) {
            let entry = self
                .waiting
                .entry(*cap.time())
                .or_insert_with(|| (cap, Vec::new(), 0));
            entry.1.append(data);
            entry.2 = entry.2.max(latest);
        } else {
            ready.push((cap, std::mem::take(data)));
        }
    }

    /// Waiting rows whose versions are all in, in time order.
    fn release(
        &mut self,
        versions: &MutableAntichain<u64>,
        ready: &mut Vec<(Capability<u64>, Vec<FeatureRow>)>,
    ) {
        while let Some(entry) = self.waiting.first_entry() {
            if versions.less_equal(&entry.get().2) {
                break;
            }
            let (cap, data, _) = entry.remove();
            ready.push((cap, data));
        }
    }

    fn score(&mut self, data: &mut Vec<FeatureRow>, give: impl FnMut(Scored)) {
        let groups = by_version(&self.known, &self.initial, data);
        let base = self.baseline.as_deref();
        let (thresholds, shown) = (&self.thresholds, self.shown);
        score_groups(
            groups,
            base,
            (thresholds, shown),
            &mut self.components,
            give,
        );
    }

    /// Every row still to score is placed at or after the least of the
    /// row frontier and the waiting times: the versions before the one in
    /// force there are done with (an online learner may send thousands).
    fn forget(&mut self, rows: &MutableAntichain<u64>) {
        let next = rows.frontier().iter().copied().min();
        let low = next.into_iter().chain(self.waiting.keys().copied()).min();
        if let Some(low) = low {
            prune(&mut self.known, low);
            prune(&mut self.thresholds, low);
        }
    }
}

/// Drops the entries of `by_from` before the one in force at `low`.
fn prune<V>(by_from: &mut BTreeMap<u64, V>, low: u64) {
    let keep = by_from.range(..=low).next_back().map(|(k, _)| *k);
    let first = by_from.first_key_value().map(|(k, _)| *k);
    if let Some(keep) = keep.filter(|k| first.is_some_and(|f| f < *k)) {
        *by_from = by_from.split_off(&keep);
    }
}

/// A version as scoring keeps it: with a baseline, whether it shares the
/// baseline's forest and autoencoder (an online update does), so that the
/// baseline's score of a row needs only the baseline's logistic model.
#[derive(Clone)]
struct Version {
    scorer: Arc<Scorer>,
    shares_unsupervised: bool,
}

impl Version {
    fn of(scorer: Arc<Scorer>, baseline: Option<&Scorer>) -> Version {
        let shares_unsupervised = baseline.is_some_and(|b| {
            b.models.isolation_forest == scorer.models.isolation_forest
                && b.models.autoencoder == scorer.models.autoencoder
        });
        Version {
            scorer,
            shares_unsupervised,
        }
    }
}

/// Scores and routes each group of rows with its version, a batch at a time.
/// Each row is routed at the threshold in force at its place: the latest
/// of `thresholds` there, else its version's own.
fn score_groups(
    groups: Vec<(Version, Vec<FeatureRow>)>,
    baseline: Option<&Scorer>,
    (thresholds, shown): (&BTreeMap<u64, f64>, Shown),
    components: &mut Vec<Components>,
    mut give: impl FnMut(Result<Outcome, Box<DeadLetter>>),
) {
    let mut frozen = Vec::new();
    let unweighted = |s: &Scorer| s.policy.weights.autoencoder == 0.0;
    for (version, rows) in groups {
        let batch: Vec<&[f64]> = rows.iter().map(|r| &r.values[..]).collect();
        let models = &version.scorer.models;
        let lazy = shown == Shown::Alerts
            && unweighted(&version.scorer)
            && baseline.is_none_or(unweighted);
        if lazy {
            models.components_without_autoencoder(&batch, components);
        } else {
            models.components_many(&batch, components);
        }
        frozen_scores(baseline, &version, &batch, components, &mut frozen);
        // One clock reading a batch: the batch is routed at once.
        let now = crate::clock::now_micros();
        let own = version.scorer.policy.threshold;
        let scored = rows.into_iter().zip(components.iter()).zip(&frozen);
        for ((row, c), f) in scored {
            let at = thresholds.range(..=row.place_ms).next_back();
            let threshold = at.map_or(own, |(_, t)| *t);
            give(route(&version.scorer, row, (*c, lazy), *f, threshold, now));
        }
    }
}

/// The baseline's score of each row of `batch` (all `None` without a
/// baseline), given the components `version` gave them.
fn frozen_scores(
    baseline: Option<&Scorer>,
    version: &Version,
    batch: &[&[f64]],
    components: &[Components],
    out: &mut Vec<Option<f64>>,
) {
    out.clear();
    let Some(base) = baseline else {
        out.resize(batch.len(), None);
        return;
    };
    let weights = base.policy.weights;
    if std::ptr::eq(base, &*version.scorer) {
        // The baseline itself scores: its components are already there.
        out.extend(components.iter().map(|c| Some(weights.combine(c))));
    } else if version.shares_unsupervised {
        let frozen = batch.iter().zip(components).map(|(row, c)| {
            let logistic = base.models.logistic.probability(row);
            Some(weights.combine(&Components { logistic, ..*c }))
        });
        out.extend(frozen);
    } else {
        let mut own = Vec::with_capacity(batch.len());
        base.models.components_many(batch, &mut own);
        out.extend(own.iter().map(|c| Some(weights.combine(c))));
    }
}

/// Rows of one logical time waiting for their versions, with the latest of
/// their places.
type Waiting = (Capability<u64>, Vec<FeatureRow>, u64);

/// The rows of a batch with the version in force at each one's place: one
/// group when no version starts among their places (the common case), else
/// sorted by place and split where versions start.
fn by_version(
    known: &BTreeMap<u64, Version>,
    initial: &Version,
    data: &mut Vec<FeatureRow>,
) -> Vec<(Version, Vec<FeatureRow>)> {
    let at = |place: u64| {
        let found = known.range(..=place).next_back();
        found.map_or((0, initial), |(from, s)| (*from, s))
    };
    let (first, last) = data.iter().fold((u64::MAX, 0), |(lo, hi), r| {
        (lo.min(r.place_ms), hi.max(r.place_ms))
    });
    if data.is_empty() || at(first).0 == at(last).0 {
        let version = at(first).1.clone();
        return vec![(version, std::mem::take(data))];
    }
    data.sort_by_key(|r| r.place_ms);
    let mut groups: Vec<(u64, Version, Vec<FeatureRow>)> = Vec::new();
    for row in data.drain(..) {
        let (from, version) = at(row.place_ms);
        match groups.last_mut() {
            Some(g) if g.0 == from => g.2.push(row),
            _ => groups.push((from, version.clone(), vec![row])),
        }
    }
    groups.into_iter().map(|(_, s, rows)| (s, rows)).collect()
}

#[cfg(test)]
mod tests;
