//! Ranking quality of scores against labels.

/// How many of `pairs` tie with the first: at least one, whatever the
/// scores (NaN equals NaN here, so a run of NaN scores is one tie and the
/// walk over the ranking always moves on).
fn tied(pairs: &[(f64, bool)]) -> usize {
    let first = pairs[0].0;
    pairs
        .iter()
        .take_while(|p| p.0 == first || (p.0.is_nan() && first.is_nan()))
        .count()
}

/// Area under the ROC curve: the chance that a random positive outranks a
/// random negative, ties counting half. `None` without both classes.
///
/// ```
/// use fraudflow::eval::ranking::roc_auc;
/// assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
/// assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
/// ```
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = pairs.iter().filter(|p| p.1).count() as f64;
    let negatives = pairs.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Mid-ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let j = i + tied(&pairs[i..]);
        let mid = (i + 1 + j) as f64 / 2.0;
        rank_sum += mid * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Average precision (the area under the precision-recall curve as a step
/// function, scikit-learn's definition): the mean of the precision at each
/// positive, tied scores taken together. `None` without positives.
///
/// ```
/// use fraudflow::eval::ranking::average_precision;
/// // Ranked: 0.8 (pos), 0.4 (neg), 0.35 (pos), 0.1 (neg): (1/1 + 2/3) / 2.
/// let ap = average_precision(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
/// assert!((ap - 5.0 / 6.0).abs() < 1e-12);
/// ```
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let positives = pairs.iter().filter(|p| p.1).count() as f64;
    if positives == 0.0 {
        return None;
    }
    let (mut seen, mut hits, mut ap, mut i) = (0.0, 0.0, 0.0, 0);
    while i < pairs.len() {
        let j = i + tied(&pairs[i..]);
        let new_hits = pairs[i..j].iter().filter(|p| p.1).count() as f64;
        seen += (j - i) as f64;
        hits += new_hits;
        ap += (new_hits / positives) * (hits / seen);
        i = j;
    }
    Some(ap)
}

/// Precision and recall of alerting on scores at or above a threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AtThreshold {
    pub threshold: f64,
    pub alerts: u64,
    pub caught: u64,
    /// `None` with no alerts.
    pub precision: Option<f64>,
    /// `None` with no positives.
    pub recall: Option<f64>,
}

impl AtThreshold {
    /// The figures of `alerts` of which `caught` are among `positives`.
    pub fn counted(threshold: f64, alerts: u64, caught: u64, positives: u64) -> AtThreshold {
        AtThreshold {
            threshold,
            alerts,
            caught,
            precision: (alerts > 0).then(|| caught as f64 / alerts as f64),
            recall: (positives > 0).then(|| caught as f64 / positives as f64),
        }
    }
}

/// Alerting on `scores >= threshold`.
///
/// ```
/// use fraudflow::eval::ranking::at_threshold;
/// let m = at_threshold(&[0.9, 0.8, 0.2, 0.1], &[true, false, true, false], 0.5);
/// assert_eq!((m.alerts, m.caught), (2, 1));
/// assert_eq!((m.precision, m.recall), (Some(0.5), Some(0.5)));
/// ```
pub fn at_threshold(scores: &[f64], labels: &[bool], threshold: f64) -> AtThreshold {
    let positives = labels.iter().filter(|&&l| l).count() as u64;
    let (mut alerts, mut caught) = (0u64, 0u64);
    for (s, l) in scores.iter().zip(labels) {
        if *s >= threshold {
            alerts += 1;
            caught += u64::from(*l);
        }
    }
    AtThreshold::counted(threshold, alerts, caught, positives)
}

/// Alerting on each score at or above its own threshold (a run whose
/// model versions have different ones); `threshold` is theirs when they
/// all agree, else NaN (null in JSON).
///
/// ```
/// use fraudflow::eval::ranking::at_thresholds;
/// let m = at_thresholds(&[0.9, 0.8, 0.2], &[true, false, true], &[0.95, 0.5, 0.1]);
/// assert_eq!((m.alerts, m.caught), (2, 1));
/// assert!(m.threshold.is_nan());
/// ```
pub fn at_thresholds(scores: &[f64], labels: &[bool], thresholds: &[f64]) -> AtThreshold {
    let first = thresholds.first().copied().unwrap_or(f64::NAN);
    if thresholds.iter().all(|&t| t == first) {
        return at_threshold(scores, labels, first);
    }
    let positives = labels.iter().filter(|&&l| l).count() as u64;
    let (mut alerts, mut caught) = (0u64, 0u64);
    for ((s, l), t) in scores.iter().zip(labels).zip(thresholds) {
        if s >= t {
            alerts += 1;
            caught += u64::from(*l);
        }
    }
    AtThreshold::counted(f64::NAN, alerts, caught, positives)
}

/// The threshold that alerts on a `budget` share of `scores`: the score of
/// the last event inside the budget (ties may take a few more). `None` for
/// no scores or a budget outside (0, 1].
///
/// ```
/// use fraudflow::eval::ranking::threshold_for_budget;
/// let scores: Vec<f64> = (0..1000).map(|i| i as f64).collect();
/// assert_eq!(threshold_for_budget(&scores, 0.005), Some(995.0));
/// ```
pub fn threshold_for_budget(scores: &[f64], budget: f64) -> Option<f64> {
    if scores.is_empty() || !(budget > 0.0 && budget <= 1.0) {
        return None;
    }
    let k = ((scores.len() as f64 * budget).ceil() as usize).clamp(1, scores.len());
    let mut sorted = scores.to_vec();
    let (_, kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    Some(*kth)
}

/// Alerting on a `budget` share of these scores, the threshold found on
/// them.
pub fn at_budget(scores: &[f64], labels: &[bool], budget: f64) -> Option<AtThreshold> {
    threshold_for_budget(scores, budget).map(|t| at_threshold(scores, labels, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_scores_end_instead_of_hanging_the_ranking() {
        // Regression: `take_while(p == first)` never moved past a NaN.
        let scores = [0.1, f64::NAN, 0.8, f64::NAN];
        let labels = [false, true, true, false];
        assert!(roc_auc(&scores, &labels).is_some());
        assert!(average_precision(&scores, &labels).is_some());
        // Ties are still taken together.
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
    }

    #[test]
    fn perfect_and_reversed_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(average_precision(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(average_precision(&[0.5; 4], &labels), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(average_precision(&[0.1, 0.2], &[false, false]), None);
    }
}
