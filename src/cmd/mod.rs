//! One module per subcommand: flags in, validated settings, work, report out.

/// `println!` for reports on standard output, without its panic: a closed
/// pipe (`| head`) ends the program quietly, and any other write error ends
/// it with status 2 and the error (see [`print_out`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cmd::print_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` without its panic, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cmd::print_out(format_args!($($arg)*))
    };
}

pub mod backtest;
pub mod backtest_summary;
pub mod bench;
pub mod demo;
pub mod eda;
pub mod features;
pub mod feedback_args;
pub mod generate;
mod kept_metrics;
pub mod loadgen;
pub mod readiness;
pub mod replay;
pub mod run;
pub mod stopped;
pub mod threshold_args;
pub mod timely_args;
pub mod train;
pub mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fraudflow::dataflow::WINDOW_SECONDS;
use fraudflow::features::Contract;
use fraudflow::paysim::ReadError;
use fraudflow::pipeline::harness::fail_cluster;
use fraudflow::pipeline::training::TrainingError;
use fraudflow::pipeline::{Cluster, FeatureSettings, PipelineError, PipelineSettings, Stage};
use fraudflow::scan::ScanOptions;
use fraudflow::settings::{FeaturesTable, FileTable};
use fraudflow::sources::file::{
    FileSource, DEFAULT_BLOCK_BYTES, DEFAULT_LATENESS, DEFAULT_MAX_AHEAD, DEFAULT_STALL_TIMEOUT,
};
use fraudflow::sources::order::{TimeLimits, DEFAULT_FUTURE_LIMIT, DEFAULT_PAST_LIMIT};
use fraudflow::sources::SourceSettings;
use fraudflow::train::TrainError;

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
    let data = if let Some(e) = err.downcast_ref::<TrainingError>() {
        e.is_data_error()
    } else if let Some(e) = err.downcast_ref::<TrainError>() {
        e.is_data_error()
    } else if let Some(e) = err.downcast_ref::<PipelineError>() {
        e.is_data_error()
    } else {
        err.downcast_ref::<ReadError>()
            .is_some_and(ReadError::is_data_error)
    };
    fraudflow::pipeline::error::exit_status(data)
}

pub use fraudflow::progress::grouped;

/// An optional figure for people, `-` when absent.
pub fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
}

/// How a dataflow reads its input file and computes features; a flag not
/// given takes the dataflow file's value, or the default.
#[derive(clap::Args, Clone, Debug)]
pub struct SourceArgs {
    /// Velocity window in seconds [default: 3600].
    #[arg(long)]
    pub window: Option<u64>,
    /// Seconds an event may arrive late and still be placed at its own time
    /// [default: 120].
    #[arg(long)]
    pub lateness: Option<u64>,
    /// Seconds of event time a source may run ahead of finished output, once
    /// it has 4 blocks of its own unfinished: bounds the data in flight, and
    /// so memory [default: 14400].
    #[arg(long)]
    pub max_ahead: Option<u64>,
    /// Bytes of input per block; workers take blocks in turn [default:
    /// 262144].
    #[arg(long)]
    pub block_bytes: Option<usize>,
    /// Seconds an event may be stamped after the latest event time before
    /// it; later ones are dead letters, `time_too_far_ahead` [default:
    /// 31536000, a year].
    #[arg(long)]
    pub future_limit: Option<u64>,
    /// Seconds an event may be stamped before the latest event time before
    /// it; earlier ones are dead letters, `time_too_far_behind` [default:
    /// 2592000, thirty days].
    #[arg(long)]
    pub past_limit: Option<u64>,
    /// Seconds the run's end may stand still while its workers wait before
    /// the run ends as stalled, as when a process of several is stopped or
    /// cut off [default: 60].
    #[arg(long)]
    pub stall_timeout: Option<u64>,
}

impl SourceArgs {
    /// Checks the flags and the input (its kind by extension; a PaySim
    /// header once), before any worker starts.
    pub fn source(&self, path: &Path) -> anyhow::Result<SourceSettings> {
        let block_bytes = self.block_bytes.unwrap_or(DEFAULT_BLOCK_BYTES);
        if block_bytes == 0 {
            anyhow::bail!("--block-bytes must be at least 1");
        }
        let stall = self.stall_timeout.unwrap_or(DEFAULT_STALL_TIMEOUT);
        if stall == 0 {
            anyhow::bail!("--stall-timeout must be at least 1 second");
        }
        let mut file = FileSource::open(path)?;
        file.limits = TimeLimits {
            lateness_ms: ms(self.lateness.unwrap_or(DEFAULT_LATENESS)),
            future_ms: ms(self.future_limit.unwrap_or(DEFAULT_FUTURE_LIMIT)),
            past_ms: ms(self.past_limit.unwrap_or(DEFAULT_PAST_LIMIT)),
        };
        file.max_ahead_ms = self
            .max_ahead
            .unwrap_or(DEFAULT_MAX_AHEAD)
            .saturating_mul(1_000);
        file.block_bytes = block_bytes;
        file.stall_after = Duration::from_secs(stall);
        Ok(SourceSettings::File(file))
    }

    /// The features of `contract` with this window.
    pub fn features(&self, contract: Contract) -> anyhow::Result<FeatureSettings> {
        let window = self.window.unwrap_or(WINDOW_SECONDS);
        if window == 0 {
            anyhow::bail!("--window must be at least 1 second");
        }
        Ok(FeatureSettings {
            contract,
            window_ms: window.saturating_mul(1_000),
        })
    }

    /// These flags, with what they leave unset taken from a dataflow file.
    pub fn or_file(&self, file: &FileTable, features: &FeaturesTable) -> SourceArgs {
        SourceArgs {
            window: self.window.or(Some(features.window_seconds)),
            lateness: self.lateness.or(Some(file.lateness_seconds)),
            max_ahead: self.max_ahead.or(Some(file.max_ahead_seconds)),
            block_bytes: self.block_bytes.or(Some(file.block_bytes)),
            future_limit: self.future_limit.or(Some(file.future_limit_seconds)),
            past_limit: self.past_limit.or(Some(file.past_limit_seconds)),
            stall_timeout: self.stall_timeout.or(Some(file.stall_timeout_seconds)),
        }
    }
}

/// Seconds as milliseconds, saturating.
fn ms(seconds: u64) -> u64 {
    seconds.saturating_mul(1_000)
}

/// The settings of a run over one input file, up to its features.
pub fn file_pipeline(
    input: &Path,
    source: &SourceArgs,
    contract: Contract,
    cluster: &Cluster,
    stage: Stage,
) -> anyhow::Result<PipelineSettings> {
    Ok(PipelineSettings {
        cluster: cluster.clone(),
        source: source.source(input)?,
        features: source.features(contract)?,
        stage,
    })
}

/// Runs a command's work on `cluster`; a failure before the workers start
/// still ends the other processes of the run at once (see
/// `pipeline::harness::fail_cluster`).
pub fn on_cluster<T>(
    cluster: &Cluster,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    work().map_err(|err| {
        // After the workers ran, the others already know how it ended.
        if cluster.processes() == 1 || fraudflow::pipeline::harness::started() {
            return err;
        }
        let error = match err.downcast::<PipelineError>() {
            Ok(e) => e,
            Err(other) => PipelineError::Setup {
                data: exit_code(&other) == 1,
                message: format!("{other:#}"),
            },
        };
        anyhow::Error::new(fail_cluster(cluster, error))
    })
}

/// Writes to standard output; see [`outln!`].
pub fn print_out(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        stdout_failed(&e)
    }
}

/// Whether `err` is a write to standard output that found the pipe closed
/// (`| head`): a command then ends quietly, as [`stdout_failed`] does.
pub fn closed_stdout(err: &anyhow::Error) -> bool {
    use fraudflow::atomic::{is_stdout, OutputError};
    let output = |e: &OutputError| match e {
        OutputError::Io { path, cause } => is_stdout(path) && is_closed(cause),
        _ => false,
    };
    match err.downcast_ref::<PipelineError>() {
        Some(PipelineError::Io { path, cause }) => is_stdout(path) && is_closed(cause),
        Some(PipelineError::Output(e)) => output(e),
        _ => err.downcast_ref::<OutputError>().is_some_and(output),
    }
}

fn is_closed(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Ends the program after a failed write to standard output: quietly for
/// a closed pipe, else with status 2.
pub fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0)
    }
    eprintln!("fraudflow: writing to standard output: {e}");
    std::process::exit(2)
}
