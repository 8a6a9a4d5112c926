//! Scoring and routing: every event's ensemble score and component scores;
//! events at or above the threshold become alerts with their reasons, the
//! rest are normal traffic.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

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
    pub step: Option<u32>,
    /// The ground truth, when the event carried one.
    pub is_fraud: Option<bool>,
    pub amount: f64,
    pub components: Components,
    pub score: f64,
    /// The alert, when the score reached the threshold (boxed: rare).
    pub alert: Option<Box<Alert>>,
    /// Microseconds from the source reading the event to its routing.
    pub latency_us: u64,
    /// When the source read the event (µs since the Unix epoch).
    pub received_us: u64,
}

/// An alert, as the anomalies sink writes it (schemas/alert_v1.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub event_id: String,
    pub seq: u64,
    /// Event time, RFC 3339 (PaySim: step hours after the epoch).
    pub event_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_fraud: Option<bool>,
}

/// Scores each row with the model version in force at its time and routes
/// it: returns the anomalies (outcomes with their alert) and the normal
/// traffic. Runs where the rows are, without exchange.
///
/// `versions` must reach every worker (broadcast): each applies from its
/// time on, so which version scores an event depends on the event's time
/// alone, never on the number of workers. Rows wait only while a version
/// for their time may still arrive; `initial` scores everything before the
/// first version.
pub fn score_and_route<'scope>(
    rows: Stream<'scope, u64, Vec<FeatureRow>>,
    versions: Stream<'scope, u64, Vec<ModelVersion>>,
    initial: Arc<Scorer>,
) -> (
    Stream<'scope, u64, Vec<Outcome>>,
    Stream<'scope, u64, Vec<Outcome>>,
) {
    let scored = rows.binary_frontier::<_, CapacityContainerBuilder<Vec<Outcome>>, _, _, _, _>(
        versions,
        Pipeline,
        Pipeline,
        "Score",
        move |_, _| {
            // Versions by the time they apply from; rows waiting for the
            // version frontier to pass their time.
            let mut known: BTreeMap<u64, Arc<Scorer>> = BTreeMap::new();
            let mut waiting: BTreeMap<u64, (Capability<u64>, Vec<FeatureRow>)> = BTreeMap::new();
            let mut components = Vec::new();
            move |(rows, _), (versions, version_frontier), output| {
                versions.for_each(|_, data| {
                    for v in data.drain(..) {
                        known.insert(v.from, Arc::new(v.scorer));
                    }
                });
                let mut score = |cap: &Capability<u64>, data: &mut Vec<FeatureRow>| {
                    let time = *cap.time();
                    let scorer = known
                        .range(..=time)
                        .next_back()
                        .map_or(&initial, |(_, s)| s);
                    let batch: Vec<&[f64]> = data.iter().map(|r| &r.values[..]).collect();
                    scorer.models.components_many(&batch, &mut components);
                    // One clock reading a batch: the batch is routed at once.
                    let now = crate::clock::now_micros();
                    let mut session = output.session(cap);
                    for (row, c) in data.drain(..).zip(&components) {
                        session.give(route(scorer, row, *c, now));
                    }
                };
                rows.for_each(|cap, data| {
                    let Some(cap) = cap.retain_least(0) else {
                        return;
                    };
                    if version_frontier.less_equal(cap.time()) {
                        let entry = waiting
                            .entry(*cap.time())
                            .or_insert_with(|| (cap, Vec::new()));
                        entry.1.append(data);
                    } else {
                        score(&cap, data);
                    }
                });
                while let Some(entry) = waiting.first_entry() {
                    if version_frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (cap, mut data) = entry.remove();
                    score(&cap, &mut data);
                }
            }
        },
    );
    scored.ok_err(|o| if o.alert.is_some() { Ok(o) } else { Err(o) })
}

fn route(scorer: &Scorer, row: FeatureRow, components: Components, now: u64) -> Outcome {
    let score = scorer.policy.weights.combine(&components);
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
    Outcome {
        alert,
        id: row.id,
        seq: row.seq,
        time_ms: row.time_ms,
        step: row.step,
        is_fraud,
        amount,
        components,
        score,
        latency_us: now.saturating_sub(row.received_us),
        received_us: row.received_us,
    }
}
