//! The dataflow's operators: features with velocity as windowed
//! arrangements, scoring and routing, ordered sinks. The graph that joins
//! them is built in [`crate::pipeline`].

pub mod batcher;
pub mod dead_letter;
pub mod feedback;
pub mod json_event;
pub mod score;
pub mod sink;
pub mod table;
pub mod threshold;
pub mod velocity;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::{Operator, OutputBuilder};
use timely::dataflow::operators::{Capability, Concat};
use timely::dataflow::Stream;

use crate::event::{Event, EventId, Label};
use crate::features::{Contract, FeatureVec, Velocities};
use crate::paysim::AccountId;
use velocity::{Velocity, VelocityKey};

/// Default velocity window: one hour, in seconds.
pub const WINDOW_SECONDS: u64 = 3_600;

/// One event's features, with what identifies it and its label for
/// evaluation (never a feature).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    pub id: EventId,
    pub seq: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Where the source placed the event (`Event::place_ms`): model
    /// versions are chosen by it.
    pub place_ms: u64,
    pub step: Option<u32>,
    /// The origin account: outputs are keyed by it.
    pub account: AccountId,
    /// When the source read the event (µs since the Unix epoch).
    pub received_us: u64,
    pub label: Option<Label>,
    pub values: FeatureVec,
}

/// A velocity question about one account of one event, and its answer:
/// narrow, so that only this travels to the account's shard and back, while
/// the event waits on its home worker, at `index` among the events of its
/// logical time there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Query {
    account: u64,
    seq: u64,
    /// The event's place in event time: its window ends there.
    time: u64,
    count: u64,
    home: u32,
    index: u32,
    dest: bool,
}

/// Attaches origin (and, for V2, destination) velocity to every event, each
/// computed on the shard that owns the account, then the contract's
/// features.
///
/// Events stay on the worker that read them. Each sends a narrow query per
/// account to that account's shard; the counts come back to the event's
/// worker, which places each by the event's position among the events of
/// its logical time once both the events and the answers of that time are
/// complete. Each window ends at the event's own place (`place_ms`), which
/// a file source may send with many others at one logical time (an epoch).
/// Rows leave in arrival order within a logical time; the sinks order by
/// `seq`.
pub fn featurize<'scope>(
    events: Stream<'scope, u64, Vec<Event>>,
    contract: Contract,
    window_ms: u64,
) -> Stream<'scope, u64, Vec<FeatureRow>> {
    let (orig, dest) = queries(events.clone(), contract == Contract::V2);
    let key = |q: &Query| VelocityKey {
        account: Some(q.account),
        seq: q.seq,
        time: q.time,
    };
    let answers = orig.velocity(window_ms, key, |q, n| q.count = n, "OrigVelocity");
    let answers = match dest {
        Some(dest) => {
            answers.concat(dest.velocity(window_ms, key, |q, n| q.count = n, "DestVelocity"))
        }
        None => answers,
    };
    join_answers(events, answers, move |e, v| FeatureRow {
        values: contract.compute(&e, v),
        id: e.id,
        seq: e.seq,
        time_ms: e.time_ms,
        place_ms: e.place_ms,
        step: e.step,
        account: e.orig,
        received_us: e.received_us,
        label: e.label,
    })
}

type Queries<'scope> = Stream<'scope, u64, Vec<Query>>;

/// The origin and (with `with_dest`) destination queries of each event.
/// Each query carries its event's position among the events of its logical time on
/// this worker, in arrival order: the join finds the event by it.
fn queries<'scope>(
    events: Stream<'scope, u64, Vec<Event>>,
    with_dest: bool,
) -> (Queries<'scope>, Option<Queries<'scope>>) {
    let home = events.scope().index() as u32;
    let mut builder = OperatorBuilder::new("Queries".to_owned(), events.scope());
    let mut input = builder.new_input(events, Pipeline);
    let (orig_out, orig) = builder.new_output();
    let (dest_out, dest) = builder.new_output();
    let mut orig_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Query>>>::from(orig_out);
    let mut dest_out = OutputBuilder::<_, CapacityContainerBuilder<Vec<Query>>>::from(dest_out);
    builder.build(move |_| {
        // Events seen so far of each time not yet complete.
        let mut seen: BTreeMap<u64, u32> = BTreeMap::new();
        move |frontiers| {
            let mut orig_out = orig_out.activate();
            let mut dest_out = dest_out.activate();
            // In arrival order (not grouped by stamp): the join counts the
            // same way.
            input.for_each(|cap, data| {
                let Some(&time) = cap.least() else { return };
                let index = seen.entry(time).or_insert(0);
                let mut orig = orig_out.session(&cap);
                let mut dest = dest_out.session(&cap);
                for e in data.iter() {
                    let query = Query {
                        account: e.orig.as_u64(),
                        seq: e.seq,
                        time: e.place_ms,
                        count: 0,
                        home,
                        index: *index,
                        dest: false,
                    };
                    orig.give(query);
                    if let Some(account) = e.dest.filter(|_| with_dest) {
                        dest.give(Query {
                            account: account.as_u64(),
                            dest: true,
                            ..query
                        });
                    }
                    *index += 1;
                }
            });
            let frontier = frontiers[0].frontier();
            seen.retain(|time, _| frontier.less_equal(time));
        }
    });
    (orig, with_dest.then_some(dest))
}

/// Meets each event with its answers, on the event's home worker, and
/// hands both to `finish`: events of a time wait in arrival order, in the
/// containers they came in, and each answer names its event's place.
fn join_answers<'scope, R: Clone + 'static>(
    events: Stream<'scope, u64, Vec<Event>>,
    answers: Stream<'scope, u64, Vec<Query>>,
    finish: impl Fn(Event, Velocities) -> R + 'static,
) -> Stream<'scope, u64, Vec<R>> {
    let home = Exchange::new(|q: &Query| u64::from(q.home));
    events.binary_frontier::<_, CapacityContainerBuilder<Vec<R>>, _, _, _, _>(
        answers,
        Pipeline,
        home,
        "JoinVelocity",
        |_, _| {
            let mut waiting: BTreeMap<u64, (Capability<u64>, Vec<Vec<Event>>)> = BTreeMap::new();
            let mut answered: BTreeMap<u64, Vec<Query>> = BTreeMap::new();
            move |(events, event_frontier), (answers, answer_frontier), output| {
                // In arrival order, as `queries` numbered them.
                events.for_each(|cap, data| {
                    if let Some(cap) = cap.retain_least(0) {
                        waiting
                            .entry(*cap.time())
                            .or_insert_with(|| (cap, Vec::new()))
                            .1
                            .push(std::mem::take(data));
                    }
                });
                answers.for_each(|cap, data| {
                    if let Some(&time) = cap.least() {
                        answered.entry(time).or_default().append(data);
                    }
                });
                while let Some(entry) = waiting.first_entry() {
                    let time = *entry.key();
                    if event_frontier.less_equal(&time) || answer_frontier.less_equal(&time) {
                        break;
                    }
                    let (cap, containers) = entry.remove();
                    let count = containers.iter().map(Vec::len).sum();
                    let mut velocities = vec![Velocities::default(); count];
                    for q in answered.remove(&time).unwrap_or_default() {
                        // Every answer's place exists: it was counted from
                        // these same events.
                        if let Some(v) = velocities.get_mut(q.index as usize) {
                            if q.dest {
                                v.dest = q.count
                            } else {
                                v.orig = q.count
                            }
                        }
                    }
                    let events = containers.into_iter().flatten();
                    output
                        .session(&cap)
                        .give_iterator(events.zip(velocities).map(|(e, v)| finish(e, v)));
                }
            }
        },
    )
}
