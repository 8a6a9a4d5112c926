//! The PaySim file source: workers take blocks of the file in turn and emit
//! every row at its event time, or a dead letter for a bad row.

pub mod blocks;
pub mod epochs;
pub mod prescan;
mod shared;
mod source;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::order::TimeLimits;
use super::{Parsed, SourceCounts};
use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::json_event::{parse_event, strip_bom};
use crate::event::Event;
use crate::paysim::{self, ReadError};
use crate::pipeline::PipelineError;
pub use shared::ScanShare;
pub use source::{file_source, MAX_TIMES_IN_FLIGHT};

/// A file source: which file, and how it turns arrival into timestamps.
#[derive(Clone, Debug)]
pub struct FileSource {
    pub path: PathBuf,
    pub format: InputFormat,
    /// How far behind the input-order frontier an event may be stamped and
    /// still be placed at its own time (later ones are placed at the
    /// frontier, never dropped), and how far from it at all (further ones
    /// are dead letters).
    pub limits: TimeLimits,
    /// Bytes of input per block; workers take blocks in turn, and a source
    /// reads one of its blocks per activation.
    pub block_bytes: usize,
    /// Milliseconds of event time a source may run ahead of what the
    /// dataflow has finished: bounds the data in flight, and so memory.
    pub max_ahead_ms: u64,
    /// How far past its epoch (its logical time) an event may be placed;
    /// `None`: as far as an epoch of [`epochs::EPOCH_EVENTS`] lines
    /// reaches. A loop in the dataflow (the feedback loop) sets it.
    pub epoch_span_ms: Option<u64>,
    /// How long the run's end may stand still before the run is ended as
    /// stalled ([`crate::pipeline::stall`]).
    pub stall_after: Duration,
}

/// Defaults of a file source's timing, in seconds (the settings' unit).
pub const DEFAULT_LATENESS: u64 = 120;
pub const DEFAULT_BLOCK_BYTES: usize = 1 << 18;
pub const DEFAULT_MAX_AHEAD: u64 = 4 * 3_600;
pub const DEFAULT_STALL_TIMEOUT: u64 = 60;

impl FileSource {
    /// A source reading `path` with the default timing, its format by its
    /// extension; the file is checked before any worker starts: it must be
    /// a readable file of a known kind (for PaySim, with the right header).
    pub fn open(path: &Path) -> Result<FileSource, PipelineError> {
        let format = InputFormat::of(path).ok_or_else(|| PipelineError::Setting {
            setting: "input",
            problem: format!(
                "{}: expected a .csv (PaySim) or .jsonl (JSON events) file",
                path.display()
            ),
        })?;
        check_readable(path)?;
        if format == InputFormat::PaysimCsv {
            paysim::PaysimReader::open(path).map_err(|e| PipelineError::component("input", e))?;
        }
        Ok(FileSource {
            path: path.to_path_buf(),
            format,
            limits: TimeLimits::with_lateness(DEFAULT_LATENESS * 1_000),
            block_bytes: DEFAULT_BLOCK_BYTES,
            max_ahead_ms: DEFAULT_MAX_AHEAD * 1_000,
            epoch_span_ms: None,
            stall_after: Duration::from_secs(DEFAULT_STALL_TIMEOUT),
        })
    }
}

/// Opens `path` and reads a byte: a directory opens on Linux but fails to
/// read, inside a worker, which is too late to say so plainly. Anything but
/// a regular file is refused: the file is opened again by each process
/// (and read once in each), which a pipe cannot serve: its reader waited
/// for a writer that had gone, for ever.
fn check_readable(path: &Path) -> Result<(), PipelineError> {
    use std::io::Read;
    let io = |e| PipelineError::io(path, e);
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "a directory, not a file",
        )));
    }
    if !meta.is_file() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a pipe, socket or device): every process of a run opens \
             the input by itself, so write it to a file first",
        )));
    }
    std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut [0u8; 1]))
        .map_err(io)?;
    Ok(())
}

/// The kinds of input file a source reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputFormat {
    /// The Kaggle PaySim CSV, header first.
    PaysimCsv,
    /// One JSON event a line (schemas/event_v1.json).
    JsonLines,
}

impl InputFormat {
    /// By the file's extension: `.csv`, or `.jsonl` / `.ndjson` / `.json`.
    pub fn of(path: &std::path::Path) -> Option<InputFormat> {
        match path.extension()?.to_str()? {
            "csv" => Some(InputFormat::PaysimCsv),
            "jsonl" | "ndjson" | "json" => Some(InputFormat::JsonLines),
            _ => None,
        }
    }

    fn header_lines(self) -> u64 {
        match self {
            InputFormat::PaysimCsv => 1,
            InputFormat::JsonLines => 0,
        }
    }
}

/// Parses one block, handing each event or dead letter to `emit`: every
/// line that is not blank (nothing but ASCII white space) becomes exactly
/// one of the two, in both formats; blank lines are skipped by design.
/// `first_line` is the 1-based line number of the block's first line; on
/// line 1 of a JSON-lines file a UTF-8 byte-order mark is allowed (the CSV
/// header's is checked by the reader).
pub fn parse_block(
    format: InputFormat,
    buf: &[u8],
    first_line: u64,
    label: &str,
    counts: &SourceCounts,
    emit: impl FnMut(Parsed),
) {
    let lines = prescan::line_ranges(buf);
    parse_lines(format, buf, lines, first_line, label, counts, emit);
}

/// [`parse_block`] over lines already found (the scan's): `lines` are
/// where each line of the block lies, blank ones included, in order.
///
/// # Examples
///
/// ```
/// use fraudflow::sources::file::{parse_lines, prescan, InputFormat};
/// use fraudflow::sources::SourceCounts;
///
/// let block = b"1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0\r\n\nnot,a,row";
/// let (counts, mut out) = (SourceCounts::default(), Vec::new());
/// let lines = prescan::line_ranges(block);
/// parse_lines(InputFormat::PaysimCsv, block, lines, 2, "in.csv", &counts, |p| out.push(p));
/// // Line 2 is an event (its CR dropped), line 3 blank, line 4 a dead letter.
/// assert_eq!(out.len(), 2);
/// assert_eq!(out[0].as_ref().map(|e| e.seq).ok(), Some(1));
/// assert_eq!(out[1].as_ref().err().map(|d| d.seq), Some(3));
/// ```
pub fn parse_lines(
    format: InputFormat,
    buf: &[u8],
    lines: impl IntoIterator<Item = Range<usize>>,
    first_line: u64,
    label: &str,
    counts: &SourceCounts,
    mut emit: impl FnMut(Parsed),
) {
    for (k, bytes) in lines.into_iter().enumerate() {
        let line = first_line + k as u64;
        let raw = &buf[bytes];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let parsed = match format {
            InputFormat::PaysimCsv if raw.trim_ascii().is_empty() => continue,
            InputFormat::PaysimCsv => match paysim::parse_row(raw, line) {
                Ok(t) => Ok(Event::from_paysim(line - 1, &t)),
                Err(err) => Err(row_dead_letter(&ReadError::Row(err), raw, label, line)),
            },
            InputFormat::JsonLines => {
                let raw = if line == 1 { strip_bom(raw) } else { raw };
                if raw.trim_ascii().is_empty() {
                    continue;
                }
                parse_event(raw, line).map_err(|err| {
                    let source = format!("{label}:{line}");
                    Box::new(DeadLetter::parse(
                        err.code(),
                        err.to_string(),
                        raw,
                        source,
                        line,
                    ))
                })
            }
        };
        counts.read(&parsed);
        emit(parsed);
    }
}

/// The dead letter of a bad CSV row; its `seq` is its row's (line - 1).
fn row_dead_letter(err: &ReadError, raw: &[u8], label: &str, line: u64) -> Box<DeadLetter> {
    let (code, message) = match err {
        ReadError::Row(row) => (row.kind.code(), row.kind.to_string()),
        other => ("unreadable", other.to_string()),
    };
    let source = format!("{label}:{line}");
    Box::new(DeadLetter::parse(code, message, raw, source, line - 1))
}
