//! `fraudflow features`: the feature table training reads, made by the
//! dataflow that serves.

use std::path::PathBuf;
use std::process::ExitCode;

use fraudflow::atomic::{classify, OutputGroup, OutputPlan, Target};
use fraudflow::features::Contract;
use fraudflow::pipeline::{self, Cluster, Outputs, RunSummary, Stage, StageOutputs};
use fraudflow::sinks::file::{JsonLinesSink, ParquetSink, TextFile};

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
    /// polars; `-` (CSV) for standard output. A FIFO or a device is written
    /// where it is.
    #[arg(long)]
    out: PathBuf,
    /// Feature contract.
    #[arg(long, value_enum, default_value_t = Contract::V2)]
    contract: Contract,
    /// Dead letters, one JSON object a line; default: OUT with extension
    /// `.dead-letter.jsonl` (needed when OUT is not a regular file).
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
    // A stream (standard output, a FIFO, a device) has no extension to go
    // by: it takes CSV unless its name ends in `.parquet`.
    let stream = !matches!(classify(&args.out)?, Target::Staged { .. });
    let parquet = match args.out.extension().and_then(|e| e.to_str()) {
        Some("parquet") => true,
        Some("csv") => false,
        _ if stream => false,
        _ => anyhow::bail!(
            "{}: the feature table is written as .csv or .parquet",
            args.out.display()
        ),
    };
    let cluster = args.timely.cluster()?;
    let total = match on_cluster(&cluster, || featurize(&args, &cluster, parquet)) {
        // `--out - | head`: the reader has all it wanted.
        Err(e) if super::closed_stdout(&e) => return Ok(ExitCode::SUCCESS),
        result => result?,
    };
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
    let (group, dead_path) = output_group(args)?;
    let settings = file_pipeline(&args.input, &args.source, args.contract, cluster, stage)?;
    // Opened before any worker starts, by the process that owns them.
    let outputs = if settings.cluster.owns_outputs() {
        let stage = if parquet {
            let table = ParquetSink::create(&group, &args.out, args.contract)?;
            StageOutputs::Rows(Box::new(table))
        } else {
            let table = TextFile::csv_table(&group, &args.out, args.contract)?;
            StageOutputs::CsvTable(Box::new(table))
        };
        let dead = JsonLinesSink::create(&group, &dead_path, |d| Some(d))?;
        Some(Outputs {
            dead_letters: Box::new(dead),
            stage,
        })
    } else {
        None
    };
    let summary = pipeline::run(settings, outputs)?;
    // The table and its dead letters take their names together.
    group.commit()?;
    Ok(summary)
}

/// The run's outputs, checked against the input and each other before any
/// work: the group (with `OUT.manifest.json` when the table is a regular
/// file) and the dead letters' path.
fn output_group(args: &Args) -> anyhow::Result<(OutputGroup, PathBuf)> {
    let staged = matches!(classify(&args.out)?, Target::Staged { .. });
    let dead_path = match (&args.dead_letter, staged) {
        (Some(path), _) => path.clone(),
        (None, true) => args.out.with_extension("dead-letter.jsonl"),
        (None, false) => anyhow::bail!(
            "--out {} is not a regular file, so dead letters have no default beside it: name --dead-letter (e.g. /dev/null)",
            args.out.display()
        ),
    };
    let manifest = staged.then(|| args.out.with_extension("manifest.json"));
    let mut plan = OutputPlan::default()
        .input("--input", &args.input)
        .output("--out", &args.out)
        .output("--dead-letter", &dead_path);
    let mut group = OutputGroup::new();
    if let Some(manifest) = manifest {
        plan = plan.output("the manifest", &manifest);
        group = group.with_manifest(manifest);
    }
    plan.check()?;
    Ok((group, dead_path))
}
