//! `fraudflow validate FILE`: the original system's data checks.

use std::process::ExitCode;

use fraudflow::paysim::ReadError;
use fraudflow::validate::{validate, Finding, Validation};
use serde::Serialize;

use super::eda::Stopped;

/// Checks a PaySim file: columns, types, fraud only in TRANSFER and
/// CASH_OUT, step range, bad rows, the isFlaggedFraud count. Exit 0 when
/// valid, 1 when not, 2 on usage errors.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: super::FileArgs,
}

#[derive(Serialize)]
struct Report {
    file: String,
    rows: u64,
    bad_rows: u64,
    #[serde(flatten)]
    validation: Validation,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let options = args.input.scan_options(quiet);
    let file = args.input.file.display().to_string();
    let report = match super::eda::profile_counted(&args.input.file, options) {
        Ok(eda) => Report {
            file,
            rows: eda.rows,
            bad_rows: eda.bad_rows.count,
            validation: validate(&eda),
        },
        // A file whose header or rows are wrong is invalid, not a failure;
        // under --strict the rows read before the bad one are still counted.
        Err(Stopped { error, rows }) if error.is_data_error() => Report {
            file,
            rows,
            bad_rows: u64::from(matches!(error, ReadError::Row(_))),
            validation: Validation {
                valid: false,
                errors: vec![Finding {
                    check: check_of(&error),
                    message: error.to_string(),
                }],
                warnings: vec![],
            },
        },
        Err(Stopped { error, .. }) => return Err(error.into()),
    };
    if args.input.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let v = &report.validation;
        outln!(
            "{}: {}",
            report.file,
            if v.valid { "valid" } else { "INVALID" }
        );
        outln!(
            "  rows {}, bad rows {}",
            super::grouped(report.rows),
            super::grouped(report.bad_rows)
        );
        for f in &v.errors {
            outln!("  error   [{}] {}", f.check, f.message);
        }
        for f in &v.warnings {
            outln!("  warning [{}] {}", f.check, f.message);
        }
    }
    Ok(if report.validation.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn check_of(err: &ReadError) -> &'static str {
    match err {
        ReadError::Empty { .. } | ReadError::Header { .. } => "columns",
        _ => "rows",
    }
}
