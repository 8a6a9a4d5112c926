//! The PaySim file source: each worker reads its own share of the file and
//! emits every row at its event time, or a dead letter for a bad row.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::source;
use timely::dataflow::{Scope, Stream};

use super::dead_letter::DeadLetter;
use super::share::Share;
use crate::event::Event;
use crate::paysim::{PaysimReader, ReadError, ReaderOptions};

/// How sources turn arrival into timestamps and how much they do at once.
#[derive(Clone, Copy, Debug)]
pub struct SourceSettings {
    /// Seconds an event may arrive after later ones and still be placed at
    /// its own time; later than that it is placed at the frontier (never
    /// dropped).
    pub lateness: u64,
    /// Rows read per activation, so one source never starves the others.
    pub batch: usize,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            lateness: 120,
            batch: 16_384,
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

/// Reads `share` of the PaySim file at `path`, whose header was checked
/// before the dataflow started.
pub fn paysim_file<'scope>(
    scope: Scope<'scope, u64>,
    path: PathBuf,
    share: Share,
    settings: SourceSettings,
    counts: Rc<SourceCounts>,
) -> Stream<'scope, u64, Vec<Parsed>> {
    source::<_, CapacityContainerBuilder<Vec<Parsed>>, _, _>(
        scope,
        "PaysimSource",
        move |cap, info| {
            let activator = scope.activator_for(info.address);
            let mut cap = Some(cap);
            let mut reader = open_share(&path, share);
            let label = path.display().to_string();
            let mut max_time = 0u64;
            move |output| {
                let Some(current) = cap.as_mut() else { return };
                let reader = match reader.as_mut() {
                    Ok(r) => r,
                    Err(err) => {
                        // A source that cannot read holds its capability: the
                        // run must not look complete. The command reports it.
                        eprintln!("fraudflow: source {label}: {err}");
                        return;
                    }
                };
                let mut done = true;
                for _ in 0..settings.batch {
                    let Some(row) = reader.next() else { break };
                    done = false;
                    let line = reader.line();
                    counts.events_in.set(counts.events_in.get() + 1);
                    let parsed = match row {
                        Ok(t) => {
                            counts.valid.set(counts.valid.get() + 1);
                            Ok(Event::from_paysim(line - 1, &t))
                        }
                        Err(err) => {
                            counts.dead.set(counts.dead.get() + 1);
                            Err(Box::new(dead_letter(&err, reader.last_raw(), &label, line)))
                        }
                    };
                    let time = match &parsed {
                        Ok(e) => e.time,
                        Err(_) => *current.time(),
                    };
                    max_time = max_time.max(time);
                    if time >= *current.time() {
                        output.session(&current.delayed(&time)).give(parsed);
                    } else {
                        counts.late.set(counts.late.get() + 1);
                        output.session(&*current).give(parsed);
                    }
                }
                if done {
                    cap = None;
                } else {
                    let lower = max_time.saturating_sub(settings.lateness);
                    if lower > *current.time() {
                        current.downgrade(&lower);
                    }
                    activator.activate();
                }
            }
        },
    )
}

type ShareReader = PaysimReader<std::io::Take<BufReader<File>>>;

fn open_share(path: &Path, share: Share) -> Result<ShareReader, std::io::Error> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(share.start))?;
    let options = ReaderOptions::default();
    let input = BufReader::with_capacity(options.buffer_bytes, file).take(share.end - share.start);
    Ok(PaysimReader::headless(input, share.first_line, options))
}

fn dead_letter(err: &ReadError, raw: String, source: &str, line: u64) -> DeadLetter {
    let (code, message) = match err {
        ReadError::Row(row) => (row.kind.code(), row.kind.to_string()),
        other => ("unreadable", other.to_string()),
    };
    DeadLetter {
        code: code.to_string(),
        stage: "parse".to_string(),
        message,
        raw,
        source: format!("{source}:{line}"),
        seq: line - 1,
        received_at: crate::clock::now_rfc3339(),
    }
}
