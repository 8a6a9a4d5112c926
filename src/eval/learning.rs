//! What online learning buys, day by day: a backtest with feedback scores
//! every event twice, with the version in force and with the models given
//! at the start, frozen (`Record::frozen`), and this table sets the two
//! side by side with the learner's updates of each day.
//!
//! Each day is judged at the budget on its own scores (the alerts a team
//! with that budget would look at that day), so the table compares
//! rankings, not thresholds: a model whose scores all drift down still
//! ranks its frauds first, and an adaptive threshold would follow it.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ranking::{at_budget, average_precision};
use super::Record;
use crate::dataflow::feedback::DayUpdates;

/// One model's figures over one day's labelled events.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DayQuality {
    pub pr_auc: Option<f64>,
    /// At the budget share of the day's own scores; `None` (null) with no
    /// labelled events, and each `None` when undefined (no positives).
    pub alerts: u64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// One day: the online and the frozen models' figures, and the updates
/// that applied from that day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LearningDay {
    pub day: u32,
    /// Labelled events, and the frauds among them.
    pub events: u64,
    pub fraud: u64,
    pub online: Option<DayQuality>,
    pub frozen: Option<DayQuality>,
    pub updates: u64,
    pub promoted: u64,
    pub refused: u64,
    pub rolled_back: u64,
}

/// The day-by-day table of `records` (their labelled events) and the
/// learner's `updates`: every day with either, in day order. A day's
/// frozen figures are `None` when its records carry no frozen score.
///
/// ```
/// use fraudflow::eval::{learning::learning_days, Record};
/// let r = |hour: u64, score, frozen, fraud| Record {
///     seq: 0, time_ms: hour * 3_600_000, score, is_fraud: Some(fraud),
///     amount: 1.0, latency_us: 0, frozen: Some(frozen), threshold: 0.5, page: None,
/// };
/// // Day 1: the online score ranks the fraud first, the frozen one last.
/// let records = [r(24, 0.9, 0.1, true), r(25, 0.2, 0.8, false), r(26, 0.1, 0.5, false)];
/// let days = learning_days(&records, 0.34, &[]);
/// let (online, frozen) = (days[0].online.unwrap(), days[0].frozen.unwrap());
/// assert_eq!((days[0].day, online.alerts, online.recall), (1, 2, Some(1.0)));
/// assert_eq!((frozen.alerts, frozen.recall), (2, Some(0.0)));
/// ```
pub fn learning_days(records: &[Record], budget: f64, updates: &[DayUpdates]) -> Vec<LearningDay> {
    let mut days: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.is_fraud.is_some()) {
        days.entry(r.hour() / 24).or_default().push(r);
    }
    let judged = days
        .into_iter()
        .map(|(day, records)| {
            let labels: Vec<bool> = records.iter().map(|r| r.is_fraud == Some(true)).collect();
            let online: Vec<f64> = records.iter().map(|r| r.score).collect();
            let frozen: Option<Vec<f64>> = records.iter().map(|r| r.frozen).collect();
            LearningDay {
                day,
                events: labels.len() as u64,
                fraud: labels.iter().filter(|l| **l).count() as u64,
                online: quality(&online, &labels, budget),
                frozen: frozen.and_then(|f| quality(&f, &labels, budget)),
                updates: 0,
                promoted: 0,
                refused: 0,
                rolled_back: 0,
            }
        })
        .collect();
    with_updates(judged, updates)
}

/// `days` (judged one at a time, in any order) with the learner's
/// `updates` set on theirs (the first entry of a day counts), and a day
/// with updates but no labelled events added: every day with either, in
/// day order.
pub fn with_updates(days: Vec<LearningDay>, updates: &[DayUpdates]) -> Vec<LearningDay> {
    let mut by_day: BTreeMap<u32, LearningDay> = days.into_iter().map(|d| (d.day, d)).collect();
    for u in updates.iter().rev() {
        let day = by_day.entry(u.day).or_insert_with(|| LearningDay {
            day: u.day,
            events: 0,
            fraud: 0,
            online: None,
            frozen: None,
            updates: 0,
            promoted: 0,
            refused: 0,
            rolled_back: 0,
        });
        day.updates = u.updates;
        day.promoted = u.promoted;
        day.refused = u.refused;
        day.rolled_back = u.rolled_back;
    }
    by_day.into_values().collect()
}

fn quality(scores: &[f64], labels: &[bool], budget: f64) -> Option<DayQuality> {
    let at = at_budget(scores, labels, budget)?;
    Some(DayQuality {
        pr_auc: average_precision(scores, labels),
        alerts: at.alerts,
        precision: at.precision,
        recall: at.recall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::rng::Rng;

    /// Precision and recall of the top `ceil(budget · n)` scores (ties at
    /// the last one included), counted directly.
    fn top_share(scores: &[f64], labels: &[bool], budget: f64) -> (u64, Option<f64>, Option<f64>) {
        let mut sorted = scores.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let k = ((scores.len() as f64 * budget).ceil() as usize).max(1);
        let cut = sorted[k - 1];
        let alerted: Vec<bool> = scores.iter().map(|s| *s >= cut).collect();
        let alerts = alerted.iter().filter(|a| **a).count() as u64;
        let caught = alerted
            .iter()
            .zip(labels)
            .filter(|(a, l)| **a && **l)
            .count() as f64;
        let fraud = labels.iter().filter(|l| **l).count() as f64;
        let precision = (alerts > 0).then(|| caught / alerts as f64);
        (alerts, precision, (fraud > 0.0).then(|| caught / fraud))
    }

    /// Records over five days, one in seven unlabelled.
    fn five_days(seed: u64) -> Vec<Record> {
        let mut rng = Rng::seed_from(seed);
        (0..3_000u64)
            .map(|i| Record {
                seq: i,
                time_ms: rng.below(5 * 86_400_000),
                score: rng.uniform(),
                is_fraud: if i % 7 == 0 {
                    None
                } else {
                    Some(rng.chance(0.05))
                },
                amount: 1.0,
                latency_us: 0,
                frozen: Some(rng.uniform()),
                threshold: 0.5,
                page: None,
            })
            .collect()
    }

    #[test]
    fn each_day_is_judged_on_its_own_scores_both_ways() {
        let records = five_days(7);
        let updates = [DayUpdates {
            day: 9,
            updates: 3,
            promoted: 2,
            refused: 1,
            rolled_back: 0,
        }];
        let days = learning_days(&records, 0.02, &updates);
        assert_eq!(
            days.iter().map(|d| d.day).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 9]
        );
        for d in &days[..5] {
            let of_day: Vec<&Record> = records
                .iter()
                .filter(|r| r.time_ms / 86_400_000 == u64::from(d.day) && r.is_fraud.is_some())
                .collect();
            let labels: Vec<bool> = of_day.iter().map(|r| r.is_fraud == Some(true)).collect();
            assert_eq!(d.events, of_day.len() as u64);
            assert_eq!(d.fraud, labels.iter().filter(|l| **l).count() as u64);
            for (q, scores) in [
                (
                    d.online.unwrap(),
                    of_day.iter().map(|r| r.score).collect::<Vec<_>>(),
                ),
                (
                    d.frozen.unwrap(),
                    of_day.iter().map(|r| r.frozen.unwrap()).collect(),
                ),
            ] {
                let (alerts, precision, recall) = top_share(&scores, &labels, 0.02);
                assert_eq!(
                    (q.alerts, q.precision, q.recall),
                    (alerts, precision, recall)
                );
                assert_eq!(q.pr_auc, average_precision(&scores, &labels));
            }
            assert_eq!((d.updates, d.promoted), (0, 0));
        }
        let nine = &days[5];
        assert_eq!((nine.events, nine.online, nine.frozen), (0, None, None));
        assert_eq!((nine.updates, nine.promoted, nine.refused), (3, 2, 1));
    }

    #[test]
    fn records_without_frozen_scores_have_no_frozen_figures() {
        let r = Record {
            seq: 0,
            time_ms: 0,
            score: 0.5,
            is_fraud: Some(true),
            amount: 1.0,
            latency_us: 0,
            frozen: None,
            page: None,
            threshold: 0.5,
        };
        let days = learning_days(&[r], 0.005, &[]);
        assert!(days[0].online.is_some());
        assert_eq!(days[0].frozen, None);
    }
}
