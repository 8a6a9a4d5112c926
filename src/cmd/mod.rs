//! One module per subcommand: flags in, validated settings, work, report out.

pub mod backtest;
pub mod eda;
pub mod features;
pub mod generate;
pub mod timely_args;
pub mod train;
pub mod validate;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use fraudflow::dataflow::source::{InputFormat, SourceSettings};
use fraudflow::dataflow::{FeatureInput, WINDOW_SECONDS};
use fraudflow::features::Contract;
use fraudflow::paysim::{PaysimReader, ReadError};
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

/// How a dataflow reads its input file and computes features.
#[derive(clap::Args, Clone, Debug)]
pub struct SourceArgs {
    /// Velocity window in seconds.
    #[arg(long, default_value_t = WINDOW_SECONDS)]
    pub window: u64,
    /// Seconds an event may arrive late and still be placed at its own time.
    #[arg(long, default_value_t = 120)]
    pub lateness: u64,
    /// Seconds of event time a source may run ahead of finished output:
    /// bounds the data in flight, and so memory.
    #[arg(long, default_value_t = SourceSettings::default().max_ahead)]
    pub max_ahead: u64,
    /// Bytes of input per block; workers take blocks in turn.
    #[arg(long, default_value_t = SourceSettings::default().block_bytes)]
    pub block_bytes: usize,
}

impl SourceArgs {
    /// Checks the flags and the input (its kind by extension; a PaySim
    /// header once, before any worker starts).
    pub fn input(&self, path: &Path, contract: Contract) -> anyhow::Result<FeatureInput> {
        if self.window == 0 {
            anyhow::bail!("--window must be at least 1 second");
        }
        let format = InputFormat::of(path).ok_or_else(|| {
            anyhow!(
                "{}: expected a .csv (PaySim) or .jsonl (JSON events) file",
                path.display()
            )
        })?;
        if format == InputFormat::PaysimCsv {
            PaysimReader::open(path)?;
        } else {
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        }
        Ok(FeatureInput {
            path: path.to_path_buf(),
            format,
            settings: SourceSettings {
                lateness: self.lateness,
                max_ahead: self.max_ahead,
                block_bytes: self.block_bytes,
            },
            contract,
            window: self.window,
        })
    }
}
