//! Where events come from. Each source yields parsed events or dead letters
//! at their event times, and counts what it read; the pipeline builds the
//! one a run's settings name, and no operator after it knows which it was.

pub mod file;
pub mod kafka;
pub mod live;
pub mod order;
pub mod together;

use std::cell::Cell;
use std::rc::Rc;

use timely::dataflow::{ProbeHandle, Scope, Stream};

use crate::dataflow::dead_letter::DeadLetter;
use crate::event::Event;
use crate::pipeline::harness::Abort;

/// A parsed event, or the dead letter for a payload that failed (boxed:
/// they are rare and large).
pub type Parsed = Result<Event, Box<DeadLetter>>;

/// Counts a source keeps for the run's summary.
#[derive(Debug, Default)]
pub struct SourceCounts {
    pub events_in: Cell<u64>,
    pub valid: Cell<u64>,
    pub dead: Cell<u64>,
    /// Events that arrived behind the frontier and were placed at it (live:
    /// behind the stream's own watermark, not the reader's 1 ms steps).
    pub late: Cell<u64>,
}

/// Records placed at their times, gathered in runs of one logical time
/// (an epoch): each run leaves as one container (a session a record would
/// send each in a container of its own), and the one buffer is used again
/// and again.
#[derive(Debug, Default)]
pub struct Runs {
    run: Vec<Parsed>,
    time: u64,
    /// The latest time a record was placed at since the last `take_latest`.
    latest: Option<u64>,
}

impl Runs {
    /// Places `parsed` at its event time, or at `floor` (the source's
    /// frontier) when it came behind it, counted as late; a dead letter
    /// goes at `floor`. The event keeps where it was placed (`place_ms`)
    /// and goes out at the logical time `epoch` gives that place (the
    /// place itself for a live source). A run of another logical time is
    /// handed to `emit` first. Returns whether the record was late.
    pub fn place(
        &mut self,
        parsed: Parsed,
        floor: u64,
        counts: &SourceCounts,
        epoch: impl Fn(u64) -> u64,
        emit: impl FnOnce(u64, &mut Vec<Parsed>),
    ) -> bool {
        self.place_behind(parsed, floor, floor, counts, epoch, emit)
    }

    /// [`place`](Self::place), late only when stamped before `behind` (at
    /// most `floor`): a live source's capability may have moved past its
    /// event-time frontier to let late events and dead letters through.
    pub fn place_behind(
        &mut self,
        mut parsed: Parsed,
        floor: u64,
        behind: u64,
        counts: &SourceCounts,
        epoch: impl Fn(u64) -> u64,
        emit: impl FnOnce(u64, &mut Vec<Parsed>),
    ) -> bool {
        let (place, late) = match &mut parsed {
            Ok(e) => {
                let late = e.time_ms < behind.min(floor);
                e.place_ms = e.time_ms.max(floor);
                (e.place_ms, late)
            }
            Err(_) => (floor, false),
        };
        if late {
            counts.late.set(counts.late.get() + 1);
        }
        let time = epoch(place);
        if time != self.time && !self.run.is_empty() {
            emit(self.time, &mut self.run);
            self.run.clear();
        }
        self.time = time;
        self.latest = self.latest.max(Some(place));
        self.run.push(parsed);
        late
    }

    /// Hands the last run to `emit`.
    pub fn flush(&mut self, emit: impl FnOnce(u64, &mut Vec<Parsed>)) {
        if !self.run.is_empty() {
            emit(self.time, &mut self.run);
            self.run.clear();
        }
    }

    /// The latest place of a record since the last call, if any.
    pub fn take_latest(&mut self) -> Option<u64> {
        self.latest.take()
    }
}

impl SourceCounts {
    /// Counts one record read: an event or a dead letter.
    pub fn read(&self, parsed: &Parsed) {
        self.events_in.set(self.events_in.get() + 1);
        let field = if parsed.is_ok() {
            &self.valid
        } else {
            &self.dead
        };
        field.set(field.get() + 1);
    }

    /// An event counted as valid turned out a dead letter (for its time).
    pub fn demote(&self) {
        self.valid.set(self.valid.get().saturating_sub(1));
        self.dead.set(self.dead.get() + 1);
    }
}

/// What every source is handed when the graph is built.
#[derive(Clone)]
pub struct SourceContext {
    /// This worker's counts.
    pub counts: Rc<SourceCounts>,
    /// Probed at the end of the dataflow: a source may wait on it to bound
    /// the data in flight.
    pub done: ProbeHandle<u64>,
    /// Ends the run when the source cannot go on.
    pub abort: Abort,
    /// Worker threads in each process (the cluster's `-w`).
    pub workers_per_process: usize,
    /// The reader of a file source that this process's workers share:
    /// one for each run, made before the workers start.
    pub file_share: file::ScanShare,
}

/// The source of a run.
#[derive(Clone, Debug)]
pub enum SourceSettings {
    /// A PaySim CSV or JSON-lines file, shared among the workers by blocks.
    File(file::FileSource),
    /// Events handed over by a server (HTTP), live.
    Live(std::sync::Arc<live::LiveInput>),
    /// The partitions of a Kafka topic, live.
    Kafka(std::sync::Arc<kafka::KafkaInput>),
}

impl SourceSettings {
    /// Has the harness of `worker` fail the run when it stops moving
    /// (`pipeline::stall`): over a file, when `end` (the probe of the
    /// pipeline's end) stands still for the stall timeout; live, with
    /// several processes, when a heartbeat beside the pipeline does, since
    /// a live run's end stands still whenever nothing arrives. Call once
    /// the pipeline is built.
    pub fn watch_stalls(&self, worker: &mut timely::worker::Worker, end: &ProbeHandle<u64>) {
        use crate::pipeline::stall::{heartbeat, watch_end};
        let hub = match self {
            SourceSettings::File(file) => return watch_end(end, file.stall_after),
            SourceSettings::Live(input) => input,
            SourceSettings::Kafka(input) => &input.hub,
        };
        if hub.processes() > 1 {
            watch_end(&heartbeat(worker, end), hub.stall_after());
        }
    }

    /// A Kafka source's link for this worker, with the watermark beacon
    /// beside the pipeline ([`kafka::beacon`]); `None` for other sources.
    pub fn kafka_link(
        &self,
        worker: &mut timely::worker::Worker,
        workers_per_process: usize,
    ) -> Result<Option<Rc<kafka::Link>>, crate::kafka::KafkaError> {
        let SourceSettings::Kafka(input) = self else {
            return Ok(None);
        };
        kafka::beacon::build(worker, std::sync::Arc::clone(input), workers_per_process);
        kafka::Link::new(input, worker.index()).map(Some)
    }

    /// Builds this worker's part of the source; a Kafka source reads
    /// through the worker's `link` (made by [`kafka::Link::new`]).
    pub fn build<'scope>(
        &self,
        scope: Scope<'scope, u64>,
        context: SourceContext,
        link: Option<Rc<kafka::Link>>,
    ) -> Result<Stream<'scope, u64, Vec<Parsed>>, crate::kafka::KafkaError> {
        // A live run of several processes stops together.
        let several = scope.peers() > context.workers_per_process.max(1);
        Ok(match self {
            SourceSettings::Kafka(input) => {
                let link = link.ok_or_else(|| {
                    crate::kafka::KafkaError::Other("a Kafka source needs its worker's link".into())
                })?;
                if several {
                    together::close_together(scope, std::sync::Arc::clone(input));
                }
                kafka::kafka_source(scope, std::sync::Arc::clone(input), link, context)
            }
            SourceSettings::File(file) => file::file_source(scope, file.clone(), context),
            SourceSettings::Live(input) => {
                if several {
                    together::close_together(scope, std::sync::Arc::clone(input));
                }
                live::live_source(scope, std::sync::Arc::clone(input), context)
            }
        })
    }
}
