//! The feedback join: every scored transaction's features, and every
//! label, kept as windowed arrangements by transaction id on the
//! transaction's shard, and joined there.
//!
//! Both sides enter through the window batcher ([`crate::dataflow::batcher`])
//! and leave `retention` later, so the join holds a bounded stretch of
//! event time whatever the traffic. A label meets its transaction's
//! features when the two overlap: a label that comes first waits up to the
//! retention for its transaction, one that comes after the features have
//! left finds nothing. Differential's join emits each meeting at the later
//! of the two times (and its end when either side leaves); the tally keeps
//! the meetings, in event time and then in order of receipt, and counts
//! what happened to every label.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::Hashable;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Exchange as _};
use timely::dataflow::Stream;

use super::{Example, Feedback, FeedbackSummary, Kept, Tallied};
use crate::dataflow::batcher::{Update, WindowBatcher};
use crate::dataflow::FeatureRow;
use crate::event::EventId;
use crate::metrics::events::{state_gauge, LabelsTallied, State};
use crate::metrics::worker;

/// A scored transaction's features: its input order and values.
type FeatureVal = (u64, Kept);
/// A label: its order of receipt and class.
type LabelVal = (u64, bool);

type FeatureBatcher =
    WindowBatcher<(EventId, FeatureVal), ValBuilder<EventId, FeatureVal, u64, isize>>;
type LabelBatcher = WindowBatcher<(EventId, LabelVal), ValBuilder<EventId, LabelVal, u64, isize>>;

/// A meeting of a label and features, before the tally.
type Meeting = (EventId, LabelVal, Kept);

/// Joins each label with the features of its transaction, kept for
/// `retention` ms of event time; returns the labelled examples, each at
/// the time its label met its features, on the transaction's shard, and
/// once the labels end, each shard's counts (received, matched, unmatched,
/// duplicate, relabel).
pub fn feedback_join<'scope>(
    rows: Stream<'scope, u64, Vec<FeatureRow>>,
    feedback: Stream<'scope, u64, Vec<Feedback>>,
    retention: u64,
) -> Stream<'scope, u64, Vec<Tallied>> {
    let features = entering(rows, "KeepFeatures", |r: &FeatureRow| {
        (r.id.clone(), (r.seq, Kept(r.values)), r.place_ms)
    });
    let held = state_gauge(State::FeedbackJoin);
    let features = arrange_core::<_, _, FeatureBatcher, ValSpine<EventId, FeatureVal, u64, isize>>(
        features,
        Exchange::new(|u: &Update<(EventId, FeatureVal)>| u.0 .0.hashed()),
        "KeptFeatures",
        move |_, _| FeatureBatcher::new(retention).reporting(Rc::clone(&held)),
    );
    // Labels go to their transaction's shard once: there they are both
    // arranged and tallied.
    let labels = feedback.exchange(|f: &Feedback| f.id.hashed());
    let entering = entering(labels.clone(), "KeepLabels", |f: &Feedback| {
        (f.id.clone(), (f.seq, f.is_fraud), f.time)
    });
    let labels_held = state_gauge(State::FeedbackJoin);
    let arranged_labels = arrange_core::<_, _, LabelBatcher, ValSpine<EventId, LabelVal, u64, isize>>(
        entering,
        Pipeline,
        "KeptLabels",
        move |_, _| LabelBatcher::new(retention).reporting(Rc::clone(&labels_held)),
    );
    let meetings = features
        .join_core(
            arranged_labels,
            |id: &EventId, f: &FeatureVal, l: &LabelVal| Some((id.clone(), *l, f.1)),
        )
        .inner;
    tally(meetings, labels, retention)
}

/// The meetings (and their ends) of one time, with its capability.
type Meetings = (Capability<u64>, Vec<(Meeting, isize)>);

/// Each record as an update entering a window keyed by transaction id, at
/// its own time: never before the logical time it travels at, as
/// differential requires.
fn entering<'scope, D: 'static, V: Clone + 'static>(
    records: Stream<'scope, u64, Vec<D>>,
    name: &str,
    keyed: impl Fn(&D) -> (EventId, V, u64) + 'static,
) -> Stream<'scope, u64, Vec<Update<(EventId, V)>>> {
    records.unary::<CapacityContainerBuilder<Vec<_>>, _, _, _>(Pipeline, name, |_, _| {
        move |input, output| {
            input.for_each(|cap, data| {
                let Some(&at) = cap.least() else { return };
                output.session(&cap).give_iterator(data.iter().map(|d| {
                    let (id, value, time) = keyed(d);
                    ((id, value), time.max(at), 1isize)
                }));
            });
        }
    })
}

/// What the tally holds on one shard.
struct Tally {
    retention: u64,
    /// Meetings and their ends, by the time they happen.
    meetings: BTreeMap<u64, Meetings>,
    /// Labels by the time their wait ends: unmatched unless met by then.
    waiting: BTreeMap<u64, Vec<u64>>,
    met: HashSet<u64>,
    /// Each transaction's last label, until the retention after it.
    last: HashMap<EventId, (bool, u64)>,
    expiring: BTreeMap<u64, Vec<EventId>>,
    counts: FeedbackSummary,
}

/// Consolidates the join's output and counts every label: met (and, of
/// those, duplicates and relabels) or unmatched once its wait ends.
fn tally<'scope>(
    meetings: Stream<'scope, u64, Vec<(Meeting, u64, isize)>>,
    labels: Stream<'scope, u64, Vec<Feedback>>,
    retention: u64,
) -> Stream<'scope, u64, Vec<Tallied>> {
    meetings.binary_frontier::<_, CapacityContainerBuilder<Vec<Tallied>>, _, _, _, _>(
        labels,
        Pipeline,
        Pipeline,
        "FeedbackTally",
        move |cap, _| {
            // Held at the inputs' frontier, to send the counts once both end.
            let mut held = Some(cap);
            let mut tally = Tally::new(retention);
            move |(met, met_frontier), (labels, label_frontier), output| {
                met.for_each(|cap, data| {
                    for (m, t, r) in data.drain(..) {
                        let entry = tally
                            .meetings
                            .entry(t)
                            .or_insert_with(|| (cap.delayed(&t, 0), Vec::new()));
                        entry.1.push((m, r));
                    }
                });
                labels.for_each(|cap, data| {
                    let Some(&at) = cap.least() else { return };
                    tally.received(data.len());
                    for f in data.drain(..) {
                        let due = f.time.max(at).saturating_add(tally.retention);
                        tally.waiting.entry(due).or_default().push(f.seq);
                    }
                });
                let done = |t: u64| !met_frontier.less_equal(&t) && !label_frontier.less_equal(&t);
                tally.advance(done, |cap, examples| {
                    let mut tallied = examples.drain(..).map(Tallied::Example);
                    output.session(cap).give_iterator(&mut tallied)
                });
                let least = met_frontier
                    .frontier()
                    .iter()
                    .chain(label_frontier.frontier().iter())
                    .min()
                    .copied();
                match (least, held.as_mut()) {
                    (Some(t), Some(cap)) => cap.downgrade(&t),
                    (None, Some(cap)) => {
                        output
                            .session(cap)
                            .give(Tallied::Counts(std::mem::take(&mut tally.counts)));
                        held = None;
                    }
                    (_, None) => {}
                }
            }
        },
    )
}

impl Tally {
    fn new(retention: u64) -> Tally {
        Tally {
            retention,
            meetings: BTreeMap::new(),
            waiting: BTreeMap::new(),
            met: HashSet::new(),
            last: HashMap::new(),
            expiring: BTreeMap::new(),
            counts: FeedbackSummary::default(),
        }
    }

    /// Handles every time that `done` says is complete, in order: the
    /// meetings at a time, then the labels whose wait ended there.
    fn advance(
        &mut self,
        done: impl Fn(u64) -> bool,
        mut give: impl FnMut(&Capability<u64>, &mut Vec<Example>),
    ) {
        loop {
            let next_meeting = self.meetings.keys().next().copied();
            let next_due = self.waiting.keys().next().copied();
            let time = match (next_meeting, next_due) {
                (Some(m), Some(d)) => m.min(d),
                (Some(t), None) | (None, Some(t)) => t,
                (None, None) => break,
            };
            if !done(time) {
                break;
            }
            if next_meeting == Some(time) {
                if let Some((cap, updates)) = self.meetings.remove(&time) {
                    let mut examples = self.meet(time, updates);
                    if !examples.is_empty() {
                        give(&cap, &mut examples);
                    }
                }
            } else if let Some(seqs) = self.waiting.remove(&time) {
                let unmatched = seqs.iter().filter(|s| !self.met.remove(s)).count();
                self.counts.unmatched += unmatched as u64;
                worker::emit(LabelsTallied {
                    unmatched: unmatched as u64,
                    ..LabelsTallied::default()
                });
            }
            self.expire(time);
        }
    }

    /// Counts `n` labels received.
    fn received(&mut self, n: usize) {
        self.counts.received += n as u64;
        worker::emit(LabelsTallied {
            received: n as u64,
            ..LabelsTallied::default()
        });
    }

    /// The meetings that happened at `time` (updates that add up to more
    /// than nothing), in order of receipt, as examples.
    fn meet(&mut self, time: u64, mut updates: Vec<(Meeting, isize)>) -> Vec<Example> {
        differential_dataflow::consolidation::consolidate(&mut updates);
        let mut met: Vec<Meeting> = updates
            .into_iter()
            .filter(|(_, r)| *r > 0)
            .map(|(m, _)| m)
            .collect();
        met.sort_by_key(|(_, (seq, _), _)| *seq);
        let counts = &mut self.counts;
        let was = (counts.matched, counts.duplicate);
        let examples = met
            .into_iter()
            .map(|(id, (seq, is_fraud), values)| {
                counts.matched += 1;
                self.met.insert(seq);
                let until = time.saturating_add(self.retention);
                if let Some((before, _)) = self.last.insert(id.clone(), (is_fraud, until)) {
                    counts.duplicate += 1;
                    counts.relabel += u64::from(before != is_fraud);
                }
                self.expiring.entry(until).or_default().push(id.clone());
                Example {
                    time,
                    seq,
                    id,
                    is_fraud,
                    values,
                }
            })
            .collect();
        worker::emit(LabelsTallied {
            matched: counts.matched - was.0,
            duplicate: counts.duplicate - was.1,
            ..LabelsTallied::default()
        });
        examples
    }

    /// Forgets the last labels whose retention ended by `time`.
    fn expire(&mut self, time: u64) {
        while let Some(entry) = self.expiring.first_entry() {
            if *entry.key() > time {
                break;
            }
            for id in entry.remove() {
                if self.last.get(&id).is_some_and(|(_, until)| *until <= time) {
                    self.last.remove(&id);
                }
            }
        }
    }
}
