//! The feedback loop inside the dataflow: analysts' labels meet the
//! features their transactions were scored with, and the online model
//! learns from them.
//!
//! ```text
//! rows ──► kept by transaction id (a window of `retention`) ─┐
//!                                                            join ──► tally ──► learner ──► versions ──► score
//! feedback (HTTP, or simulated analysts in a backtest) ──────┘
//! ```
//!
//! Every step runs in event time and in a fixed order at each time, so a
//! backtest with feedback gives the same versions, at the same times, for
//! any number of workers and processes: [`join`] keeps the features and
//! the labels as windowed arrangements sharded by transaction id, [`join`]'s
//! tally counts matches, duplicates and labels that never found their
//! transaction, and [`learner`] (on worker 0) fits mini-batches, gates each
//! update on a holdout and sends the versions it promotes to every worker.
//! [`analysts`] stands in for the analysts in a backtest.

pub mod analysts;
pub mod body;
mod gate;
pub mod join;
pub mod learner;
pub mod ledger;
pub mod live;
mod replay;
pub mod settings;
pub mod store;

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::event::EventId;
use crate::features::FeatureVec;
pub use settings::{AnalystSettings, FeedbackSettings, FeedbackSettingsError, LearnerSettings};

/// One label for one transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// The transaction labelled.
    pub id: EventId,
    pub is_fraud: bool,
    /// Order of receipt: of two labels of one transaction, the later wins.
    pub seq: u64,
    /// Where the label arrived in event time (milliseconds).
    pub time: u64,
}

/// A feature vector as an ordered value, so that it can be arranged: two
/// are equal when their bits are, and ordered by `f64::total_cmp`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Kept(pub FeatureVec);

impl PartialEq for Kept {
    fn eq(&self, other: &Kept) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Kept {}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Kept) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Kept {
    fn cmp(&self, other: &Kept) -> Ordering {
        let (a, b): (&[f64], &[f64]) = (&self.0, &other.0);
        a.len().cmp(&b.len()).then_with(|| {
            a.iter()
                .zip(b)
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
    }
}

/// A label joined with its transaction's features: what the learner fits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Example {
    /// When the label met the features (event time, milliseconds).
    pub time: u64,
    /// The label's order of receipt.
    pub seq: u64,
    pub id: EventId,
    pub is_fraud: bool,
    pub values: Kept,
}

/// What the join sends the learner: examples, and each shard's counts
/// once its labels end.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tallied {
    Example(Example),
    Counts(FeedbackSummary),
}

/// What the learner did on one day of event time (the day each update
/// applies from, or would have).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DayUpdates {
    pub day: u32,
    pub updates: u64,
    pub promoted: u64,
    pub refused: u64,
    pub rolled_back: u64,
}

/// What the feedback loop did, summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FeedbackSummary {
    /// Labels that reached the join.
    pub received: u64,
    /// Labels that met their transaction's features.
    pub matched: u64,
    /// Labels whose transaction was not seen within the retention.
    pub unmatched: u64,
    /// Labels of a transaction labelled before (within the retention).
    pub duplicate: u64,
    /// Of those, labels that contradict the one before: the later wins.
    pub relabel: u64,
    /// Alerts the simulated analysts labelled, and those over their
    /// capacity, left unlabelled.
    pub analyst_labels: u64,
    pub over_capacity: u64,
    /// Missed fraud revealed by chargebacks.
    pub chargebacks: u64,
    /// Transactions presumed legitimate once their chargeback delay passed
    /// with no label (a sample of them, `presume_legit_every`).
    pub presumed_legit: u64,
    /// Mini-batches fitted, and of those, the updates promoted and refused.
    pub updates: u64,
    pub promoted: u64,
    pub refused: u64,
    /// Promoted versions that a later gate found worse than the version
    /// before them, and replaced by it.
    pub rolled_back: u64,
    /// Examples the learner fitted.
    pub examples: u64,
    /// The updates, promotions, refusals and rollbacks of each day with
    /// any, in day order. (Always written: counts cross processes in
    /// bincode, which cannot skip a field.)
    #[serde(default)]
    pub per_day: Vec<DayUpdates>,
}

impl FeedbackSummary {
    /// Adds another worker's counts.
    pub fn add(&mut self, o: &FeedbackSummary) {
        self.received += o.received;
        self.matched += o.matched;
        self.unmatched += o.unmatched;
        self.duplicate += o.duplicate;
        self.relabel += o.relabel;
        self.analyst_labels += o.analyst_labels;
        self.over_capacity += o.over_capacity;
        self.chargebacks += o.chargebacks;
        self.presumed_legit += o.presumed_legit;
        self.updates += o.updates;
        self.promoted += o.promoted;
        self.refused += o.refused;
        self.rolled_back += o.rolled_back;
        self.examples += o.examples;
        for d in &o.per_day {
            let day = self.day(d.day);
            day.updates += d.updates;
            day.promoted += d.promoted;
            day.refused += d.refused;
            day.rolled_back += d.rolled_back;
        }
    }

    /// The counts of `day`, added in day order when new.
    pub fn day(&mut self, day: u32) -> &mut DayUpdates {
        let at = match self.per_day.binary_search_by_key(&day, |d| d.day) {
            Ok(at) => at,
            Err(at) => {
                let new = DayUpdates {
                    day,
                    ..DayUpdates::default()
                };
                self.per_day.insert(at, new);
                at
            }
        };
        &mut self.per_day[at]
    }
}

/// One worker's counts, shared by its operators.
pub type Counts = std::rc::Rc<std::cell::RefCell<FeedbackSummary>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_orders_by_bits_and_treats_nan_as_a_value() {
        let a = Kept(FeatureVec::from_slice(&[1.0, 2.0]));
        let b = Kept(FeatureVec::from_slice(&[1.0, 3.0]));
        let short = Kept(FeatureVec::from_slice(&[9.0]));
        assert!(a < b);
        assert!(short < a, "the shorter vector first");
        let nan = Kept(FeatureVec::from_slice(&[f64::NAN]));
        assert_eq!(nan, nan);
        assert_ne!(
            Kept(FeatureVec::from_slice(&[0.0])),
            Kept(FeatureVec::from_slice(&[-0.0]))
        );
    }

    #[test]
    fn summaries_add_every_field() {
        let one = FeedbackSummary {
            received: 1,
            matched: 2,
            unmatched: 3,
            duplicate: 4,
            relabel: 5,
            analyst_labels: 6,
            over_capacity: 7,
            chargebacks: 8,
            presumed_legit: 14,
            updates: 9,
            promoted: 10,
            refused: 11,
            rolled_back: 12,
            examples: 13,
            per_day: Vec::new(),
        };
        let mut sum = one.clone();
        sum.add(&one);
        let doubled = serde_json::to_value(sum).unwrap();
        let single = serde_json::to_value(one).unwrap();
        for (name, v) in single.as_object().unwrap() {
            if name != "per_day" {
                assert_eq!(doubled[name], v.as_u64().unwrap() * 2, "{name}");
            }
        }
    }

    #[test]
    fn days_add_by_day_and_stay_in_day_order() {
        let counts = |day, n| DayUpdates {
            day,
            updates: n,
            promoted: n + 1,
            refused: n + 2,
            rolled_back: n + 3,
        };
        let mut sum = FeedbackSummary {
            per_day: vec![counts(2, 1), counts(5, 10)],
            ..FeedbackSummary::default()
        };
        let other = FeedbackSummary {
            per_day: vec![counts(0, 100), counts(5, 20)],
            ..FeedbackSummary::default()
        };
        sum.add(&other);
        let five = DayUpdates {
            day: 5,
            updates: 30,
            promoted: 32,
            refused: 34,
            rolled_back: 36,
        };
        assert_eq!(sum.per_day, vec![counts(0, 100), counts(2, 1), five]);
    }
}
