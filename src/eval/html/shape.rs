//! The report's data shaped for plotting: precision-recall curves,
//! histograms, precision and recall per period, the top reasons and
//! throughput. Plain functions, so each figure is tested apart from the
//! drawing.

use super::{Period, PrecisionRecall};

/// One point of a precision-recall curve: alerting on every event scored
/// at or above `threshold`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PrPoint {
    pub threshold: f64,
    pub recall: f64,
    pub precision: f64,
}

/// The precision-recall curve of `(score, fraud)` pairs: one point per
/// distinct score, from the highest down, each alerting on every event at
/// or above it (tied scores enter together). Every pair counts; NaN scores
/// rank last. Empty without fraud.
///
/// ```
/// use fraudflow::eval::html::shape::pr_curve;
/// let curve = pr_curve(&[(0.9, true), (0.5, false), (0.1, true)]);
/// let points: Vec<(f64, f64)> = curve.iter().map(|p| (p.recall, p.precision)).collect();
/// assert_eq!(points, [(0.5, 1.0), (0.5, 0.5), (1.0, 2.0 / 3.0)]);
/// ```
pub fn pr_curve(pairs: &[(f64, bool)]) -> Vec<PrPoint> {
    let fraud = pairs.iter().filter(|p| p.1).count() as u64;
    if fraud == 0 {
        return Vec::new();
    }
    let mut walk = PrWalk::new(fraud);
    let mut points: Vec<PrPoint> = ranked(pairs)
        .into_iter()
        .filter_map(|(s, l)| walk.push(s, l))
        .collect();
    points.extend(walk.finish().0);
    points
}

/// `pairs` in the order a curve walks them: highest score first, NaN last.
pub fn ranked(pairs: &[(f64, bool)]) -> Vec<(f64, bool)> {
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| match (a.0.is_nan(), b.0.is_nan()) {
        (false, false) => b.0.total_cmp(&a.0),
        (x, y) => x.cmp(&y),
    });
    sorted
}

/// A precision-recall curve walked one pair at a time, in the order of
/// [`ranked`] (highest first, NaN last), tied scores (equal, or both NaN)
/// taken together: what [`pr_curve`] does in memory, for pairs read back
/// from sorted runs on disk. Average precision comes from the same walk,
/// summed as [`crate::eval::ranking::average_precision`] sums it.
#[derive(Clone, Debug)]
pub struct PrWalk {
    fraud: u64,
    /// The tie being walked: its latest score, size and frauds.
    tie: Option<(f64, u64, u64)>,
    seen: u64,
    hits: u64,
    ap: f64,
}

impl PrWalk {
    /// A walk over pairs of which `fraud` are fraud.
    pub fn new(fraud: u64) -> PrWalk {
        PrWalk {
            fraud,
            tie: None,
            seen: 0,
            hits: 0,
            ap: 0.0,
        }
    }

    /// Takes the next pair; returns the point of the tie it closes.
    pub fn push(&mut self, score: f64, fraud: bool) -> Option<PrPoint> {
        match &mut self.tie {
            Some((s, size, pos)) if *s == score || (s.is_nan() && score.is_nan()) => {
                // A tie's point names its last score (0 and -0 tie).
                *s = score;
                *size += 1;
                *pos += u64::from(fraud);
                None
            }
            _ => {
                let closed = self.close();
                self.tie = Some((score, 1, u64::from(fraud)));
                closed
            }
        }
    }

    fn close(&mut self) -> Option<PrPoint> {
        let (threshold, size, pos) = self.tie.take()?;
        self.seen += size;
        self.hits += pos;
        let (hits, seen) = (self.hits as f64, self.seen as f64);
        self.ap += (pos as f64 / self.fraud as f64) * (hits / seen);
        Some(PrPoint {
            threshold,
            recall: hits / self.fraud as f64,
            precision: hits / seen,
        })
    }

    /// The last tie's point, and the average precision (`None` without
    /// fraud).
    pub fn finish(mut self) -> (Option<PrPoint>, Option<f64>) {
        let last = self.close();
        (last, (self.fraud > 0).then_some(self.ap))
    }
}

/// At most about `max` points of `curve` for drawing, chosen by a fixed
/// rule: the first and last, and each point that moves recall or precision
/// by at least `1 / max` from the last one kept. Where precision zigzags
/// more than that allows, every `k`-th of those is kept instead.
pub fn thin(curve: &[PrPoint], max: usize) -> Vec<PrPoint> {
    let mut thin = Thin::new(max);
    curve.iter().for_each(|p| thin.push(*p));
    thin.finish()
}

/// [`thin`] one point at a time: a curve walked from disk is never held
/// whole. Holds the first `max` points (all of a short curve), the points
/// the rule keeps (a few times `max`: precision moves by `1 / max` only
/// after more alerts the further down the ranking, so the kept points grow
/// with the logarithm of the events) and the latest point.
#[derive(Clone, Debug)]
pub struct Thin {
    max: usize,
    step: f64,
    first: Vec<PrPoint>,
    kept: Vec<PrPoint>,
    last: Option<PrPoint>,
}

impl Thin {
    pub fn new(max: usize) -> Thin {
        let max = max.max(2);
        Thin {
            max,
            step: 1.0 / max as f64,
            first: Vec::new(),
            kept: Vec::new(),
            last: None,
        }
    }

    pub fn push(&mut self, p: PrPoint) {
        if self.first.len() <= self.max {
            self.first.push(p);
        }
        // The point before is not the curve's last: the rule judges it.
        match (self.last.replace(p), self.kept.last()) {
            (None, _) => {}
            (Some(before), None) => self.kept.push(before),
            (Some(before), Some(k)) => {
                let moved = (before.recall - k.recall).abs() >= self.step
                    || (before.precision - k.precision).abs() >= self.step;
                if moved {
                    self.kept.push(before);
                }
            }
        }
    }

    pub fn finish(self) -> Vec<PrPoint> {
        if self.first.len() <= self.max {
            return self.first;
        }
        let mut kept = self.kept;
        if kept.len() > self.max {
            let k = kept.len().div_ceil(self.max);
            kept = kept.into_iter().step_by(k).collect();
        }
        kept.extend(self.last);
        kept
    }
}

/// Counts of values in `bins` equal bins over `[lo, hi]`, one value at a
/// time: a value below `lo` counts in the first bin, one above `hi` in
/// the last; NaN is left out. No bins when `bins` is 0 or the range is
/// empty or not finite.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bins {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
}

impl Bins {
    pub fn new(lo: f64, hi: f64, bins: usize) -> Bins {
        // Also refuses a NaN bound: its width is NaN, not finite.
        if bins == 0 || !(hi - lo).is_finite() || hi - lo <= 0.0 {
            return Bins::default();
        }
        Bins {
            lo,
            width: (hi - lo) / bins as f64,
            counts: vec![0; bins],
        }
    }

    pub fn add(&mut self, v: f64) {
        let Some(top) = self.counts.len().checked_sub(1) else {
            return;
        };
        if !v.is_nan() {
            let i = ((v - self.lo) / self.width).floor().clamp(0.0, top as f64) as usize;
            self.counts[i] += 1;
        }
    }

    pub fn counts(self) -> Vec<u64> {
        self.counts
    }
}

/// Counts of `values` in `bins` equal bins over `[lo, hi]`, as [`Bins`].
///
/// ```
/// use fraudflow::eval::html::shape::histogram;
/// assert_eq!(histogram(&[0.0, 0.1, 0.5, 0.99, 1.0, 2.0], 0.0, 1.0, 2), [2, 4]);
/// ```
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<u64> {
    let mut b = Bins::new(lo, hi, bins);
    values.iter().for_each(|v| b.add(*v));
    b.counts()
}

/// One bin of a histogram on a log axis: `[lo, hi)`, and its count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogBin {
    pub lo: f64,
    pub hi: f64,
    pub count: u64,
}

/// `bins` bins of equal ratio from the smallest value to just past the
/// largest (0 counts as 1: a log axis has no 0), each value in the bin
/// whose `[lo, hi)` holds it. Empty without values.
///
/// ```
/// use fraudflow::eval::html::shape::log_histogram;
/// // Edges 1, 10 and 100, each a hair up: 10 falls in the first bin.
/// let bins = log_histogram(&[1, 10, 99, 100], 2);
/// assert_eq!(bins.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 2]);
/// assert_eq!(bins[0].lo, 1.0);
/// ```
pub fn log_histogram(values: &[u64], bins: usize) -> Vec<LogBin> {
    let (Some(&min), Some(&max)) = (values.iter().min(), values.iter().max()) else {
        return Vec::new();
    };
    let mut out = LogBins::new(min, max, bins);
    values.iter().for_each(|&v| out.add(v, 1));
    out.bins
}

/// [`log_histogram`] of values given as counts: (value, how many).
///
/// ```
/// use fraudflow::eval::html::shape::{log_histogram, log_histogram_counted};
/// let values = [1, 10, 10, 99, 100, 100, 100];
/// let counted = log_histogram_counted(&[(1, 1), (10, 2), (99, 1), (100, 3)], 3);
/// assert_eq!(counted, log_histogram(&values, 3));
/// ```
pub fn log_histogram_counted(counts: &[(u64, u64)], bins: usize) -> Vec<LogBin> {
    let values = counts.iter().filter(|c| c.1 > 0).map(|c| c.0);
    let (Some(min), Some(max)) = (values.clone().min(), values.max()) else {
        return Vec::new();
    };
    let mut out = LogBins::new(min, max, bins);
    counts.iter().for_each(|&(v, n)| out.add(v, n));
    out.bins
}

/// Bins of equal ratio from a smallest value to just past a largest, on
/// the log of the values.
struct LogBins {
    lo: f64,
    width: f64,
    bins: Vec<LogBin>,
}

impl LogBins {
    fn new(min: u64, max: u64, bins: usize) -> LogBins {
        let n = bins.max(1);
        let lo = (min.max(1) as f64).ln();
        // Just past the largest, so it falls inside the last bin.
        let hi = ((max.max(1) as f64) * 1.000_001 + 1e-9).ln().max(lo + 1e-6);
        let width = (hi - lo) / n as f64;
        let bins = (0..n)
            .map(|i| LogBin {
                lo: (lo + width * i as f64).exp(),
                hi: (lo + width * (i + 1) as f64).exp(),
                count: 0,
            })
            .collect();
        LogBins { lo, width, bins }
    }

    /// Counts `n` values `v`.
    fn add(&mut self, v: u64, n: u64) {
        let x = (v.max(1) as f64).ln();
        let top = (self.bins.len() - 1) as f64;
        let i = ((x - self.lo) / self.width).floor().clamp(0.0, top) as usize;
        self.bins[i].count += n;
    }
}

/// `part / whole`; `None` when `whole` is 0.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

impl Period {
    /// Precision and recall at the threshold: caught / alerts and caught /
    /// fraud.
    ///
    /// ```
    /// use fraudflow::eval::html::Period;
    /// let p = Period { alerts: 4, fraud: 10, fraud_caught: 3, ..Period::default() };
    /// let pr = p.at_threshold();
    /// assert_eq!((pr.precision, pr.recall), (Some(0.75), Some(0.3)));
    /// ```
    pub fn at_threshold(&self) -> PrecisionRecall {
        PrecisionRecall {
            precision: ratio(self.fraud_caught, self.alerts),
            recall: ratio(self.fraud_caught, self.fraud),
        }
    }
}

/// The `n` reasons with the most alerts, the same name summed, largest
/// first (ties by name), and the alerts of all the others as one count.
pub fn top_reasons(reasons: &[(String, u64)], n: usize) -> (Vec<(String, u64)>, u64) {
    let mut summed: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    for (name, count) in reasons {
        *summed.entry(name).or_default() += count;
    }
    let mut sorted: Vec<(String, u64)> = summed
        .into_iter()
        .filter(|(_, c)| *c > 0)
        .map(|(name, c)| (name.to_string(), c))
        .collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let rest = sorted.iter().skip(n).map(|(_, c)| c).sum();
    sorted.truncate(n);
    (sorted, rest)
}

/// Throughput over a run from the times events were done (any unit, here
/// microseconds, in any order): `bins` equal intervals from `start` to the
/// last time, each as (seconds from `start` to the interval's end, events
/// per second in it). Times before `start` count in the first interval.
/// Empty without times or when `bins` is 0.
///
/// ```
/// use fraudflow::eval::html::shape::throughput;
/// // Two events in the first half second, one in the second.
/// let t = throughput(&[100_000, 400_000, 900_000], 0, 2);
/// assert_eq!(t, [(0.45, 2.0 / 0.45), (0.9, 1.0 / 0.45)]);
/// ```
pub fn throughput(done_us: &[u64], start_us: u64, bins: usize) -> Vec<(f64, f64)> {
    let Some(&last) = done_us.iter().max() else {
        return Vec::new();
    };
    let mut t = Throughput::new(start_us, last, bins);
    done_us.iter().for_each(|&d| t.add(d));
    t.points()
}

/// [`throughput`] one time at a time, the run's start and its last time
/// known before.
#[derive(Clone, Debug)]
pub struct Throughput {
    start_us: u64,
    width_s: f64,
    bins: Bins,
}

impl Throughput {
    /// Intervals from `start_us` to `last_us`.
    pub fn new(start_us: u64, last_us: u64, bins: usize) -> Throughput {
        // At least a millisecond in all, so a run done at once still plots.
        let span = last_us.saturating_sub(start_us).max(1_000) as f64;
        Throughput {
            start_us,
            width_s: span / bins.max(1) as f64 / 1e6,
            bins: Bins::new(0.0, span, bins),
        }
    }

    pub fn add(&mut self, done_us: u64) {
        self.bins.add(done_us.saturating_sub(self.start_us) as f64);
    }

    /// Each interval as (seconds from the start to its end, events per
    /// second in it).
    pub fn points(self) -> Vec<(f64, f64)> {
        let width_s = self.width_s;
        let counts = self.bins.counts().into_iter().enumerate();
        counts
            .map(|(i, count)| ((i + 1) as f64 * width_s, count as f64 / width_s))
            .collect()
    }
}
