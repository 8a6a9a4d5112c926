//! What a backtest's evaluation keeps of every scored event besides its
//! record, on the worker that scored it, and how it reaches worker 0.
//!
//! Records go to disk as they are made ([`super::spill`]). The rest (the
//! counts, and with the HTML report every event's sample and every
//! alert's first reason) is merged per process: a worker of process 0
//! adds to the process's [`KeptShare`] directly (one lock a container),
//! and a worker of another process keeps its own [`Kept`] and sends it to
//! worker 0 once, when its input is complete, followed by its records
//! read back from its process's disk a piece at a time (in [`Kept`]'s
//! `records`). Merging only appends and adds, so the result is the same
//! for any number of workers and processes.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::html::backtest::{first_reason, Sample};
use super::Record;
use crate::dataflow::score::Outcome;

/// What to keep besides the records: `samples`, the HTML report's samples
/// and alert reasons. `expected`: about how many events the run scores (0:
/// unknown). Each worker reserves room for its share up front: a vector of
/// millions grown by doubling copies itself again and again, and the heap
/// keeps the copies it left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keep {
    pub samples: bool,
    pub expected: u64,
}

impl Keep {
    /// Room for one of `workers`' share of the expected events, with a
    /// quarter to spare (accounts are not spread exactly evenly).
    pub fn share(&self, workers: usize) -> usize {
        let share = self.expected / workers.max(1) as u64;
        usize::try_from(share + share / 4).unwrap_or(0)
    }
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
    /// With [`Keep::samples`]: every scored event's sample.
    pub samples: Vec<Sample>,
    /// With [`Keep::samples`]: every alert's first reason.
    pub reasons: Vec<String>,
    /// Events scored that were not alerts.
    pub normal: u64,
    /// The workers' sources' counts: events read, and placed late.
    pub events_in: u64,
    pub late: u64,
}

impl Kept {
    /// Room for `n` events' samples, with `keep.samples`.
    pub fn reserve(&mut self, n: usize, keep: Keep) {
        if keep.samples {
            self.samples.reserve(n);
        }
    }

    /// Keeps what `keep` asks of `outcomes` (their records go to disk).
    pub fn add(&mut self, outcomes: &[Outcome], keep: Keep) {
        let alerts = outcomes.iter().filter(|o| o.alert.is_some());
        self.normal += (outcomes.len() - alerts.clone().count()) as u64;
        if keep.samples {
            self.samples.extend(outcomes.iter().map(Sample::of));
            self.reasons.extend(alerts.map(first_reason));
        }
    }

    /// Appends `other`, adding its counts (taking its vectors whole where
    /// these are empty: a copy would hold both at once).
    pub fn merge(&mut self, mut other: Kept) {
        if self.records.is_empty() {
            std::mem::swap(&mut self.records, &mut other.records);
        }
        if self.samples.is_empty() {
            std::mem::swap(&mut self.samples, &mut other.samples);
        }
        self.records.append(&mut other.records);
        self.samples.append(&mut other.samples);
        self.reasons.append(&mut other.reasons);
        self.normal += other.normal;
        self.events_in += other.events_in;
        self.late += other.late;
    }

    /// The same state as pieces of at most [`PIECE`] records (and samples,
    /// and reasons), the counts in one: merged, they hold what `self` does
    /// (the records in another order).
    ///
    /// ```
    /// use fraudflow::eval::kept::Kept;
    /// let r = |seq| fraudflow::eval::Record { seq, time_ms: 0, score: 0.5, is_fraud: None, amount: 1.0, latency_us: 0, frozen: None, threshold: 0.5 };
    /// let whole = Kept { records: (0..200_000).map(r).collect(), normal: 7, events_in: 9, ..Kept::default() };
    /// let pieces = whole.clone().pieces();
    /// assert_eq!(pieces.len(), 4);
    /// let mut merged = Kept::default();
    /// pieces.into_iter().for_each(|p| merged.merge(p));
    /// merged.records.sort_by_key(|r| r.seq);
    /// assert_eq!(merged, whole);
    /// ```
    pub fn pieces(mut self) -> Vec<Kept> {
        let mut pieces = Vec::new();
        while self.records.len() > PIECE || self.samples.len() > PIECE || self.reasons.len() > PIECE
        {
            pieces.push(Kept {
                records: tail(&mut self.records),
                samples: tail(&mut self.samples),
                reasons: tail(&mut self.reasons),
                ..Kept::default()
            });
        }
        pieces.push(self);
        pieces
    }
}

/// The last [`PIECE`] of `v` (or all of it), taken off.
fn tail<T>(v: &mut Vec<T>) -> Vec<T> {
    v.split_off(v.len().saturating_sub(PIECE))
}

/// The [`Kept`] of a process's workers, merged; clones share it.
#[derive(Clone, Debug, Default)]
pub struct KeptShare(Arc<Mutex<Kept>>);

impl KeptShare {
    /// With room for the run's samples reserved (with `keep.samples`): its
    /// workers add to it as they go.
    pub fn new(keep: Keep) -> KeptShare {
        let mut kept = Kept::default();
        kept.reserve(keep.share(1), keep);
        KeptShare(Arc::new(Mutex::new(kept)))
    }

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
