//! An autoencoder: a small MLP that learns to reconstruct legitimate rows
//! from min-max scaled features. Rows it reconstructs badly are unusual.
//!
//! Network: `d → hidden (tanh) → d (sigmoid)`, trained with Adam on mean
//! squared error. The last `validation_share` of the training rows (they are
//! in time order) is held out; the score is a row's reconstruction error
//! over the validation rows' 99th percentile, clipped to [0, 1].
//!
//! The min-max scaler is the model's own, fitted on the training rows:
//! linfa-preprocessing's would bring its text-vectoriser dependencies for ten
//! lines of arithmetic.
//!
//! # Examples
//!
//! ```
//! use fraudflow::models::autoencoder::AutoencoderParams;
//! use linfa::prelude::*;
//! use ndarray::{array, Array2};
//!
//! // Rows on a line: the third feature is the mean of the first two.
//! let x = Array2::from_shape_fn((2_000, 3), |(i, j)| {
//!     let (a, b) = ((i % 37) as f64 / 37.0, (i % 11) as f64 / 11.0);
//!     [a, b, (a + b) / 2.0][j]
//! });
//! let model = AutoencoderParams::default().fit(&DatasetBase::from(x)).unwrap();
//! let on_line = model.score(&[0.4, 0.6, 0.5]);
//! let off_line = model.score(&[0.0, 1.0, 1.0]);
//! assert!(off_line > on_line, "{off_line} vs {on_line}");
//! ```

use linfa::prelude::*;
use linfa::ParamGuard;
use ndarray::{Array1, Array2, ArrayBase, Data, Ix2};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ParamsError;
use crate::eda::quantile;
use crate::generate::Rng;

#[derive(Debug, Error)]
pub enum AutoencoderError {
    #[error("hidden must be in 1..={MAX_HIDDEN}, got {0}")]
    Hidden(usize),
    #[error("epochs must be in 1..={MAX_EPOCHS}, got {0}")]
    Epochs(usize),
    #[error("learning_rate must be positive and finite, got {0}")]
    LearningRate(f64),
    #[error("validation_share must be in (0, 0.5], got {0}")]
    ValidationShare(f64),
    #[error("cannot fit on {0} rows: at least 10 are needed")]
    TooFewRows(usize),
    #[error("the training data has a non-finite value at row {row}, column {column}")]
    NotFinite { row: usize, column: usize },
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// The most hidden units: far more than the features it compresses (13),
/// and a bound on the size of its weights.
pub const MAX_HIDDEN: usize = 1_024;

/// The most passes over the training rows: the default is 10.
pub const MAX_EPOCHS: usize = 1_000;

/// Checked parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutoencoderValidParams {
    hidden: usize,
    epochs: usize,
    learning_rate: f64,
    validation_share: f64,
    seed: u64,
}

/// Unchecked parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutoencoderParams(AutoencoderValidParams);

impl Default for AutoencoderParams {
    fn default() -> Self {
        AutoencoderParams(AutoencoderValidParams {
            hidden: 8,
            epochs: 10,
            learning_rate: 0.005,
            validation_share: 0.15,
            seed: 42,
        })
    }
}

impl AutoencoderParams {
    /// Units in the hidden layer.
    pub fn hidden(mut self, n: usize) -> Self {
        self.0.hidden = n;
        self
    }
    pub fn epochs(mut self, n: usize) -> Self {
        self.0.epochs = n;
        self
    }
    pub fn learning_rate(mut self, rate: f64) -> Self {
        self.0.learning_rate = rate;
        self
    }
    /// Share of the rows, taken from the end, that place the score's p99.
    pub fn validation_share(mut self, share: f64) -> Self {
        self.0.validation_share = share;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.0.seed = seed;
        self
    }
}

impl ParamGuard for AutoencoderParams {
    type Checked = AutoencoderValidParams;
    type Error = AutoencoderError;

    fn check_ref(&self) -> Result<&Self::Checked, Self::Error> {
        let p = &self.0;
        if !(1..=MAX_HIDDEN).contains(&p.hidden) {
            return Err(AutoencoderError::Hidden(p.hidden));
        }
        if !(1..=MAX_EPOCHS).contains(&p.epochs) {
            return Err(AutoencoderError::Epochs(p.epochs));
        }
        if !(p.learning_rate > 0.0 && p.learning_rate.is_finite()) {
            return Err(AutoencoderError::LearningRate(p.learning_rate));
        }
        if !(p.validation_share > 0.0 && p.validation_share <= 0.5) {
            return Err(AutoencoderError::ValidationShare(p.validation_share));
        }
        Ok(p)
    }

    fn check(self) -> Result<Self::Checked, Self::Error> {
        self.check_ref()?;
        Ok(self.0)
    }
}

/// A fitted autoencoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Autoencoder {
    min: Array1<f64>,
    range: Array1<f64>,
    /// hidden × d
    w1: Array2<f64>,
    b1: Array1<f64>,
    /// d × hidden
    w2: Array2<f64>,
    b2: Array1<f64>,
    /// Reconstruction error at the validation rows' 99th percentile.
    p99: f64,
}

/// Widest a scaled feature may be, either way: training rows scale into
/// [0, 1], so a value a million ranges away is as unusual as the score can
/// say (its error alone passes any p99), and the clamp keeps every sum of
/// the network finite for every finite input.
const Z_LIMIT: f64 = 1e6;

/// A raw value scaled by a feature's training minimum and range, clamped
/// to `Z_LIMIT`: training and both scoring paths share it.
fn scaled(v: f64, lo: f64, range: f64) -> f64 {
    ((v - lo) / range).clamp(-Z_LIMIT, Z_LIMIT)
}

/// The output layer's activation; training and scoring share it.
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The hidden layer's activation: tanh(x) = 2 / (1 + e^(-2x)) - 1, by `exp`,
/// which costs half of the library's `tanh`. Near zero it loses a few
/// digits of relative precision, none of absolute.
fn tanh(x: f64) -> f64 {
    2.0 / (1.0 + (-2.0 * x).exp()) - 1.0
}

/// Adam's running moments for one parameter array.
struct Adam {
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Adam {
    fn new(n: usize) -> Adam {
        Adam {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }

    fn step(&mut self, params: &mut [f64], grads: &[f64], rate: f64, t: i32) {
        const B1: f64 = 0.9;
        const B2: f64 = 0.999;
        let (c1, c2) = (1.0 - B1.powi(t), 1.0 - B2.powi(t));
        for i in 0..params.len() {
            self.m[i] = B1 * self.m[i] + (1.0 - B1) * grads[i];
            self.v[i] = B2 * self.v[i] + (1.0 - B2) * grads[i] * grads[i];
            params[i] -= rate * (self.m[i] / c1) / ((self.v[i] / c2).sqrt() + 1e-8);
        }
    }
}

const BATCH: usize = 32;

impl<T> Fit<Array2<f64>, T, AutoencoderError> for AutoencoderValidParams {
    type Object = Autoencoder;

    fn fit(&self, dataset: &DatasetBase<Array2<f64>, T>) -> Result<Autoencoder, AutoencoderError> {
        let x = dataset.records();
        let (rows, d) = x.dim();
        if rows < 10 {
            return Err(AutoencoderError::TooFewRows(rows));
        }
        if let Some((row, column)) = super::first_non_finite(x) {
            return Err(AutoencoderError::NotFinite { row, column });
        }
        let validation = ((rows as f64 * self.validation_share).ceil() as usize).clamp(1, rows - 1);
        let train = rows - validation;
        let min = x.fold_axis(ndarray::Axis(0), f64::INFINITY, |a, &b| a.min(b));
        let max = x.fold_axis(ndarray::Axis(0), f64::NEG_INFINITY, |a, &b| a.max(b));
        // A range wider than f64 holds (values near both ends) is taken as
        // f64::MAX: its rows then scale to the clamp, never to NaN.
        let range = (&max - &min).mapv(|r| if r > 0.0 { r.min(f64::MAX) } else { 1.0 });
        let mut rng = Rng::seed_from(self.seed);
        let h = self.hidden;
        let init = |rng: &mut Rng, fan_in: usize| rng.normal() * (1.0 / fan_in as f64).sqrt();
        let mut model = Autoencoder {
            w1: Array2::from_shape_fn((h, d), |_| init(&mut rng, d)),
            b1: Array1::zeros(h),
            w2: Array2::from_shape_fn((d, h), |_| init(&mut rng, h)),
            b2: Array1::zeros(d),
            min,
            range,
            p99: 1.0,
        };
        let scaled: Vec<Vec<f64>> = (0..rows)
            .map(|r| model.scale(x.row(r).iter().copied()))
            .collect();
        model.train(&scaled[..train], self, &mut rng);
        let mut errors: Vec<f64> = scaled[train..].iter().map(|z| model.error(z)).collect();
        errors.sort_unstable_by(f64::total_cmp);
        model.p99 = quantile(&errors, 0.99)
            .filter(|p| *p > 0.0)
            .unwrap_or(f64::MIN_POSITIVE);
        Ok(model)
    }
}

impl Autoencoder {
    /// Reconstruction error over the validation p99, clipped to [0, 1].
    pub fn score(&self, row: &[f64]) -> f64 {
        let error = self
            .error_on_stack(row)
            .unwrap_or_else(|| self.error(&self.scale(row.iter().copied())));
        (error / self.p99).clamp(0.0, 1.0)
    }

    /// The reconstruction error of a raw row with no allocation, for the
    /// widths the ensemble uses: the same operations in the same order as
    /// `error(scale(row))`, so the same number. `None` for wider models.
    fn error_on_stack(&self, row: &[f64]) -> Option<f64> {
        const MAX: usize = 16;
        let (h, d) = self.w1.dim();
        if d > MAX || h > MAX || row.len() != d {
            return None;
        }
        let (w1, w2) = (self.w1.as_slice()?, self.w2.as_slice()?);
        let (min, range) = (self.min.as_slice()?, self.range.as_slice()?);
        let (b1, b2) = (self.b1.as_slice()?, self.b2.as_slice()?);
        let mut z = [0.0; MAX];
        for j in 0..d {
            z[j] = scaled(row[j], min[j], range[j]);
        }
        // Each unit's sum runs over its inputs in order, as in `forward`, but
        // the units advance side by side: their additions overlap rather than
        // wait on one another. (Sums start at -0.0, as `Iterator::sum` does.)
        let mut hidden = [-0.0; MAX];
        for (j, v) in z[..d].iter().enumerate() {
            for (k, sum) in hidden[..h].iter_mut().enumerate() {
                *sum += w1[k * d + j] * v;
            }
        }
        for (k, unit) in hidden[..h].iter_mut().enumerate() {
            *unit = tanh(b1[k] + *unit);
        }
        let mut out = [-0.0; MAX];
        for (k, a) in hidden[..h].iter().enumerate() {
            for (j, sum) in out[..d].iter_mut().enumerate() {
                *sum += w2[j * h + k] * a;
            }
        }
        let mut error = [0.0; MAX];
        for j in 0..d {
            let o = sigmoid(b2[j] + out[j]);
            error[j] = (o - z[j]) * (o - z[j]);
        }
        Some(error[..d].iter().sum::<f64>() / d as f64)
    }

    pub fn n_features(&self) -> usize {
        self.min.len()
    }

    /// Checks a model read from outside: shapes that agree, finite values,
    /// positive ranges and p99, and weights small enough that no layer's sum
    /// passes [`super::SUM_LIMIT`] for any input (scaled inputs lie within
    /// `Z_LIMIT`, hidden activations within 1), so that a score is always
    /// finite.
    pub fn check(&self) -> Result<(), ParamsError> {
        let (h, d) = self.w1.dim();
        let shapes = [
            ("min", d, self.min.len()),
            ("range", d, self.range.len()),
            ("b1", h, self.b1.len()),
            ("w2 rows", d, self.w2.nrows()),
            ("w2 columns", h, self.w2.ncols()),
            ("b2", d, self.b2.len()),
        ];
        for (parameter, expected, found) in shapes {
            if found != expected || expected == 0 {
                return Err(ParamsError::Shape {
                    parameter,
                    expected,
                    found,
                });
            }
        }
        let named = |name: &'static str, i: usize| move || format!("{name}[{i}]");
        for j in 0..d {
            super::finite(named("min", j), self.min[j])?;
            super::positive(named("range", j), self.range[j])?;
        }
        super::positive(|| "p99".into(), self.p99)?;
        layer_bounds("w1", &self.w1, &self.b1, Z_LIMIT)?;
        layer_bounds("w2", &self.w2, &self.b2, 1.0)
    }

    /// Each feature's share of the reconstruction error of `row`: where the
    /// row least resembles the legitimate traffic it learned.
    pub fn errors(&self, row: &[f64]) -> Vec<f64> {
        let z = self.scale(row.iter().copied());
        let (_, out) = self.forward(&z);
        out.iter().zip(&z).map(|(o, v)| (o - v) * (o - v)).collect()
    }

    fn scale(&self, row: impl Iterator<Item = f64>) -> Vec<f64> {
        row.zip(self.min.iter().zip(&self.range))
            .map(|(v, (lo, r))| scaled(v, *lo, *r))
            .collect()
    }

    /// Hidden activations and reconstruction of a scaled row.
    fn forward(&self, z: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let hidden: Vec<f64> = (0..self.b1.len())
            .map(|k| {
                let sum: f64 = self.w1.row(k).iter().zip(z).map(|(w, v)| w * v).sum();
                tanh(self.b1[k] + sum)
            })
            .collect();
        let out = (0..self.b2.len())
            .map(|j| {
                let s = self.b2[j]
                    + self
                        .w2
                        .row(j)
                        .iter()
                        .zip(&hidden)
                        .map(|(w, a)| w * a)
                        .sum::<f64>();
                sigmoid(s)
            })
            .collect();
        (hidden, out)
    }

    fn error(&self, z: &[f64]) -> f64 {
        let (_, out) = self.forward(z);
        out.iter()
            .zip(z)
            .map(|(o, v)| (o - v) * (o - v))
            .sum::<f64>()
            / z.len() as f64
    }

    /// Mini-batch Adam on mean squared error, rows shuffled each epoch.
    fn train(&mut self, rows: &[Vec<f64>], params: &AutoencoderValidParams, rng: &mut Rng) {
        let (h, d) = self.w1.dim();
        let mut opt = [
            Adam::new(h * d),
            Adam::new(h),
            Adam::new(d * h),
            Adam::new(d),
        ];
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let mut step = 0;
        for _ in 0..params.epochs {
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for batch in order.chunks(BATCH) {
                let (mut gw1, mut gb1) = (vec![0.0; h * d], vec![0.0; h]);
                let (mut gw2, mut gb2) = (vec![0.0; d * h], vec![0.0; d]);
                for &r in batch {
                    let z = &rows[r];
                    let (hidden, out) = self.forward(z);
                    // d(mse)/d(pre-sigmoid output), then back through tanh.
                    let delta_out: Vec<f64> = (0..d)
                        .map(|j| 2.0 * (out[j] - z[j]) / d as f64 * out[j] * (1.0 - out[j]))
                        .collect();
                    for j in 0..d {
                        gb2[j] += delta_out[j];
                        for k in 0..h {
                            gw2[j * h + k] += delta_out[j] * hidden[k];
                        }
                    }
                    for k in 0..h {
                        let back: f64 = (0..d).map(|j| self.w2[[j, k]] * delta_out[j]).sum();
                        let delta = back * (1.0 - hidden[k] * hidden[k]);
                        gb1[k] += delta;
                        for j in 0..d {
                            gw1[k * d + j] += delta * z[j];
                        }
                    }
                }
                let n = batch.len() as f64;
                for g in [&mut gw1, &mut gb1, &mut gw2, &mut gb2] {
                    g.iter_mut().for_each(|v| *v /= n);
                }
                step += 1;
                let rate = params.learning_rate;
                if let (Some(w1), Some(b1), Some(w2), Some(b2)) = (
                    self.w1.as_slice_mut(),
                    self.b1.as_slice_mut(),
                    self.w2.as_slice_mut(),
                    self.b2.as_slice_mut(),
                ) {
                    opt[0].step(w1, &gw1, rate, step);
                    opt[1].step(b1, &gb1, rate, step);
                    opt[2].step(w2, &gw2, rate, step);
                    opt[3].step(b2, &gb2, rate, step);
                }
            }
        }
    }
}

/// Checks one layer: finite weights and biases, and each unit's largest
/// sum `|b| + Σ |w| · input_limit` within the limit.
fn layer_bounds(
    name: &'static str,
    w: &Array2<f64>,
    b: &Array1<f64>,
    input_limit: f64,
) -> Result<(), ParamsError> {
    for (unit, row) in w.rows().into_iter().enumerate() {
        let mut bound = super::finite(|| format!("b{}[{unit}]", &name[1..]), b[unit])?.abs();
        for (i, &v) in row.iter().enumerate() {
            bound += super::finite(|| format!("{name}[{unit}][{i}]"), v)?.abs() * input_limit;
        }
        super::bounded(|| format!("{name}[{unit}]"), bound)?;
    }
    Ok(())
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<f64>> for Autoencoder {
    /// Scores in [0, 1].
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<f64>) {
        for (target, row) in y.iter_mut().zip(x.rows()) {
            *target = self.score(&row.to_vec());
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        Array1::zeros(x.nrows())
    }
}

#[cfg(test)]
mod tests;
