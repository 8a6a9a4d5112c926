//! The adaptive threshold: the alert threshold follows a quantile of
//! recent scores, so that the share of events alerted holds the budget as
//! traffic and models change.
//!
//! Why in the dataflow, and how it stays deterministic: every worker's
//! scores meet on worker 0 ([`adapt`]), which keeps them in buckets of
//! `every` of event time by their place. At each tick `T` (a multiple of
//! `every`), once every score placed before `T` is in, the threshold is the
//! score that alerts on the `budget` share of the scores placed in
//! `[T - window, T)` (as `threshold_for_budget` finds it), held within
//! `[floor, ceiling]`; with fewer than `min_samples` scores it does not
//! move. A change is sent round a timely loop to every worker's scoring
//! and applies from `T + every` on, like a model version: which scores a
//! tick sees depends on their places alone, so a backtest gives the same
//! thresholds, and the same alerts, for any number of workers.
//!
//! The loop's delay (`every`) is what lets scoring go on while the
//! threshold waits for scores: it must exceed the source's allowed
//! lateness, and the file source's epochs are bounded under it, as for
//! the feedback loop.

mod settings;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::eval::ranking::threshold_for_budget;
pub use settings::{ThresholdSettings, ThresholdSettingsError};

/// A change of the alert threshold, from an event time on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChange {
    /// Event time (milliseconds) from which it applies.
    pub from: u64,
    pub threshold: f64,
    /// The scores it was found on, and the quantile before the floor and
    /// the ceiling held it.
    pub samples: u64,
    pub quantile: f64,
}

/// The threshold's state on worker 0: scores by bucket of `every`, and the
/// next tick.
#[derive(Clone, Debug)]
pub struct Tracker {
    settings: ThresholdSettings,
    buckets: BTreeMap<u64, Vec<f64>>,
    next: u64,
    last: Option<f64>,
}

impl Tracker {
    pub fn new(settings: ThresholdSettings) -> Tracker {
        Tracker {
            settings,
            buckets: BTreeMap::new(),
            next: 0,
            last: None,
        }
    }

    /// A score placed at `place` (ms of event time).
    pub fn add(&mut self, place: u64, score: f64) {
        let bucket = place / self.settings.every_ms;
        self.buckets.entry(bucket).or_default().push(score);
    }

    /// The next tick: no change is given before it.
    pub fn next_tick(&self) -> u64 {
        self.next
    }

    /// Takes every tick at or before `complete` (every score placed before
    /// it has been added), in order, giving each change of the threshold.
    pub fn advance(&mut self, complete: u64, mut give: impl FnMut(u64, ThresholdChange)) {
        let every = self.settings.every_ms;
        while self.next <= complete {
            let tick = self.next;
            if let Some(change) = self.tick(tick) {
                give(tick, change);
            }
            // Buckets no later window reaches go; with none left, the
            // ticks up to `complete` see no scores and are skipped.
            let keep_from = (tick + every).saturating_sub(self.settings.window_ms) / every;
            self.buckets = self.buckets.split_off(&keep_from);
            let after = tick.saturating_add(every);
            self.next = match self.buckets.is_empty() {
                true => after.max(complete.div_ceil(every).saturating_mul(every)),
                false => after,
            };
            if self.next == tick {
                break; // at the end of time
            }
        }
    }

    /// The threshold at `tick`, when it changes there.
    fn tick(&mut self, tick: u64) -> Option<ThresholdChange> {
        let s = &self.settings;
        let first = tick.saturating_sub(s.window_ms) / s.every_ms;
        let last = tick / s.every_ms; // exclusive: ticks are bucket starts
        let scores: Vec<f64> = self
            .buckets
            .range(first..last)
            .flat_map(|(_, v)| v.iter().copied())
            .collect();
        if scores.len() < s.min_samples.max(1) {
            return None;
        }
        let quantile = threshold_for_budget(&scores, s.budget)?;
        let threshold = quantile.clamp(s.floor, s.ceiling);
        if self.last == Some(threshold) {
            return None;
        }
        self.last = Some(threshold);
        Some(ThresholdChange {
            from: tick.saturating_add(s.every_ms),
            threshold,
            samples: scores.len() as u64,
            quantile,
        })
    }
}

/// The changes of the threshold, found on worker 0 from every worker's
/// `(place, score)`, each at the tick that found it (send them round a
/// loop of `every` to apply them from `change.from`). Each change is also
/// added to `log`.
pub fn adapt<'scope>(
    scores: Stream<'scope, u64, Vec<(u64, f64)>>,
    settings: ThresholdSettings,
    log: Rc<RefCell<Vec<ThresholdChange>>>,
) -> Stream<'scope, u64, Vec<ThresholdChange>> {
    let exchange = Exchange::new(|_: &(u64, f64)| 0);
    let name = "AdaptiveThreshold";
    scores.unary_frontier::<CapacityContainerBuilder<_>, _, _, _>(exchange, name, move |cap, _| {
        let mut held = Some(cap);
        let mut tracker = Tracker::new(settings);
        move |(input, frontier), output| {
            input.for_each(|_, data| {
                for (place, score) in data.drain(..) {
                    tracker.add(place, score);
                }
            });
            let Some(cap) = held.as_mut() else { return };
            // Every score placed before the least time still to come is in:
            // a place is never before its logical time.
            let Some(complete) = frontier.frontier().iter().copied().min() else {
                held = None;
                return;
            };
            tracker.advance(complete, |tick, change| {
                log.borrow_mut().push(change);
                output.session(&cap.delayed(&tick)).give(change);
            });
            cap.downgrade(&tracker.next_tick().max(*cap.time()));
        }
    })
}

#[cfg(test)]
mod tests;
