//! How fast recall comes back after fraud changes its pattern: issue 12's
//! scenario (b) target, computed by the backtest instead of by a script
//! over `scores.csv`.
//!
//! Given the hour `H` at which the pattern changed (`backtest --drift-at`,
//! the step the generator's `--drift-at` was given):
//! - the level before is the recall over the seven whole days before the
//!   day of `H`, each day judged at the budget share of its own scores (as
//!   the day-by-day table does) and the days summed: frauds caught over
//!   frauds;
//! - then each of the three 24-hour windows after `H` (`[H, H+24)`,
//!   `[H+24, H+48)`, `[H+48, H+72)`) is judged as one day is, on its own
//!   scores;
//! - the target is met when the second window, the 24 hours that end 48
//!   hours after the change, reaches 90 % of the level before.
//!
//! Each window counts only labelled events, and gives the online and the
//! frozen models' figures side by side.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ranking::at_budget;
use super::Record;

/// Share of the level before that the window ending 48 hours after the
/// change must reach.
pub const RECOVERY_SHARE: f64 = 0.9;

/// Days before the change's day that make up the level before.
pub const DAYS_BEFORE: u32 = 7;

/// One model's frauds caught at the budget, and their share.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Caught {
    pub caught: u64,
    /// `None` with no frauds.
    pub recall: Option<f64>,
}

impl Caught {
    fn of(caught: u64, fraud: u64) -> Caught {
        Caught {
            caught,
            recall: (fraud > 0).then(|| caught as f64 / fraud as f64),
        }
    }
}

/// Hours `[from_hour, to_hour)` of event time, and what each model caught.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Window {
    pub from_hour: u32,
    pub to_hour: u32,
    pub events: u64,
    pub fraud: u64,
    pub online: Caught,
    /// `None` when the records carry no frozen score.
    pub frozen: Option<Caught>,
}

/// The level before the change, the three days after it, and the verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recovery {
    pub drift_hour: u32,
    pub before: Window,
    pub after: Vec<Window>,
    /// `RECOVERY_SHARE` of the online level before; `None` without frauds
    /// before.
    pub target_recall: Option<f64>,
    /// Whether the window ending 48 hours after the change reached the
    /// target; `None` when either side has no frauds.
    pub met: Option<bool>,
}

impl Recovery {
    /// The verdict in words.
    pub fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "not met",
            None => "not judged (no fraud)",
        }
    }
}

/// The recovery after a change at hour `drift_hour`, judged at `budget`.
///
/// ```
/// use fraudflow::eval::{recovery::recovery, Record};
/// let r = |hour: u64, score, fraud| Record {
///     seq: 0, time_ms: hour * 3_600_000, score, is_fraud: Some(fraud),
///     amount: 1.0, latency_us: 0, frozen: None, threshold: 0.5, page: None,
/// };
/// // Day 0: the fraud ranks first. Hours 48..72: it ranks last.
/// let records = [r(1, 0.9, true), r(2, 0.1, false), r(50, 0.1, true), r(51, 0.9, false)];
/// let rec = recovery(&records, 0.5, 24);
/// assert_eq!(rec.before.online.recall, Some(1.0));
/// assert_eq!(rec.after[1].online.recall, Some(0.0));
/// assert_eq!(rec.met, Some(false));
/// ```
pub fn recovery(records: &[Record], budget: f64, drift_hour: u32) -> Recovery {
    let day = drift_hour / 24;
    let first_day = day.saturating_sub(DAYS_BEFORE);
    let before = days_summed(records, budget, first_day * 24, day * 24);
    // Saturating: a change at a step past the data judges empty windows.
    let after: Vec<Window> = (0..3)
        .map(|k| {
            let from = drift_hour.saturating_add(24 * k);
            judged(records, budget, from, from.saturating_add(24), |_| 0)
        })
        .collect();
    let target_recall = before.online.recall.map(|r| RECOVERY_SHARE * r);
    let met = match (target_recall, after[1].online.recall) {
        (Some(target), Some(recall)) => Some(recall >= target),
        _ => None,
    };
    Recovery {
        drift_hour,
        before,
        after,
        target_recall,
        met,
    }
}

/// The hours whose labelled events the figures of a change at
/// `drift_hour` judge: from the first of the days before to the end of
/// the third day after.
pub fn hours_judged(drift_hour: u32) -> std::ops::Range<u32> {
    let first_day = (drift_hour / 24).saturating_sub(DAYS_BEFORE);
    first_day * 24..drift_hour.saturating_add(72)
}

/// Hours `[from, to)` judged day by day (each on its own scores), summed.
fn days_summed(records: &[Record], budget: f64, from: u32, to: u32) -> Window {
    judged(records, budget, from, to, |hour| hour / 24)
}

/// Hours `[from, to)`, their labelled events grouped by `group` of the
/// hour, each group judged at `budget` on its own scores, the groups summed.
fn judged(
    records: &[Record],
    budget: f64,
    from: u32,
    to: u32,
    group: impl Fn(u32) -> u32,
) -> Window {
    let mut groups: BTreeMap<u32, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.is_fraud.is_some()) {
        if (from..to).contains(&r.hour()) {
            groups.entry(group(r.hour())).or_default().push(r);
        }
    }
    let (mut events, mut fraud, mut online) = (0, 0, 0);
    let mut frozen = Some(0);
    for rs in groups.values() {
        let labels: Vec<bool> = rs.iter().map(|r| r.is_fraud == Some(true)).collect();
        let scores: Vec<f64> = rs.iter().map(|r| r.score).collect();
        let caught = |s: &[f64]| at_budget(s, &labels, budget).map_or(0, |a| a.caught);
        events += rs.len() as u64;
        fraud += labels.iter().filter(|l| **l).count() as u64;
        online += caught(&scores);
        let frozen_scores: Option<Vec<f64>> = rs.iter().map(|r| r.frozen).collect();
        frozen = frozen.zip(frozen_scores).map(|(n, s)| n + caught(&s));
    }
    Window {
        from_hour: from,
        to_hour: to,
        events,
        fraud,
        online: Caught::of(online, fraud),
        frozen: frozen.map(|n| Caught::of(n, fraud)),
    }
}

#[cfg(test)]
mod tests;
