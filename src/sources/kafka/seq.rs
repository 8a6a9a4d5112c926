//! Input-order numbers of Kafka events, and which of them are muted.
//!
//! Why: an event's `seq` breaks ties between events of one time and names
//! it in the outputs; from Kafka it must be unique over every worker of
//! every process. On a restart, the source reads one velocity window again
//! before its committed offsets to rebuild the velocity state, and the
//! sinks must write nothing for those events; they are scored where they
//! are read, so the mark can travel in the number itself instead of in
//! every event: `seq = (n * 4 + own * 2 + muted) * peers + worker`.
//!
//! `n` is the number the publisher gave the message in the
//! [`ORDER_HEADER`] header, so that events of one time keep the order they
//! had in a file whichever partitions they took (`fraudflow replay`
//! numbers every message, and a replayed file scores exactly as its
//! backtest does); for a message without one (live traffic), `n` is the
//! worker's own count of messages and `own` is 1. The two kinds of number
//! never meet, and `fraudflow replay` starts its numbers past every message
//! already in the topic, so files replayed one after another into one
//! topic never share a number either. Two replays into one topic *at the
//! same time* may: their events keep distinct names (`event_id`) and are
//! all scored, but the order between two events of one time, one worker
//! and one number is then the order they were read in.
//!
//! ```
//! use fraudflow::sources::kafka::seq::Numbering;
//!
//! let mut n = Numbering::new(2, 4); // worker 2 of 4
//! let (a, b) = (n.next(false), n.next(true));
//! assert!(a < b);
//! assert_eq!((a % 4, b % 4), (2, 2));
//! assert!(!Numbering::is_muted(a, 4) && Numbering::is_muted(b, 4));
//! ```

/// The header in which a publisher may give a message's place in the
/// input order, in decimal.
pub const ORDER_HEADER: &str = "fraudflow-order";

/// One worker's numbering.
#[derive(Clone, Debug)]
pub struct Numbering {
    worker: u64,
    peers: u64,
    count: u64,
}

impl Numbering {
    /// Worker `worker` of `peers`.
    pub fn new(worker: usize, peers: usize) -> Numbering {
        Numbering {
            worker: worker as u64,
            peers: peers.max(1) as u64,
            count: 0,
        }
    }

    /// The next number, growing, unique over every worker.
    #[allow(clippy::should_implement_trait)] // it takes an argument
    pub fn next(&mut self, muted: bool) -> u64 {
        self.next_in(None, muted)
    }

    /// The number of a message the publisher placed at `order` in the
    /// input order (`None`, or a place too large to number: the worker's
    /// own count, marked as such).
    pub fn next_in(&mut self, order: Option<u64>, muted: bool) -> u64 {
        let limit = u64::MAX / 4 / self.peers - 1;
        let (n, own) = match order.filter(|&o| o <= limit) {
            Some(o) => (o, 0),
            None => (self.count.min(limit), 1),
        };
        self.count += 1;
        ((n << 2) | (own << 1) | u64::from(muted)) * self.peers + self.worker
    }

    /// Whether `seq` was numbered muted, with `peers` workers.
    pub fn is_muted(seq: u64, peers: usize) -> bool {
        (seq / peers.max(1) as u64) & 1 == 1
    }

    /// Whether `seq` is a worker's own count rather than a publisher's
    /// order, with `peers` workers.
    pub fn is_own(seq: u64, peers: usize) -> bool {
        (seq / peers.max(1) as u64) & 2 == 2
    }
}

#[cfg(test)]
mod tests {
    use super::Numbering;
    use std::collections::HashSet;

    #[test]
    fn a_publishers_order_orders_numbers_over_workers_and_a_huge_one_is_ignored() {
        let (mut a, mut b) = (Numbering::new(0, 2), Numbering::new(1, 2));
        let (x, y, z) = (
            a.next_in(Some(7), false),
            b.next_in(Some(3), true),
            a.next_in(Some(5), false),
        );
        assert!(y < z && z < x);
        assert!(Numbering::is_muted(y, 2) && !Numbering::is_muted(x, 2));
        let huge = a.next_in(Some(u64::MAX), false);
        assert_eq!(huge, ((2 << 2) | 2) * 2, "the worker's own count, 2");
        assert!(Numbering::is_own(huge, 2) && !Numbering::is_own(x, 2));
    }

    #[test]
    fn a_workers_own_count_never_meets_a_publishers_order() {
        // Worker 1 of 3 reads, in turn, live messages (no order) and a
        // replay's numbered 0, 1, 2, ...: the same n from either kind
        // must give two numbers, each decoding to what it was.
        let peers = 3;
        let mut n = Numbering::new(1, peers);
        let mut seen = HashSet::new();
        for k in 0..500u64 {
            let (own, ordered) = (n.next(k % 5 == 0), n.next_in(Some(k), false));
            assert!(seen.insert(own) && seen.insert(ordered), "k {k}");
            assert!(Numbering::is_own(own, peers) && !Numbering::is_own(ordered, peers));
            assert_eq!(Numbering::is_muted(own, peers), k % 5 == 0);
            assert_eq!(ordered, (k << 2) * 3 + 1, "a plain recomputation");
        }
    }

    #[test]
    fn numbers_are_unique_over_workers_and_keep_the_mark() {
        let peers = 3;
        let mut seen = HashSet::new();
        for worker in 0..peers {
            let mut n = Numbering::new(worker, peers);
            let mut last = None;
            for k in 0..1_000u64 {
                let muted = k % 3 == 0;
                let seq = n.next(muted);
                assert!(seen.insert(seq), "{seq} twice");
                assert_eq!(Numbering::is_muted(seq, peers), muted);
                assert_eq!(seq % peers as u64, worker as u64);
                assert!(last < Some(seq));
                last = Some(seq);
            }
        }
    }
}
