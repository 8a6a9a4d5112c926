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
    let fraud = pairs.iter().filter(|p| p.1).count();
    if fraud == 0 {
        return Vec::new();
    }
    let mut sorted = pairs.to_vec();
    // Descending, NaN last.
    sorted.sort_by(|a, b| match (a.0.is_nan(), b.0.is_nan()) {
        (false, false) => b.0.total_cmp(&a.0),
        (x, y) => x.cmp(&y),
    });
    let mut points = Vec::new();
    let (mut alerts, mut caught) = (0usize, 0usize);
    for (i, &(score, is_fraud)) in sorted.iter().enumerate() {
        alerts += 1;
        caught += usize::from(is_fraud);
        let next = sorted.get(i + 1).map(|p| p.0);
        let tie = next.is_some_and(|n| n == score || (n.is_nan() && score.is_nan()));
        if !tie {
            points.push(PrPoint {
                threshold: score,
                recall: caught as f64 / fraud as f64,
                precision: caught as f64 / alerts as f64,
            });
        }
    }
    points
}

/// At most about `max` points of `curve` for drawing, chosen by a fixed
/// rule: the first and last, and each point that moves recall or precision
/// by at least `1 / max` from the last one kept. Where precision zigzags
/// more than that allows, every `k`-th of those is kept instead.
pub fn thin(curve: &[PrPoint], max: usize) -> Vec<PrPoint> {
    let max = max.max(2);
    if curve.len() <= max {
        return curve.to_vec();
    }
    let step = 1.0 / max as f64;
    let mut kept: Vec<PrPoint> = vec![curve[0]];
    for p in &curve[1..curve.len() - 1] {
        let last = kept[kept.len() - 1];
        if (p.recall - last.recall).abs() >= step || (p.precision - last.precision).abs() >= step {
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

/// Counts of `values` in `bins` equal bins over `[lo, hi]`: a value below
/// `lo` counts in the first bin, one above `hi` in the last; NaN is left
/// out. Empty when `bins` is 0 or the range is empty or not finite.
///
/// ```
/// use fraudflow::eval::html::shape::histogram;
/// assert_eq!(histogram(&[0.0, 0.1, 0.5, 0.99, 1.0, 2.0], 0.0, 1.0, 2), [2, 4]);
/// ```
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<u64> {
    // Also refuses a NaN bound: its width is NaN, not finite.
    if bins == 0 || !(hi - lo).is_finite() || hi - lo <= 0.0 {
        return Vec::new();
    }
    let mut counts = vec![0u64; bins];
    let width = (hi - lo) / bins as f64;
    for v in values.iter().filter(|v| !v.is_nan()) {
        let i = ((v - lo) / width).floor().clamp(0.0, (bins - 1) as f64) as usize;
        counts[i] += 1;
    }
    counts
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
    let bins = bins.max(1);
    let lo = (min.max(1) as f64).ln();
    // Just past the largest, so it falls inside the last bin.
    let hi = ((max.max(1) as f64) * 1.000_001 + 1e-9).ln().max(lo + 1e-6);
    let width = (hi - lo) / bins as f64;
    let mut out: Vec<LogBin> = (0..bins)
        .map(|i| LogBin {
            lo: (lo + width * i as f64).exp(),
            hi: (lo + width * (i + 1) as f64).exp(),
            count: 0,
        })
        .collect();
    for &v in values {
        let x = (v.max(1) as f64).ln();
        let i = ((x - lo) / width).floor().clamp(0.0, (bins - 1) as f64) as usize;
        out[i].count += 1;
    }
    out
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
    if bins == 0 {
        return Vec::new();
    }
    // At least a millisecond in all, so a run done at once still plots.
    let span = last.saturating_sub(start_us).max(1_000) as f64;
    let times: Vec<f64> = done_us
        .iter()
        .map(|t| t.saturating_sub(start_us) as f64)
        .collect();
    let width_s = span / bins as f64 / 1e6;
    histogram(&times, 0.0, span, bins)
        .into_iter()
        .enumerate()
        .map(|(i, count)| ((i + 1) as f64 * width_s, count as f64 / width_s))
        .collect()
}
