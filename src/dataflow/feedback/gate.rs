//! The promotion gate: whether an update may replace the version in force,
//! judged on the learner's holdout.

use crate::eval::ranking::average_precision;

/// The promotion gate's verdict, and the PR-AUCs it compared.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub pr_auc: Option<f64>,
    pub parent_pr_auc: Option<f64>,
}

/// The promotion gate: the candidate's PR-AUC (average precision) on the
/// holdout is not worse than the current version's by more than `margin`.
/// A holdout without both classes cannot tell them apart, and lets the
/// update through.
///
/// ```
/// use fraudflow::dataflow::feedback::learner::judge;
///
/// let labels = [true, false, false];
/// // The candidate ranks the fraud last: PR-AUC 1/3 against 1.
/// let v = judge(&[0.1, 0.5, 0.9], &[0.9, 0.5, 0.1], &labels, 0.5);
/// assert!(!v.passed);
/// assert_eq!((v.pr_auc, v.parent_pr_auc), (Some(1.0 / 3.0), Some(1.0)));
/// assert!(judge(&[0.1, 0.5, 0.9], &[0.9, 0.5, 0.1], &labels, 0.7).passed);
/// assert!(judge(&[0.1, 0.5], &[0.9, 0.5], &[false, false], 0.0).passed);
/// ```
pub fn judge(candidate: &[f64], current: &[f64], labels: &[bool], margin: f64) -> Verdict {
    if !labels.contains(&false) || !labels.contains(&true) {
        return Verdict {
            passed: true,
            pr_auc: None,
            parent_pr_auc: None,
        };
    }
    let ap = |scores: &[f64]| average_precision(scores, labels).unwrap_or(0.0);
    let (new, old) = (ap(candidate), ap(current));
    Verdict {
        passed: new >= old - margin,
        pr_auc: Some(new),
        parent_pr_auc: Some(old),
    }
}
