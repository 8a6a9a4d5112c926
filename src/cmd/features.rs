//! `fraudflow features`: the feature table training reads, made by the
//! dataflow that serves.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use anyhow::anyhow;
use fraudflow::atomic::{BackgroundFile, JsonLines};
use fraudflow::dataflow::dead_letter::DeadLetter;
use fraudflow::dataflow::parquet_table::ParquetTable;
use fraudflow::dataflow::sink::{on_owner, OrderedSink};
use fraudflow::dataflow::source::SourceCounts;
use fraudflow::dataflow::table::CsvRun;
use fraudflow::dataflow::{file_features, table, FeatureRow};
use fraudflow::features::Contract;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

use super::timely_args::TimelyArgs;
use super::{grouped, SourceArgs};

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

/// One worker's counts, summed over the process at the end.
#[derive(Debug, Default)]
struct Summary {
    events_in: u64,
    valid: u64,
    dead: u64,
    late: u64,
    written: u64,
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
    let config = args.timely.config()?;
    let input = args.source.input(&args.input, args.contract)?;
    let dead_path = args
        .dead_letter
        .clone()
        .unwrap_or_else(|| args.out.with_extension("dead-letter.jsonl"));
    let (out, contract) = (args.out.clone(), args.contract);
    let started = Instant::now();

    let guards = timely::execute(config, move |worker| -> Result<Summary, String> {
        let index = worker.index();
        let counts = Rc::new(SourceCounts::default());
        let writers = if index == 0 {
            Some(Writers::create(&out, &dead_path, contract, parquet)?)
        } else {
            None
        };
        let writers = Rc::new(RefCell::new(writers));
        let done = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let (rows, dead) = file_features(scope, &input, Rc::clone(&counts), done.clone());
            if parquet {
                rows.probe_with(&done).ordered_sink(
                    |r: &FeatureRow| r.seq,
                    on_owner(&writers, Writers::rows),
                    "FeatureSink",
                );
            } else {
                // Each worker formats its own rows; worker 0 only orders runs
                // of them.
                table::csv_runs(rows).probe_with(&done).ordered_sink(
                    |run: &CsvRun| run.first,
                    on_owner(&writers, Writers::runs),
                    "FeatureSink",
                );
            }
            #[allow(clippy::borrowed_box)] // the stream's records are boxes
            dead.ordered_sink(
                |d: &Box<DeadLetter>| d.as_ref().seq,
                on_owner(&writers, Writers::dead),
                "DeadLetterSink",
            );
        });
        while worker.step_or_park(None) {}
        let written = match writers.borrow_mut().take() {
            Some(w) => w.finish()?,
            None => 0,
        };
        Ok(Summary {
            events_in: counts.events_in.get(),
            valid: counts.valid.get(),
            dead: counts.dead.get(),
            late: counts.late.get(),
            written,
        })
    })
    .map_err(|e| anyhow!("starting the workers: {e}"))?;

    let mut total = Summary::default();
    for result in guards.join() {
        let s = result
            .map_err(|e| anyhow!("a worker failed: {e}"))?
            .map_err(|e| anyhow!("a worker failed: {e}"))?;
        total.events_in += s.events_in;
        total.valid += s.valid;
        total.dead += s.dead;
        total.late += s.late;
        total.written += s.written;
    }
    let secs = started.elapsed().as_secs_f64();
    if !quiet {
        eprintln!(
            "features: {} events in = {} valid + {} dead letters ({} late), {} rows written, {:.2} s, {:.0} events/s",
            grouped(total.events_in),
            grouped(total.valid),
            grouped(total.dead),
            grouped(total.late),
            grouped(total.written),
            secs,
            total.events_in as f64 / secs.max(1e-9)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The feature table and the dead-letter file, owned by worker 0.
struct Writers {
    table: Table,
    dead: JsonLines,
    written: u64,
    /// The first write error: the run fails at the end, naming it.
    error: Option<String>,
}

/// Runs of CSV lines queued for the writer thread: about 5 KiB each.
const WRITE_QUEUE: usize = 1024;

enum Table {
    /// Written by a thread of its own: worker 0 only queues the bytes.
    Csv(BackgroundFile),
    Parquet(Box<ParquetTable>),
}

impl Writers {
    fn create(
        out: &Path,
        dead: &Path,
        contract: Contract,
        parquet: bool,
    ) -> Result<Writers, String> {
        let table = if parquet {
            Table::Parquet(Box::new(
                ParquetTable::create(out, contract).map_err(|e| e.to_string())?,
            ))
        } else {
            let mut csv = BackgroundFile::create(out, WRITE_QUEUE)
                .map_err(|e| format!("{}: {e}", out.display()))?;
            csv.write(table::header(contract).into_bytes())
                .map_err(|e| format!("{}: {e}", out.display()))?;
            Table::Csv(csv)
        };
        Ok(Writers {
            table,
            dead: JsonLines::create(dead)?,
            written: 0,
            error: None,
        })
    }

    fn note(&mut self, result: Result<(), String>) {
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }

    fn runs(&mut self, runs: &mut [CsvRun]) {
        for run in runs {
            let result = match &mut self.table {
                Table::Csv(file) => file
                    .write(std::mem::take(&mut run.bytes))
                    .map_err(|e| format!("{}: {e}", file.path().display())),
                Table::Parquet(_) => Err("CSV lines for a Parquet table".to_string()),
            };
            self.note(result);
            self.written += run.rows;
        }
    }

    fn rows(&mut self, rows: &mut [FeatureRow]) {
        for row in rows {
            let result = match &mut self.table {
                Table::Parquet(table) => table.push(row).map_err(|e| e.to_string()),
                Table::Csv(_) => Err("a row for a CSV table".to_string()),
            };
            self.note(result);
            self.written += 1;
        }
    }

    fn dead(&mut self, rows: &mut [Box<DeadLetter>]) {
        rows.iter().for_each(|row| self.dead.push(row));
    }

    fn finish(self) -> Result<u64, String> {
        if let Some(e) = self.error {
            // A stopped writer thread knows why it stopped.
            let cause = match self.table {
                Table::Csv(file) => file.abandon().err().map(|c| c.to_string()),
                Table::Parquet(_) => None,
            };
            return Err(format!("writing: {}", cause.unwrap_or(e)));
        }
        match self.table {
            Table::Csv(file) => {
                let path = file.path().display().to_string();
                file.commit().map_err(|e| format!("{path}: {e}"))?
            }
            Table::Parquet(table) => table.finish().map_err(|e| e.to_string())?,
        }
        self.dead.commit()?;
        Ok(self.written)
    }
}
