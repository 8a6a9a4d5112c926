//! Sinks that write files. Each is a file of the run's
//! [`OutputGroup`](crate::atomic::OutputGroup): finishing a sink only
//! flushes and syncs it; the command renames the group's files into place
//! together once the whole run succeeded (see [`crate::atomic`]).

pub mod live;
pub mod parquet_table;
pub mod rotating;

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::Sink;
use crate::atomic::{BackgroundFile, JsonLines, OutputFile, OutputGroup};
use crate::dataflow::score::Outcome;
use crate::dataflow::table::{self, CsvRun};
use crate::dataflow::FeatureRow;
use crate::features::Contract;
use crate::pipeline::PipelineError;
use parquet_table::ParquetTable;

/// One JSON object a line: of each record, what `pick` chooses (records it
/// gives `None` for are skipped).
pub struct JsonLinesSink<D, T> {
    file: JsonLines,
    pick: fn(&D) -> Option<&T>,
}

impl<D, T> JsonLinesSink<D, T> {
    pub fn create(
        group: &OutputGroup,
        path: &Path,
        pick: fn(&D) -> Option<&T>,
    ) -> Result<Self, PipelineError> {
        let file = JsonLines::create(group, path)?;
        Ok(JsonLinesSink { file, pick })
    }
}

impl<D, T: Serialize> Sink<D> for JsonLinesSink<D, T> {
    fn write(&mut self, batch: &mut [D]) -> Result<(), PipelineError> {
        for record in batch.iter() {
            if let Some(value) = (self.pick)(record) {
                self.file.push(value);
            }
        }
        match self.file.failed() {
            Some(e) => Err(PipelineError::io(e.path, e.cause)),
            None => Ok(()),
        }
    }

    fn finish(self: Box<Self>) -> Result<u64, PipelineError> {
        self.file
            .finish()
            .map_err(|e| PipelineError::io(e.path, e.cause))
    }
}

/// Runs of CSV lines queued for the writer thread: about 5 KiB each.
const WRITE_QUEUE: usize = 1024;

/// The feature table as CSV: rows come formatted in runs (each worker
/// formats its own) and a thread of its own writes them.
pub struct CsvTable {
    path: std::path::PathBuf,
    /// `None` once a write failed.
    file: Option<BackgroundFile>,
    rows: u64,
}

impl CsvTable {
    pub fn create(
        group: &OutputGroup,
        path: &Path,
        contract: Contract,
    ) -> Result<CsvTable, PipelineError> {
        let io = |e| PipelineError::io(path, e);
        let mut file = BackgroundFile::create(group.create(path)?, WRITE_QUEUE).map_err(io)?;
        file.write(table::header(contract).into_bytes())
            .map_err(io)?;
        Ok(CsvTable {
            path: path.to_path_buf(),
            file: Some(file),
            rows: 0,
        })
    }
}

impl Sink<CsvRun> for CsvTable {
    fn write(&mut self, runs: &mut [CsvRun]) -> Result<(), PipelineError> {
        let stopped = || std::io::Error::other("the writer stopped on an earlier error");
        for run in runs {
            self.rows += run.rows;
            let file = self.file.as_mut().ok_or_else(stopped);
            if let Err(e) = file.and_then(|f| f.write(std::mem::take(&mut run.bytes))) {
                // A stopped writer thread knows why it stopped.
                let cause = self.file.take().and_then(|f| f.abandon().err());
                return Err(PipelineError::io(&self.path, cause.unwrap_or(e)));
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64, PipelineError> {
        let io = |e| PipelineError::io(&self.path, e);
        let file = self
            .file
            .ok_or_else(|| io(std::io::Error::other("the writer stopped")))?;
        file.finish().map_err(io)?;
        Ok(self.rows)
    }
}

/// The feature table as Parquet.
pub struct ParquetSink {
    table: ParquetTable,
    rows: u64,
}

impl ParquetSink {
    pub fn create(
        group: &OutputGroup,
        path: &Path,
        contract: Contract,
    ) -> Result<ParquetSink, PipelineError> {
        let table = ParquetTable::create(group.create(path)?, contract)
            .map_err(|e| PipelineError::component("feature table", e))?;
        Ok(ParquetSink { table, rows: 0 })
    }
}

impl Sink<FeatureRow> for ParquetSink {
    fn write(&mut self, rows: &mut [FeatureRow]) -> Result<(), PipelineError> {
        for row in rows.iter() {
            self.table
                .push(row)
                .map_err(|e| PipelineError::component("feature table", e))?;
        }
        self.rows += rows.len() as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64, PipelineError> {
        self.table
            .finish()
            .map_err(|e| PipelineError::component("feature table", e))?;
        Ok(self.rows)
    }
}

/// Every event's id, label and scores (`scores.csv`), in input order:
/// opened before the run, written from the outcomes gathered by it.
pub struct ScoresCsv {
    file: OutputFile,
}

impl ScoresCsv {
    pub fn create(group: &OutputGroup, path: &Path) -> Result<ScoresCsv, PipelineError> {
        Ok(ScoresCsv {
            file: group.create(path)?,
        })
    }

    /// Sorts `all` into input order (alerts and normal traffic arrive
    /// apart), writes and finishes (the group renames).
    pub fn write(self, all: &mut [Outcome]) -> Result<(), PipelineError> {
        all.sort_by_key(|o| o.seq);
        let path = self.file.path().to_path_buf();
        let io = |e| PipelineError::io(&path, e);
        let mut out = std::io::BufWriter::with_capacity(1 << 20, self.file);
        write_scores(&mut out, all).map_err(io)?;
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.finish().map(|_| ()).map_err(io)
    }
}

/// With a frozen baseline (a backtest with feedback), a last column
/// `frozen` has its score.
fn write_scores(w: &mut impl Write, all: &[Outcome]) -> std::io::Result<()> {
    let frozen = all.iter().any(|o| o.frozen.is_some());
    w.write_all(b"event_id,is_fraud,isolation_forest,autoencoder,logistic,score,alert")?;
    w.write_all(if frozen { b",frozen\n" } else { b"\n" })?;
    for o in all {
        let label = match o.is_fraud {
            Some(true) => "1",
            Some(false) => "0",
            None => "",
        };
        let c = o.components;
        let mut id = Vec::new();
        crate::dataflow::table::csv_field(&o.id.to_string(), &mut id);
        w.write_all(&id)?;
        write!(
            w,
            ",{label},{},{},{},{},{}",
            c.isolation_forest,
            c.autoencoder,
            c.logistic,
            o.score,
            u8::from(o.alert.is_some())
        )?;
        match o.frozen.filter(|_| frozen) {
            Some(f) => writeln!(w, ",{f}")?,
            None if frozen => writeln!(w, ",")?,
            None => writeln!(w)?,
        }
    }
    Ok(())
}
