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

/// Why a fitted model read from outside (a bundle) cannot score: every
/// model checks its parameters on loading, so that a score stays finite for
/// every finite input, and names the parameter at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamsError {
    /// Arrays that must agree in length do not.
    #[error("{parameter} has {found} values, but the model has {expected}")]
    Shape {
        parameter: &'static str,
        expected: usize,
        found: usize,
    },
    /// A parameter is NaN or infinite.
    #[error("{parameter} is {value:?}, which is not finite")]
    NotFinite { parameter: String, value: f64 },
    /// A parameter lies outside the range the model can hold.
    #[error("{parameter} is {value:?}, outside {range}")]
    OutOfRange {
        parameter: String,
        value: f64,
        range: &'static str,
    },
    /// Finite parameters so large that some finite input would overflow a
    /// sum on the way to the score.
    #[error("{parameter} is so large that scoring can overflow: the sum reaches {bound:e}, over the limit {limit:e}")]
    Overflow {
        parameter: String,
        bound: f64,
        limit: f64,
    },
    /// The forest's structure cannot be compiled.
    #[error("{0}")]
    Structure(String),
}

/// The largest magnitude a sum on the way to a score may reach: far above
/// any trained model's (they stay within thousands) and far enough below
/// `f64::MAX` that adding a few such sums never overflows.
pub const SUM_LIMIT: f64 = 1e300;

/// Refuses a parameter that is not finite, naming it.
pub(crate) fn finite(parameter: impl Fn() -> String, value: f64) -> Result<f64, ParamsError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(ParamsError::NotFinite {
            parameter: parameter(),
            value,
        })
    }
}

/// Refuses a parameter that is not finite and positive, naming it.
pub(crate) fn positive(parameter: impl Fn() -> String, value: f64) -> Result<f64, ParamsError> {
    if finite(&parameter, value)? > 0.0 {
        return Ok(value);
    }
    Err(ParamsError::OutOfRange {
        parameter: parameter(),
        value,
        range: "(0, inf)",
    })
}

/// Refuses a worst-case sum over `SUM_LIMIT` (or not finite), naming the
/// parameter whose sum it is.
pub(crate) fn bounded(parameter: impl Fn() -> String, bound: f64) -> Result<(), ParamsError> {
    if bound <= SUM_LIMIT {
        Ok(())
    } else {
        Err(ParamsError::Overflow {
            parameter: parameter(),
            bound,
            limit: SUM_LIMIT,
        })
    }
}
