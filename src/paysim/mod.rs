//! The PaySim transaction log: typed records, a streaming reader and a writer.
//!
//! The Kaggle release of PaySim is a CSV file with exactly these columns:
//! `step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud`.

mod error;
mod reader;
mod record;
mod writer;

pub use error::{NonFinite, ReadError, RowError, RowErrorKind, StepProblem, MAX_STEP};
pub(crate) use reader::step as step_of;
pub use reader::{parse_row, PaysimReader, ReaderOptions};
pub use record::{AccountError, AccountId, AccountKind, Transaction, TxnType, MAX_DIGITS};
pub use writer::{write_java_double, PaysimWriter};

/// The exact header of the Kaggle PaySim file, in order.
pub const HEADER: [&str; 11] = [
    "step",
    "type",
    "amount",
    "nameOrig",
    "oldbalanceOrg",
    "newbalanceOrig",
    "nameDest",
    "oldbalanceDest",
    "newbalanceDest",
    "isFraud",
    "isFlaggedFraud",
];
