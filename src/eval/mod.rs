//! Quality figures, computed one way for training and for backtests: the
//! ranking metrics, precision and recall at a threshold and at a budget,
//! the fraud amount caught, per-day figures and latency percentiles.

pub mod ranking;
pub mod split;

use serde::{Deserialize, Serialize};

use crate::dataflow::score::Outcome;
use ranking::{at_budget, at_threshold, average_precision, roc_auc, AtThreshold};

/// How well scores rank labels, and what alerting on them catches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ranking {
    pub pr_auc: Option<f64>,
    pub roc_auc: Option<f64>,
    /// At the given threshold (training: the one chosen on the validation
    /// split for the budget).
    pub at_threshold: AtThreshold,
    /// At the budget share of these scores themselves.
    pub at_budget: Option<AtThreshold>,
}

/// The ranking figures of `scores` against `labels`.
///
/// ```
/// let r = fraudflow::eval::ranking(&[0.9, 0.1, 0.8, 0.2], &[true, false, false, true], 0.5, 0.25);
/// assert_eq!(r.roc_auc, Some(0.75));
/// assert_eq!(r.at_threshold.alerts, 2);
/// assert_eq!(r.at_budget.unwrap().alerts, 1);
/// ```
pub fn ranking(scores: &[f64], labels: &[bool], threshold: f64, budget: f64) -> Ranking {
    Ranking {
        pr_auc: average_precision(scores, labels),
        roc_auc: roc_auc(scores, labels),
        at_threshold: at_threshold(scores, labels, threshold),
        at_budget: at_budget(scores, labels, budget),
    }
}

/// What evaluation keeps of each scored event: small, since every event's
/// record travels to worker 0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub score: f64,
    pub is_fraud: Option<bool>,
    pub amount: f64,
    pub latency_us: u64,
}

impl Record {
    pub fn of(o: &Outcome) -> Record {
        Record {
            seq: o.seq,
            time_ms: o.time_ms,
            score: o.score,
            is_fraud: o.is_fraud,
            amount: o.amount,
            latency_us: o.latency_us,
        }
    }

    /// The split's unit: see [`split::hour_of`].
    pub fn hour(&self) -> u32 {
        split::hour_of(self.time_ms)
    }
}

/// Quality of the routing over a set of labelled events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    pub events: u64,
    pub fraud: u64,
    #[serde(flatten)]
    pub ranking: Ranking,
    pub fraud_amount: f64,
    pub fraud_amount_caught: f64,
}

impl Quality {
    /// Over the labelled records among `records`; `None` when none is.
    pub fn of<'a>(
        records: impl IntoIterator<Item = &'a Record>,
        threshold: f64,
        budget: f64,
    ) -> Option<Quality> {
        let labelled: Vec<&Record> = records
            .into_iter()
            .filter(|r| r.is_fraud.is_some())
            .collect();
        if labelled.is_empty() {
            return None;
        }
        let scores: Vec<f64> = labelled.iter().map(|r| r.score).collect();
        let labels: Vec<bool> = labelled.iter().map(|r| r.is_fraud == Some(true)).collect();
        let fraud = || labelled.iter().filter(|r| r.is_fraud == Some(true));
        Some(Quality {
            events: labelled.len() as u64,
            fraud: fraud().count() as u64,
            ranking: ranking(&scores, &labels, threshold, budget),
            fraud_amount: fraud().map(|r| r.amount).sum(),
            fraud_amount_caught: fraud()
                .filter(|r| r.score >= threshold)
                .map(|r| r.amount)
                .sum(),
        })
    }
}

/// One day of event time (24 hours from the epoch; PaySim steps 0-23 are
/// day 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Day {
    pub day: u32,
    pub events: u64,
    pub alerts: u64,
    pub fraud: u64,
    pub fraud_caught: u64,
    pub fraud_amount: f64,
    pub fraud_amount_caught: f64,
}

/// Figures per day, in day order.
///
/// ```
/// use fraudflow::eval::{per_day, Record};
/// let r = |time_ms, score, fraud| Record { seq: 0, time_ms, score, is_fraud: Some(fraud), amount: 10.0, latency_us: 0 };
/// let days = per_day(&[r(0, 0.9, true), r(3_600_000, 0.1, true), r(86_400_000, 0.7, false)], 0.5);
/// assert_eq!(days.len(), 2);
/// assert_eq!((days[0].events, days[0].fraud, days[0].fraud_caught), (2, 2, 1));
/// assert_eq!((days[1].alerts, days[1].fraud_amount), (1, 0.0));
/// ```
pub fn per_day(records: &[Record], threshold: f64) -> Vec<Day> {
    let mut days: std::collections::BTreeMap<u32, Day> = std::collections::BTreeMap::new();
    for r in records {
        let day = r.hour() / 24;
        let d = days.entry(day).or_insert_with(|| Day {
            day,
            events: 0,
            alerts: 0,
            fraud: 0,
            fraud_caught: 0,
            fraud_amount: 0.0,
            fraud_amount_caught: 0.0,
        });
        let alert = r.score >= threshold;
        d.events += 1;
        d.alerts += u64::from(alert);
        if r.is_fraud == Some(true) {
            d.fraud += 1;
            d.fraud_amount += r.amount;
            if alert {
                d.fraud_caught += 1;
                d.fraud_amount_caught += r.amount;
            }
        }
    }
    days.into_values().collect()
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl Latency {
    /// Of the given latencies (nearest rank); `None` when there are none.
    ///
    /// ```
    /// let l = fraudflow::eval::Latency::of((1..=100).collect()).unwrap();
    /// assert_eq!((l.p50, l.p95, l.p99, l.max), (51, 95, 99, 100));
    /// ```
    pub fn of(mut latencies: Vec<u64>) -> Option<Latency> {
        latencies.sort_unstable();
        let last = latencies.len().checked_sub(1)?;
        let pick = |q: f64| latencies[(last as f64 * q).round() as usize];
        Some(Latency {
            p50: pick(0.50),
            p95: pick(0.95),
            p99: pick(0.99),
            max: latencies[last],
        })
    }
}
