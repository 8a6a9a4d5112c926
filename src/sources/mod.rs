//! Where events come from. Each source yields parsed events or dead letters
//! at their event times, and counts what it read; the pipeline builds the
//! one a run's settings name, and no operator after it knows which it was.

pub mod file;

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
    /// Events that arrived behind the frontier and were placed at it.
    pub late: Cell<u64>,
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
}

/// The source of a run.
#[derive(Clone, Debug)]
pub enum SourceSettings {
    /// A PaySim CSV or JSON-lines file, shared among the workers by blocks.
    File(file::FileSource),
}

impl SourceSettings {
    /// Builds this worker's part of the source.
    pub fn build<'scope>(
        &self,
        scope: Scope<'scope, u64>,
        context: SourceContext,
    ) -> Stream<'scope, u64, Vec<Parsed>> {
        match self {
            SourceSettings::File(file) => file::file_source(scope, file.clone(), context),
        }
    }
}
