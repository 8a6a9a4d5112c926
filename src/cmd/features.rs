//! `fraudflow features`: the feature table training reads, made by the
//! dataflow that serves.

use std::path::PathBuf;
use std::process::ExitCode;

use fraudflow::features::Contract;
use fraudflow::pipeline::{self, Cluster, Outputs, RunSummary, Stage, StageOutputs};
use fraudflow::sinks::file::{CsvTable, JsonLinesSink, ParquetSink};

use super::timely_args::TimelyArgs;
use super::{file_pipeline, grouped, on_cluster, SourceArgs};

/// Computes the feature table of a PaySim file with the dataflow: velocity
/// as windowed arrangements sharded over the workers. Bad rows go to the
/// dead-letter file with a code; events in = valid + dead letters.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// The input: a PaySim CSV file (`.csv`) or JSON events, one a line
    /// (`.jsonl`).
    #[arg(long)]
    input: PathBuf,
    /// The feature table to write: `.csv`, or `.parquet` for pandas and
    /// polars.
    #[arg(long)]
    out: PathBuf,
    /// Feature contract.
    #[arg(long, value_enum, default_value_t = Contract::V2)]
    contract: Contract,
    /// Dead letters, one JSON object a line; default: OUT with extension
    /// `.dead-letter.jsonl`.
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    timely: TimelyArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let parquet = match args.out.extension().and_then(|e| e.to_str()) {
        Some("csv") => false,
        Some("parquet") => true,
        _ => anyhow::bail!(
            "{}: the feature table is written as .csv or .parquet",
            args.out.display()
        ),
    };
    let cluster = args.timely.cluster()?;
    let total = on_cluster(&cluster, || featurize(&args, &cluster, parquet))?;
    if !quiet {
        eprintln!(
            "features: {} events in = {} valid + {} dead letters ({} late), {} rows written, {:.2} s, {:.0} events/s",
            grouped(total.events_in),
            grouped(total.valid),
            grouped(total.dead),
            grouped(total.late),
            grouped(total.written),
            total.seconds,
            total.events_in as f64 / total.seconds.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn featurize(args: &Args, cluster: &Cluster, parquet: bool) -> anyhow::Result<RunSummary> {
    let stage = if parquet {
        Stage::Rows
    } else {
        Stage::CsvTable
    };
    let settings = file_pipeline(&args.input, &args.source, args.contract, cluster, stage)?;
    let dead_path = args
        .dead_letter
        .clone()
        .unwrap_or_else(|| args.out.with_extension("dead-letter.jsonl"));
    // Opened before any worker starts, by the process that owns them.
    let outputs = if settings.cluster.owns_outputs() {
        let stage = if parquet {
            StageOutputs::Rows(Box::new(ParquetSink::create(&args.out, args.contract)?))
        } else {
            StageOutputs::CsvTable(Box::new(CsvTable::create(&args.out, args.contract)?))
        };
        Some(Outputs {
            dead_letters: Box::new(JsonLinesSink::create(&dead_path, |d| Some(d))?),
            stage,
        })
    } else {
        None
    };
    Ok(pipeline::run(settings, outputs)?)
}
