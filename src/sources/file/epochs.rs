//! Epochs: the file source's logical times, coarser than event time.
//!
//! Why: every distinct logical time costs its own progress through every
//! operator of the dataflow (some 15 µs on our machine), whatever number
//! of events it holds. PaySim's hourly steps hold thousands of events each,
//! but a file whose events are all stamped apart (sparse time: a row an
//! hour, or one a millisecond) would pay that cost for every event, and run
//! ten times slower. So the file source sends events at an *epoch*: the
//! start of a run of at least [`EPOCH_EVENTS`] lines. Each event keeps its
//! own place in event time (`Event::place_ms`), and the operators that care
//! (velocity windows, model versions) go by that.
//!
//! What makes it correct: the epoch of a place is the latest epoch start at
//! or before it, and a new epoch starts only at a place later than every
//! place seen so far. So the epoch never decreases as the place grows: when
//! the dataflow has finished an epoch, every event placed at or before any
//! place in it has arrived, which is what a window count needs. And every
//! line's time is scanned in input order (`prescan`, once in each process:
//! `shared`), so every worker draws the same epochs whatever the number of
//! workers: the answer stays a function of the input alone.
//!
//! ```
//! use fraudflow::sources::file::epochs::Epochs;
//!
//! let mut epochs = Epochs::new(3);
//! for place in [10, 10, 15, 12, 20, 25, 30] {
//!     epochs.note(place);
//! }
//! // Epochs start at 0, and at 20: the first place later than every one
//! // before it once the epoch holds three lines (12 came behind 15).
//! assert_eq!([10, 15, 12].map(|p| epochs.of(p)), [0, 0, 0]);
//! assert_eq!([20, 25, 30].map(|p| epochs.of(p)), [20, 20, 20]);
//! ```

use std::collections::VecDeque;

/// Lines an epoch holds at least (the last of a file may hold fewer): the
/// cost of a logical time is spread over this many events at the least.
pub const EPOCH_EVENTS: usize = 1_024;

/// The epoch starts drawn so far over a file's lines, in input order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epochs {
    /// Epoch starts still in use, ascending; the first is 0 until pruned.
    starts: VecDeque<u64>,
    /// The latest place noted.
    latest: Option<u64>,
    /// Lines noted since the current epoch started.
    since: usize,
    /// Lines an epoch holds before a later place may start another.
    size: usize,
    /// When set, how far past its start an epoch may reach: see
    /// [`Epochs::with_span`].
    span: Option<Span>,
}

/// The reach of an epoch: a place `span` or more past the current start
/// starts another, and a gap in event time wider than `lateness` gets its
/// own start `lateness` before the place after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    span: u64,
    lateness: u64,
}

impl Default for Epochs {
    fn default() -> Self {
        Epochs::new(EPOCH_EVENTS)
    }
}

impl Epochs {
    /// Epochs of at least `size` lines (at least 1).
    pub fn new(size: usize) -> Epochs {
        Epochs {
            starts: VecDeque::from([0]),
            latest: None,
            since: 0,
            size: size.max(1),
            span: None,
        }
    }

    /// Epochs of at least `size` lines that also keep every place less
    /// than `span + lateness` past its epoch: a place at or after the
    /// current start is less than `span` past it, and one behind it at most
    /// `lateness` (the scan places nothing further behind the frontier)
    /// falls either after a gap's own start or at most `lateness` before a
    /// start that came less than `span` after the one before. The scan
    /// places events further behind the latest place only when that place
    /// was a frontier candidate, which the floor does not follow (the first
    /// line, or a jump past the past limit); such a place, when it is that
    /// far past its epoch, starts one of its own, between starts. A loop
    /// in the dataflow needs this: what comes back round it can only be
    /// awaited for that long past a logical time.
    ///
    /// ```
    /// use fraudflow::sources::file::epochs::Epochs;
    ///
    /// let mut epochs = Epochs::with_span(1_000, 100, 10);
    /// for place in [500, 550, 599, 600, 2_000, 1_995] {
    ///     epochs.note(place);
    /// }
    /// // 600 is 100 past 500; the gap before 2,000 gets a start at 1,990,
    /// // so 1,995, behind 2,000, is still less than 10 past its epoch.
    /// assert_eq!([550, 599, 600].map(|p| epochs.of(p)), [500, 500, 600]);
    /// assert_eq!([2_000, 1_995].map(|p| epochs.of(p)), [2_000, 1_990]);
    /// ```
    pub fn with_span(size: usize, span: u64, lateness: u64) -> Epochs {
        Epochs {
            span: Some(Span {
                span: span.max(1),
                lateness,
            }),
            ..Epochs::new(size)
        }
    }

    /// Notes the place of the next line in input order: it starts a new
    /// epoch when the current one is full and it is later than every place
    /// noted before.
    pub fn note(&mut self, place: u64) {
        let later = self.latest.is_none_or(|l| place > l);
        let start = self.starts.back().copied().unwrap_or(0);
        let far = self
            .span
            .is_some_and(|s| place >= start.saturating_add(s.span));
        if later && (self.since >= self.size || far) {
            if let Some(s) = self.span {
                let before = place.saturating_sub(s.lateness);
                if before > start && self.latest.is_none_or(|l| before > l) {
                    self.starts.push_back(before);
                }
            }
            self.starts.push_back(place);
            self.since = 0;
        } else if let (false, Some(s)) = (later, self.span) {
            // Behind the latest place by more than the lateness (it was a
            // frontier candidate: the first line, or a jump past the past
            // limit) and as far as span + lateness past its epoch: a start
            // of its own. Every place noted in that epoch is nearer its
            // start, so none of theirs changes.
            let at = self.starts.partition_point(|&x| x <= place);
            let epoch = at.checked_sub(1).map_or(0, |i| self.starts[i]);
            if place >= epoch.saturating_add(s.span).saturating_add(s.lateness) {
                self.starts.insert(at, place);
            }
        }
        self.since += 1;
        self.latest = self.latest.max(Some(place));
    }

    /// The epoch of a place: the latest start at or before it. Exact for
    /// any place noted (later starts are all after it, or after every
    /// place noted in its epoch), and never less than the epoch of an
    /// earlier place.
    pub fn of(&self, place: u64) -> u64 {
        let after = self.starts.partition_point(|&s| s <= place);
        after
            .checked_sub(1)
            .and_then(|i| self.starts.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Forgets the starts no place at or after `floor` can need.
    pub fn prune(&mut self, floor: u64) {
        while self.starts.get(1).is_some_and(|&next| next <= floor) {
            self.starts.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule once more, plainly, over a whole sequence: the epoch of
    /// each place, with every start known.
    fn oracle(places: &[u64], size: usize) -> Vec<u64> {
        let mut starts = vec![0u64];
        let (mut latest, mut since) = (None::<u64>, 0usize);
        for &p in places {
            if latest.is_none_or(|l| p > l) && since >= size {
                starts.push(p);
                since = 0;
            }
            since += 1;
            latest = latest.max(Some(p));
        }
        places
            .iter()
            .map(|&p| *starts.iter().rev().find(|&&s| s <= p).unwrap())
            .collect()
    }

    /// With a span, as the file source scans (nothing placed more than the
    /// lateness behind the latest place), no place is as far as the span
    /// and the lateness together past its epoch, and epochs never
    /// decrease.
    #[test]
    fn a_span_bounds_every_place_past_its_epoch() {
        for seed in 0..20 {
            let (span, lateness) = (50 + seed * 7, 5 + seed * 3);
            let mut epochs = Epochs::with_span(16, span, lateness);
            let (mut latest, mut noted) = (None::<u64>, Vec::new());
            let mut state = seed + 1;
            for _ in 0..2_000 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let step = (state >> 33) % 40;
                let gap = if (state >> 20) % 50 == 0 { 10_000 } else { 0 };
                let ahead = latest.unwrap_or(1_000) + step + gap;
                let behind =
                    latest.map_or(ahead, |l| l.saturating_sub((state >> 40) % (lateness + 1)));
                let place = if (state >> 10) % 4 == 0 {
                    behind
                } else {
                    ahead
                };
                epochs.note(place);
                latest = latest.max(Some(place));
                noted.push(place);
            }
            let bound = span + lateness;
            let mut last_epoch = 0;
            let mut sorted = noted.clone();
            sorted.sort_unstable();
            for p in sorted {
                let e = epochs.of(p);
                assert!(e <= p && p - e < bound, "seed {seed}: place {p} epoch {e}");
                assert!(e >= last_epoch);
                last_epoch = e;
            }
        }
    }

    /// Behind a frontier candidate (the first line, a jump) the scan
    /// places events at their own times, however far behind the latest
    /// place: each still gets an epoch less than span + lateness before
    /// it, the epochs never decrease, and none changes once given.
    #[test]
    fn places_far_behind_a_candidate_stay_within_the_bound() {
        let (span, lateness) = (100, 20);
        let mut epochs = Epochs::with_span(4, span, lateness);
        let mut places = vec![10_000]; // the first line: a candidate
        places.extend((0..200).map(|i| 5_000 + i * 7 - (i % 3) * 15));
        places.push(50_000); // a jump past the past limit
        places.extend((0..100).map(|i| 6_400 + i * 13 - (i % 4) * 10));
        let mut given = Vec::new();
        for &p in &places {
            epochs.note(p);
            given.push((p, epochs.of(p)));
        }
        for &(p, e) in &given {
            assert_eq!(epochs.of(p), e, "place {p}: its epoch changed");
            assert!(e <= p && p - e < span + lateness, "place {p} epoch {e}");
        }
        given.sort_unstable();
        assert!(given.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    fn places(seed: u64, n: usize) -> Vec<u64> {
        let mut state = seed;
        let mut t = 1_000u64;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                t += (state >> 40) % 50;
                t.saturating_sub((state >> 20) % 120)
            })
            .collect()
    }

    #[test]
    fn epochs_read_as_the_lines_come_match_the_rule_over_the_whole_input() {
        for (seed, size) in [(1, 1), (2, 3), (3, 16), (4, 1_024)] {
            let places = places(seed, 3_000);
            let mut epochs = Epochs::new(size);
            let got: Vec<u64> = places
                .iter()
                .map(|&p| {
                    epochs.note(p);
                    epochs.of(p)
                })
                .collect();
            assert_eq!(got, oracle(&places, size), "size {size}");
            let distinct = got.windows(2).filter(|w| w[0] != w[1]).count();
            assert!(size == 1_024 || distinct > 10, "size {size}: {distinct}");
        }
    }

    #[test]
    fn the_epoch_never_falls_as_the_place_grows() {
        let places = places(9, 5_000);
        let mut epochs = Epochs::new(7);
        places.iter().for_each(|&p| epochs.note(p));
        let mut sorted = places.clone();
        sorted.sort_unstable();
        let of: Vec<u64> = sorted.iter().map(|&p| epochs.of(p)).collect();
        assert!(of.windows(2).all(|w| w[0] <= w[1]));
        assert!(sorted.iter().zip(&of).all(|(p, e)| e <= p));
    }

    #[test]
    fn pruning_keeps_the_epoch_of_every_place_at_or_after_the_floor() {
        let places = places(5, 2_000);
        let mut epochs = Epochs::new(4);
        places.iter().for_each(|&p| epochs.note(p));
        let full = epochs.clone();
        let floor = places[1_000];
        epochs.prune(floor);
        assert!(epochs.starts.len() < full.starts.len());
        for p in places.iter().copied().filter(|&p| p >= floor) {
            assert_eq!(epochs.of(p), full.of(p), "{p}");
        }
    }

    #[test]
    fn a_size_of_one_gives_every_later_place_its_own_epoch() {
        let mut epochs = Epochs::new(1);
        for p in [5, 3, 9, 9, 12] {
            epochs.note(p);
        }
        // The first epoch (from 0) holds the first line; 3 came behind 5
        // and shares its epoch; each later place starts one.
        assert_eq!([5, 3, 9, 12].map(|p| epochs.of(p)), [0, 0, 9, 12]);
    }
}
