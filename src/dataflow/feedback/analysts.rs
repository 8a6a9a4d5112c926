//! Analysts simulated in a backtest: they label alerted transactions with
//! their true class a delay after the alert, up to a number of alerts an
//! hour, and chargebacks reveal the fraud no analyst looked at (no alert,
//! or an alert over the capacity) a longer delay after it.
//!
//! With `presume_legit_every`, a sample of the transactions that got
//! neither a label nor a chargeback by the chargeback delay are presumed
//! legitimate then, as a bank treats a payment whose chargeback window
//! closed quietly. Without them the learner's negatives are only the
//! false alarms, the few legitimate payments that look most like fraud,
//! and an update can rank those well and the day's traffic badly. Here
//! chargebacks reveal every missed fraud, so a presumed label is never
//! wrong and never meets a real one: a transaction gets one label at most.
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
use crate::generate::rng::splitmix64;

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
    let presume = settings.presume_legit_every;
    let cases = outcomes.flat_map(move |o| {
        let alert = o.alert.is_some();
        // Only cases with a known class can be labelled.
        o.is_fraud
            .filter(|&fraud| {
                alert || (fraud && chargebacks) || (!fraud && presumed(&o.id, presume))
            })
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

/// Whether `id` is one of the one in `every` transactions that may be
/// presumed legitimate (never when `every` is 0): by a hash of its id
/// mixed again, so that the sample does not follow the learner's holdout,
/// which takes one id in N by the plain hash.
///
/// ```
/// use fraudflow::dataflow::feedback::analysts::presumed;
/// use fraudflow::event::EventId;
///
/// let sampled = (1..=10_000).filter(|&n| presumed(&EventId::Row(n), 10)).count();
/// assert!((900..1100).contains(&sampled), "{sampled}");
/// assert!(!(1..=100).any(|n| presumed(&EventId::Row(n), 0)));
/// ```
pub fn presumed(id: &EventId, every: u64) -> bool {
    use differential_dataflow::Hashable;
    every > 0 && splitmix64(&mut id.hashed()).is_multiple_of(every)
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
            // Fraud no analyst looked at comes back as a chargeback; a
            // sampled legitimate one is presumed so when it does not.
            let (due, seq) = match (labelled, self.settings.chargeback_ms) {
                (true, _) => (self.settings.delay_ms, case.seq * 2),
                (false, Some(after)) if case.is_fraud => {
                    counts.chargebacks += 1;
                    (after, case.seq * 2 + 1)
                }
                (false, Some(after)) if presumed(&case.id, self.settings.presume_legit_every) => {
                    counts.presumed_legit += 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use differential_dataflow::Hashable;

    fn desk(presume_legit_every: u64) -> Desk {
        Desk {
            settings: AnalystSettings {
                delay_ms: 10,
                per_hour: 1,
                chargeback_ms: Some(100),
                presume_legit_every,
            },
            loop_delay: 10,
            pending: BTreeMap::new(),
            used: HashMap::new(),
            counts: Counts::default(),
        }
    }

    /// Row ids, from 1 on, that `presumed` samples (or not) at one in 3.
    fn rows(sampled: bool) -> impl Iterator<Item = u64> {
        (1..).filter(move |&n| presumed(&EventId::Row(n), 3) == sampled)
    }

    fn case(id: u64, seq: u64, is_fraud: bool, alert: bool) -> Case {
        Case {
            id: EventId::Row(id),
            seq,
            place: 5,
            is_fraud,
            alert,
        }
    }

    /// Five cases at one place: an alert the analysts label (the hour's
    /// one label), an alert over capacity and a quiet legitimate payment,
    /// both sampled, a missed fraud, and a legitimate payment not sampled.
    fn cases() -> (Vec<Case>, [u64; 4]) {
        let mut sampled = rows(true);
        let [a, b, c, d] = std::array::from_fn(|_| sampled.next().unwrap_or_default());
        let other = rows(false).next().unwrap_or_default();
        let cases = vec![
            case(a, 0, false, true),
            case(b, 1, false, true),
            case(c, 2, false, false),
            case(d, 3, true, false),
            case(other, 4, false, false),
        ];
        (cases, [a, b, c, d])
    }

    fn desk_with(cases: Vec<Case>, every: u64) -> Desk {
        let mut desk = desk(every);
        for c in cases {
            desk.pending.insert((c.place, c.seq), (0, c));
        }
        desk
    }

    #[test]
    fn a_sampled_transaction_no_label_named_is_presumed_legitimate_at_its_chargeback_time() {
        let (cases, [a, b, c, d]) = cases();
        let mut desk = desk_with(cases.clone(), 3);
        let got: Vec<(EventId, bool, u64, u64)> = desk
            .work(|_| true)
            .into_iter()
            .map(|f| (f.id, f.is_fraud, f.seq, f.time))
            .collect();
        let row = EventId::Row;
        // The label after the analysts' delay (place 5 + 10), the rest
        // after the chargeback delay (5 + 100); the fraud sampled too is
        // a chargeback, never presumed legitimate.
        assert_eq!(
            got,
            vec![
                (row(a), false, 0, 15),
                (row(b), false, 3, 105),
                (row(c), false, 5, 105),
                (row(d), true, 7, 105),
            ]
        );
        let n = desk.counts.borrow();
        let counts = (
            n.analyst_labels,
            n.over_capacity,
            n.chargebacks,
            n.presumed_legit,
        );
        assert_eq!(counts, (1, 1, 1, 2));
        // Off, the same cases give the label and the chargeback only.
        let mut off = desk_with(cases, 0);
        let ids: Vec<EventId> = off.work(|_| true).into_iter().map(|f| f.id).collect();
        assert_eq!(ids, vec![row(a), row(d)]);
    }

    #[test]
    fn the_sample_does_not_follow_the_holdout() {
        // The holdout takes ids whose plain hash is a multiple of 5: about
        // one sampled id in five must be among them, not all or none.
        let sampled: Vec<EventId> = (1..=50_000)
            .map(EventId::Row)
            .filter(|id| presumed(id, 10))
            .collect();
        let held = sampled.iter().filter(|id| id.hashed() % 5 == 0).count();
        let share = held as f64 / sampled.len() as f64;
        assert!((0.17..0.23).contains(&share), "{share}");
    }
}
