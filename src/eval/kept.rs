//! What a backtest's evaluation keeps of every scored event besides its
//! record, on the worker that scored it, and how it reaches worker 0.
//!
//! Records go to disk as they are made ([`super::spill`]), with the HTML
//! report's fields in them when it is asked for. The rest is counts:
//! events and alerts, each alert's first reason, and the times the run
//! started and ended (the page's throughput). A worker of process 0 adds
//! to the process's [`KeptShare`] directly (one lock a container), and a
//! worker of another process keeps its own [`Kept`] and sends it to
//! worker 0 once, when its input is complete, followed by its records
//! read back from its process's disk a piece at a time (in [`Kept`]'s
//! `records`). Merging only appends and adds, so the result is the same
//! for any number of workers and processes; and nothing here grows with
//! the input but the records, which are on disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::html::backtest::first_reason;
use super::Record;
use crate::dataflow::score::Outcome;

/// What to keep besides the plain records: with `page`, what the HTML
/// report needs (the page's fields in every record, the alerts' reasons
/// and the run's span).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    pub page: bool,
}

/// Records in a piece sent between processes: large enough that few
/// messages travel, small enough that none is huge.
pub const PIECE: usize = 1 << 16;

/// One worker's kept state, or several merged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// Scored events' records, in no particular order: only in the pieces
    /// another process sends (see the module's doc).
    pub records: Vec<Record>,
    /// With [`Keep::page`]: alerts by first reason.
    pub reasons: BTreeMap<String, u64>,
    /// With [`Keep::page`]: the earliest time an event was read and the
    /// latest it was routed (µs since the Unix epoch).
    pub span_us: Option<(u64, u64)>,
    /// Events scored that were not alerts.
    pub normal: u64,
    /// The workers' sources' counts: events read, and placed late.
    pub events_in: u64,
    pub late: u64,
}

impl Kept {
    /// Keeps what `keep` asks of `outcomes` (their records go to disk).
    pub fn add(&mut self, outcomes: &[Outcome], keep: Keep) {
        let alerts = outcomes.iter().filter(|o| o.alert.is_some());
        self.normal += (outcomes.len() - alerts.clone().count()) as u64;
        if keep.page {
            for o in alerts {
                *self.reasons.entry(first_reason(o)).or_default() += 1;
            }
            for o in outcomes {
                let done = o.received_us.saturating_add(o.latency_us);
                self.widen((o.received_us, done));
            }
        }
    }

    fn widen(&mut self, (from, to): (u64, u64)) {
        self.span_us = Some(match self.span_us {
            Some((a, b)) => (a.min(from), b.max(to)),
            None => (from, to),
        });
    }

    /// Appends `other`, adding its counts (taking its records whole where
    /// these are empty: a copy would hold both at once).
    pub fn merge(&mut self, mut other: Kept) {
        if self.records.is_empty() {
            std::mem::swap(&mut self.records, &mut other.records);
        }
        self.records.append(&mut other.records);
        for (reason, n) in other.reasons {
            *self.reasons.entry(reason).or_default() += n;
        }
        if let Some(span) = other.span_us {
            self.widen(span);
        }
        self.normal += other.normal;
        self.events_in += other.events_in;
        self.late += other.late;
    }

    /// The same state as pieces of at most [`PIECE`] records, the counts
    /// in one: merged, they hold what `self` does (the records in another
    /// order).
    ///
    /// ```
    /// use fraudflow::eval::kept::Kept;
    /// let r = |seq| fraudflow::eval::Record { seq, time_ms: 0, score: 0.5, is_fraud: None, amount: 1.0, latency_us: 0, frozen: None, threshold: 0.5, page: None };
    /// let whole = Kept { records: (0..200_000).map(r).collect(), normal: 7, events_in: 9, span_us: Some((3, 8)), ..Kept::default() };
    /// let pieces = whole.clone().pieces();
    /// assert_eq!(pieces.len(), 4);
    /// let mut merged = Kept::default();
    /// pieces.into_iter().for_each(|p| merged.merge(p));
    /// merged.records.sort_by_key(|r| r.seq);
    /// assert_eq!(merged, whole);
    /// ```
    pub fn pieces(mut self) -> Vec<Kept> {
        let mut pieces = Vec::new();
        while self.records.len() > PIECE {
            let at = self.records.len() - PIECE;
            pieces.push(Kept {
                records: self.records.split_off(at),
                ..Kept::default()
            });
        }
        pieces.push(self);
        pieces
    }
}

/// The [`Kept`] of a process's workers, merged; clones share it.
#[derive(Clone, Debug, Default)]
pub struct KeptShare(Arc<Mutex<Kept>>);

impl KeptShare {
    /// Keeps what `keep` asks of `outcomes` (a worker of this process, as
    /// it scores them: one lock a container, and no second copy at the
    /// end).
    pub fn add(&self, outcomes: &[Outcome], keep: Keep) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.add(outcomes, keep);
    }

    pub fn merge(&self, kept: Kept) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).merge(kept);
    }

    /// What was merged so far, leaving none.
    pub fn take(&self) -> Kept {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
