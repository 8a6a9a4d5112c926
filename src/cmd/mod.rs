//! One module per subcommand: flags in, validated settings, work, report out.

pub mod eda;
pub mod features;
pub mod generate;
pub mod timely_args;
pub mod validate;

use std::path::PathBuf;

use fraudflow::paysim::ReadError;
use fraudflow::scan::ScanOptions;

/// The flags of the commands that read one PaySim file and report on it.
#[derive(clap::Args)]
pub struct FileArgs {
    /// The PaySim CSV file.
    pub file: PathBuf,
    /// Print the report as JSON, for programs.
    #[arg(long)]
    pub json: bool,
    /// Stop at the first bad row (exit 1) instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

impl FileArgs {
    pub fn scan_options(&self, quiet: bool) -> ScanOptions {
        ScanOptions {
            strict: self.strict,
            quiet,
        }
    }
}

/// Exit status for a failed command: 1 when the data is at fault, else 2.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<ReadError>() {
        Some(e) if e.is_data_error() => 1,
        _ => 2,
    }
}

/// Thousands separators for people: 6362620 -> 6,362,620.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An optional figure for people, `-` when absent.
pub fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}
