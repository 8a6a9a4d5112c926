//! The models of the ensemble, each in linfa's shape: parameters that
//! validate and name the bad value, `Fit`, `Predict`, seeded randomness.

pub mod autoencoder;
pub mod isolation_forest;
pub mod online_logistic;

use ndarray::{ArrayBase, Data, Ix2};

/// The first non-finite value of a training matrix, as (row, column): every
/// model refuses to fit on one, naming where it is.
pub(crate) fn first_non_finite<D: Data<Elem = f64>>(
    x: &ArrayBase<D, Ix2>,
) -> Option<(usize, usize)> {
    x.indexed_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|(at, _)| at)
}
