//! The PaySim file source: workers take blocks of the file in turn and emit
//! every row at its event time, or a dead letter for a bad row.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::{ProbeHandle, Scope, Stream};

use super::blocks::Blocks;
use super::dead_letter::DeadLetter;
use super::json_event::parse_event;
use crate::event::Event;
use crate::paysim::{PaysimReader, ReadError, ReaderOptions};

/// How sources turn arrival into timestamps and how far they run ahead.
#[derive(Clone, Copy, Debug)]
pub struct SourceSettings {
    /// Seconds an event may arrive after later ones and still be placed at
    /// its own time; later than that it is placed at the frontier (never
    /// dropped).
    pub lateness: u64,
    /// Bytes of input per block; workers take blocks in turn, and a source
    /// reads one of its blocks per activation.
    pub block_bytes: usize,
    /// Seconds of event time a source may run ahead of what the dataflow
    /// has finished: bounds the data in flight, and so memory.
    pub max_ahead: u64,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            lateness: 120,
            block_bytes: 1 << 20,
            max_ahead: 4 * 3_600,
        }
    }
}

/// Counts a source keeps for the run's summary.
#[derive(Debug, Default)]
pub struct SourceCounts {
    pub events_in: Cell<u64>,
    pub valid: Cell<u64>,
    pub dead: Cell<u64>,
    /// Events that arrived later than the allowed lateness.
    pub late: Cell<u64>,
}

/// A parsed event, or the dead letter for a payload that failed (boxed:
/// they are rare and large).
pub type Parsed = Result<Event, Box<DeadLetter>>;

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

/// Reads this worker's blocks of the file at `path` (for PaySim, its header
/// was checked before the dataflow started). `done` is probed at the end of
/// the dataflow: the source waits while it lags more than `max_ahead`.
pub fn file_source<'scope>(
    scope: Scope<'scope, u64>,
    path: PathBuf,
    format: InputFormat,
    settings: SourceSettings,
    counts: Rc<SourceCounts>,
    done: ProbeHandle<u64>,
) -> Stream<'scope, u64, Vec<Parsed>> {
    let (index, peers) = (scope.index() as u64, scope.peers() as u64);
    source::<_, CapacityContainerBuilder<Vec<Parsed>>, _, _>(
        scope,
        "PaysimSource",
        move |cap, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = Some(cap);
            let mut blocks = Blocks::open(&path, format.header_lines(), settings.block_bytes);
            let mut buf = Vec::new();
            let label = path.display().to_string();
            let mut max_time = 0u64;
            let mut run: Vec<Parsed> = Vec::new();
            move |output| {
                let Some(current) = cap.as_mut() else { return };
                let blocks = match blocks.as_mut() {
                    Ok(b) => b,
                    Err(err) => {
                        // A source that cannot read holds its capability: the
                        // run must not look complete. The command reports it.
                        eprintln!("fraudflow: source {label}: {err}");
                        return;
                    }
                };
                if done.less_than(&current.time().saturating_sub(settings.max_ahead)) {
                    activator.activate_after(Duration::from_millis(1));
                    return;
                }
                let block = loop {
                    match blocks.next_block(&mut buf) {
                        Ok(Some(block)) if block.index % peers == index => break Some(block),
                        Ok(Some(_)) => continue,
                        Ok(None) => break None,
                        Err(err) => {
                            eprintln!("fraudflow: source {label}: {err}");
                            return;
                        }
                    }
                };
                let Some(block) = block else {
                    cap = None;
                    return;
                };
                let label = label.as_str();
                let received = crate::clock::now_micros();
                // Consecutive records of one time leave as one container: a
                // session a record would send each in a container of its own.
                let mut run_time = *current.time();
                parse_block(
                    format,
                    &buf,
                    block.first_line,
                    label,
                    &counts,
                    |mut parsed| {
                        if let Ok(e) = parsed.as_mut() {
                            e.received_us = received;
                        }
                        let time = match &parsed {
                            Ok(e) => e.time,
                            Err(_) => *current.time(),
                        };
                        max_time = max_time.max(time);
                        let time = if time >= *current.time() {
                            time
                        } else {
                            counts.late.set(counts.late.get() + 1);
                            *current.time()
                        };
                        if time != run_time && !run.is_empty() {
                            output
                                .session(&current.delayed(&run_time))
                                .give_container(&mut run);
                            run.clear();
                        }
                        run_time = time;
                        run.push(parsed);
                    },
                );
                if !run.is_empty() {
                    output
                        .session(&current.delayed(&run_time))
                        .give_container(&mut run);
                    run.clear();
                }
                let lower = max_time.saturating_sub(settings.lateness);
                if lower > *current.time() {
                    current.downgrade(&lower);
                }
                activator.activate();
            }
        },
    )
}

/// Parses one block, handing each event or dead letter to `emit`.
fn parse_block(
    format: InputFormat,
    buf: &[u8],
    first_line: u64,
    label: &str,
    counts: &SourceCounts,
    mut emit: impl FnMut(Parsed),
) {
    let mut count = |parsed: Parsed| {
        counts.events_in.set(counts.events_in.get() + 1);
        let field = if parsed.is_ok() {
            &counts.valid
        } else {
            &counts.dead
        };
        field.set(field.get() + 1);
        emit(parsed);
    };
    match format {
        InputFormat::PaysimCsv => {
            let mut reader = PaysimReader::headless(buf, first_line, ReaderOptions::default());
            while let Some(row) = reader.next() {
                let line = reader.line();
                count(match row {
                    Ok(t) => Ok(Event::from_paysim(line - 1, &t)),
                    Err(err) => {
                        let (code, message) = match &err {
                            ReadError::Row(row) => (row.kind.code(), row.kind.to_string()),
                            other => ("unreadable", other.to_string()),
                        };
                        Err(Box::new(dead_letter(
                            code,
                            message,
                            reader.last_raw(),
                            label,
                            line,
                            line - 1,
                        )))
                    }
                });
            }
        }
        InputFormat::JsonLines => {
            for (k, raw) in buf.split(|&b| b == b'\n').enumerate() {
                let line = first_line + k as u64;
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                if raw.trim_ascii().is_empty() {
                    continue;
                }
                let text = String::from_utf8_lossy(raw);
                count(parse_event(&text, line).map_err(|err| {
                    Box::new(dead_letter(
                        err.code(),
                        err.to_string(),
                        keep(&text),
                        label,
                        line,
                        line,
                    ))
                }));
            }
        }
    }
}

/// The raw payload a dead letter keeps: all of it, up to a limit.
fn keep(text: &str) -> String {
    const KEEP: usize = 4_096;
    if text.len() <= KEEP {
        return text.to_string();
    }
    let cut = (0..=KEEP)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}... ({} bytes)", &text[..cut], text.len())
}

fn dead_letter(
    code: &str,
    message: String,
    raw: String,
    source: &str,
    line: u64,
    seq: u64,
) -> DeadLetter {
    DeadLetter {
        code: code.to_string(),
        stage: "parse".to_string(),
        message,
        raw,
        source: format!("{source}:{line}"),
        seq,
        received_at: crate::clock::now_rfc3339(),
    }
}
