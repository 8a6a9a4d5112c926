//! Where the graph tells the metrics what passed: the events leaving each
//! stage, the outcomes routed, the dead letters. Each is an inspection of
//! a stream, one worker event a batch, built only on a worker with metric
//! handles (`crate::metrics::worker::is_on`): without them the graph is
//! exactly what it was.

use timely::dataflow::operators::Inspect;
use timely::dataflow::Stream;

use crate::dataflow::dead_letter::DeadLetter;
use crate::dataflow::score::Outcome;
use crate::metrics::events::{DeadLettered, Routed, Stage, StageLeft};
use crate::metrics::worker;

/// `stream`, observing each batch's latency from receipt (`received`, µs)
/// as it leaves `stage`.
pub fn leaving<'scope, D: 'static>(
    stream: Stream<'scope, u64, Vec<D>>,
    stage: Stage,
    received: fn(&D) -> u64,
) -> Stream<'scope, u64, Vec<D>> {
    if !worker::is_on() {
        return stream;
    }
    stream.inspect_core(move |batch| {
        if let Ok((_, data)) = batch {
            worker::emit(StageLeft {
                stage,
                received_us: data.iter().map(received),
                now_us: crate::clock::now_micros(),
            });
        }
    })
}

/// `stream` of alerts (`alerts`) or normal traffic, counted as routed.
pub fn routed<'scope>(
    stream: Stream<'scope, u64, Vec<Outcome>>,
    alerts: bool,
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
            });
        }
    })
}

/// `stream` of dead letters, counted by code.
#[allow(clippy::vec_box)] // dead letters travel boxed
pub fn dead_letters(
    stream: Stream<'_, u64, Vec<Box<DeadLetter>>>,
) -> Stream<'_, u64, Vec<Box<DeadLetter>>> {
    if !worker::is_on() {
        return stream;
    }
    stream.inspect_core(|batch| {
        if let Ok((_, data)) = batch {
            worker::emit(DeadLettered { letters: data });
        }
    })
}
