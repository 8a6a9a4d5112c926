//! Input-order numbers of Kafka events, and which of them are muted.
//!
//! Why: an event's `seq` breaks ties between events of one time and names
//! it in the outputs; from Kafka it must be unique over every worker of
//! every process. On a restart, the source reads one velocity window again
//! before its committed offsets to rebuild the velocity state, and the
//! sinks must write nothing for those events; they are scored where they
//! are read, so the mark can travel in the number itself instead of in
//! every event: `seq = (count * 2 + muted) * peers + worker`.
//!
//! `count` is the worker's own count of messages, unless the publisher
//! numbered the message in the [`ORDER_HEADER`] header: then that number,
//! so that events of one time keep the order they had in a file whichever
//! partitions they took (`fraudflow replay` numbers every message, and a
//! replayed file scores exactly as its backtest does).
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
    /// own count).
    pub fn next_in(&mut self, order: Option<u64>, muted: bool) -> u64 {
        let limit = u64::MAX / 2 / self.peers - 1;
        let n = order
            .filter(|&o| o <= limit)
            .unwrap_or(self.count.min(limit));
        self.count += 1;
        ((n << 1) | u64::from(muted)) * self.peers + self.worker
    }

    /// Whether `seq` was numbered muted, with `peers` workers.
    pub fn is_muted(seq: u64, peers: usize) -> bool {
        (seq / peers.max(1) as u64) & 1 == 1
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
        assert_eq!(huge, ((2 << 1) * 2), "the worker's own count, 2");
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
