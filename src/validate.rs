//! The data checks of the original system, on top of the eda figures.

use serde::Serialize;

use crate::eda::EdaReport;

/// The last step of PaySim's simulated month.
pub const LAST_STEP: u32 = 743;
/// At or below this many isFlaggedFraud positives, the flag says little.
pub const FLAGGED_WARNING_AT: u64 = 20;

#[derive(Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Validation {
    pub valid: bool,
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

/// Judges a file from its figures. Errors make it invalid; warnings do not.
///
/// # Examples
///
/// ```
/// use fraudflow::{eda::Eda, scan::{scan, ScanOptions}, validate::validate};
///
/// let data = "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,newbalanceDest,isFraud,isFlaggedFraud\n\
///             1,PAYMENT,10.0,C1,20.0,10.0,M2,0.0,0.0,1,0\n";
/// let mut eda = Eda::default();
/// let bad = scan(data.as_bytes(), ScanOptions::default(), |t| eda.add(t)).unwrap();
/// let v = validate(&eda.finish(bad));
/// assert!(!v.valid);
/// assert_eq!(v.errors[0].check, "fraud_types");
/// ```
pub fn validate(report: &EdaReport) -> Validation {
    let errors = errors(report);
    Validation {
        valid: errors.is_empty(),
        errors,
        warnings: warnings(report),
    }
}

/// What makes the file unusable: no rows, bad rows, fraud where PaySim
/// has none, step 0.
fn errors(report: &EdaReport) -> Vec<Finding> {
    let mut errors = Vec::new();
    let mut error = |check, message| errors.push(Finding { check, message });
    if report.rows == 0 {
        let message = match report.bad_rows.count {
            0 => "the file has no rows after its header".to_string(),
            n => format!("none of the file's {n} rows is valid"),
        };
        error("rows", message);
    }
    if report.bad_rows.count > 0 {
        let codes: Vec<String> = report
            .bad_rows
            .by_code
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        error(
            "rows",
            format!("{} bad rows ({})", report.bad_rows.count, codes.join(", ")),
        );
    }
    if let Some(&n) = report.bad_rows.by_code.get("unknown_type") {
        error(
            "types",
            format!("{n} rows have a type outside CASH_IN, CASH_OUT, DEBIT, PAYMENT, TRANSFER"),
        );
    }
    if report.fraud_in_unexpected_types > 0 {
        let where_: Vec<String> = report
            .by_type
            .iter()
            .filter(|t| !t.kind.can_be_fraud() && t.fraud > 0)
            .map(|t| format!("{} in {}", t.fraud, t.kind))
            .collect();
        error(
            "fraud_types",
            format!("fraud outside TRANSFER and CASH_OUT: {}", where_.join(", ")),
        );
    }
    if report.steps.first == Some(0) {
        error(
            "step_range",
            "steps start at 1, but step 0 occurs".to_string(),
        );
    }
    errors
}

/// What is worth knowing but does not stop a run.
fn warnings(report: &EdaReport) -> Vec<Finding> {
    let mut warnings = Vec::new();
    if let Some(last) = report.steps.last.filter(|&l| l > LAST_STEP) {
        warnings.push(Finding {
            check: "step_range",
            message: format!("last step {last} is past PaySim's month ({LAST_STEP} hours)"),
        });
    }
    if report.steps.out_of_order_rows > 0 {
        warnings.push(Finding {
            check: "step_order",
            message: format!(
                "{} rows have a step below that of an earlier row (the file is not in step order)",
                report.steps.out_of_order_rows
            ),
        });
    }
    if report.flagged <= FLAGGED_WARNING_AT {
        warnings.push(Finding {
            check: "flagged",
            message: format!(
                "isFlaggedFraud has only {} positives (at most {FLAGGED_WARNING_AT}): too few to learn from",
                report.flagged
            ),
        });
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::validate;
    use crate::eda::Eda;
    use crate::scan::{scan, ScanOptions};

    fn rows_message(body: &str) -> String {
        let head = crate::paysim::HEADER.join(",");
        let mut eda = Eda::default();
        let data = format!("{head}\n{body}");
        let bad = scan(data.as_bytes(), ScanOptions::default(), |t| eda.add(t)).unwrap();
        let v = validate(&eda.finish(bad));
        v.errors[0].message.clone()
    }

    #[test]
    fn a_file_without_valid_rows_says_whether_it_has_rows_at_all() {
        assert_eq!(rows_message(""), "the file has no rows after its header");
        let bad = "x,DEBIT,1,C1,2,1,C2,0,1,0,0\n1,DEBIT,1,C1\n";
        assert_eq!(rows_message(bad), "none of the file's 2 rows is valid");
    }
}
