//! Quality figures, computed one way for training and for backtests: the
//! ranking metrics, precision and recall at a threshold and at a budget,
//! the fraud amount caught, per-day figures and latency percentiles.

pub mod html;
pub mod kept;
pub mod learning;
pub mod ranking;
pub mod recovery;
pub mod report;
pub mod runs;
pub mod spill;
pub mod split;
pub mod tally;
pub mod versions;

use serde::{Deserialize, Serialize};

use crate::dataflow::score::Outcome;
use ranking::{at_budget, at_threshold, at_thresholds, average_precision, roc_auc, AtThreshold};

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

/// What evaluation keeps of each scored event until the run ends: on disk,
/// by day (see [`spill`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    pub score: f64,
    pub is_fraud: Option<bool>,
    pub amount: f64,
    pub latency_us: u64,
    /// The frozen models' score, when the run compared against them.
    pub frozen: Option<f64>,
    /// The threshold that routed the event.
    pub threshold: f64,
    /// What the HTML report adds (`backtest --html`), when kept.
    pub page: Option<PageFields>,
}

/// What the HTML report needs of an event beyond its record: each
/// model's score (its curves) and when the event was read (with
/// `latency_us`, the run's throughput).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageFields {
    pub components: crate::ensemble::Components,
    /// When the event was read, µs since the Unix epoch.
    pub received_us: u64,
}

impl Record {
    /// `o`'s record, with the page's fields when `page`.
    pub fn of(o: &Outcome, page: bool) -> Record {
        Record {
            seq: o.seq,
            time_ms: o.time_ms,
            score: o.score,
            is_fraud: o.is_fraud,
            amount: o.amount,
            latency_us: o.latency_us,
            frozen: o.frozen,
            threshold: o.threshold,
            page: page.then_some(PageFields {
                components: o.components,
                received_us: o.received_us,
            }),
        }
    }

    /// When the event was routed, µs since the Unix epoch (with the
    /// page's fields).
    pub fn done_us(&self) -> Option<u64> {
        let page = self.page.as_ref()?;
        Some(page.received_us.saturating_add(self.latency_us))
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
    /// The fraud events' amounts summed; `None` (null) when the sum passes
    /// f64's largest value.
    pub fraud_amount: Option<f64>,
    /// The alerted fraud events' amounts summed, likewise.
    pub fraud_amount_caught: Option<f64>,
    /// `fraud_amount_caught / fraud_amount`, computed on scaled sums, so
    /// finite also when they are not; `None` with no fraud amount.
    pub fraud_amount_caught_share: Option<f64>,
}

/// A sum of amounts kept scaled by 2^-64: exact as the plain sum is (a
/// power of two only moves the exponent) while that is finite, and finite
/// up to 2^64 amounts of f64's largest value.
#[derive(Clone, Copy, Debug, Default)]
pub struct AmountSum {
    scaled: f64,
}

/// 2^-64.
const AMOUNT_SCALE: f64 = 1.0 / 18_446_744_073_709_551_616.0;

impl AmountSum {
    pub fn add(&mut self, amount: f64) {
        self.scaled += amount * AMOUNT_SCALE;
    }

    /// The sum; `None` when it passes f64's range.
    pub fn total(&self) -> Option<f64> {
        Some(self.scaled / AMOUNT_SCALE).filter(|v| v.is_finite())
    }

    /// `self / whole`, finite whatever the sums; `None` when `whole` is 0.
    ///
    /// ```
    /// use fraudflow::eval::AmountSum;
    /// let (mut part, mut whole) = (AmountSum::default(), AmountSum::default());
    /// for a in [f64::MAX, f64::MAX, 1.0] {
    ///     whole.add(a);
    /// }
    /// part.add(f64::MAX);
    /// assert_eq!(whole.total(), None);
    /// assert!((part.share_of(&whole).unwrap() - 0.5).abs() < 1e-12);
    /// ```
    pub fn share_of(&self, whole: &AmountSum) -> Option<f64> {
        (whole.scaled != 0.0).then(|| self.scaled / whole.scaled)
    }
}

impl Quality {
    /// `CAUGHT of TOTAL (SHARE %)` for people, saying so when a sum passes
    /// f64's range: the share, computed on scaled sums, stays true.
    ///
    /// ```
    /// use fraudflow::eval::{Quality, Record};
    /// let r = |amount, score| Record { seq: 0, time_ms: 0, score, is_fraud: Some(true), amount, latency_us: 0, frozen: None, threshold: 0.5, page: None };
    /// let q = Quality::of(&[r(f64::MAX, 0.9), r(f64::MAX, 0.1)], |_| 0.5, 0.5).unwrap();
    /// assert_eq!(q.amount_caught(), "1.797693e308 of more than 1.797693e308 (past f64's range) (50.0 %)");
    /// let q = Quality::of(&[r(10.0, 0.9), r(30.0, 0.1)], |_| 0.5, 0.5).unwrap();
    /// assert_eq!(q.amount_caught(), "10.00 of 40.00 (25.0 %)");
    /// ```
    pub fn amount_caught(&self) -> String {
        let amount = |v: Option<f64>| match v {
            Some(v) if v.abs() < 1e15 => format!("{v:.2}"),
            Some(v) => format!("{v:.6e}"),
            None => format!("more than {:.6e} (past f64's range)", f64::MAX),
        };
        let share = self.fraud_amount_caught_share.map_or_else(
            || "no fraud amount".to_string(),
            |s| format!("{:.1} %", 100.0 * s),
        );
        format!(
            "{} of {} ({share})",
            amount(self.fraud_amount_caught),
            amount(self.fraud_amount)
        )
    }

    /// Over the labelled records among `records`, each alerting at or above
    /// `threshold` of it (the threshold of the model version that scored
    /// it); `None` when none is labelled.
    pub fn of<'a>(
        records: impl IntoIterator<Item = &'a Record>,
        threshold: impl Fn(&Record) -> f64,
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
        let thresholds: Vec<f64> = labelled.iter().map(|r| threshold(r)).collect();
        let mut ranking = ranking(&scores, &labels, thresholds[0], budget);
        ranking.at_threshold = at_thresholds(&scores, &labels, &thresholds);
        let (mut amount, mut caught, mut fraud) = (AmountSum::default(), AmountSum::default(), 0);
        for (r, t) in labelled.iter().zip(&thresholds) {
            if r.is_fraud == Some(true) {
                fraud += 1;
                amount.add(r.amount);
                if r.score >= *t {
                    caught.add(r.amount);
                }
            }
        }
        Some(Quality {
            events: labelled.len() as u64,
            fraud,
            ranking,
            fraud_amount: amount.total(),
            fraud_amount_caught: caught.total(),
            fraud_amount_caught_share: caught.share_of(&amount),
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
    /// As in [`Quality`]: `None` (null) past f64's range.
    pub fraud_amount: Option<f64>,
    pub fraud_amount_caught: Option<f64>,
    /// The lowest and the highest threshold that routed the day's events:
    /// the same unless the threshold adapted or the models changed that day.
    pub threshold_low: f64,
    pub threshold_high: f64,
}

/// Figures per day, in day order, each event alerting at or above
/// `threshold` of it.
///
/// ```
/// use fraudflow::eval::{per_day, Record};
/// let r = |time_ms, score, fraud| Record { seq: 0, time_ms, score, is_fraud: Some(fraud), amount: 10.0, latency_us: 0, frozen: None, threshold: 0.5, page: None };
/// let days = per_day(&[r(0, 0.9, true), r(3_600_000, 0.1, true), r(86_400_000, 0.7, false)], |_| 0.5);
/// assert_eq!(days.len(), 2);
/// assert_eq!((days[0].events, days[0].fraud, days[0].fraud_caught), (2, 2, 1));
/// assert_eq!((days[1].alerts, days[1].fraud_amount), (1, Some(0.0)));
/// assert_eq!((days[0].threshold_low, days[0].threshold_high), (0.5, 0.5));
/// ```
pub fn per_day(records: &[Record], threshold: impl Fn(&Record) -> f64) -> Vec<Day> {
    type Sums = (Day, AmountSum, AmountSum);
    let mut days: std::collections::BTreeMap<u32, Sums> = std::collections::BTreeMap::new();
    for r in records {
        let day = r.hour() / 24;
        let (d, amount, caught) = days.entry(day).or_insert_with(|| {
            let d = Day {
                day,
                events: 0,
                alerts: 0,
                fraud: 0,
                fraud_caught: 0,
                fraud_amount: None,
                fraud_amount_caught: None,
                threshold_low: f64::INFINITY,
                threshold_high: f64::NEG_INFINITY,
            };
            (d, AmountSum::default(), AmountSum::default())
        });
        let t = threshold(r);
        let alert = r.score >= t;
        d.threshold_low = d.threshold_low.min(t);
        d.threshold_high = d.threshold_high.max(t);
        d.events += 1;
        d.alerts += u64::from(alert);
        if r.is_fraud == Some(true) {
            d.fraud += 1;
            amount.add(r.amount);
            if alert {
                d.fraud_caught += 1;
                caught.add(r.amount);
            }
        }
    }
    days.into_values()
        .map(|(d, amount, caught)| Day {
            fraud_amount: amount.total(),
            fraud_amount_caught: caught.total(),
            ..d
        })
        .collect()
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
