//! What the page draws of the labelled events' scores, gathered one event
//! at a time: each model's precision-recall curve and the ensemble's score
//! by class.
//!
//! A curve ranks every labelled score of a run. Held in memory, the
//! scores of a backtest of millions of events took hundreds of megabytes
//! (the HTML report's samples were the one thing in a backtest that grew
//! with its input), so each model's scores go into sorted runs on disk
//! ([`RankRuns`]) and the curve is walked from them ([`PrWalk`]) and
//! thinned as it goes ([`Thin`]). The figures are those of the in-memory
//! functions ([`super::shape::pr_curve`], [`super::shape::thin`],
//! [`super::shape::histogram`]): the tests compare them.

use std::path::Path;

use super::shape::{Bins, PrPoint, PrWalk, Thin};
use super::{ScoredEvent, CURVE_POINTS, SCORE_BINS};
use crate::eval::runs::RankRuns;
use crate::eval::spill::SpillError;

/// The models the page draws, in order: the ensemble first.
pub const MODELS: [&str; 4] = [
    "ensemble",
    "isolation forest",
    "autoencoder",
    "logistic regression",
];

/// Pairs a model's runs hold in memory: 4 MiB each.
const IN_MEMORY: usize = 1 << 18;

/// The labelled events' scores as the page draws them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScoreFigures {
    /// Labelled events of each class.
    pub legit: u64,
    pub fraud: u64,
    /// The ensemble's scores in [`SCORE_BINS`] bins over [0, 1], by class
    /// (NaN left out).
    pub legit_bins: Vec<u64>,
    pub fraud_bins: Vec<u64>,
    /// Each of [`MODELS`]' curves, in that order; `None` without fraud.
    pub curves: Vec<Option<Curve>>,
}

impl ScoreFigures {
    /// The figures of `events`, in memory (a demo's session: thousands).
    pub fn of(events: &[ScoredEvent]) -> Result<ScoreFigures, SpillError> {
        let mut tally = ScoreTally::of_runs(|_| RankRuns::in_memory());
        events.iter().try_for_each(|e| tally.add(e))?;
        tally.finish()
    }
}

/// One model's precision-recall curve, thinned to about
/// [`CURVE_POINTS`], and the area under it.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub pr_auc: f64,
    pub points: Vec<PrPoint>,
}

/// [`ScoreFigures`] gathered one labelled event at a time.
///
/// ```
/// use fraudflow::eval::html::{scores::ScoreTally, ScoredEvent};
/// let dir = tempfile::tempdir().unwrap();
/// let mut tally = ScoreTally::new(dir.path(), "doc");
/// for (i, fraud) in [false, true, false, true].into_iter().enumerate() {
///     let s = i as f64 / 4.0;
///     let e = ScoredEvent { fraud, ensemble: s, forest: 1.0 - s, autoencoder: 0.5, logistic: s };
///     tally.add(&e).unwrap();
/// }
/// let figures = tally.finish().unwrap();
/// assert_eq!((figures.legit, figures.fraud), (2, 2));
/// // The ensemble ranks the last fraud first: its curve starts at precision 1.
/// let ensemble = figures.curves[0].as_ref().unwrap();
/// assert_eq!((ensemble.points[0].recall, ensemble.points[0].precision), (0.5, 1.0));
/// ```
#[derive(Debug)]
pub struct ScoreTally {
    runs: Vec<RankRuns>,
    legit: Bins,
    fraud: Bins,
}

impl ScoreTally {
    /// Runs written into `dir`, named from `prefix`.
    pub fn new(dir: &Path, prefix: &str) -> ScoreTally {
        ScoreTally::with_limit(dir, prefix, IN_MEMORY)
    }

    /// At most `limit` pairs of each model in memory.
    pub fn with_limit(dir: &Path, prefix: &str, limit: usize) -> ScoreTally {
        ScoreTally::of_runs(|i| RankRuns::new(dir, &format!("{prefix}-m{i}")).with_limit(limit))
    }

    /// Each model's scores into the runs `runs` makes for its index.
    fn of_runs(runs: impl FnMut(usize) -> RankRuns) -> ScoreTally {
        ScoreTally {
            runs: (0..MODELS.len()).map(runs).collect(),
            legit: Bins::new(0.0, 1.0, SCORE_BINS),
            fraud: Bins::new(0.0, 1.0, SCORE_BINS),
        }
    }

    pub fn add(&mut self, e: &ScoredEvent) -> Result<(), SpillError> {
        let scores = [e.ensemble, e.forest, e.autoencoder, e.logistic];
        for (runs, score) in self.runs.iter_mut().zip(scores) {
            // The runs rank in f64's total order, highest first; a curve
            // ranks NaN last, below every number: a NaN with its sign set.
            let score = if score.is_nan() { -f64::NAN } else { score };
            runs.push(score, e.fraud)?;
        }
        match e.fraud {
            true => self.fraud.add(e.ensemble),
            false => self.legit.add(e.ensemble),
        }
        Ok(())
    }

    /// The figures of the events added; their runs are removed.
    pub fn finish(self) -> Result<ScoreFigures, SpillError> {
        let (n, fraud) = self.runs.first().map_or((0, 0), RankRuns::counts);
        let mut curves = Vec::new();
        for mut runs in self.runs {
            curves.push(curve(&mut runs, fraud)?);
            runs.remove()?;
        }
        Ok(ScoreFigures {
            legit: n - fraud,
            fraud,
            legit_bins: self.legit.counts(),
            fraud_bins: self.fraud.counts(),
            curves,
        })
    }
}

/// The curve of `runs`, of which `fraud` pairs are fraud.
fn curve(runs: &mut RankRuns, fraud: u64) -> Result<Option<Curve>, SpillError> {
    if fraud == 0 {
        return Ok(None);
    }
    let mut walk = PrWalk::new(fraud);
    let mut thin = Thin::new(CURVE_POINTS);
    runs.walk(|s, l| {
        // NaN ranked last as a NaN with its sign set (see `add`).
        let s = if s.is_nan() { f64::NAN } else { s };
        if let Some(p) = walk.push(s, l) {
            thin.push(p);
        }
    })?;
    let (last, pr_auc) = walk.finish();
    last.into_iter().for_each(|p| thin.push(p));
    Ok(pr_auc.map(|pr_auc| Curve {
        pr_auc,
        points: thin.finish(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::html::shape::{histogram, PrPoint};
    use crate::eval::ranking::average_precision;
    use crate::generate::rng::Rng;

    /// The curve as the page drew it before the scores went to disk: every
    /// pair sorted in memory (NaN last), one point at the end of each tie,
    /// and the thinning rule applied to the whole curve; and the area
    /// under it, NaN last, as precision times each step of recall.
    fn plain_curve(pairs: &[(f64, bool)]) -> (Vec<PrPoint>, f64) {
        let fraud = pairs.iter().filter(|p| p.1).count();
        let mut sorted = pairs.to_vec();
        sorted.sort_by(|a, b| match (a.0.is_nan(), b.0.is_nan()) {
            (false, false) => b.0.total_cmp(&a.0),
            (x, y) => x.cmp(&y),
        });
        let mut curve: Vec<PrPoint> = Vec::new();
        let (mut alerts, mut caught) = (0usize, 0usize);
        for (i, &(score, is_fraud)) in sorted.iter().enumerate() {
            alerts += 1;
            caught += usize::from(is_fraud);
            let next = sorted.get(i + 1).map(|p| p.0);
            if !next.is_some_and(|n| n == score || (n.is_nan() && score.is_nan())) {
                curve.push(PrPoint {
                    threshold: score,
                    recall: caught as f64 / fraud as f64,
                    precision: caught as f64 / alerts as f64,
                });
            }
        }
        let mut ap = 0.0;
        let mut recall = 0.0;
        for p in &curve {
            ap += (p.recall - recall) * p.precision;
            recall = p.recall;
        }
        (plain_thin(&curve, CURVE_POINTS), ap)
    }

    fn plain_thin(curve: &[PrPoint], max: usize) -> Vec<PrPoint> {
        if curve.len() <= max {
            return curve.to_vec();
        }
        let step = 1.0 / max as f64;
        let mut kept = vec![curve[0]];
        for p in &curve[1..curve.len() - 1] {
            let last = kept[kept.len() - 1];
            if (p.recall - last.recall).abs() >= step
                || (p.precision - last.precision).abs() >= step
            {
                kept.push(*p);
            }
        }
        if kept.len() > max {
            let k = kept.len().div_ceil(max);
            kept = kept.into_iter().step_by(k).collect();
        }
        kept.push(curve[curve.len() - 1]);
        kept
    }

    /// Events with many ties (scores on a grid of `levels`), and NaN in
    /// the autoencoder's now and then.
    fn events(seed: u64, n: usize, levels: u64) -> Vec<ScoredEvent> {
        let mut rng = Rng::seed_from(seed);
        // Zero now and then with its sign set: 0 and -0 tie.
        let mut level = || match rng.below(levels) {
            0 if rng.chance(0.5) => -0.0,
            k => k as f64 / levels as f64,
        };
        (0..n)
            .map(|i| ScoredEvent {
                fraud: i % 7 == 0 || (i % 5 == 0 && i % 3 == 0),
                ensemble: level(),
                forest: level(),
                autoencoder: if i % 97 == 3 { f64::NAN } else { level() },
                logistic: level(),
            })
            .collect()
    }

    fn bits(points: &[PrPoint]) -> Vec<[u64; 3]> {
        let b = |p: &PrPoint| [p.threshold, p.recall, p.precision].map(f64::to_bits);
        points.iter().map(b).collect()
    }

    #[test]
    fn the_figures_from_runs_on_disk_are_those_of_the_whole_in_memory_bit_for_bit() {
        // The last: more runs than one merge takes.
        for (seed, n, levels, limit) in
            [(1, 50, 5, 7), (2, 3_000, 40, 256), (3, 20_000, 5_000, 150)]
        {
            let all = events(seed, n, levels);
            let dir = tempfile::tempdir().unwrap();
            let mut tally = ScoreTally::with_limit(dir.path(), "t", limit);
            all.iter().for_each(|e| tally.add(e).unwrap());
            let figures = tally.finish().unwrap();
            let left = std::fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(left, 0, "runs left");
            let memory = ScoreFigures::of(&all).unwrap();
            let curve_bits = |f: &ScoreFigures| -> Vec<Option<(u64, Vec<[u64; 3]>)>> {
                let c = f.curves.iter().map(|c| c.as_ref());
                c.map(|c| c.map(|c| (c.pr_auc.to_bits(), bits(&c.points))))
                    .collect()
            };
            assert_eq!(curve_bits(&figures), curve_bits(&memory));
            assert_eq!(
                (&figures.legit_bins, &figures.fraud_bins),
                (&memory.legit_bins, &memory.fraud_bins)
            );
            against_plain(&all, &figures, seed);
        }
    }

    /// `figures` against the plain computations over `all`.
    fn against_plain(all: &[ScoredEvent], figures: &ScoreFigures, seed: u64) {
        let fraud = all.iter().filter(|e| e.fraud).count() as u64;
        assert_eq!(
            (figures.legit, figures.fraud),
            (all.len() as u64 - fraud, fraud)
        );
        let class = |f: bool| -> Vec<f64> {
            let events = all.iter().filter(|e| e.fraud == f);
            events.map(|e| e.ensemble).collect()
        };
        let histograms = [false, true].map(|f| histogram(&class(f), 0.0, 1.0, SCORE_BINS));
        assert_eq!(
            [&figures.legit_bins, &figures.fraud_bins],
            [&histograms[0], &histograms[1]]
        );
        let pick: [fn(&ScoredEvent) -> f64; 4] = [
            |e| e.ensemble,
            |e| e.forest,
            |e| e.autoencoder,
            |e| e.logistic,
        ];
        for (model, pick) in pick.iter().enumerate() {
            let pairs: Vec<(f64, bool)> = all.iter().map(|e| (pick(e), e.fraud)).collect();
            let curve = figures.curves[model].as_ref().unwrap();
            let (plain, ap) = plain_curve(&pairs);
            let what = format!("seed {seed} model {model}");
            assert_eq!(bits(&curve.points), bits(&plain), "{what}");
            // Summed another way: close, not the same bits.
            assert!(
                (curve.pr_auc - ap).abs() < 1e-12,
                "{what}: {} {ap}",
                curve.pr_auc
            );
            if pairs.iter().all(|p| !p.0.is_nan()) {
                let (s, l): (Vec<f64>, Vec<bool>) = pairs.into_iter().unzip();
                let ranked = average_precision(&s, &l).unwrap();
                assert_eq!(curve.pr_auc.to_bits(), ranked.to_bits(), "{what}");
            }
        }
        assert!(figures.curves[0].as_ref().unwrap().points.len() <= CURVE_POINTS + 2);
    }

    #[test]
    fn no_fraud_draws_no_curve_and_nothing_draws_nothing() {
        let legit = ScoredEvent {
            fraud: false,
            ensemble: 0.3,
            ..ScoredEvent::default()
        };
        let figures = ScoreFigures::of(&[legit, legit]).unwrap();
        assert_eq!((figures.legit, figures.fraud), (2, 0));
        assert!(figures.curves.iter().all(Option::is_none));
        assert_eq!(figures.legit_bins.iter().sum::<u64>(), 2);
        let none = ScoreFigures::of(&[]).unwrap();
        assert_eq!((none.legit, none.fraud, none.curves.len()), (0, 0, 4));
    }

    #[test]
    fn thinning_one_point_at_a_time_keeps_what_thinning_the_whole_curve_keeps() {
        let mut rng = Rng::seed_from(9);
        for len in [0, 1, 2, 3, 99, 100, 101, 102, 5_000] {
            for max in [2, 10, 100] {
                let curve: Vec<PrPoint> = (0..len)
                    .map(|i| PrPoint {
                        threshold: 1.0 - i as f64 / 10_000.0,
                        recall: i as f64 / len as f64,
                        precision: if rng.chance(0.3) { rng.uniform() } else { 0.5 },
                    })
                    .collect();
                let want = if len == 0 {
                    vec![]
                } else {
                    plain_thin(&curve, max)
                };
                assert_eq!(super::super::shape::thin(&curve, max), want, "{len} {max}");
            }
        }
    }
}
