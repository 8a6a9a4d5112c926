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

/// Every worker count's runs, fewest workers first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Scaling {
    pub rows: Vec<ScalingRow>,
}

impl Scaling {
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
