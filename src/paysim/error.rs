use std::io;

use thiserror::Error;

/// Why one row of a PaySim file was rejected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RowErrorKind {
    #[error("expected 11 fields, found {found}")]
    FieldCount { found: usize },
    #[error("column {column}: {value:?} is not a number")]
    NotANumber { column: &'static str, value: String },
    #[error("column {column}: {value:?} is not finite")]
    NotFinite { column: &'static str, value: String },
    #[error("column amount: {value} is negative")]
    NegativeAmount { value: f64 },
    #[error("column {column}: {value} is negative")]
    NegativeBalance { column: &'static str, value: f64 },
    #[error("column step: {value:?} is not a whole number of hours")]
    BadStep { value: String },
    #[error("column type: {value:?} is not one of CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER")]
    UnknownType { value: String },
    #[error("column {column}: {value:?} is not an account name (C or M then digits)")]
    BadAccount { column: &'static str, value: String },
    #[error("column {column}: {value:?} is not a label (0, 1, 0.0 or 1.0)")]
    BadLabel { column: &'static str, value: String },
}

impl RowErrorKind {
    /// A short stable code for reports and the dead-letter sink.
    pub fn code(&self) -> &'static str {
        match self {
            RowErrorKind::FieldCount { .. } => "field_count",
            RowErrorKind::NotANumber { .. } => "not_a_number",
            RowErrorKind::NotFinite { .. } => "not_finite",
            RowErrorKind::NegativeAmount { .. } => "negative_amount",
            RowErrorKind::NegativeBalance { .. } => "negative_balance",
            RowErrorKind::BadStep { .. } => "bad_step",
            RowErrorKind::UnknownType { .. } => "unknown_type",
            RowErrorKind::BadAccount { .. } => "bad_account",
            RowErrorKind::BadLabel { .. } => "bad_label",
        }
    }
}

/// A rejected row and the line it started on (1 is the header).
#[derive(Debug, Clone, PartialEq, Error)]
#[error("line {line}: {kind}")]
pub struct RowError {
    pub line: u64,
    pub kind: RowErrorKind,
}

/// Everything that can go wrong while reading a PaySim file.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("the file is empty: expected the PaySim header {expected}")]
    Empty { expected: String },
    #[error("wrong header: expected {expected}, found {found}{detail}")]
    Header {
        expected: String,
        found: String,
        detail: String,
    },
    #[error("read failed at line {line}: {source}")]
    Io { line: u64, source: csv::Error },
    #[error(transparent)]
    Row(#[from] RowError),
}

impl ReadError {
    /// True when the file's contents are at fault rather than the system:
    /// scripts see exit code 1 for these and 2 for the others.
    pub fn is_data_error(&self) -> bool {
        match self {
            ReadError::Empty { .. } | ReadError::Header { .. } | ReadError::Row(_) => true,
            ReadError::Io { source, .. } => !matches!(source.kind(), csv::ErrorKind::Io(_)),
            ReadError::Open { .. } => false,
        }
    }
}
