//! [`Quality`] and [`Latency`] taken event by event, for a report that
//! reads a run's records one day at a time ([`super::spill`]) instead of
//! holding them all: counts and sums as the events come, the ranking
//! through sorted runs on disk ([`super::runs`]), latencies as a count of
//! each value. The figures are those of [`Quality::of`] and
//! [`Latency::of`] over the same records in the same order (sums are
//! taken in the order the records are added).

use std::collections::BTreeMap;

use super::runs::RankRuns;
use super::spill::SpillError;
use super::{AmountSum, Latency, Quality, Ranking, Record};
use crate::eval::ranking::AtThreshold;

/// [`Quality::of`] over the labelled records added, each alerting at or
/// above its own threshold.
///
/// ```
/// use fraudflow::eval::{runs::RankRuns, tally::QualityTally, Quality, Record};
/// let dir = std::env::temp_dir().join(format!("tally-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let r = |score, fraud, threshold| Record { seq: 0, time_ms: 0, score, is_fraud: fraud, amount: 3.0, latency_us: 0, frozen: None, threshold, page: None };
/// let records = [r(0.9, Some(true), 0.5), r(0.6, Some(false), 0.7), r(0.2, None, 0.5), r(0.1, Some(true), 0.5)];
/// let mut tally = QualityTally::new(RankRuns::new(&dir, "doc"));
/// records.iter().try_for_each(|r| tally.add(r)).unwrap();
/// let want = Quality::of(&records, |r| r.threshold, 0.5);
/// assert_eq!(format!("{:?}", tally.finish(0.5).unwrap()), format!("{want:?}"));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug)]
pub struct QualityTally {
    runs: RankRuns,
    events: u64,
    fraud: u64,
    alerts: u64,
    caught: u64,
    /// The first labelled record's threshold, and whether every one since
    /// equals it.
    threshold: Option<(f64, bool)>,
    amount: AmountSum,
    amount_caught: AmountSum,
}

impl QualityTally {
    pub fn new(runs: RankRuns) -> QualityTally {
        QualityTally {
            runs,
            events: 0,
            fraud: 0,
            alerts: 0,
            caught: 0,
            threshold: None,
            amount: AmountSum::default(),
            amount_caught: AmountSum::default(),
        }
    }

    /// Counts `r` when it is labelled.
    pub fn add(&mut self, r: &Record) -> Result<(), SpillError> {
        let Some(fraud) = r.is_fraud else {
            return Ok(());
        };
        let t = r.threshold;
        let (first, agree) = self.threshold.get_or_insert((t, true));
        *agree &= t == *first;
        let alert = r.score >= t;
        self.events += 1;
        self.alerts += u64::from(alert);
        if fraud {
            self.fraud += 1;
            self.caught += u64::from(alert);
            self.amount.add(r.amount);
            if alert {
                self.amount_caught.add(r.amount);
            }
        }
        self.runs.push(r.score, fraud)
    }

    /// The quality of what was added, ranked at `budget`; `None` when
    /// nothing labelled was.
    pub fn finish(self, budget: f64) -> Result<Option<Quality>, SpillError> {
        let Some((first, agree)) = self.threshold else {
            return Ok(None);
        };
        let ranked = self.runs.rank(budget)?;
        let (alerts, caught, fraud) = (self.alerts, self.caught, self.fraud);
        let threshold = if agree { first } else { f64::NAN };
        let at_threshold = AtThreshold::counted(threshold, alerts, caught, fraud);
        Ok(Some(Quality {
            events: self.events,
            fraud,
            ranking: Ranking {
                pr_auc: ranked.pr_auc,
                roc_auc: ranked.roc_auc,
                at_threshold,
                at_budget: ranked.at_budget,
            },
            fraud_amount: self.amount.total(),
            fraud_amount_caught: self.amount_caught.total(),
            fraud_amount_caught_share: self.amount_caught.share_of(&self.amount),
        }))
    }
}

/// Latencies as a count of each value: [`Latency::of`] without holding
/// one number an event (a backtest's latencies take few distinct values).
///
/// ```
/// use fraudflow::eval::{tally::Latencies, Latency};
/// let mut l = Latencies::default();
/// (1..=100).rev().for_each(|v| l.add(v));
/// assert_eq!(l.latency(), Latency::of((1..=100).collect()));
/// assert_eq!((l.count(), l.counts().len()), (100, 100));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latencies {
    counts: BTreeMap<u64, u64>,
    n: u64,
}

impl Latencies {
    pub fn add(&mut self, latency_us: u64) {
        *self.counts.entry(latency_us).or_default() += 1;
        self.n += 1;
    }

    /// The percentiles, nearest rank as [`Latency::of`]; `None` for none.
    pub fn latency(&self) -> Option<Latency> {
        let last = self.n.checked_sub(1)?;
        let place = |q: f64| (last as f64 * q).round() as u64;
        let places = [place(0.50), place(0.95), place(0.99), last];
        let mut found = [0u64; 4];
        let mut below = 0u64;
        for (&value, &count) in &self.counts {
            for (p, f) in places.iter().zip(found.iter_mut()) {
                if (below..below + count).contains(p) {
                    *f = value;
                }
            }
            below += count;
        }
        Some(Latency {
            p50: found[0],
            p95: found[1],
            p99: found[2],
            max: found[3],
        })
    }

    /// Each latency and how many events took it, in increasing order
    /// (the HTML report's histogram).
    pub fn counts(&self) -> Vec<(u64, u64)> {
        self.counts.iter().map(|(&v, &n)| (v, n)).collect()
    }

    /// Latencies added.
    pub fn count(&self) -> u64 {
        self.n
    }
}

impl FromIterator<u64> for Latencies {
    fn from_iter<I: IntoIterator<Item = u64>>(latencies_us: I) -> Latencies {
        let mut l = Latencies::default();
        latencies_us.into_iter().for_each(|v| l.add(v));
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::rng::Rng;

    fn records(seed: u64, n: u64, thresholds: &[f64]) -> Vec<Record> {
        let mut rng = Rng::seed_from(seed);
        (0..n)
            .map(|seq| Record {
                seq,
                time_ms: seq * 1000,
                score: (rng.below(50) as f64) / 50.0,
                is_fraud: match rng.below(10) {
                    0 => None,
                    1 => Some(true),
                    _ => Some(false),
                },
                amount: rng.uniform() * 1e6,
                latency_us: rng.below(5000),
                frozen: None,
                threshold: thresholds[rng.below(thresholds.len() as u64) as usize],
                page: None,
            })
            .collect()
    }

    #[test]
    fn the_tally_gives_quality_of_bit_for_bit_with_one_threshold_or_several() {
        for (seed, thresholds, limit) in [
            (1, &[0.5][..], 100),
            (2, &[0.3, 0.7][..], 1000),
            (3, &[f64::NAN][..], 64),
        ] {
            let rs = records(seed, 3000, thresholds);
            let dir = tempfile::tempdir().unwrap();
            let mut tally = QualityTally::new(RankRuns::new(dir.path(), "q").with_limit(limit));
            rs.iter().try_for_each(|r| tally.add(r)).unwrap();
            let got = tally.finish(0.01).unwrap();
            let want = Quality::of(&rs, |r| r.threshold, 0.01);
            // Debug prints every float in full (NaN included).
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "seed {seed}");
        }
        let dir = tempfile::tempdir().unwrap();
        let tally = QualityTally::new(RankRuns::new(dir.path(), "q"));
        assert!(tally.finish(0.01).unwrap().is_none());
    }

    #[test]
    fn latencies_give_latency_of() {
        for seed in 0..20 {
            let mut rng = Rng::seed_from(seed);
            let values: Vec<u64> = (0..rng.below(300) + 1).map(|_| rng.below(40)).collect();
            let mut l = Latencies::default();
            values.iter().for_each(|v| l.add(*v));
            assert_eq!(l.latency(), Latency::of(values.clone()), "seed {seed}");
            let mut sorted = values;
            sorted.sort_unstable();
            let expanded = l
                .counts()
                .into_iter()
                .flat_map(|(v, n)| (0..n).map(move |_| v));
            assert_eq!(expanded.collect::<Vec<_>>(), sorted);
            assert_eq!(l.count(), sorted.len() as u64);
        }
        assert_eq!(Latencies::default().latency(), None);
    }
}
