use std::fmt;
use std::io;

use thiserror::Error;

use super::record::AccountError;
use crate::excerpt::Quote;

/// Why one row of a PaySim file was rejected. Every value named is a
/// bounded [`Quote`]: a 10 MB field makes a short message.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RowErrorKind {
    #[error("expected 11 fields, found {found}")]
    FieldCount { found: usize },
    #[error("column {column}: {value} is not a number")]
    NotANumber { column: &'static str, value: Quote },
    #[error("column {column}: {value} {problem}")]
    NotFinite {
        column: &'static str,
        value: Quote,
        problem: NonFinite,
    },
    #[error("column amount: {value} is negative")]
    NegativeAmount { value: Quote },
    #[error("column {column}: {value} is negative")]
    NegativeBalance { column: &'static str, value: Quote },
    #[error("column step: {value} {problem}")]
    BadStep { value: Quote, problem: StepProblem },
    #[error("column type: {value} is not one of CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER")]
    UnknownType { value: Quote },
    #[error("column {column}: {value}: {problem}")]
    BadAccount {
        column: &'static str,
        value: Quote,
        problem: AccountError,
    },
    #[error("column {column}: {value} is not a label (0, 1, 0.0 or 1.0)")]
    BadLabel { column: &'static str, value: Quote },
}

/// Why a number that parsed is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NonFinite {
    #[error("is NaN, not a number")]
    NaN,
    #[error("is infinite")]
    Infinite,
    #[error("is beyond the largest 64-bit float (about 1.8e308)")]
    Overflow,
}

impl NonFinite {
    /// Classifies a value that parsed to `value` (not finite) from `text`:
    /// written as infinity, or a finite number too large for a double.
    pub fn of(text: &[u8], value: f64) -> NonFinite {
        let digits = text.trim_ascii();
        let digits = digits
            .strip_prefix(b"-")
            .or_else(|| digits.strip_prefix(b"+"))
            .unwrap_or(digits);
        if value.is_nan() {
            NonFinite::NaN
        } else if digits
            .first()
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'i'))
        {
            NonFinite::Infinite
        } else {
            NonFinite::Overflow
        }
    }
}

/// The largest step a row may have: steps are hours counted in 32 bits.
pub const MAX_STEP: u32 = u32::MAX;

/// Why a step is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StepProblem {
    #[error("is not a number")]
    NotANumber,
    #[error("is not a whole number of hours")]
    Fraction,
    #[error("is negative")]
    Negative,
    #[error("is beyond the largest step {MAX_STEP} (steps are hours counted in 32 bits)")]
    TooLarge,
    #[error("{0}")]
    NotFinite(NonFinite),
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
///
/// `Open` and `Io` name their OS error in their own message, so they give no
/// `source()`: anyhow prints an error's chain, and a cause both in the
/// message and in the chain was printed twice ("cannot open x: No such file
/// or directory (os error 2): No such file or directory (os error 2)").
/// thiserror makes any field named `source` the source, hence `Display` and
/// `Error` written out below.
#[derive(Debug)]
pub enum ReadError {
    Open {
        path: String,
        source: io::Error,
    },
    Empty {
        expected: String,
    },
    Header {
        expected: String,
        found: Quote,
        detail: String,
    },
    Io {
        line: u64,
        source: io::Error,
    },
    Row(RowError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Open { path, source } => write!(f, "cannot open {path}: {source}"),
            ReadError::Empty { expected } => {
                write!(
                    f,
                    "the file is empty: expected the PaySim header {expected}"
                )
            }
            ReadError::Header {
                expected,
                found,
                detail,
            } => write!(
                f,
                "wrong header: expected {expected}, found {found}{detail}"
            ),
            ReadError::Io { line, source } => write!(f, "read failed at line {line}: {source}"),
            ReadError::Row(row) => row.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Row(row) => std::error::Error::source(row),
            _ => None,
        }
    }
}

impl From<RowError> for ReadError {
    fn from(row: RowError) -> ReadError {
        ReadError::Row(row)
    }
}

impl ReadError {
    /// True when the file's contents are at fault rather than the system:
    /// scripts see exit code 1 for these and 2 for the others.
    pub fn is_data_error(&self) -> bool {
        match self {
            ReadError::Empty { .. } | ReadError::Header { .. } | ReadError::Row(_) => true,
            ReadError::Io { .. } | ReadError::Open { .. } => false,
        }
    }
}
