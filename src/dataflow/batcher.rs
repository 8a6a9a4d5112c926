//! The batcher of a sliding-window arrangement.
//!
//! A windowed collection holds each record from its time `t` until
//! `t + window`: every update `(d, t, r)` comes with its retraction
//! `(d, t + window, -r)`. Differential's default `MergeBatcher` would take
//! both from the dataflow, sort small chunks as they arrive, merge them up
//! a geometric ladder, and at every extraction merge the whole ladder and
//! set aside the retractions not yet due, to be merged again next time.
//!
//! Here the batcher is given only the entering updates and makes the
//! retractions itself. Updates wait, unsorted, in one bucket per time; a
//! bucket is sorted once, when the frontier passes its time, and its sorted
//! run, negated, is kept as the retractions due a window later, to be
//! merged (not sorted again) with whatever enters then. Half the updates
//! cross the dataflow, and each is sorted once.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use differential_dataflow::batcher::merge::Sealer;
use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::consolidation::consolidate_updates;
use timely::progress::frontier::{Antichain, AntichainRef};

/// An update of a windowed collection: data, time, count.
pub type Update<D> = (D, u64, isize);

/// Batches a windowed collection from its entering updates alone: each
/// `(d, t, r)` inserted is in the collection from `t` and leaves it at
/// `t + window`, as `(d, t + window, -r)`. Batches are sealed by `S`.
///
/// ```
/// use differential_dataflow::batcher::{Batcher, Extract};
/// use differential_dataflow::trace::implementations::spine_fueled::SpineBatch;
/// use differential_dataflow::trace::implementations::ValBuilder;
/// use fraudflow::dataflow::batcher::WindowBatcher;
/// use timely::progress::Antichain;
///
/// let mut batcher = WindowBatcher::<(u64, u64), ValBuilder<u64, u64, u64, isize>>::new(10);
/// batcher.insert(&mut vec![((7, 1), 0, 1), ((3, 2), 0, 1)]);
/// let (batch, lower) = batcher.extract(Antichain::from_elem(5).borrow());
/// assert_eq!(batch.map(|b| b.len()), Some(2));
/// // Both leave at 10: the batcher holds that time.
/// assert_eq!(lower.to_owned(), Antichain::from_elem(10));
/// ```
pub struct WindowBatcher<D, S> {
    window: u64,
    /// Entering updates not yet extracted, unsorted, by time.
    entering: BTreeMap<u64, Vec<Update<D>>>,
    /// Retractions of extracted updates, sorted and consolidated, by the
    /// time they are due.
    leaving: BTreeMap<u64, Vec<Update<D>>>,
    /// The least time of a held update, after the last extraction.
    lower: Antichain<u64>,
    sealer: PhantomData<S>,
}

impl<D, S> WindowBatcher<D, S> {
    /// A batcher whose records stay `window` (at least 1) units of time.
    pub fn new(window: u64) -> Self {
        WindowBatcher {
            window: window.max(1),
            entering: BTreeMap::new(),
            leaving: BTreeMap::new(),
            lower: Antichain::new(),
            sealer: PhantomData,
        }
    }
}

impl<D, S> Batcher<Vec<Update<D>>> for WindowBatcher<D, S>
where
    D: Ord + Clone,
    S: Sealer<Vec<Update<D>>>,
{
    fn insert(&mut self, container: &mut Vec<Update<D>>) {
        let mut updates = container.drain(..).peekable();
        while let Some(first) = updates.next() {
            // Updates of one time come in runs: one lookup a run.
            let time = first.1;
            let bucket = self.entering.entry(time).or_default();
            bucket.push(first);
            while let Some(next) = updates.next_if(|u| u.1 == time) {
                bucket.push(next);
            }
        }
    }
}

impl<D, S> Extract for WindowBatcher<D, S>
where
    D: Ord + Clone,
    S: Sealer<Vec<Update<D>>>,
{
    type Time = u64;
    type Output = S::Output;

    fn extract<'a>(
        &'a mut self,
        upper: AntichainRef<'_, u64>,
    ) -> (Option<S::Output>, AntichainRef<'a, u64>) {
        // Times are totally ordered: `upper` has at most one element, and
        // an update is ready when its time is below it (all are when it is
        // empty).
        let bound = upper.iter().next().copied();
        let ready = |held: &mut BTreeMap<u64, Vec<Update<D>>>| match bound {
            Some(bound) => {
                let later = held.split_off(&bound);
                std::mem::replace(held, later)
            }
            None => std::mem::take(held),
        };
        let mut runs = Vec::new();
        for (time, mut bucket) in ready(&mut self.entering) {
            consolidate_updates(&mut bucket);
            let due = time.saturating_add(self.window);
            let retractions = bucket.iter().map(|(d, _, r)| (d.clone(), due, -r));
            // Each time is extracted once, so nothing else is due at
            // `due`; were something, consolidating would keep it right.
            let leaving = self.leaving.entry(due).or_default();
            let held = leaving.len();
            leaving.extend(retractions);
            if held > 0 {
                consolidate_updates(leaving);
            }
            runs.push(bucket);
        }
        runs.extend(ready(&mut self.leaving).into_values());
        let updates = merge_all(runs);

        self.lower.clear();
        let held = [&self.entering, &self.leaving];
        if let Some(least) = held.iter().filter_map(|m| m.keys().next()).min() {
            self.lower.insert(*least);
        }
        let batch = if updates.is_empty() {
            None
        } else {
            S::seal(&mut vec![updates])
        };
        (batch, self.lower.borrow())
    }
}

/// Merges sorted, consolidated runs into one, consolidating across runs.
fn merge_all<D: Ord>(mut runs: Vec<Vec<Update<D>>>) -> Vec<Update<D>> {
    while runs.len() > 1 {
        let mut merged = Vec::with_capacity(runs.len().div_ceil(2));
        let mut pairs = runs.into_iter();
        while let Some(a) = pairs.next() {
            merged.push(match pairs.next() {
                Some(b) => merge(a, b),
                None => a,
            });
        }
        runs = merged;
    }
    runs.pop().unwrap_or_default()
}

/// Merges two sorted, consolidated runs; equal `(data, time)` add up, and
/// those that add up to zero go.
fn merge<D: Ord>(a: Vec<Update<D>>, b: Vec<Update<D>>) -> Vec<Update<D>> {
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let order = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => (&x.0, x.1).cmp(&(&y.0, y.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match order {
            std::cmp::Ordering::Less => out.extend(a.next()),
            std::cmp::Ordering::Greater => out.extend(b.next()),
            std::cmp::Ordering::Equal => {
                if let (Some(mut x), Some(y)) = (a.next(), b.next()) {
                    x.2 += y.2;
                    if x.2 != 0 {
                        out.push(x);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use differential_dataflow::trace::cursor::Cursor;
    use differential_dataflow::trace::implementations::ValBuilder;
    use differential_dataflow::trace::Navigable;

    use super::*;

    type Window = WindowBatcher<(u64, u64), ValBuilder<u64, u64, u64, isize>>;

    fn contents<B: Navigable<Cursor: Cursor<Storage = B>>>(batch: &B) -> Vec<Update<(u64, u64)>>
    where
        B::Cursor: for<'a> Cursor<
            Key<'a> = &'a u64,
            Val<'a> = &'a u64,
            TimeGat<'a> = &'a u64,
            DiffGat<'a> = &'a isize,
        >,
    {
        let mut out = Vec::new();
        let mut cursor = batch.cursor();
        while let Some(&k) = cursor.get_key(batch) {
            while let Some(&v) = cursor.get_val(batch) {
                cursor.map_times(batch, |&t, &r| out.push(((k, v), t, r)));
                cursor.step_val(batch);
            }
            cursor.step_key(batch);
        }
        out
    }

    fn extract(batcher: &mut Window, upper: Option<u64>) -> (Vec<Update<(u64, u64)>>, Option<u64>) {
        let upper = upper.map_or_else(Antichain::new, Antichain::from_elem);
        let (batch, lower) = batcher.extract(upper.borrow());
        let lower = lower.iter().next().copied();
        (batch.map(|b| contents(&b)).unwrap_or_default(), lower)
    }

    #[test]
    fn each_update_enters_at_its_time_and_leaves_a_window_later() {
        let mut batcher = Window::new(10);
        // Shuffled, a run of one time split across containers, a pair that
        // cancels and a pair that adds up.
        batcher.insert(&mut vec![((5, 1), 3, 1), ((2, 9), 3, 1), ((2, 9), 3, 1)]);
        batcher.insert(&mut vec![((1, 1), 8, 1), ((4, 4), 3, 1), ((4, 4), 3, -1)]);
        batcher.insert(&mut vec![((9, 0), 1, 1)]);

        assert_eq!(
            extract(&mut batcher, Some(4)),
            (
                vec![((2, 9), 3, 2), ((5, 1), 3, 1), ((9, 0), 1, 1)],
                Some(8)
            )
        );
        // Nothing between 4 and 8: no batch.
        assert_eq!(extract(&mut batcher, Some(8)), (vec![], Some(8)));
        // (9, 0) leaves at 11, and a newcomer enters at 11 with the same
        // data: they cancel.
        batcher.insert(&mut vec![((9, 0), 11, 1), ((6, 6), 12, 1)]);
        assert_eq!(
            extract(&mut batcher, Some(12)),
            (vec![((1, 1), 8, 1)], Some(12))
        );
        // Those of time 3 leave at 13, beside (6, 6) entering at 12.
        assert_eq!(
            extract(&mut batcher, Some(14)),
            (
                vec![((2, 9), 13, -2), ((5, 1), 13, -1), ((6, 6), 12, 1)],
                Some(18)
            )
        );
        // The empty frontier releases everything still held.
        assert_eq!(
            extract(&mut batcher, None),
            (
                vec![((1, 1), 18, -1), ((6, 6), 22, -1), ((9, 0), 21, -1)],
                None
            )
        );
    }

    #[test]
    fn a_window_shorter_than_the_extracted_span_retracts_in_the_same_batch() {
        let mut batcher = Window::new(2);
        batcher.insert(&mut vec![((1, 1), 0, 1), ((2, 2), 1, 1)]);
        assert_eq!(
            extract(&mut batcher, Some(10)),
            (
                vec![
                    ((1, 1), 0, 1),
                    ((1, 1), 2, -1),
                    ((2, 2), 1, 1),
                    ((2, 2), 3, -1)
                ],
                None
            )
        );
    }

    #[test]
    fn merging_adds_equal_updates_and_drops_zeros() {
        let a = vec![((1, 0), 5, 1), ((2, 0), 5, 1), ((4, 0), 5, 1)];
        let b = vec![((2, 0), 5, -1), ((3, 0), 5, 2), ((4, 0), 5, 1)];
        let c = vec![((0, 0), 9, 1)];
        assert_eq!(
            merge_all(vec![a, b, c]),
            [
                ((0, 0), 9, 1),
                ((1, 0), 5, 1),
                ((3, 0), 5, 2),
                ((4, 0), 5, 2)
            ]
        );
    }
}
