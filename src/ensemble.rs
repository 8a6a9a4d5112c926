//! The ensemble: three models' scores, weighted into one, a threshold, and
//! the reasons behind each alert.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::features::Contract;
use crate::models::autoencoder::Autoencoder;
use crate::models::isolation_forest::IsolationForest;
use crate::models::online_logistic::OnlineLogistic;
use crate::models::ParamsError;

/// Why weights or a threshold are refused: one error for the flags, the
/// dataflow files and the policies a bundle holds, so that each is checked
/// the same way.
#[derive(Debug, Error, PartialEq)]
pub enum PolicyError {
    #[error("expected three weights IF,AE,LR such as 0.4,0.3,0.3, got {0:?}")]
    Count(String),
    #[error("{value:?} in weights {weights:?} is not a number")]
    NotANumber { value: String, weights: String },
    #[error("weights must be finite and non-negative with a positive sum, got {0:?},{1:?},{2:?}")]
    Weights(f64, f64, f64),
    #[error("weights {0:?},{1:?},{2:?} do not sum to 1: a bundle holds its weights normalised")]
    NotNormalised(f64, f64, f64),
    #[error(
        "the threshold must be a number in [0, 1], the range of the ensemble score, got {0:?}"
    )]
    Threshold(f64),
}

/// Why a bundle's models cannot score for its contract.
#[derive(Debug, Error, PartialEq)]
pub enum ModelsError {
    #[error("{model}: {problem}")]
    Params {
        model: &'static str,
        problem: ParamsError,
    },
    #[error("{model} takes {width} features, the contract has {expected}")]
    Width {
        model: &'static str,
        width: usize,
        expected: usize,
    },
}

/// How much each model's score counts; they sum to 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub isolation_forest: f64,
    pub autoencoder: f64,
    pub logistic: f64,
}

impl Weights {
    /// The original system's weights, kept for parity.
    pub const ORIGINAL: Weights = Weights {
        isolation_forest: 0.4,
        autoencoder: 0.3,
        logistic: 0.3,
    };

    /// Weights from three finite non-negative numbers with a positive sum,
    /// scaled to sum to 1 (also when their sum is beyond f64's range).
    pub fn new(
        isolation_forest: f64,
        autoencoder: f64,
        logistic: f64,
    ) -> Result<Weights, PolicyError> {
        let all = [isolation_forest, autoencoder, logistic];
        let largest = all.iter().copied().fold(0.0, f64::max);
        if all.iter().any(|w| !w.is_finite() || *w < 0.0) || largest <= 0.0 {
            return Err(PolicyError::Weights(
                isolation_forest,
                autoencoder,
                logistic,
            ));
        }
        // Huge weights would overflow their sum: scale them by the largest
        // first (exact when the sum fits, so kept for that case).
        let scale = if all.iter().sum::<f64>().is_finite() {
            1.0
        } else {
            largest
        };
        let sum: f64 = all.iter().map(|w| w / scale).sum();
        Ok(Weights {
            isolation_forest: isolation_forest / scale / sum,
            autoencoder: autoencoder / scale / sum,
            logistic: logistic / scale / sum,
        })
    }

    /// Checks weights read from outside (a bundle) as [`Weights::new`]
    /// checks a flag's, and that they are already normalised, as training
    /// writes them: the threshold beside them was chosen for these sums.
    pub fn check(&self) -> Result<(), PolicyError> {
        let (a, b, c) = (self.isolation_forest, self.autoencoder, self.logistic);
        Weights::new(a, b, c)?;
        if ((a + b + c) - 1.0).abs() > 1e-9 {
            return Err(PolicyError::NotNormalised(a, b, c));
        }
        Ok(())
    }

    /// Every weighting on a grid of `1/steps` over the simplex.
    pub fn grid(steps: u32) -> Vec<Weights> {
        let mut out = Vec::new();
        for a in 0..=steps {
            for b in 0..=steps - a {
                let s = f64::from(steps);
                out.push(Weights {
                    isolation_forest: f64::from(a) / s,
                    autoencoder: f64::from(b) / s,
                    logistic: f64::from(steps - a - b) / s,
                });
            }
        }
        out
    }

    pub fn combine(&self, s: &Components) -> f64 {
        self.isolation_forest * s.isolation_forest
            + self.autoencoder * s.autoencoder
            + self.logistic * s.logistic
    }
}

impl std::str::FromStr for Weights {
    type Err = PolicyError;

    /// `IF,AE,LR`, e.g. `0.4,0.3,0.3`.
    fn from_str(s: &str) -> Result<Weights, PolicyError> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [a, b, c] = parts[..] else {
            return Err(PolicyError::Count(s.to_string()));
        };
        let num = |v: &str| {
            v.parse::<f64>().map_err(|_| PolicyError::NotANumber {
                value: v.to_string(),
                weights: s.to_string(),
            })
        };
        Weights::new(num(a)?, num(b)?, num(c)?)
    }
}

/// The range of the ensemble score: each model scores in [0, 1] and the
/// weights sum to 1. A threshold below it alerts on every event, one above
/// it on none.
pub const SCORE_RANGE: std::ops::RangeInclusive<f64> = 0.0..=1.0;

/// Refuses a threshold outside [`SCORE_RANGE`] (NaN included): for the
/// flag, the dataflow file and a bundle's policies alike.
///
/// ```
/// use fraudflow::ensemble::check_threshold;
/// assert_eq!(check_threshold(0.25), Ok(0.25));
/// assert!(check_threshold(-5.0).unwrap_err().to_string().contains("[0, 1]"));
/// assert!(check_threshold(1e308).is_err());
/// ```
pub fn check_threshold(threshold: f64) -> Result<f64, PolicyError> {
    if SCORE_RANGE.contains(&threshold) {
        Ok(threshold)
    } else {
        Err(PolicyError::Threshold(threshold))
    }
}

/// Each model's score of one event, each in [0, 1].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Components {
    pub isolation_forest: f64,
    pub autoencoder: f64,
    pub logistic: f64,
}

/// A feature that pushed an event's score up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub feature: String,
    /// The feature's value for this event.
    pub value: f64,
    /// Which model it pushed: `logistic` (weight × standardised value) or
    /// `autoencoder` (the feature's reconstruction error).
    pub model: String,
    pub push: f64,
}

/// Most reasons an alert carries.
pub const MAX_REASONS: usize = 3;

/// The three fitted models.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Models {
    pub isolation_forest: IsolationForest,
    pub autoencoder: Autoencoder,
    pub logistic: OnlineLogistic,
}

impl Models {
    /// Each model's scores of many rows, the forest scored in a batch.
    pub fn components_many(&self, rows: &[&[f64]], out: &mut Vec<Components>) {
        self.components_of(rows, out, true);
    }

    /// As [`components_many`](Self::components_many), but the autoencoder
    /// is not run: its score is left 0. For a policy that gives it no
    /// weight, where only alerts show it (they get it afterwards).
    pub fn components_without_autoencoder(&self, rows: &[&[f64]], out: &mut Vec<Components>) {
        self.components_of(rows, out, false);
    }

    fn components_of(&self, rows: &[&[f64]], out: &mut Vec<Components>, autoencoder: bool) {
        let mut forest = Vec::with_capacity(rows.len());
        self.isolation_forest.score_many(rows, &mut forest);
        out.clear();
        out.extend(
            rows.iter()
                .zip(forest)
                .map(|(row, isolation_forest)| Components {
                    isolation_forest,
                    autoencoder: if autoencoder {
                        self.autoencoder.score(row)
                    } else {
                        0.0
                    },
                    logistic: self.logistic.probability(row),
                }),
        );
    }

    /// The features that pushed the score of `row` up most: the largest
    /// positive logistic contributions, then, when the logistic model saw
    /// little, the features the autoencoder reconstructed worst.
    pub fn reasons(&self, contract: Contract, row: &[f64]) -> Vec<Reason> {
        let names = contract.names();
        let reason = |j: usize, model: &str, push: f64| Reason {
            feature: names.get(j).copied().unwrap_or("?").to_string(),
            value: row[j],
            model: model.to_string(),
            push,
        };
        let mut out = Vec::with_capacity(MAX_REASONS);
        let by_push = |pushes: Vec<f64>, model: &str, out: &mut Vec<Reason>| {
            let mut ranked: Vec<(usize, f64)> = pushes
                .into_iter()
                .enumerate()
                .filter(|(_, p)| *p > 0.0)
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            for (j, push) in ranked {
                if out.len() == MAX_REASONS {
                    break;
                }
                if out.iter().all(|r: &Reason| r.feature != names[j]) {
                    out.push(reason(j, model, push));
                }
            }
        };
        by_push(self.logistic.contributions(row), "logistic", &mut out);
        by_push(self.autoencoder.errors(row), "autoencoder", &mut out);
        out
    }

    /// Checks models read from outside: each model's parameters (see
    /// [`ParamsError`]) and that each takes the contract's `n_features`.
    pub fn check(&self, n_features: usize) -> Result<(), ModelsError> {
        let params = |model: &'static str| move |problem| ModelsError::Params { model, problem };
        self.logistic.check().map_err(params("logistic"))?;
        self.autoencoder.check().map_err(params("autoencoder"))?;
        let widths = [
            ("isolation_forest", self.isolation_forest.n_features()),
            ("autoencoder", self.autoencoder.n_features()),
            ("logistic", self.logistic.n_features()),
        ];
        for (model, width) in widths {
            if width != n_features {
                return Err(ModelsError::Width {
                    model,
                    width,
                    expected: n_features,
                });
            }
        }
        Ok(())
    }
}

/// Weights and the threshold at or above which an event is an alert.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub weights: Weights,
    pub threshold: f64,
}

impl std::fmt::Display for Policy {
    /// `weights IF 0.40 / AE 0.30 / LR 0.30, threshold 0.512345`.
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let w = self.weights;
        write!(
            f,
            "weights IF {:.2} / AE {:.2} / LR {:.2}, threshold {:.6}",
            w.isolation_forest, w.autoencoder, w.logistic, self.threshold
        )
    }
}

impl Policy {
    /// Checks a policy read from outside: its weights as [`Weights::check`]
    /// and its threshold as [`check_threshold`].
    pub fn check(&self) -> Result<(), PolicyError> {
        self.weights.check()?;
        check_threshold(self.threshold).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_normalise_and_refuse_bad_values() {
        let w: Weights = "2,1,1".parse().unwrap();
        assert_eq!(w.isolation_forest, 0.5);
        assert_eq!(w.logistic, 0.25);
        let err = |s: &str| s.parse::<Weights>().unwrap_err().to_string();
        assert!(err("0.4,0.3").contains("three"));
        assert!(err("a,1,1").contains("\"a\""));
        assert!("-1,1,1".parse::<Weights>().is_err());
        assert!("0,0,0".parse::<Weights>().is_err());
    }

    #[test]
    fn weights_whose_sum_overflows_are_normalised_not_zeroed() {
        // Regression: 1e308 three times summed to infinity, and every
        // weight became 0 (nothing could alert) or NaN.
        let w = Weights::new(1e308, 1e308, 1e308).unwrap();
        for v in [w.isolation_forest, w.autoencoder, w.logistic] {
            assert!((v - 1.0 / 3.0).abs() < 1e-12, "{w:?}");
        }
        assert_eq!(w.check(), Ok(()));
    }

    #[test]
    fn a_policy_read_from_outside_is_checked_as_the_flags_are() {
        let good = Policy {
            weights: Weights::ORIGINAL,
            threshold: 0.5,
        };
        assert_eq!(good.check(), Ok(()));
        let with = |w: [f64; 3], threshold: f64| Policy {
            weights: Weights {
                isolation_forest: w[0],
                autoencoder: w[1],
                logistic: w[2],
            },
            threshold,
        };
        assert_eq!(
            with([-0.5, 1.0, 0.5], 0.5).check(),
            Err(PolicyError::Weights(-0.5, 1.0, 0.5))
        );
        assert_eq!(
            with([1e308, 1e308, 1e308], 0.5).check(),
            Err(PolicyError::NotNormalised(1e308, 1e308, 1e308))
        );
        assert_eq!(
            with([0.4, 0.3, 0.3], f64::INFINITY).check(),
            Err(PolicyError::Threshold(f64::INFINITY))
        );
        assert_eq!(
            with([0.4, 0.3, 0.3], f64::NAN)
                .check()
                .unwrap_err()
                .to_string(),
            "the threshold must be a number in [0, 1], the range of the ensemble score, got NaN"
        );
        // Regression: -5 alerted on every event and 1e308 on none.
        for t in [-5.0, -f64::MIN_POSITIVE, 1.0 + f64::EPSILON, 1e308] {
            assert_eq!(
                with([0.4, 0.3, 0.3], t).check(),
                Err(PolicyError::Threshold(t))
            );
        }
        for t in [0.0, 0.5, 1.0] {
            assert_eq!(with([0.4, 0.3, 0.3], t).check(), Ok(()));
        }
    }

    #[test]
    fn the_grid_covers_the_simplex() {
        let grid = Weights::grid(10);
        assert_eq!(grid.len(), 66);
        for w in &grid {
            let sum = w.isolation_forest + w.autoencoder + w.logistic;
            assert!((sum - 1.0).abs() < 1e-12);
        }
        assert!(grid.iter().any(|w| w.logistic == 1.0));
    }
}
