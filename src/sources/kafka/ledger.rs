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

/// Where, in a partition's offsets, each stretch of event time began: what
/// a restart reads again from, one velocity window before its committed
/// offset, without asking the brokers to search by timestamp (a producer
/// may stamp messages with when it sent them, not with their event time).
///
/// Time is cut in `window / BUCKETS` buckets; the index keeps the first
/// offset placed in each bucket of the last two windows (as the prefix
/// maximum of times, as the ledger does), so it is small whatever the
/// rate. The offset it gives is the first of the latest bucket that began
/// at or before the window's start: never after the first offset the
/// window needs.
///
/// ```
/// use fraudflow::sources::kafka::ledger::WindowIndex;
///
/// let mut index = WindowIndex::new(1_000); // buckets of 15 ms
/// for (offset, time) in [(0, 0), (1, 400), (2, 1_100), (3, 1_200), (4, 2_100)] {
///     index.record(offset, time);
/// }
/// // A commit at time 2,100 needs what was placed after 1,100: read again
/// // from offset 2, the first of the bucket holding 1,100.
/// assert_eq!(index.start(2_100), Some(2));
/// ```
#[derive(Clone, Debug)]
pub struct WindowIndex {
    window: u64,
    bucket: u64,
    /// `(bucket, first offset placed in it)`, by bucket.
    entries: VecDeque<(u64, i64)>,
    latest: u64,
}

/// Buckets a window is cut into.
pub const BUCKETS: u64 = 64;

impl WindowIndex {
    /// An index for a velocity window of `window` ms.
    pub fn new(window: u64) -> WindowIndex {
        WindowIndex {
            window,
            bucket: (window / BUCKETS).max(1),
            entries: VecDeque::new(),
            latest: 0,
        }
    }

    /// Notes the message at `offset` (later than any before), placed at
    /// `time`.
    pub fn record(&mut self, offset: i64, time: u64) {
        self.latest = self.latest.max(time);
        let bucket = self.latest / self.bucket;
        if self.entries.back().is_none_or(|&(b, _)| b < bucket) {
            self.entries.push_back((bucket, offset));
        }
        let keep_from = self.latest.saturating_sub(2 * self.window) / self.bucket;
        while self.entries.len() > 1 && self.entries[1].0 <= keep_from {
            self.entries.pop_front();
        }
    }

    /// The offset to read again from for a commit made at time `time`: the
    /// first offset of the bucket holding `time` less one window (or of the
    /// earliest bucket kept); `None` before anything was recorded.
    pub fn start(&self, time: u64) -> Option<i64> {
        let from = time.saturating_sub(self.window) / self.bucket;
        let at = self.entries.partition_point(|&(b, _)| b <= from);
        let i = at.saturating_sub(1);
        self.entries.get(i).map(|&(_, offset)| offset)
    }
}

#[cfg(test)]
mod window_tests {
    use super::WindowIndex;

    /// The plain answer: the first offset of the latest bucket (of prefix
    /// times) at or before the window's start, among the offsets kept.
    fn oracle(placed: &[(i64, u64)], time: u64, window: u64, bucket: u64) -> i64 {
        let from = time.saturating_sub(window) / bucket;
        let kept = time.saturating_sub(2 * window) / bucket;
        let buckets: Vec<(i64, u64)> = placed.iter().map(|&(o, t)| (o, t / bucket)).collect();
        let best = buckets
            .iter()
            .filter(|&&(_, b)| b <= from)
            .map(|&(_, b)| b)
            .max();
        let first_kept = buckets
            .iter()
            .rev()
            .find(|&&(_, b)| b <= kept)
            .map(|&(_, b)| b);
        let target = match (best, first_kept) {
            (Some(b), Some(k)) => b.max(k),
            (Some(b), None) => b,
            (None, _) => buckets[0].1,
        };
        buckets.iter().find(|&&(_, b)| b == target).unwrap().0
    }

    #[test]
    fn the_start_is_the_plain_answer_and_never_after_the_windows_first_offset() {
        let window = 3_600_000;
        let bucket = window / super::BUCKETS;
        let mut index = WindowIndex::new(window);
        let mut placed = Vec::new();
        let mut time = 0u64;
        for offset in 0..20_000i64 {
            time += (offset as u64 * 7919) % 500_000;
            index.record(offset, time);
            placed.push((offset, time));
            if offset % 499 == 0 {
                let start = index.start(time).unwrap();
                assert_eq!(
                    start,
                    oracle(&placed, time, window, bucket),
                    "offset {offset}"
                );
                let first_inside = placed.iter().find(|&&(_, t)| t + window > time).unwrap().0;
                assert!(
                    start <= first_inside,
                    "offset {offset}: {start} > {first_inside}"
                );
            }
        }
        assert!(index.entries.len() <= 2 * super::BUCKETS as usize + 2);
    }
}
