//! Training: a chronological split of the feature table, the three models,
//! and the ensemble's weights and threshold chosen on the validation split.

use std::collections::BTreeMap;

use linfa::prelude::*;
use ndarray::{Array1, Array2};
use thiserror::Error;

use crate::bundle::{ModelMetrics, SplitSummary};
use crate::dataflow::FeatureRow;
use crate::ensemble::{Components, Models, Policy, Weights};
use crate::eval::ranking::{average_precision, threshold_for_budget};
use crate::eval::split::{hour_of, split, SplitError};
use crate::features::Contract;
use crate::generate::Rng;
use crate::models::autoencoder::{AutoencoderError, AutoencoderParams};
use crate::models::isolation_forest::{IsolationForestError, IsolationForestParams};
use crate::models::online_logistic::{OnlineLogisticError, OnlineLogisticParams};

#[derive(Debug, Error)]
pub enum TrainError {
    #[error("event {id} has no label: training needs labelled events (isFraud)")]
    Unlabelled { id: String },
    #[error(transparent)]
    Split(#[from] SplitError),
    #[error("the validation split (steps {first}..={last}) has no fraud, so no weights or threshold can be chosen on it; choose other steps with --split")]
    NoValidationFraud { first: u32, last: u32 },
    #[error("the budget must be in (0, 1], got {0}")]
    Budget(f64),
    #[error("isolation forest: {0}")]
    Forest(#[from] IsolationForestError),
    #[error("autoencoder: {0}")]
    Autoencoder(#[from] AutoencoderError),
    #[error("logistic regression: {0}")]
    Logistic(#[from] OnlineLogisticError),
}

/// The feature table training reads: one row per event, in time order.
#[derive(Debug)]
pub struct Table {
    pub contract: Contract,
    width: usize,
    values: Vec<f64>,
    steps: Vec<u32>,
    labels: Vec<bool>,
}

impl Table {
    pub fn new(contract: Contract) -> Table {
        Table {
            contract,
            width: contract.names().len(),
            values: Vec::new(),
            steps: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// Appends a row; its step is the hour of its event time (a PaySim
    /// row's step), as the split defines it.
    pub fn push(&mut self, row: &FeatureRow) -> Result<(), TrainError> {
        let label = row.label.ok_or_else(|| TrainError::Unlabelled {
            id: row.id.to_string(),
        })?;
        self.values.extend_from_slice(&row.values);
        self.steps.push(hour_of(row.time_ms));
        self.labels.push(label.is_fraud);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.width..(i + 1) * self.width]
    }

    fn matrix(&self, rows: &[usize]) -> Array2<f64> {
        Array2::from_shape_fn((rows.len(), self.width), |(i, j)| self.row(rows[i])[j])
    }
}

/// What training may be told.
#[derive(Clone, Copy, Debug)]
pub struct TrainParams {
    /// Share of traffic to alert on.
    pub budget: f64,
    pub seed: u64,
    /// Explicit split: last training step, last validation step. Default:
    /// the steps that hold 70 % and 85 % of the rows.
    pub split: Option<(u32, u32)>,
    pub trees: usize,
    pub sample_size: usize,
    pub contamination: f64,
    /// Legitimate training rows sampled for the isolation forest (each tree
    /// draws `sample_size` of them) and for the autoencoder.
    pub forest_rows: usize,
    pub autoencoder_rows: usize,
    pub autoencoder_epochs: usize,
    pub logistic_epochs: usize,
    /// Weight of a fraud example in the logistic loss; `None` balances the
    /// classes of the training split.
    pub positive_weight: Option<f64>,
    /// The weight grid's resolution: weights are multiples of 1/grid.
    pub grid: u32,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            budget: 0.005,
            seed: 42,
            split: None,
            trees: 100,
            sample_size: 256,
            contamination: 0.01,
            forest_rows: 100_000,
            autoencoder_rows: 100_000,
            autoencoder_epochs: 5,
            logistic_epochs: 1,
            positive_weight: Some(1.0),
            grid: 10,
        }
    }
}

/// One score of an event's components.
type ScoreOf<'a> = dyn Fn(&Components) -> f64 + 'a;

/// What training made.
#[derive(Debug)]
pub struct Trained {
    pub models: Models,
    pub policy: Policy,
    pub parity: Policy,
    pub split: SplitSummary,
    pub metrics: BTreeMap<String, ModelMetrics>,
}

/// `count` of `rows`, drawn without replacement by a seeded stream and kept
/// in their order (the autoencoder validates on its chronologically last
/// rows).
fn sample(rows: &[usize], count: usize, rng: &mut Rng) -> Vec<usize> {
    if rows.len() <= count {
        return rows.to_vec();
    }
    let mut picked: Vec<usize> = (0..rows.len()).collect();
    for i in 0..count {
        let j = i + rng.below((rows.len() - i) as u64) as usize;
        picked.swap(i, j);
    }
    picked.truncate(count);
    picked.sort_unstable();
    picked.into_iter().map(|i| rows[i]).collect()
}

/// `f` of each item, computed on every core, in order.
fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<U>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Each model's scores of `rows`.
fn components(models: &Models, table: &Table, rows: &[usize]) -> Vec<Components> {
    let batches: Vec<&[usize]> = rows.chunks(1024).collect();
    par_map(&batches, |batch| {
        let rows: Vec<&[f64]> = batch.iter().map(|&r| table.row(r)).collect();
        let mut out = Vec::new();
        models.components_many(&rows, &mut out);
        out
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Fits the three models on the training split, then chooses the weights
/// (best PR-AUC on the validation split over a grid) and the threshold (the
/// budget's share of validation traffic), and measures all on the test
/// split. `progress` hears each stage as it starts.
pub fn train(
    table: &Table,
    params: &TrainParams,
    mut progress: impl FnMut(&str),
) -> Result<Trained, TrainError> {
    if !(params.budget > 0.0 && params.budget <= 1.0) {
        return Err(TrainError::Budget(params.budget));
    }
    let parts = split(&table.steps, params.split)?;
    let fraud = |rows: &[usize]| rows.iter().filter(|&&r| table.labels[r]).count() as u64;
    let summary = SplitSummary {
        train_last_step: parts.train_last,
        validation_last_step: parts.validation_last,
        train_rows: parts.train.len() as u64,
        validation_rows: parts.validation.len() as u64,
        test_rows: parts.test.len() as u64,
        train_fraud: fraud(&parts.train),
        validation_fraud: fraud(&parts.validation),
        test_fraud: fraud(&parts.test),
    };
    if summary.validation_fraud == 0 {
        return Err(TrainError::NoValidationFraud {
            first: parts.train_last + 1,
            last: parts.validation_last,
        });
    }
    let mut rng = Rng::seed_from(params.seed);
    let legit: Vec<usize> = parts
        .train
        .iter()
        .copied()
        .filter(|&r| !table.labels[r])
        .collect();

    progress("isolation forest");
    let forest_x = table.matrix(&sample(&legit, params.forest_rows, &mut rng));
    let isolation_forest = IsolationForestParams::default()
        .n_trees(params.trees)
        .sample_size(params.sample_size)
        .contamination(params.contamination)
        .seed(params.seed)
        .fit(&DatasetBase::from(forest_x))?;

    progress("autoencoder");
    let ae_x = table.matrix(&sample(&legit, params.autoencoder_rows, &mut rng));
    let autoencoder = AutoencoderParams::default()
        .epochs(params.autoencoder_epochs)
        .seed(params.seed)
        .fit(&DatasetBase::from(ae_x))?;

    progress("logistic regression");
    let x = table.matrix(&parts.train);
    let y: Array1<bool> = parts.train.iter().map(|&r| table.labels[r]).collect();
    let mut logistic = OnlineLogisticParams::default()
        .epochs(params.logistic_epochs)
        .seed(params.seed);
    if let Some(w) = params.positive_weight {
        logistic = logistic.positive_weight(w);
    }
    let logistic = logistic.fit(&DatasetBase::new(x, y))?;
    let models = Models {
        isolation_forest,
        autoencoder,
        logistic,
    };

    progress("weights and threshold");
    let valid = components(&models, table, &parts.validation);
    let valid_labels: Vec<bool> = parts.validation.iter().map(|&r| table.labels[r]).collect();
    let combined =
        |w: &Weights, c: &[Components]| -> Vec<f64> { c.iter().map(|s| w.combine(s)).collect() };
    let grid = Weights::grid(params.grid);
    let quality: Vec<f64> = par_map(&grid, |w| {
        average_precision(&combined(w, &valid), &valid_labels).unwrap_or(0.0)
    });
    // The best, the first of equals in grid order.
    let best = (0..grid.len()).fold(
        0,
        |best, i| if quality[i] > quality[best] { i } else { best },
    );
    let policy_for = |weights: Weights| Policy {
        weights,
        threshold: threshold_for_budget(&combined(&weights, &valid), params.budget).unwrap_or(1.0),
    };
    let policy = policy_for(grid[best]);
    let parity = policy_for(Weights::ORIGINAL);

    progress("test metrics");
    let test = components(&models, table, &parts.test);
    let test_labels: Vec<bool> = parts.test.iter().map(|&r| table.labels[r]).collect();
    let mut metrics = BTreeMap::new();
    let (w, p) = (policy.weights, parity.weights);
    let scorers: [(&str, &ScoreOf); 5] = [
        ("isolation_forest", &|c| c.isolation_forest),
        ("autoencoder", &|c| c.autoencoder),
        ("logistic", &|c| c.logistic),
        ("ensemble", &|c| w.combine(c)),
        ("ensemble_parity", &|c| p.combine(c)),
    ];
    for (name, score) in scorers {
        let valid_scores: Vec<f64> = valid.iter().map(score).collect();
        let test_scores: Vec<f64> = test.iter().map(score).collect();
        let threshold = threshold_for_budget(&valid_scores, params.budget).unwrap_or(1.0);
        metrics.insert(
            name.to_string(),
            crate::eval::ranking(&test_scores, &test_labels, threshold, params.budget),
        );
    }
    Ok(Trained {
        models,
        policy,
        parity,
        split: summary,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventId, Label};
    use crate::features::FeatureVec;

    fn row(step: u32, fraud: bool) -> FeatureRow {
        FeatureRow {
            id: EventId::Row(u64::from(step)),
            seq: 0,
            time_ms: u64::from(step) * crate::event::STEP_MS,
            place_ms: u64::from(step) * crate::event::STEP_MS,
            step: Some(step),
            received_us: 0,
            label: Some(Label {
                is_fraud: fraud,
                is_flagged_fraud: false,
            }),
            values: FeatureVec::from_slice(&[f64::from(step); 13]),
        }
    }

    #[test]
    fn unlabelled_rows_and_fraudless_validation_are_named() {
        let mut table = Table::new(Contract::V2);
        let mut unlabelled = row(1, false);
        unlabelled.label = None;
        assert!(table
            .push(&unlabelled)
            .unwrap_err()
            .to_string()
            .contains("event 1 has no label"));
        for step in 1..=100 {
            table.push(&row(step, step == 5)).unwrap();
        }
        let err = train(&table, &TrainParams::default(), |_| {}).unwrap_err();
        assert!(matches!(
            err,
            TrainError::NoValidationFraud {
                first: 71,
                last: 85
            }
        ));
    }
}
