//! Logistic regression that learns online: stochastic gradient descent on
//! class-weighted log loss with L2, one mini-batch at a time
//! (`partial_fit`), as analysts' labels arrive.
//!
//! Features are compressed by `sign(v) ln(1 + |v|)`, then standardised with
//! the mean and spread of the first batch it was fitted on, then frozen, so that raw amounts in the millions do not
//! swamp the gradient and later batches are scaled as the first was.
//!
//! # Examples
//!
//! ```
//! use fraudflow::models::online_logistic::OnlineLogisticParams;
//! use linfa::prelude::*;
//! use ndarray::{array, Array1};
//!
//! let x = array![[0.0, 1.0], [0.2, 0.8], [3.0, -1.0], [2.8, -0.9]];
//! let y: Array1<bool> = array![false, false, true, true];
//! let model = OnlineLogisticParams::default().fit(&DatasetBase::new(x, y)).unwrap();
//! // Later, one more labelled example; a batch of one class is fine.
//! let model = OnlineLogisticParams::default()
//!     .fit_with(Some(model), &DatasetBase::new(array![[3.1, -1.2]], array![true]))
//!     .unwrap();
//! assert!(model.probability(&[3.0, -1.0]) > 0.5);
//! assert!(model.probability(&[0.0, 1.0]) < 0.5);
//! ```

use linfa::prelude::*;
use linfa::ParamGuard;
use ndarray::{Array1, Array2, ArrayBase, Data, Ix2};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ParamsError;
use crate::generate::Rng;

#[derive(Debug, Error)]
pub enum OnlineLogisticError {
    #[error("learning_rate must be positive and finite, got {0}")]
    LearningRate(f64),
    #[error("l2 must be non-negative and finite, got {0}")]
    L2(f64),
    #[error("epochs must be in 1..={MAX_EPOCHS}, got {0}")]
    Epochs(usize),
    #[error("positive_weight must be positive and at most {MAX_POSITIVE_WEIGHT:e}, got {0:?}")]
    PositiveWeight(f64),
    #[error("cannot fit on an empty batch")]
    Empty,
    #[error("the batch has {found} features, the model {expected}")]
    Features { expected: usize, found: usize },
    #[error("the batch has a non-finite value at row {row}, column {column}")]
    NotFinite { row: usize, column: usize },
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// The most passes over the training rows: the default is 5.
pub const MAX_EPOCHS: usize = 1_000;

/// The largest weight of a positive example: a thousand times the weight
/// that balances PaySim's classes (about 770). Each step moves a weight by
/// at most this times the learning rate and a standardised feature, so a
/// larger one can carry the weights past what loading accepts (see
/// [`OnlineLogistic::check`]), or to infinity.
pub const MAX_POSITIVE_WEIGHT: f64 = 1e6;

/// Checked parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OnlineLogisticValidParams {
    learning_rate: f64,
    l2: f64,
    epochs: usize,
    /// Weight of a positive (fraud) example in this fit, kept in the model
    /// for the fits after it; `None`: the model's own, and a new model
    /// balances the classes of its first batch.
    positive_weight: Option<f64>,
    seed: u64,
}

/// Unchecked parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OnlineLogisticParams(OnlineLogisticValidParams);

impl Default for OnlineLogisticParams {
    fn default() -> Self {
        OnlineLogisticParams(OnlineLogisticValidParams {
            learning_rate: 0.05,
            l2: 1e-4,
            epochs: 5,
            positive_weight: None,
            seed: 42,
        })
    }
}

impl OnlineLogisticParams {
    pub fn learning_rate(mut self, rate: f64) -> Self {
        self.0.learning_rate = rate;
        self
    }
    pub fn l2(mut self, l2: f64) -> Self {
        self.0.l2 = l2;
        self
    }
    /// Passes over the data in `fit` and in each `fit_with` batch.
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.0.epochs = epochs;
        self
    }
    pub fn positive_weight(mut self, weight: f64) -> Self {
        self.0.positive_weight = Some(weight);
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
}

impl ParamGuard for OnlineLogisticParams {
    type Checked = OnlineLogisticValidParams;
    type Error = OnlineLogisticError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        if !(p.learning_rate > 0.0 && p.learning_rate.is_finite()) {
            return Err(OnlineLogisticError::LearningRate(p.learning_rate));
        }
        if !(p.l2 >= 0.0 && p.l2.is_finite()) {
            return Err(OnlineLogisticError::L2(p.l2));
        }
        if !(1..=MAX_EPOCHS).contains(&p.epochs) {
            return Err(OnlineLogisticError::Epochs(p.epochs));
        }
        if let Some(w) = p
            .positive_weight
            .filter(|w| !(*w > 0.0 && *w <= MAX_POSITIVE_WEIGHT))
        {
            return Err(OnlineLogisticError::PositiveWeight(w));
        }
        Ok(p)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// A fitted model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnlineLogistic {
    mean: Array1<f64>,
    scale: Array1<f64>,
    weights: Array1<f64>,
    bias: f64,
    positive_weight: f64,
    /// Examples seen, for the learning-rate schedule.
    seen: u64,
    /// Batches learned from.
    pub updates: u64,
}

impl OnlineLogistic {
    /// The probability of fraud for one row.
    pub fn probability(&self, row: &[f64]) -> f64 {
        sigmoid(self.margin(row))
    }

    pub fn n_features(&self) -> usize {
        self.weights.len()
    }

    /// Examples learned from, over every fit and update.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Checks a model read from outside: one length for every array, finite
    /// values, positive scales, and weights small enough that the margin of
    /// any input (each squashed feature lies within `SQUASH_MAX`) stays
    /// under [`super::SUM_LIMIT`], so that a probability is always finite.
    pub fn check(&self) -> Result<(), ParamsError> {
        let n = self.weights.len();
        for (parameter, found) in [("mean", self.mean.len()), ("scale", self.scale.len())] {
            if found != n || n == 0 {
                return Err(ParamsError::Shape {
                    parameter,
                    expected: n,
                    found,
                });
            }
        }
        let named = |name: &'static str, j: usize| move || format!("{name}[{j}]");
        let mut bound = super::finite(|| "bias".into(), self.bias)?.abs();
        for j in 0..n {
            let w = super::finite(named("weights", j), self.weights[j])?;
            let mean = super::finite(named("mean", j), self.mean[j])?;
            let scale = super::positive(named("scale", j), self.scale[j])?;
            bound += w.abs() * ((SQUASH_MAX + mean.abs()) / scale);
            super::bounded(named("weights", j), bound)?;
        }
        super::positive(|| "positive_weight".into(), self.positive_weight)?;
        Ok(())
    }

    fn margin(&self, row: &[f64]) -> f64 {
        let mut z = self.bias;
        for (j, &v) in row.iter().enumerate() {
            z += self.weights[j] * (squash(v) - self.mean[j]) / self.scale[j];
        }
        z
    }

    /// Each contributing feature's push on the margin for `row`, for reason
    /// codes: standardised value times weight.
    pub fn contributions(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .enumerate()
            .map(|(j, &v)| self.weights[j] * (squash(v) - self.mean[j]) / self.scale[j])
            .collect()
    }

    fn learn(&mut self, params: &OnlineLogisticValidParams, x: &Array2<f64>, y: &Array1<bool>) {
        let mut rng = Rng::seed_from(params.seed ^ self.updates);
        let mut order: Vec<usize> = (0..x.nrows()).collect();
        for _ in 0..params.epochs {
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for &r in &order {
                let row = x.row(r);
                let row = row.as_slice().map_or_else(|| row.to_vec(), <[f64]>::to_vec);
                let target = if y[r] { 1.0 } else { 0.0 };
                let weight = if y[r] { self.positive_weight } else { 1.0 };
                // A decaying step keeps later batches from undoing earlier
                // ones wholesale.
                self.seen += 1;
                let rate = params.learning_rate
                    / (1.0 + params.learning_rate * params.l2 * self.seen as f64).sqrt();
                let gradient = weight * (self.probability(&row) - target);
                for (j, &v) in row.iter().enumerate() {
                    let z = (squash(v) - self.mean[j]) / self.scale[j];
                    self.weights[j] -= rate * (gradient * z + params.l2 * self.weights[j]);
                }
                self.bias -= rate * gradient;
            }
        }
        self.updates += 1;
    }
}

/// `ln(1 + f64::MAX)`: the largest magnitude [`squash`] returns, for any
/// input, infinite ones included.
const SQUASH_MAX: f64 = 709.782_712_893_384;

/// Below this magnitude `squash` works in single precision; above it, where
/// `as f32` would turn the value into infinity, in double precision.
const SINGLE_LIMIT: f64 = f32::MAX as f64;

/// `sign(v) ln(1 + |v|)`: amounts and balances span ten orders of
/// magnitude; compressed, a linear model can weigh their scale rather than
/// be swamped by their largest values. Finite for every input but NaN, and
/// never over `SQUASH_MAX`.
fn squash(v: f64) -> f64 {
    let a = v.abs();
    // ln(1 + |v|) in single precision: a third of ln_1p's cost, and seven
    // digits are more than a compressed feature needs. Training and scoring
    // share this function, so they agree exactly. Beyond f32's range the
    // cast would give infinity, so the logarithm is taken in f64 there, of
    // at most f64::MAX.
    let squashed = if a < SINGLE_LIMIT {
        f64::from((1.0 + a as f32).ln())
    } else {
        a.min(f64::MAX).ln()
    };
    v.signum() * squashed
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn check_batch(
    x: &Array2<f64>,
    y: &Array1<bool>,
    features: Option<usize>,
) -> Result<(), OnlineLogisticError> {
    if x.nrows() == 0 || y.is_empty() {
        return Err(OnlineLogisticError::Empty);
    }
    if let Some(expected) = features.filter(|&e| e != x.ncols()) {
        return Err(OnlineLogisticError::Features {
            expected,
            found: x.ncols(),
        });
    }
    if let Some((row, column)) = super::first_non_finite(x) {
        return Err(OnlineLogisticError::NotFinite { row, column });
    }
    Ok(())
}

impl<'a> FitWith<'a, Array2<f64>, Array1<bool>, OnlineLogisticError> for OnlineLogisticValidParams {
    type ObjectIn = Option<OnlineLogistic>;
    type ObjectOut = OnlineLogistic;

    /// `partial_fit`: learns from one more batch; with no model yet, starts
    /// one from this batch (its scaler and class balance). A
    /// `positive_weight` given replaces the model's from this batch on.
    fn fit_with(
        &self,
        model: Option<OnlineLogistic>,
        dataset: &'a DatasetBase<Array2<f64>, Array1<bool>>,
    ) -> Result<OnlineLogistic, OnlineLogisticError> {
        let (x, y) = (dataset.records(), dataset.targets());
        check_batch(x, y, model.as_ref().map(|m| m.weights.len()))?;
        let mut model = match model {
            Some(mut m) => {
                if let Some(w) = self.positive_weight {
                    m.positive_weight = w;
                }
                m
            }
            None => {
                let n = x.nrows() as f64;
                let squashed = x.mapv(squash);
                let mean = squashed
                    .mean_axis(ndarray::Axis(0))
                    .unwrap_or_else(|| Array1::zeros(x.ncols()));
                let scale =
                    squashed
                        .std_axis(ndarray::Axis(0), 0.0)
                        .mapv(|s| if s > 1e-12 { s } else { 1.0 });
                let positives = y.iter().filter(|&&b| b).count() as f64;
                let balanced = if positives > 0.0 {
                    (n - positives) / positives
                } else {
                    1.0
                };
                OnlineLogistic {
                    weights: Array1::zeros(x.ncols()),
                    mean,
                    scale,
                    bias: 0.0,
                    positive_weight: self.positive_weight.unwrap_or(balanced),
                    seen: 0,
                    updates: 0,
                }
            }
        };
        model.learn(self, x, y);
        Ok(model)
    }
}

impl Fit<Array2<f64>, Array1<bool>, OnlineLogisticError> for OnlineLogisticValidParams {
    type Object = OnlineLogistic;

    fn fit(
        &self,
        dataset: &DatasetBase<Array2<f64>, Array1<bool>>,
    ) -> Result<OnlineLogistic, OnlineLogisticError> {
        self.fit_with(None, dataset)
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for OnlineLogistic {
    /// Probabilities of fraud.
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        for (target, row) in y.iter_mut().zip(x.rows()) {
            *target = self.probability(&row.to_vec());
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rare positives shifted along two of three features.
    fn data(seed: u64, n: usize) -> (Array2<f64>, Array1<bool>) {
        let mut rng = Rng::seed_from(seed);
        let y: Array1<bool> = (0..n).map(|i| i % 25 == 0).collect();
        let x = Array2::from_shape_fn((n, 3), |(i, j)| {
            let shift = if y[i] && j < 2 { 2.5 } else { 0.0 };
            (rng.normal() + shift) * [1.0, 1e6, 1.0][j]
        });
        (x, y)
    }

    fn auc(model: &OnlineLogistic, x: &Array2<f64>, y: &Array1<bool>) -> f64 {
        let scores = model.predict(x).to_vec();
        crate::eval::ranking::roc_auc(&scores, &y.to_vec()).unwrap_or(f64::NAN)
    }

    #[test]
    fn bad_params_name_the_value() {
        let (x, y) = data(1, 50);
        let ds = DatasetBase::new(x, y);
        let err = |p: OnlineLogisticParams| p.fit(&ds).map(|_| ()).unwrap_err().to_string();
        assert_eq!(
            err(OnlineLogisticParams::default().learning_rate(0.0)),
            "learning_rate must be positive and finite, got 0"
        );
        assert_eq!(
            err(OnlineLogisticParams::default().l2(-1.0)),
            "l2 must be non-negative and finite, got -1"
        );
        assert_eq!(
            err(OnlineLogisticParams::default().epochs(0)),
            "epochs must be in 1..=1000, got 0"
        );
        assert_eq!(
            err(OnlineLogisticParams::default().positive_weight(f64::NAN)),
            "positive_weight must be positive and at most 1e6, got NaN"
        );
        // Regression: 1e308 trained weights past what loading accepts.
        assert_eq!(
            err(OnlineLogisticParams::default().positive_weight(1e308)),
            "positive_weight must be positive and at most 1e6, got 1e308"
        );
        assert_eq!(
            err(OnlineLogisticParams::default().epochs(MAX_EPOCHS + 1)),
            "epochs must be in 1..=1000, got 1001"
        );
    }

    #[test]
    fn learns_rare_positives_despite_scale_and_keeps_learning_online() {
        let (x, y) = data(2, 4_000);
        let (test_x, test_y) = data(3, 4_000);
        let params = OnlineLogisticParams::default();
        let model = params.fit(&DatasetBase::new(x.clone(), y.clone())).unwrap();
        assert!(auc(&model, &test_x, &test_y) > 0.95);
        assert_eq!(
            model,
            params.fit(&DatasetBase::new(x, y)).unwrap(),
            "same seed, same model"
        );

        // Small batches, some with one class only, must not fail and keep
        // the model good.
        let mut model = model;
        for start in (0..1_000).step_by(10) {
            let (bx, by) = data(100 + start as u64, 10);
            model = params
                .fit_with(Some(model), &DatasetBase::new(bx, by))
                .unwrap();
        }
        assert_eq!(model.updates, 101);
        assert!(auc(&model, &test_x, &test_y) > 0.95);
    }

    /// A model whose every number is known, for steps checked by hand.
    fn known() -> OnlineLogistic {
        OnlineLogistic {
            mean: ndarray::array![0.0, 1.0],
            scale: ndarray::array![1.0, 2.0],
            weights: ndarray::array![0.5, -0.25],
            bias: -1.0,
            positive_weight: 1.0,
            seen: 3,
            updates: 0,
        }
    }

    /// One step of SGD on weighted log loss with L2, written out apart from
    /// `learn`: rate `lr / sqrt(1 + lr l2 seen)` with `seen` counting this
    /// example, gradient `weight (p - y)` on each standardised feature.
    fn by_hand(m: &OnlineLogistic, row: [f64; 2], fraud: bool, weight: f64) -> (Vec<f64>, f64) {
        let (lr, l2) = (0.1, 0.01);
        let z = [(squash(row[0]) - 0.0) / 1.0, (squash(row[1]) - 1.0) / 2.0];
        let margin = -1.0 + 0.5 * z[0] - 0.25 * z[1];
        let p = 1.0 / (1.0 + (-margin).exp());
        let rate = lr / (1.0 + lr * l2 * (m.seen + 1) as f64).sqrt();
        let g = weight * (p - if fraud { 1.0 } else { 0.0 });
        let w = [0.5, -0.25];
        let weights = (0..2).map(|j| w[j] - rate * (g * z[j] + l2 * w[j]));
        (weights.collect(), -1.0 - rate * g)
    }

    #[test]
    fn a_weighted_step_is_the_hand_computed_gradient() {
        let params = OnlineLogisticParams::default()
            .learning_rate(0.1)
            .l2(0.01)
            .epochs(1);
        let row = [2.0, -3.0];
        for (fraud, given, weight) in [
            (true, Some(7.0), 7.0),
            (true, None, 1.0),
            // A legitimate example weighs 1, whatever a fraud weighs.
            (false, Some(7.0), 1.0),
        ] {
            let p = given.map_or(params, |w| params.positive_weight(w));
            let batch = DatasetBase::new(ndarray::array![[row[0], row[1]]], ndarray::array![fraud]);
            let fitted = p.fit_with(Some(known()), &batch).unwrap();
            let (weights, bias) = by_hand(&known(), row, fraud, weight);
            for (j, (got, want)) in fitted.weights.iter().zip(&weights).enumerate() {
                assert!((got - want).abs() < 1e-12, "{fraud} {given:?} w{j}");
            }
            assert!((fitted.bias - bias).abs() < 1e-12, "{fraud} {given:?} bias");
            assert_eq!((fitted.seen, fitted.updates), (4, 1));
            // The weight given is kept for the fits after it.
            assert_eq!(fitted.positive_weight, given.unwrap_or(1.0));
        }
        // A fraud weighted 7 moves the model further than one weighted 1.
        let (heavy, _) = by_hand(&known(), row, true, 7.0);
        let (light, _) = by_hand(&known(), row, true, 1.0);
        assert!((heavy[0] - 0.5).abs() > 6.0 * (light[0] - 0.5).abs());
    }

    #[test]
    fn squashing_is_finite_and_bounded_for_every_value_beyond_f32s_range() {
        for v in [1e30, 3.5e38, 1e39, 1e300, f64::MAX, f64::INFINITY] {
            for v in [v, -v] {
                let s = squash(v);
                assert!(s.is_finite() && s.abs() <= SQUASH_MAX, "squash({v}) = {s}");
                assert!(
                    (s.abs() - v.abs().min(f64::MAX).ln_1p()).abs() < 1e-4,
                    "{v}"
                );
            }
        }
        // Monotone across the switch to double precision.
        assert!(squash(f64::from(f32::MAX)) <= squash(1e39));
    }

    #[test]
    fn a_loaded_model_whose_margin_can_overflow_is_refused_naming_the_weight() {
        let (x, y) = data(5, 200);
        let mut model = OnlineLogisticParams::default()
            .fit(&DatasetBase::new(x, y))
            .unwrap();
        assert_eq!(model.check(), Ok(()));
        let extreme = [1e30, -1e39, f64::MAX];
        assert!(model.probability(&extreme).is_finite());
        model.weights[1] = 1e300;
        let err = model.check().unwrap_err();
        assert!(
            matches!(&err, ParamsError::Overflow { parameter, .. } if parameter == "weights[1]"),
            "{err}"
        );
        model.weights[1] = f64::NAN;
        assert!(err.to_string().contains("weights[1]"));
        assert!(matches!(model.check(), Err(ParamsError::NotFinite { .. })));
    }

    #[test]
    fn a_batch_of_the_wrong_width_is_refused() {
        let (x, y) = data(4, 100);
        let params = OnlineLogisticParams::default();
        let model = params.fit(&DatasetBase::new(x, y)).unwrap();
        let wrong = DatasetBase::new(Array2::zeros((2, 5)), Array1::from(vec![true, false]));
        let err = params
            .fit_with(Some(model), &wrong)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.to_string(), "the batch has 5 features, the model 3");
    }
}
