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

use super::dead_letter::DeadLetter;
use super::FeatureRow;
use crate::ensemble::{Components, Models, Policy, Reason};
use crate::event::EventId;
use crate::features::Contract;

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
/// `versions` must reach every worker (broadcast): each applies from its
/// time on, so which version scores an event depends on the event's place
/// in event time alone (`place_ms`, which may be later than the logical
/// time it travels at), never on the number of workers. Rows wait only
/// while a version for their place may still arrive; `initial` scores
/// everything before the first version. With a `baseline`, every outcome
/// also carries the score that version would have given it (`frozen`).
pub fn score_and_route<'scope>(
    rows: Stream<'scope, u64, Vec<FeatureRow>>,
    versions: Stream<'scope, u64, Vec<ModelVersion>>,
    initial: Arc<Scorer>,
    baseline: Option<Arc<Scorer>>,
) -> Routed<'scope> {
    let mut builder = OperatorBuilder::new("Score".to_owned(), rows.scope());
    let (output, scored) = builder.new_output();
    let mut output = OutputBuilder::<_, CapacityContainerBuilder<Vec<Scored>>>::from(output);
    let mut rows_in = builder.new_input(rows, Pipeline);
    // Versions change what a row scores, never when it may be sent: every
    // output goes at a row's own time. So the versions hold no output back,
    // and a loop from the outputs back to the versions (the feedback loop)
    // ends once the rows do.
    let no_path: Vec<(usize, Antichain<u64>)> = Vec::new();
    let mut versions_in = builder.new_input_connection(versions, Pipeline, no_path);
    builder.build(move |_| {
        let initial = Version::of(initial, baseline.as_deref());
        let mut scoring = Scoring {
            initial,
            baseline,
            known: BTreeMap::new(),
            waiting: BTreeMap::new(),
            components: Vec::new(),
        };
        move |frontiers| {
            let (row_frontier, version_frontier) = (&frontiers[0], &frontiers[1]);
            let mut output = output.activate();
            versions_in.for_each(|_, data| {
                for v in data.drain(..) {
                    let version = Version::of(Arc::new(v.scorer), scoring.baseline.as_deref());
                    scoring.known.insert(v.from, version);
                }
            });
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
    waiting: BTreeMap<u64, Waiting>,
    components: Vec<Components>,
}

impl Scoring {
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
        score_groups(groups, self.baseline.as_deref(), &mut self.components, give);
    }

    /// Every row still to score is placed at or after the least of the
    /// row frontier and the waiting times: the versions before the one in
    /// force there are done with (an online learner may send thousands).
    fn forget(&mut self, rows: &MutableAntichain<u64>) {
        let next = rows.frontier().iter().copied().min();
        let low = next.into_iter().chain(self.waiting.keys().copied()).min();
        let keep = low.and_then(|low| self.known.range(..=low).next_back().map(|(k, _)| *k));
        let first = self.known.first_key_value().map(|(k, _)| *k);
        if let Some(keep) = keep.filter(|k| first.is_some_and(|f| f < *k)) {
            self.known = self.known.split_off(&keep);
        }
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
fn score_groups(
    groups: Vec<(Version, Vec<FeatureRow>)>,
    baseline: Option<&Scorer>,
    components: &mut Vec<Components>,
    mut give: impl FnMut(Result<Outcome, Box<DeadLetter>>),
) {
    let mut frozen = Vec::new();
    for (version, rows) in groups {
        let batch: Vec<&[f64]> = rows.iter().map(|r| &r.values[..]).collect();
        version.scorer.models.components_many(&batch, components);
        frozen_scores(baseline, &version, &batch, components, &mut frozen);
        // One clock reading a batch: the batch is routed at once.
        let now = crate::clock::now_micros();
        let scored = rows.into_iter().zip(components.iter()).zip(&frozen);
        for ((row, c), f) in scored {
            give(route(&version.scorer, row, *c, *f, now));
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
    if version.shares_unsupervised {
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

/// The first of an event's features and scores that is not finite, by
/// name and value.
fn not_finite(scorer: &Scorer, row: &FeatureRow, c: &Components, score: f64) -> Option<String> {
    // Checked before anything is formatted: this runs for every event.
    let names = scorer.contract.names();
    if let Some((j, v)) = row.values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let name = names.get(j).copied().unwrap_or("?");
        return Some(format!("feature {name} is {v}"));
    }
    [
        ("isolation_forest", c.isolation_forest),
        ("autoencoder", c.autoencoder),
        ("logistic", c.logistic),
        ("ensemble", score),
    ]
    .into_iter()
    .find(|(_, v)| !v.is_finite())
    .map(|(model, v)| format!("{model} score is {v}"))
}

/// The dead letter of an event that could not be scored finitely.
fn unscorable(scorer: &Scorer, row: &FeatureRow, why: String) -> Box<DeadLetter> {
    let names = scorer.contract.names();
    let features: serde_json::Map<String, serde_json::Value> = row
        .values
        .iter()
        .enumerate()
        .map(|(j, v)| {
            let name = names.get(j).copied().unwrap_or("?").to_string();
            // JSON has no NaN or infinity: such a value is written as text.
            let value = serde_json::Number::from_f64(*v)
                .map_or_else(|| v.to_string().into(), serde_json::Value::Number);
            (name, value)
        })
        .collect();
    let raw = serde_json::json!({ "event_id": row.id.to_string(), "features": features });
    Box::new(DeadLetter {
        code: UNSCORABLE.to_string(),
        stage: "score".to_string(),
        message: format!(
            "event {} has no finite score under model version {}: {why}",
            row.id, scorer.model_version
        ),
        raw: raw.to_string(),
        source: format!("event:{}", row.id),
        seq: row.seq,
        received_at: crate::clock::now_rfc3339(),
    })
}

fn route(
    scorer: &Scorer,
    row: FeatureRow,
    components: Components,
    frozen: Option<f64>,
    now: u64,
) -> Result<Outcome, Box<DeadLetter>> {
    let score = scorer.policy.weights.combine(&components);
    if let Some(why) = not_finite(scorer, &row, &components, score) {
        return Err(unscorable(scorer, &row, why));
    }
    let is_fraud = row.label.map(|l| l.is_fraud);
    let amount = row.values.first().copied().unwrap_or(0.0);
    let alert = (score >= scorer.policy.threshold).then(|| {
        Box::new(Alert {
            event_id: row.id.to_string(),
            seq: row.seq,
            event_time: crate::clock::format_millis(row.time_ms as i64),
            step: row.step,
            amount,
            score,
            threshold: scorer.policy.threshold,
            scores: components,
            reasons: scorer.models.reasons(scorer.contract, &row.values),
            model_version: scorer.model_version.clone(),
            contract: scorer.contract,
            is_fraud,
        })
    });
    Ok(Outcome {
        alert,
        id: row.id,
        seq: row.seq,
        time_ms: row.time_ms,
        place_ms: row.place_ms,
        step: row.step,
        account: row.account,
        is_fraud,
        amount,
        components,
        score,
        frozen,
        latency_us: now.saturating_sub(row.received_us),
        received_us: row.received_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(step: Option<u32>, is_fraud: Option<bool>) -> Alert {
        Alert {
            event_id: "e1".into(),
            seq: 7,
            event_time: "2024-03-01T12:00:00Z".into(),
            step,
            amount: 5.0,
            score: 0.9,
            threshold: 0.5,
            scores: Components::default(),
            reasons: Vec::new(),
            model_version: "v".into(),
            contract: Contract::V2,
            is_fraud,
        }
    }

    #[test]
    fn an_alert_without_step_or_label_crosses_processes_and_leaves_them_out_of_json() {
        for a in [
            alert(None, None),
            alert(Some(3), None),
            alert(None, Some(true)),
        ] {
            let wire = bincode::serialize(&a).unwrap();
            assert_eq!(bincode::deserialize::<Alert>(&wire).unwrap(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json.contains("\"step\""), a.step.is_some(), "{json}");
            assert_eq!(json.contains("is_fraud"), a.is_fraud.is_some(), "{json}");
            assert_eq!(serde_json::from_str::<Alert>(&json).unwrap(), a);
        }
    }

    /// Three small models fitted on seven features, for the V1 contract.
    fn scorer(weights: crate::ensemble::Weights) -> Scorer {
        use crate::models::autoencoder::AutoencoderParams;
        use crate::models::isolation_forest::IsolationForestParams;
        use crate::models::online_logistic::OnlineLogisticParams;
        use linfa::prelude::*;
        let x = ndarray::Array2::from_shape_fn((60, 7), |(i, j)| ((i * 7 + j) % 11) as f64);
        let y: ndarray::Array1<bool> = (0..60).map(|i| i % 6 == 0).collect();
        let models = Models {
            isolation_forest: IsolationForestParams::default()
                .n_trees(5)
                .fit(&DatasetBase::from(x.clone()))
                .unwrap(),
            autoencoder: AutoencoderParams::default()
                .epochs(1)
                .fit(&DatasetBase::from(x.clone()))
                .unwrap(),
            logistic: OnlineLogisticParams::default()
                .fit(&DatasetBase::new(x, y))
                .unwrap(),
        };
        Scorer {
            models,
            policy: Policy {
                weights,
                threshold: 0.5,
            },
            contract: Contract::V1,
            model_version: "test".into(),
        }
    }

    fn row(values: &[f64]) -> FeatureRow {
        FeatureRow {
            account: crate::paysim::AccountId::from_name("C1"),
            id: crate::event::EventId::Row(42),
            seq: 42,
            time_ms: 0,
            place_ms: 0,
            step: Some(0),
            received_us: 0,
            label: None,
            values: crate::features::FeatureVec::from_slice(values),
        }
    }

    #[test]
    fn an_event_without_a_finite_score_is_a_dead_letter_not_a_lost_event() {
        let good = scorer(crate::ensemble::Weights::ORIGINAL);
        let extreme = [1e39, f64::MAX, -f64::MAX, 1.0, 0.0, 23.0, 1e300];
        let scored = |scorer: &Scorer, values: &[f64]| {
            let row = row(values);
            let mut components = Vec::new();
            scorer
                .models
                .components_many(&[&row.values[..]], &mut components);
            route(scorer, row, components[0], None, 0)
        };
        let outcome = scored(&good, &extreme).unwrap();
        assert!((0.0..=1.0).contains(&outcome.score), "{outcome:?}");

        // A NaN feature (no parser lets one through) or weights that no
        // load would accept: the event is a dead letter, named.
        let mut nan = extreme;
        nan[2] = f64::NAN;
        let dead = scored(&good, &nan).unwrap_err();
        assert_eq!(
            (dead.code.as_str(), dead.stage.as_str()),
            (UNSCORABLE, "score")
        );
        assert_eq!((dead.seq, dead.source.as_str()), (42, "event:42"));
        assert!(
            dead.message.contains("feature balance_diff_orig is NaN"),
            "{}",
            dead.message
        );
        assert!(
            dead.raw.contains("\"balance_diff_orig\":\"NaN\""),
            "{}",
            dead.raw
        );
        let bad = scorer(crate::ensemble::Weights {
            isolation_forest: f64::INFINITY,
            autoencoder: 0.0,
            logistic: 0.0,
        });
        let dead = scored(&bad, &[1.0; 7]).unwrap_err();
        assert!(
            dead.message.contains("ensemble score is"),
            "{}",
            dead.message
        );
    }
}
