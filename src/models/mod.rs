//! The models of the ensemble, each in linfa's shape: parameters that
//! validate and name the bad value, `Fit`, `Predict`, seeded randomness.

pub mod autoencoder;
pub mod isolation_forest;
pub mod online_logistic;
