//! `fraudflow bench --scaling`: the backtest and the features at each
//! worker count, each a child process, with each count's speedup over one
//! worker and its parallel efficiency, and how evenly the workers of each
//! backtest shared the work (see [`crate::pipeline::busy`]).

use serde::{Deserialize, Serialize};

use super::{BacktestFigures, FeaturesFigures};
use crate::pipeline::busy::WorkerBusy;

/// A worker this much busier than the mean says the work is not shared
/// evenly.
pub const IMBALANCE_LIMIT: f64 = 0.10;

/// The worker counts to measure on `cores` cores: 1, 2, 4, ... and `cores`
/// itself.
///
/// ```
/// use fraudflow::bench::scaling::worker_counts;
/// assert_eq!(worker_counts(1), [1]);
/// assert_eq!(worker_counts(2), [1, 2]);
/// assert_eq!(worker_counts(12), [1, 2, 4, 8, 12]);
/// assert_eq!(worker_counts(16), [1, 2, 4, 8, 16]);
/// ```
pub fn worker_counts(cores: usize) -> Vec<usize> {
    let cores = cores.max(1);
    let mut counts: Vec<usize> = std::iter::successors(Some(1usize), |w| w.checked_mul(2))
        .take_while(|&w| w < cores)
        .collect();
    counts.push(cores);
    counts
}

/// One worker count's runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScalingRow {
    pub backtest: BacktestFigures,
    pub features: FeaturesFigures,
    /// Each backtest worker's busy time.
    pub busy: Vec<WorkerBusy>,
}

/// How a figure grew against the first row's (one worker, or the fewest
/// measured): `speedup` times, `efficiency` of the ideal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Growth {
    pub speedup: f64,
    pub efficiency: f64,
}

impl Growth {
    /// `rate` at `workers` against `base_rate` at `base_workers`.
    ///
    /// ```
    /// let g = fraudflow::bench::scaling::Growth::of(300.0, 4, 100.0, 1);
    /// assert_eq!((g.speedup, g.efficiency), (3.0, 0.75));
    /// ```
    pub fn of(rate: f64, workers: usize, base_rate: f64, base_workers: usize) -> Growth {
        let speedup = rate / base_rate.max(1e-9);
        let ideal = workers as f64 / base_workers.max(1) as f64;
        Growth {
            speedup,
            efficiency: speedup / ideal.max(1e-9),
        }
    }
}

/// How much busier the busiest worker was than the mean, as a share of
/// the mean; `None` with no busy time measured.
///
/// ```
/// use fraudflow::bench::scaling::imbalance;
/// use fraudflow::pipeline::busy::WorkerBusy;
/// let w = |worker, busy_s| WorkerBusy { worker, busy_s, wall_s: 10.0 };
/// let over = imbalance(&[w(0, 4.0), w(1, 6.0)]).unwrap();
/// assert!((over - 0.2).abs() < 1e-12);
/// assert_eq!(imbalance(&[]), None);
/// ```
pub fn imbalance(busy: &[WorkerBusy]) -> Option<f64> {
    let total: f64 = busy.iter().map(|w| w.busy_s).sum();
    if busy.is_empty() || total <= 0.0 {
        return None;
    }
    let mean = total / busy.len() as f64;
    let most = busy.iter().map(|w| w.busy_s).fold(0.0, f64::max);
    Some(most / mean - 1.0)
}

/// Every worker count's runs, fewest workers first: with several rounds,
/// each row is its count's median round, and `rounds` keeps every
/// round's rates.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Scaling {
    pub rows: Vec<ScalingRow>,
    #[serde(default)]
    pub rounds: Vec<Rounds>,
}

/// One worker count's events a second in each round, in turn.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rounds {
    pub workers: usize,
    pub backtest: Vec<f64>,
    pub features: Vec<f64>,
}

/// Where the median of `values` is: the lower of the middle two when they
/// are even in number; `None` when there are none.
///
/// ```
/// use fraudflow::bench::scaling::median_at;
/// assert_eq!(median_at(&[3.0, 1.0, 2.0]), Some(2));
/// assert_eq!(median_at(&[4.0, 1.0, 3.0, 2.0]), Some(3));
/// assert_eq!(median_at(&[]), None);
/// ```
pub fn median_at(values: &[f64]) -> Option<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    order.get(values.len().saturating_sub(1) / 2).copied()
}

impl Scaling {
    /// The table of several sweeps over the same worker counts (`rounds[r]`
    /// holds round `r`'s rows, in the same order): each count's backtest,
    /// and its busy times, from the round of its median backtest rate, and
    /// its features from the round of its median features rate, so that a
    /// quick or a slow moment of the machine in one round does not make
    /// the speedups.
    pub fn of_rounds(rounds: Vec<Vec<ScalingRow>>) -> Scaling {
        let counts = rounds.first().map_or(0, Vec::len);
        let mut scaling = Scaling::default();
        for i in 0..counts {
            let runs: Vec<&ScalingRow> = rounds.iter().filter_map(|r| r.get(i)).collect();
            let rates = Rounds {
                workers: runs[0].backtest.workers,
                backtest: runs.iter().map(|r| r.backtest.events_per_second).collect(),
                features: runs.iter().map(|r| r.features.events_per_second).collect(),
            };
            let (b, f) = (median_at(&rates.backtest), median_at(&rates.features));
            let (Some(b), Some(f)) = (b, f) else { continue };
            scaling.rows.push(ScalingRow {
                features: runs[f].features.clone(),
                ..runs[b].clone()
            });
            scaling.rounds.push(rates);
        }
        scaling
    }

    /// The backtest's and the features' growth at each row, against the
    /// first.
    pub fn growth(&self) -> Vec<(Growth, Growth)> {
        let Some(base) = self.rows.first() else {
            return Vec::new();
        };
        let (bw, fw) = (base.backtest.workers, base.features.workers);
        self.rows
            .iter()
            .map(|r| {
                let b = Growth::of(
                    r.backtest.events_per_second,
                    r.backtest.workers,
                    base.backtest.events_per_second,
                    bw,
                );
                let f = Growth::of(
                    r.features.events_per_second,
                    r.features.workers,
                    base.features.events_per_second,
                    fw,
                );
                (b, f)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::ChildRun;

    /// A row of `workers` whose backtest ran at `b` and features at `f`
    /// events a second; its busy time names the round.
    fn row(workers: usize, b: f64, f: f64, round: f64) -> ScalingRow {
        let run = ChildRun {
            wall_s: 1.0,
            peak_rss_kib: None,
            cpu_s: None,
            load_before: None,
        };
        ScalingRow {
            backtest: BacktestFigures {
                workers,
                events: 100,
                seconds: 100.0 / b,
                events_per_second: b,
                latency_us: None,
                run: run.clone(),
            },
            features: FeaturesFigures {
                workers,
                events: 100,
                events_per_second: f,
                run,
            },
            busy: vec![WorkerBusy {
                worker: 0,
                busy_s: round,
                wall_s: 1.0,
            }],
        }
    }

    #[test]
    fn each_count_shows_its_median_rounds_and_keeps_every_rate() {
        // Three rounds of 1 and 2 workers; the medians fall in different
        // rounds for the backtest and the features.
        let rounds = vec![
            vec![row(1, 100.0, 50.0, 0.0), row(2, 150.0, 95.0, 0.0)],
            vec![row(1, 120.0, 40.0, 1.0), row(2, 210.0, 60.0, 1.0)],
            vec![row(1, 90.0, 45.0, 2.0), row(2, 190.0, 80.0, 2.0)],
        ];
        let s = Scaling::of_rounds(rounds);
        let shown: Vec<(f64, f64, f64)> = s
            .rows
            .iter()
            .map(|r| {
                let b = r.backtest.events_per_second;
                (b, r.features.events_per_second, r.busy[0].busy_s)
            })
            .collect();
        // -w 1: backtest median 100 (round 0), features 45 (round 2);
        // -w 2: backtest 190 (round 2), features 80 (round 2).
        assert_eq!(shown, [(100.0, 45.0, 0.0), (190.0, 80.0, 2.0)]);
        assert_eq!(s.rounds[1].backtest, [150.0, 210.0, 190.0]);
        assert_eq!(s.rounds[0].features, [50.0, 40.0, 45.0]);
        assert_eq!(
            s.rounds.iter().map(|r| r.workers).collect::<Vec<_>>(),
            [1, 2]
        );
        let (b, f) = s.growth()[1];
        assert_eq!((b.speedup, f.speedup), (1.9, 80.0 / 45.0));
        // One round is that round.
        let one = Scaling::of_rounds(vec![vec![row(1, 7.0, 3.0, 0.0)]]);
        assert_eq!(one.rows[0].backtest.events_per_second, 7.0);
        assert_eq!(one.rounds[0].backtest, [7.0]);
        assert!(Scaling::of_rounds(Vec::new()).rows.is_empty());
    }
}
