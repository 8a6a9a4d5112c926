//! `fraudflow generate`: a PaySim file of our own making.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use fraudflow::atomic::is_stdout;
use fraudflow::generate::{write_file, write_rows, Generator, GeneratorParams, FRAUD_RATE, STEPS};
use fraudflow::progress;

/// Writes a PaySim-like file: hourly volume, per-type amounts, balances and
/// fraud mechanics calibrated on the real data. The same seed gives the same
/// bytes.
#[derive(clap::Args)]
pub struct Args {
    /// Rows to write (the Kaggle file has 6362620).
    #[arg(long)]
    rows: u64,
    /// Seed of the random stream.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file; standard output when absent or `-`. A regular file is
    /// written to a temporary file beside it, then renamed, so a reader
    /// never sees half a file; a FIFO or a device is written where it is.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Hours to spread the rows over.
    #[arg(long, default_value_t = STEPS)]
    steps: u32,
    /// Share of rows that are fraud.
    #[arg(long, default_value_t = FRAUD_RATE)]
    fraud_rate: f64,
    /// From this step on, fraudsters change tactics: they no longer drain
    /// the account, they split amounts and reuse mules (docs/generator.md).
    #[arg(long, value_name = "STEP")]
    drift_at: Option<u32>,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let params = GeneratorParams {
        rows: args.rows,
        seed: args.seed,
        steps: args.steps,
        fraud_rate: args.fraud_rate,
        drift_at: args.drift_at,
    }
    .check()?;
    let started = Instant::now();
    let bar = progress::bar(args.rows, "rows", quiet);
    bar.set_message("generating");
    let out = args.out.as_deref().filter(|p| !is_stdout(p));
    match out {
        Some(path) => write_file(params, path, &bar)?,
        None => {
            if let Err(e) = write_rows(io::stdout().lock(), Generator::new(params), &bar) {
                super::stdout_failed(&e)
            }
        }
    }
    bar.finish_and_clear();
    if !quiet {
        let secs = started.elapsed().as_secs_f64();
        let target = out.map_or_else(
            || "standard output".to_string(),
            |p| p.display().to_string(),
        );
        eprintln!(
            "wrote {} rows to {target} in {secs:.2} s ({:.0} rows/s)",
            super::grouped(args.rows),
            args.rows as f64 / secs.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}
