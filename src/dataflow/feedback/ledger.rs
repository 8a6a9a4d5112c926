//! Which labels read from the `feedback` topic a live run's learner has
//! kept the effect of, and so where a restart reads the topic again.
//!
//! Process 0 hands each label it reads to the dataflow ([`Ledger::admit`]),
//! which places it in event time ([`Ledger::placed`]). From then on a
//! label is *open* (a restart reads it again) until one of these, after
//! which the learner's kept state has its effect:
//!
//! - the learner takes its example, into the batch or the holdout
//!   ([`Ledger::taken`]): from then on the learner's kept state holds it
//!   (the batch and the holdout are written with every kept state, a fitted
//!   batch is in the version it made);
//! - the learner has handled every time through `t + retention`, `t` being
//!   where the label was placed ([`Ledger::expire`]): the join keeps a
//!   label until then, so it met no transaction and never will.
//!
//! Each state the learner keeps carries, per partition, `end` (the offset
//! after the last label handed over) and `again` (the offsets before `end`
//! still open). A restart reads each partition from the first of `again`,
//! or from `end`; it hands over what is in `again` or at or past `end`, and
//! skips the rest, whose effect the kept state has: no label is left
//! unread, and none is applied twice. A label handed over but not yet
//! placed when the state is kept is open too (it stays in `again`, or at
//! or past `end`). A label read again meets its transaction only if the
//! join has it again after the restart (`docs/feedback.md`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A label's place on the feedback topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPlace {
    pub partition: i32,
    pub offset: i64,
}

/// Where a restart reads one partition of the feedback topic again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionResume {
    pub partition: i32,
    /// The offset after the last label handed to the dataflow: every label
    /// from here on is new.
    pub end: i64,
    /// Labels before `end` whose effect is not kept, in ascending order:
    /// handed over again.
    pub again: Vec<i64>,
}

impl PartitionResume {
    /// The first offset a restart reads: the first of `again`, or `end`.
    pub fn start(&self) -> i64 {
        self.again.first().map_or(self.end, |&o| o.min(self.end))
    }
}

/// One partition's labels: the end of what was handed over, and which of
/// those are open.
#[derive(Debug, Default)]
struct Part {
    end: i64,
    open: BTreeSet<i64>,
}

#[derive(Debug, Default)]
struct Book {
    parts: BTreeMap<i32, Part>,
    /// Placed labels still open, by their order of receipt.
    placed: HashMap<u64, TopicPlace>,
    /// Those labels by the time through which the join may still match
    /// them.
    due: BTreeMap<u64, Vec<u64>>,
    /// The offsets of the state last kept, to commit, and a count of kept
    /// states.
    kept: (u64, Vec<(i32, i64)>),
}

/// The labels of the feedback topic between the reader and the learner.
#[derive(Debug)]
pub struct Ledger {
    book: Mutex<Book>,
    retention_ms: u64,
}

impl Ledger {
    /// A ledger going on from a kept state's `resume`, for a join that
    /// keeps labels `retention_ms`.
    pub fn new(resume: &[PartitionResume], retention_ms: u64) -> Ledger {
        let parts = resume
            .iter()
            .map(|r| {
                let open = r.again.iter().copied().filter(|&o| o < r.end).collect();
                (r.partition, Part { end: r.end, open })
            })
            .collect();
        Ledger {
            book: Mutex::new(Book {
                parts,
                ..Book::default()
            }),
            retention_ms,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where to read `partition` from; `None` when no kept state names it.
    pub fn start(&self, partition: i32) -> Option<i64> {
        let book = self.book();
        let part = book.parts.get(&partition)?;
        Some(part.open.first().map_or(part.end, |&o| o.min(part.end)))
    }

    /// Whether the label at `place` is to be handed over (new, or open);
    /// when it is, it is open from now on.
    pub fn admit(&self, place: TopicPlace) -> bool {
        let mut book = self.book();
        let part = book.parts.entry(place.partition).or_default();
        if place.offset >= part.end {
            part.end = place.offset + 1;
            part.open.insert(place.offset);
            return true;
        }
        part.open.contains(&place.offset)
    }

    /// The label at `place` was placed at event time `time` with order of
    /// receipt `seq`.
    pub fn placed(&self, place: TopicPlace, seq: u64, time: u64) {
        let mut book = self.book();
        book.placed.insert(seq, place);
        let due = time.saturating_add(self.retention_ms);
        book.due.entry(due).or_default().push(seq);
    }

    /// The learner took the example of the label `seq` (a label not from
    /// the topic is not in the ledger).
    pub fn taken(&self, seq: u64) {
        let mut book = self.book();
        if let Some(place) = book.placed.remove(&seq) {
            close(&mut book, place);
        }
    }

    /// The learner has handled every time before `frontier`: labels whose
    /// wait in the join ended before it are closed. Whether any was.
    pub fn expire(&self, frontier: u64) -> bool {
        let mut book = self.book();
        let mut closed = false;
        while let Some(entry) = book.due.first_entry() {
            if *entry.key() >= frontier {
                break;
            }
            for seq in entry.remove() {
                if let Some(place) = book.placed.remove(&seq) {
                    closed |= close(&mut book, place);
                }
            }
        }
        closed
    }

    /// Where a restart would read each partition again, now.
    pub fn resume(&self) -> Vec<PartitionResume> {
        let book = self.book();
        book.parts
            .iter()
            .map(|(&partition, part)| PartitionResume {
                partition,
                end: part.end,
                again: part.open.iter().copied().collect(),
            })
            .collect()
    }

    /// A state with `resume` is kept: its start offsets may be committed.
    pub fn kept(&self, resume: &[PartitionResume]) {
        let mut book = self.book();
        let count = book.kept.0 + 1;
        book.kept = (
            count,
            resume.iter().map(|r| (r.partition, r.start())).collect(),
        );
    }

    /// The start offsets of the newest kept state, when one was kept
    /// after the `seen`th.
    pub fn kept_since(&self, seen: u64) -> Option<(u64, Vec<(i32, i64)>)> {
        let book = self.book();
        (book.kept.0 > seen).then(|| book.kept.clone())
    }
}

/// Closes the label at `place`; whether it was open.
fn close(book: &mut Book, place: TopicPlace) -> bool {
    book.parts
        .get_mut(&place.partition)
        .is_some_and(|p| p.open.remove(&place.offset))
}

#[cfg(test)]
mod tests;
