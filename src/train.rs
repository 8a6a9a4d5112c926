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
use crate::eval::split::{hour_of, split, Split, SplitError};
use crate::features::Contract;
use crate::generate::Rng;
use crate::models::autoencoder::{self, AutoencoderError, AutoencoderParams};
use crate::models::isolation_forest::{
    IsolationForestError, IsolationForestParams, MAX_SAMPLE_SIZE, MAX_TREES,
};
use crate::models::online_logistic::{
    self, OnlineLogisticError, OnlineLogisticParams, MAX_POSITIVE_WEIGHT,
};

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
    #[error("{setting} must be in {range}, got {value}")]
    Setting {
        setting: &'static str,
        value: String,
        range: String,
    },
    #[error("isolation forest: {0}")]
    Forest(IsolationForestError),
    #[error("autoencoder: {0}")]
    Autoencoder(AutoencoderError),
    #[error("logistic regression: {0}")]
    Logistic(OnlineLogisticError),
}

// The model errors are named in TrainError's message, so they are not also
// its `source()`: an error chain would print them twice.
impl From<IsolationForestError> for TrainError {
    fn from(e: IsolationForestError) -> Self {
        TrainError::Forest(e)
    }
}

impl From<AutoencoderError> for TrainError {
    fn from(e: AutoencoderError) -> Self {
        TrainError::Autoencoder(e)
    }
}

impl From<OnlineLogisticError> for TrainError {
    fn from(e: OnlineLogisticError) -> Self {
        TrainError::Logistic(e)
    }
}

impl TrainError {
    /// Whether the training data is at fault (exit 1) rather than a setting
    /// (exit 2): no labels, too few steps or an empty part of the split, no
    /// fraud to choose a threshold on, too few or non-finite rows to fit.
    pub fn is_data_error(&self) -> bool {
        match self {
            TrainError::Unlabelled { .. } | TrainError::NoValidationFraud { .. } => true,
            TrainError::Split(e) => !matches!(e, SplitError::Order { .. }),
            TrainError::Forest(e) => matches!(
                e,
                IsolationForestError::TooFewRows(_) | IsolationForestError::NotFinite { .. }
            ),
            TrainError::Autoencoder(e) => matches!(
                e,
                AutoencoderError::TooFewRows(_) | AutoencoderError::NotFinite { .. }
            ),
            TrainError::Logistic(e) => matches!(
                e,
                OnlineLogisticError::Empty | OnlineLogisticError::NotFinite { .. }
            ),
            TrainError::Budget(_) | TrainError::Setting { .. } => false,
        }
    }
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

/// The most training rows sampled for the isolation forest or the
/// autoencoder: a thousand times the default, and a bound on the memory of
/// the matrices they are copied into.
pub const MAX_ROWS: usize = 100_000_000;

/// The finest weight grid: weights in multiples of 1/100, 5,151 weightings.
pub const MAX_GRID: u32 = 100;

impl TrainParams {
    /// Checks every setting against its range before any work starts, so
    /// that a mistyped value is refused by name rather than running for
    /// hours, running out of memory, or training models that loading
    /// refuses.
    pub fn check(&self) -> Result<(), TrainError> {
        if !(self.budget > 0.0 && self.budget <= 1.0) {
            return Err(TrainError::Budget(self.budget));
        }
        let counts = [
            ("trees", self.trees, 1, MAX_TREES),
            ("sample_size", self.sample_size, 2, MAX_SAMPLE_SIZE),
            ("forest_rows", self.forest_rows, 2, MAX_ROWS),
            ("autoencoder_rows", self.autoencoder_rows, 10, MAX_ROWS),
            (
                "autoencoder_epochs",
                self.autoencoder_epochs,
                1,
                autoencoder::MAX_EPOCHS,
            ),
            (
                "logistic_epochs",
                self.logistic_epochs,
                1,
                online_logistic::MAX_EPOCHS,
            ),
            ("grid", self.grid as usize, 1, MAX_GRID as usize),
        ];
        for (setting, value, low, high) in counts {
            if !(low..=high).contains(&value) {
                return Err(TrainError::Setting {
                    setting,
                    value: value.to_string(),
                    range: format!("{low}..={high}"),
                });
            }
        }
        let shares = [
            ("contamination", Some(self.contamination), 0.5),
            ("positive_weight", self.positive_weight, MAX_POSITIVE_WEIGHT),
        ];
        for (setting, value, high) in shares {
            match value {
                Some(v) if !(v > 0.0 && v <= high) => {
                    return Err(TrainError::Setting {
                        setting,
                        value: format!("{v:?}"),
                        range: format!("(0, {high:e}]"),
                    })
                }
                _ => {}
            }
        }
        Ok(())
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
    params.check()?;
    let parts = split(&table.steps, params.split)?;
    let summary = summary(table, &parts);
    if summary.validation_fraud == 0 {
        return Err(TrainError::NoValidationFraud {
            first: parts.train_last + 1,
            last: parts.validation_last,
        });
    }
    let models = fit(table, &parts.train, params, &mut progress)?;
    progress("weights and threshold");
    let valid = Scored::of(&models, table, &parts.validation);
    let (policy, parity) = policies(&valid, params);
    progress("test metrics");
    let test = Scored::of(&models, table, &parts.test);
    let metrics = test_metrics(&valid, &test, policy, parity, params.budget);
    Ok(Trained {
        models,
        policy,
        parity,
        split: summary,
        metrics,
    })
}

/// What each part of the split holds.
fn summary(table: &Table, parts: &Split) -> SplitSummary {
    let fraud = |rows: &[usize]| rows.iter().filter(|&&r| table.labels[r]).count() as u64;
    SplitSummary {
        train_last_step: parts.train_last,
        validation_last_step: parts.validation_last,
        train_rows: parts.train.len() as u64,
        validation_rows: parts.validation.len() as u64,
        test_rows: parts.test.len() as u64,
        train_fraud: fraud(&parts.train),
        validation_fraud: fraud(&parts.validation),
        test_fraud: fraud(&parts.test),
    }
}

/// The three models, fitted on the training rows `train`: the forest and
/// the autoencoder on samples of its legitimate rows, the logistic
/// regression on all of them.
fn fit(
    table: &Table,
    train: &[usize],
    params: &TrainParams,
    progress: &mut impl FnMut(&str),
) -> Result<Models, TrainError> {
    let mut rng = Rng::seed_from(params.seed);
    let legit: Vec<usize> = train
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
    let x = table.matrix(train);
    let y: Array1<bool> = train.iter().map(|&r| table.labels[r]).collect();
    let mut logistic = OnlineLogisticParams::default()
        .epochs(params.logistic_epochs)
        .seed(params.seed);
    if let Some(w) = params.positive_weight {
        logistic = logistic.positive_weight(w);
    }
    let logistic = logistic.fit(&DatasetBase::new(x, y))?;
    Ok(Models {
        isolation_forest,
        autoencoder,
        logistic,
    })
}

/// One part of the split, scored: each model's scores and the labels.
struct Scored {
    components: Vec<Components>,
    labels: Vec<bool>,
}

impl Scored {
    fn of(models: &Models, table: &Table, rows: &[usize]) -> Scored {
        Scored {
            components: components(models, table, rows),
            labels: rows.iter().map(|&r| table.labels[r]).collect(),
        }
    }

    fn scores(&self, score: &ScoreOf) -> Vec<f64> {
        self.components.iter().map(score).collect()
    }
}

/// The weights with the best validation PR-AUC over the grid (the first of
/// equals in grid order), and the original weights, each with the threshold
/// that alerts on the budget's share of validation traffic.
fn policies(valid: &Scored, params: &TrainParams) -> (Policy, Policy) {
    let grid = Weights::grid(params.grid);
    let quality: Vec<f64> = par_map(&grid, |w| {
        average_precision(&valid.scores(&|c| w.combine(c)), &valid.labels).unwrap_or(0.0)
    });
    let best = (0..grid.len()).fold(
        0,
        |best, i| if quality[i] > quality[best] { i } else { best },
    );
    // A combined score can pass 1 by rounding alone (0.1 + 0.2 + 0.7 weights
    // of three scores of 1): the threshold stays in the score's range, as
    // loading checks.
    let policy_for = |weights: Weights| Policy {
        weights,
        threshold: threshold_for_budget(&valid.scores(&|c| weights.combine(c)), params.budget)
            .unwrap_or(1.0)
            .clamp(0.0, 1.0),
    };
    (policy_for(grid[best]), policy_for(Weights::ORIGINAL))
}

/// Each model's and both policies' test-split figures, each at the
/// threshold its own validation scores give the budget.
fn test_metrics(
    valid: &Scored,
    test: &Scored,
    policy: Policy,
    parity: Policy,
    budget: f64,
) -> BTreeMap<String, ModelMetrics> {
    let (w, p) = (policy.weights, parity.weights);
    let scorers: [(&str, &ScoreOf); 5] = [
        ("isolation_forest", &|c| c.isolation_forest),
        ("autoencoder", &|c| c.autoencoder),
        ("logistic", &|c| c.logistic),
        ("ensemble", &|c| w.combine(c)),
        ("ensemble_parity", &|c| p.combine(c)),
    ];
    let mut metrics = BTreeMap::new();
    for (name, score) in scorers {
        let threshold = threshold_for_budget(&valid.scores(score), budget).unwrap_or(1.0);
        metrics.insert(
            name.to_string(),
            crate::eval::ranking(&test.scores(score), &test.labels, threshold, budget),
        );
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_error_is_named_once_when_the_error_chain_is_printed() {
        let err = TrainError::from(OnlineLogisticError::LearningRate(-1.0));
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert_eq!(
            chain.matches("learning_rate must be positive").count(),
            1,
            "{chain}"
        );
        assert!(chain.starts_with("logistic regression: "), "{chain}");
    }
    use crate::event::{EventId, Label};
    use crate::features::FeatureVec;

    fn row(step: u32, fraud: bool) -> FeatureRow {
        FeatureRow {
            account: crate::paysim::AccountId::from_name("C1"),
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
    fn settings_past_their_limits_are_refused_before_any_work() {
        assert!(TrainParams::default().check().is_ok());
        let err = |edit: fn(&mut TrainParams)| {
            let mut p = TrainParams::default();
            edit(&mut p);
            // An empty table: a setting refused first says so, not the data.
            let err = train(&Table::new(Contract::V2), &p, |_| {}).unwrap_err();
            assert!(!err.is_data_error(), "{err}");
            err.to_string()
        };
        // Regression: 100000000 trees were taken, and ran for hours.
        assert_eq!(
            err(|p| p.trees = 100_000_000),
            "trees must be in 1..=10000, got 100000000"
        );
        // Regression: 1e308 trained, then its own bundle was refused.
        assert_eq!(
            err(|p| p.positive_weight = Some(1e308)),
            "positive_weight must be in (0, 1e6], got 1e308"
        );
        assert_eq!(
            err(|p| p.autoencoder_epochs = 1_001),
            "autoencoder_epochs must be in 1..=1000, got 1001"
        );
        assert_eq!(
            err(|p| p.forest_rows = MAX_ROWS + 1),
            "forest_rows must be in 2..=100000000, got 100000001"
        );
        assert_eq!(err(|p| p.grid = 0), "grid must be in 1..=100, got 0");
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
