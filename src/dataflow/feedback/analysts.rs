//! Analysts simulated in a backtest: they label alerted transactions with
//! their true class a delay after the alert, up to a number of alerts an
//! hour, and chargebacks reveal the fraud no analyst looked at (no alert,
//! or an alert over the capacity) a longer delay after it.
//!
//! Alerts and missed fraud are few, so they meet on worker 0, which takes
//! them in event time and then input order once every case at or before a
//! place has come in: which alerts fit in an hour's capacity is then the
//! same for any number of workers.

use std::collections::{BTreeMap, HashMap};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::{AnalystSettings, Counts, Feedback};
use crate::dataflow::score::Outcome;
use crate::event::{EventId, STEP_MS};

/// A case for the analysts: an alert, or a fraud that raised none.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Case {
    id: EventId,
    seq: u64,
    place: u64,
    is_fraud: bool,
    alert: bool,
}

/// The labels the analysts and chargebacks give, each sent `loop_delay`
/// before it is due: the loop back to the join adds that delay.
pub fn analysts<'scope>(
    outcomes: Stream<'scope, u64, Vec<Outcome>>,
    settings: AnalystSettings,
    loop_delay: u64,
    counts: Counts,
) -> Stream<'scope, u64, Vec<Feedback>> {
    let chargebacks = settings.chargeback_ms.is_some();
    let cases = outcomes.flat_map(move |o| {
        let alert = o.alert.is_some();
        // Only cases with a known class can be labelled.
        o.is_fraud
            .filter(|&fraud| alert || (fraud && chargebacks))
            .map(|is_fraud| Case {
                id: o.id,
                seq: o.seq,
                place: o.place_ms,
                is_fraud,
                alert,
            })
    });
    cases.unary_frontier::<CapacityContainerBuilder<Vec<Feedback>>, _, _, _>(
        Exchange::new(|_: &Case| 0),
        "Analysts",
        move |_, _| {
            let mut desk = Desk {
                settings,
                loop_delay,
                pending: BTreeMap::new(),
                used: HashMap::new(),
                counts,
            };
            let mut held: Option<Capability<u64>> = None;
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(&at) = cap.least() else { return };
                    if held.as_ref().is_none_or(|h| at < *h.time()) {
                        held = Some(cap.delayed(&at, 0));
                    }
                    for case in data.drain(..) {
                        desk.pending
                            .insert((case.place.max(at), case.seq), (at, case));
                    }
                });
                let Some(cap) = held.as_mut() else { return };
                let passed = |t: u64| !frontier.less_equal(&t);
                let labels = desk.work(passed);
                for f in labels {
                    let send = f.time.saturating_sub(desk.loop_delay);
                    output.session(&cap.delayed(&send)).give(f);
                }
                match desk.pending.values().map(|(at, _)| *at).min() {
                    Some(least) => cap.downgrade(&least),
                    None => held = None,
                }
            }
        },
    )
}

/// The analysts' desk on worker 0.
struct Desk {
    settings: AnalystSettings,
    loop_delay: u64,
    /// Cases by place and input order, with the logical time each came at.
    pending: BTreeMap<(u64, u64), (u64, Case)>,
    /// Labels given, by hour of the alert's place.
    used: HashMap<u64, u64>,
    counts: Counts,
}

impl Desk {
    /// Labels every case whose place the frontier has passed, in order.
    fn work(&mut self, passed: impl Fn(u64) -> bool) -> Vec<Feedback> {
        let mut labels = Vec::new();
        let mut counts = self.counts.borrow_mut();
        while let Some(entry) = self.pending.first_entry() {
            if !passed(entry.key().0) {
                break;
            }
            let (place, _) = *entry.key();
            let (_, case) = entry.remove();
            let mut labelled = false;
            if case.alert {
                let used = self.used.entry(place / STEP_MS).or_default();
                labelled = *used < self.settings.per_hour;
                if labelled {
                    *used += 1;
                    counts.analyst_labels += 1;
                } else {
                    counts.over_capacity += 1;
                }
            }
            // Fraud no analyst looked at comes back as a chargeback.
            let (due, seq) = match (labelled, self.settings.chargeback_ms) {
                (true, _) => (self.settings.delay_ms, case.seq * 2),
                (false, Some(after)) if case.is_fraud => {
                    counts.chargebacks += 1;
                    (after, case.seq * 2 + 1)
                }
                (false, _) => continue,
            };
            labels.push(Feedback {
                id: case.id,
                is_fraud: case.is_fraud,
                seq,
                time: place.saturating_add(due),
            });
        }
        // Hours wholly behind the frontier take no more labels.
        if let Some((&(place, _), _)) = self.pending.first_key_value() {
            self.used.retain(|hour, _| (hour + 1) * STEP_MS > place);
        }
        labels
    }
}
