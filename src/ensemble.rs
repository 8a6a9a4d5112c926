//! The ensemble: three models' scores, weighted into one, a threshold, and
//! the reasons behind each alert.

use serde::{Deserialize, Serialize};

use crate::features::Contract;
use crate::models::autoencoder::Autoencoder;
use crate::models::isolation_forest::IsolationForest;
use crate::models::online_logistic::OnlineLogistic;

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

    /// Weights from three non-negative numbers, scaled to sum to 1.
    pub fn new(isolation_forest: f64, autoencoder: f64, logistic: f64) -> Result<Weights, String> {
        let all = [isolation_forest, autoencoder, logistic];
        let sum: f64 = all.iter().sum();
        if all.iter().any(|w| !w.is_finite() || *w < 0.0) || sum <= 0.0 {
            return Err(format!(
                "weights must be non-negative with a positive sum, got {isolation_forest},{autoencoder},{logistic}"
            ));
        }
        Ok(Weights {
            isolation_forest: isolation_forest / sum,
            autoencoder: autoencoder / sum,
            logistic: logistic / sum,
        })
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
    type Err = String;

    /// `IF,AE,LR`, e.g. `0.4,0.3,0.3`.
    fn from_str(s: &str) -> Result<Weights, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [a, b, c] = parts[..] else {
            return Err(format!(
                "expected three weights IF,AE,LR such as 0.4,0.3,0.3, got {s:?}"
            ));
        };
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{v:?} in weights {s:?} is not a number"))
        };
        Weights::new(num(a)?, num(b)?, num(c)?)
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
        let mut forest = Vec::with_capacity(rows.len());
        self.isolation_forest.score_many(rows, &mut forest);
        out.clear();
        out.extend(
            rows.iter()
                .zip(forest)
                .map(|(row, isolation_forest)| Components {
                    isolation_forest,
                    autoencoder: self.autoencoder.score(row),
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

    pub fn check(&self, n_features: usize) -> Result<(), String> {
        self.logistic
            .check()
            .map_err(|e| format!("logistic: {e}"))?;
        self.autoencoder
            .check()
            .map_err(|e| format!("autoencoder: {e}"))?;
        let widths = [
            ("isolation_forest", self.isolation_forest.n_features()),
            ("autoencoder", self.autoencoder.n_features()),
            ("logistic", self.logistic.n_features()),
        ];
        for (model, width) in widths {
            if width != n_features {
                return Err(format!(
                    "{model} takes {width} features, the contract has {n_features}"
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_normalise_and_refuse_bad_values() {
        let w: Weights = "2,1,1".parse().unwrap();
        assert_eq!(w.isolation_forest, 0.5);
        assert_eq!(w.logistic, 0.25);
        assert!("0.4,0.3".parse::<Weights>().unwrap_err().contains("three"));
        assert!("a,1,1".parse::<Weights>().unwrap_err().contains("\"a\""));
        assert!("-1,1,1".parse::<Weights>().is_err());
        assert!("0,0,0".parse::<Weights>().is_err());
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
