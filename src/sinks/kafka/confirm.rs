//! Commits held until the output topics are seen after them.
//!
//! Why: a broker may acknowledge writes to a topic deleted while running
//! and drop them (tansu 0.6 does), so an acknowledgement alone does not
//! say an output is kept. The watcher looks for every output topic each
//! second and notes when a look that found them all began
//! ([`crate::sources::kafka::KafkaInput::outputs_seen_us`]); a frontier
//! the sink could commit is committed only once such a look began after
//! it was noted.
//!
//! ```
//! use fraudflow::sinks::kafka::confirm::Confirmations;
//!
//! let mut c = Confirmations::default();
//! c.note(100, 5); // at 100 µs, everything before time 5 was acknowledged
//! c.note(200, 9);
//! assert_eq!(c.take(150), Some(5)); // a look began at 150: 5 is kept
//! assert_eq!(c.take(150), None);
//! assert_eq!(c.take(250), Some(9));
//! ```

use std::collections::VecDeque;

/// Frontiers that could be committed, each with when it was noted (µs),
/// oldest first.
#[derive(Clone, Debug, Default)]
pub struct Confirmations {
    noted: VecDeque<(u64, u64)>,
    /// The latest frontier noted, to note each once.
    latest: Option<u64>,
}

impl Confirmations {
    /// Everything before `frontier` was acknowledged at `at_us`; a frontier
    /// no later than one noted before adds nothing (so an idle sink stops
    /// waiting for looks).
    pub fn note(&mut self, at_us: u64, frontier: u64) {
        if self.latest.is_some_and(|l| frontier <= l) {
            return;
        }
        self.latest = Some(frontier);
        self.noted.push_back((at_us, frontier));
    }

    /// The latest frontier noted at or before `seen_us`, when the last look
    /// that found every output topic began, and forgets it and those
    /// before; `None` when none was.
    pub fn take(&mut self, seen_us: u64) -> Option<u64> {
        let mut frontier = None;
        while let Some(&(at, noted)) = self.noted.front() {
            if at > seen_us {
                break;
            }
            frontier = Some(noted);
            self.noted.pop_front();
        }
        frontier
    }

    /// Frontiers waiting for a look.
    pub fn waiting(&self) -> usize {
        self.noted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Confirmations;

    #[test]
    fn nothing_noted_after_the_look_is_given_and_each_is_given_once() {
        let mut c = Confirmations::default();
        assert_eq!(c.take(u64::MAX), None);
        for (at, frontier) in [(10, 1), (20, 2), (30, 3), (40, 4)] {
            c.note(at, frontier);
        }
        assert_eq!(c.take(9), None, "a look before every note");
        assert_eq!(c.waiting(), 4);
        // A look beginning exactly when a frontier was noted keeps it.
        assert_eq!(c.take(30), Some(3));
        assert_eq!(c.waiting(), 1);
        assert_eq!(c.take(30), None, "given once");
        assert_eq!(c.take(41), Some(4));
        assert_eq!(c.waiting(), 0);
        // The same frontier again waits for nothing.
        c.note(50, 4);
        assert_eq!((c.waiting(), c.take(60)), (0, None));
    }

    #[test]
    fn against_a_plain_recomputation_on_a_random_sequence() {
        // Notes at growing times with growing frontiers, looks at random
        // times: a take gives the frontier of the last note at or before
        // the look among those not given yet.
        let (mut c, mut all) = (Confirmations::default(), Vec::new());
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        let (mut at, mut frontier, mut given) = (0u64, 0u64, 0usize);
        for _ in 0..1_000 {
            at += next() % 50;
            frontier += 1 + next() % 3;
            c.note(at, frontier);
            all.push((at, frontier));
            if next() % 4 == 0 {
                let look = at.saturating_sub(next() % 120);
                let upto = all
                    .iter()
                    .take_while(|(a, _)| *a <= look)
                    .count()
                    .max(given);
                let want = (upto > given).then(|| all[upto - 1].1);
                given = upto;
                assert_eq!(c.take(look), want, "look at {look}");
                assert_eq!(c.waiting(), all.len() - given);
            }
        }
    }
}
