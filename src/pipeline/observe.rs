//! Where the graph tells the metrics what passed: the events leaving each
//! stage, the outcomes routed, the dead letters. Each is an inspection of
//! a stream, one worker event a batch, built only on a worker with metric
//! handles (`crate::metrics::worker::is_on`): without them the graph is
//! exactly what it was.
//!
//! A Kafka run reads a window of events again on start to rebuild its
//! state; they go through the graph but the sinks write them nowhere, and
//! the source does not count them in. Nor does anything here: [`Counted`]
//! tells them apart by their input-order number.

use timely::dataflow::operators::Inspect;
use timely::dataflow::Stream;

use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::score::Outcome;
use std::rc::Rc;
use std::sync::Arc;

use timely::dataflow::ProbeHandle;

use crate::dataflow::FeatureRow;
use crate::event::Event;
use crate::metrics::events::{
    watch_frontier, watch_source, DeadLettered, Routed, Stage, StageLeft,
};
use crate::metrics::worker;
use crate::sources::kafka::seq::Numbering;
use crate::sources::SourceCounts;
use crate::sources::SourceSettings;

/// Which events count, by their input-order number: all, or (a Kafka run
/// of this many workers in all) those not read again to rebuild state.
#[derive(Clone, Copy, Debug)]
pub struct Counted(pub Option<usize>);

impl Counted {
    /// What counts of `source`'s events, on a dataflow of `peers` workers.
    pub fn of(source: &SourceSettings, peers: usize) -> Counted {
        Counted(matches!(source, SourceSettings::Kafka(_)).then_some(peers))
    }

    pub fn counts(self, seq: u64) -> bool {
        self.0.is_none_or(|peers| !Numbering::is_muted(seq, peers))
    }
}

/// Gives this worker metric handles when the process has metrics on, and
/// watches its source's counts and its frontier.
pub fn install(worker: usize, counts: &Rc<SourceCounts>, done: &ProbeHandle<u64>) {
    let Some(metrics) = crate::metrics::installed() else {
        return;
    };
    worker::install(Arc::clone(metrics), worker);
    watch_source(Rc::clone(counts));
    watch_frontier(done.clone());
}

/// Events as they leave the parse stage.
pub fn parsed(
    events: Stream<'_, u64, Vec<Event>>,
    counted: Counted,
) -> Stream<'_, u64, Vec<Event>> {
    leaving(events, Stage::Parse, |e| (e.received_us, e.seq), counted)
}

/// Rows as they leave the features stage.
pub fn featurized(
    rows: Stream<'_, u64, Vec<FeatureRow>>,
    counted: Counted,
) -> Stream<'_, u64, Vec<FeatureRow>> {
    leaving(rows, Stage::Features, |r| (r.received_us, r.seq), counted)
}

/// `stream`, observing each batch's latency from receipt (`received`, µs)
/// as it leaves `stage`.
fn leaving<'scope, D: 'static>(
    stream: Stream<'scope, u64, Vec<D>>,
    stage: Stage,
    received_and_seq: fn(&D) -> (u64, u64),
    counted: Counted,
) -> Stream<'scope, u64, Vec<D>> {
    if !worker::is_on() {
        return stream;
    }
    let counted_by = counted;
    stream.inspect_core(move |batch| {
        if let Ok((_, data)) = batch {
            let counted = data.iter().map(received_and_seq);
            let counted = counted.filter(|(_, seq)| counted_by.counts(*seq));
            worker::emit(StageLeft {
                stage,
                received_us: counted.map(|(r, _)| r),
                now_us: crate::clock::now_micros(),
            });
        }
    })
}

/// `stream` of alerts (`alerts`) or normal traffic, counted as routed.
pub fn routed<'scope>(
    stream: Stream<'scope, u64, Vec<Outcome>>,
    alerts: bool,
    counted: Counted,
) -> Stream<'scope, u64, Vec<Outcome>> {
    if !worker::is_on() {
        return stream;
    }
    stream.inspect_core(move |batch| {
        if let Ok((_, data)) = batch {
            worker::emit(Routed {
                outcomes: data,
                alerts,
                now_us: crate::clock::now_micros(),
                counted: |seq| counted.counts(seq),
            });
        }
    })
}

/// `stream` of dead letters, counted by code.
#[allow(clippy::vec_box)] // dead letters travel boxed
pub fn dead_letters(
    stream: Stream<'_, u64, Vec<Box<DeadLetter>>>,
    counted: Counted,
) -> Stream<'_, u64, Vec<Box<DeadLetter>>> {
    if !worker::is_on() {
        return stream;
    }
    stream.inspect_core(move |batch| {
        if let Ok((_, data)) = batch {
            worker::emit(DeadLettered {
                letters: data,
                counted: |seq| counted.counts(seq),
            });
        }
    })
}
