use thiserror::Error;

use super::hyperparams::{MAX_SAMPLE_SIZE, MAX_TREES};

/// What can go wrong setting up or fitting an isolation forest.
#[derive(Debug, Error)]
pub enum IsolationForestError {
    #[error("n_trees must be in 1..={MAX_TREES}, got {0}")]
    Trees(usize),
    #[error("sample_size must be in 2..={MAX_SAMPLE_SIZE}, got {0}")]
    SampleSize(usize),
    #[error("contamination must be in (0, 0.5], got {0}")]
    Contamination(f64),
    #[error("cannot fit on {0} rows: at least 2 are needed")]
    TooFewRows(usize),
    #[error("the training data has a non-finite value at row {row}, column {column}")]
    NotFinite { row: usize, column: usize },
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}
