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
use crate::atomic::{BackgroundFile, JsonLines, OutputGroup};
use crate::dataflow::score::Outcome;
use crate::dataflow::sink::Text;
use crate::dataflow::table;
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

/// Blocks of text queued for the writer thread.
const WRITE_QUEUE: usize = 1024;

/// What a [`TextFile`] starts with.
#[derive(Clone, Debug, Default)]
pub struct Header {
    /// Before the first line.
    pub lines: Vec<u8>,
    /// When there are no lines (the file is this alone).
    pub empty: Vec<u8>,
}

impl Header {
    /// The same header with lines or without.
    pub fn always(header: impl Into<Vec<u8>>) -> Header {
        let header = header.into();
        Header {
            lines: header.clone(),
            empty: header,
        }
    }
}

/// Lines the workers formatted, written in order as they come (see
/// [`crate::dataflow::sink::Lines`]) by a thread of its own, after a
/// header: the feature table, alerts, scores.
pub struct TextFile {
    path: std::path::PathBuf,
    /// `None` once a write failed.
    file: Option<BackgroundFile>,
    /// Not yet written.
    header: Option<Header>,
    lines: u64,
}

impl TextFile {
    pub fn create(
        group: &OutputGroup,
        path: &Path,
        header: Header,
    ) -> Result<TextFile, PipelineError> {
        let io = |e| PipelineError::io(path, e);
        let file = BackgroundFile::create(group.create(path)?, WRITE_QUEUE).map_err(io)?;
        Ok(TextFile {
            path: path.to_path_buf(),
            file: Some(file),
            header: Some(header),
            lines: 0,
        })
    }

    /// The feature table as CSV: its header, then a row a line.
    pub fn csv_table(
        group: &OutputGroup,
        path: &Path,
        contract: Contract,
    ) -> Result<TextFile, PipelineError> {
        TextFile::create(group, path, Header::always(table::header(contract)))
    }

    /// `scores.csv`: every event's id, label and scores, a line as
    /// [`scores_line`] writes it. With a frozen baseline (a backtest with
    /// feedback: every line then has its score) a last column `frozen`.
    pub fn scores(
        group: &OutputGroup,
        path: &Path,
        frozen: bool,
    ) -> Result<TextFile, PipelineError> {
        let plain = b"event_id,is_fraud,isolation_forest,autoencoder,logistic,score,alert\n";
        let mut with = plain[..plain.len() - 1].to_vec();
        with.extend_from_slice(b",frozen\n");
        let header = Header {
            lines: if frozen { with } else { plain.to_vec() },
            empty: plain.to_vec(),
        };
        TextFile::create(group, path, header)
    }

    fn send(&mut self, bytes: Vec<u8>) -> Result<(), PipelineError> {
        let stopped = || std::io::Error::other("the writer stopped on an earlier error");
        let file = self.file.as_mut().ok_or_else(stopped);
        if let Err(e) = file.and_then(|f| f.write(bytes)) {
            // A stopped writer thread knows why it stopped.
            let cause = self.file.take().and_then(|f| f.abandon().err());
            return Err(PipelineError::io(&self.path, cause.unwrap_or(e)));
        }
        Ok(())
    }
}

impl Sink<Text> for TextFile {
    fn write(&mut self, texts: &mut [Text]) -> Result<(), PipelineError> {
        for text in texts {
            if text.lines == 0 {
                continue;
            }
            if let Some(header) = self.header.take() {
                self.send(header.lines)?;
            }
            self.lines += text.lines;
            self.send(std::mem::take(&mut text.bytes))?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64, PipelineError> {
        if let Some(header) = self.header.take() {
            self.send(header.empty)?;
        }
        let io = |e| PipelineError::io(&self.path, e);
        let file = self
            .file
            .ok_or_else(|| io(std::io::Error::other("the writer stopped")))?;
        file.finish().map_err(io)?;
        Ok(self.lines)
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

/// Appends an outcome's line of `scores.csv` (see [`TextFile::scores`]).
pub fn scores_line(o: &Outcome, out: &mut Vec<u8>) -> std::io::Result<()> {
    crate::dataflow::table::csv_field(&o.id.to_string(), out);
    let label = match o.is_fraud {
        Some(true) => "1",
        Some(false) => "0",
        None => "",
    };
    let c = o.components;
    write!(
        out,
        ",{label},{},{},{},{},{}",
        c.isolation_forest,
        c.autoencoder,
        c.logistic,
        o.score,
        u8::from(o.alert.is_some())
    )?;
    match o.frozen {
        Some(f) => writeln!(out, ",{f}"),
        None => writeln!(out),
    }
}
