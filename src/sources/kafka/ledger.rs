//! Which offsets of a partition may be committed.
//!
//! Why: an offset may be committed only once every output of every message
//! up to it has left the dataflow (at least once), or is in the transaction
//! being committed (exactly once). Messages of one partition are placed at
//! logical times that usually grow with the offset but need not (an event
//! stamped earlier than the one before it is placed at its own time when
//! the partition's frontier allows). The ledger keeps, in offset order,
//! the latest time placed *so far*: that prefix maximum never falls, so the
//! offsets whose outputs are all done, once the sinks' frontier has passed
//! a time, are always a prefix. Consecutive offsets with one prefix time
//! share one entry, so a partition costs an entry per distinct time, not
//! per message.
//!
//! ```
//! use fraudflow::sources::kafka::ledger::Ledger;
//!
//! let mut ledger = Ledger::default();
//! ledger.record(10, 5); // offset 10 placed at time 5
//! ledger.record(11, 3); // placed earlier, but 10 is not done before 5
//! ledger.record(12, 9);
//! assert_eq!(ledger.release(5), None); // nothing below 5 is a whole prefix
//! assert_eq!(ledger.release(6), Some((12, 5))); // commit 12: 10 and 11 are done
//! assert_eq!(ledger.release(10), Some((13, 9)));
//! assert!(ledger.is_empty());
//! ```

use std::collections::VecDeque;

/// The offsets placed and not yet released, with their prefix times.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// `(last offset, prefix time)`: every offset up to `last offset` (and
    /// after the entry before) was placed at or before `prefix time`.
    entries: VecDeque<(i64, u64)>,
    latest: u64,
}

impl Ledger {
    /// Notes that the message at `offset` (later than every offset recorded
    /// before) was placed at logical time `time`.
    pub fn record(&mut self, offset: i64, time: u64) {
        self.latest = self.latest.max(time);
        match self.entries.back_mut() {
            Some(last) if last.1 == self.latest => last.0 = last.0.max(offset),
            _ => self.entries.push_back((offset, self.latest)),
        }
    }

    /// Once every output at a time before `frontier` is done: the offset to
    /// commit (the next one to read, Kafka's convention) and the latest time
    /// placed up to it; `None` when no new prefix is done. Released entries
    /// are forgotten.
    pub fn release(&mut self, frontier: u64) -> Option<(i64, u64)> {
        let mut done = None;
        while let Some(&(offset, time)) = self.entries.front() {
            if time >= frontier {
                break;
            }
            done = Some((offset + 1, time));
            self.entries.pop_front();
        }
        done
    }

    /// Whether every recorded offset has been released.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries kept (one per distinct prefix time).
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Ledger;

    /// The plain answer: the largest offset whose own and earlier offsets'
    /// times are all before the frontier.
    fn oracle(placed: &[(i64, u64)], frontier: u64) -> Option<i64> {
        let mut best = None;
        for &(offset, time) in placed {
            if time >= frontier {
                break;
            }
            best = Some(offset + 1);
        }
        best
    }

    #[test]
    fn releases_agree_with_a_plain_scan_of_every_message() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let placed: Vec<(i64, u64)> = (0..2_000).map(|o| (o, next() % 400)).collect();
        let mut ledger = Ledger::default();
        placed.iter().for_each(|&(o, t)| ledger.record(o, t));
        let mut last = None;
        for frontier in (0..=400).step_by(7) {
            let expected = oracle(&placed, frontier);
            let got = ledger.release(frontier).map(|r| r.0).or(last);
            assert_eq!(got, expected, "frontier {frontier}");
            last = got;
        }
    }

    #[test]
    fn one_entry_per_distinct_prefix_time_and_none_before_the_first() {
        let mut ledger = Ledger::default();
        for offset in 0..100 {
            ledger.record(offset, 4);
        }
        ledger.record(100, 2); // placed earlier: its prefix time is still 4
        ledger.record(101, 8);
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.release(4), None);
        assert_eq!(ledger.release(5), Some((101, 4)));
        assert_eq!(ledger.release(9), Some((102, 8)));
        assert_eq!(ledger.release(100), None);
    }
}
